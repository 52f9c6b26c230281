"""Training the new last layer: L2-regularised multinomial logistic regression on cached
bottlenecks, in numpy, fitted to convergence (full-batch L-BFGS).

How the head is chosen (`select_and_fit`, in imgtool/training/l2_search.py):
  * the L2 strength comes from a log grid (`L2_GRID`), chosen by stratified k-fold
    cross-validation (k = 5, fewer when a class has fewer photos) on the photos the head
    may be fitted on (train + validation), by the lowest mean out-of-fold log-loss
    (accuracy moves in steps of one photo, too coarse to choose by); ties go to the
    stronger L2; `l2=` fixes it (the folds are still run, for an honest estimate);
  * the head is then refitted on all those photos with that L2.
No epoch or step is "selected" on a handful of photos: every fit is the unique minimum of
a strictly convex objective, so the result depends only on the data, the L2, the label
smoothing and the class weights - the seed only draws the fold assignment.

Objective (features standardized by the fit set's mean and std; the scaling is folded
back into the weights, so the result is one dense layer on raw features):
    J(W, b) = sum_i s_i * CE(t_i, softmax(x_i W + b)) / sum_i s_i + l2/2 * ||W||^2
with t_i the label-smoothed target ((1 - eps) one-hot + eps / C) and s_i the class weight
of i's class (balanced: n / (C * n_class), so every class weighs the same in total).
When there are fewer photos than features the fit runs in the span of the photos
(X = U S V^T, W = V Z): the same minimum, exactly (the gradient of J in W lies in that
span), at a fraction of the cost."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgtool.numbers.minimize import lbfgs
from imgtool.numbers.scores import softmax

L2_GRID = (10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)  # strongest first: the warm-start path
CV_FOLDS = 5

SD_FLOOR_FRACTION = 0.1  # a nearly dead feature is standardized with at least this fraction of the median std
MOSTLY_CONSTANT = 0.9  # ... nearly dead: at its most common value on this share of the photos or more


@dataclass(frozen=True)
class TrainConfig:
    """How the last layer is fitted. `l2=None`: chosen by cross-validation."""

    l2: float | None = None
    seed: int = 0
    label_smoothing: float = 0.1
    class_weight: str = "balanced"  # "balanced" | "none"
    cv_folds: int = CV_FOLDS
    l2_grid: tuple[float, ...] = L2_GRID
    calibrate: bool = True  # temperature scaling on the out-of-fold logits, folded into the head


@dataclass
class Head:
    weights: np.ndarray  # [features, classes], applies to raw (unscaled) features
    bias: np.ndarray  # [classes]

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weights + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x))


# ---------------------------------------------------------------- pieces


def class_weights(y: np.ndarray, n_classes: int, mode: str) -> np.ndarray:
    """Per-sample weights: "none" all 1; "balanced" n / (C * n_class) over the classes
    present (each class's weights sum to n / C; all 1 when the classes are equal)."""
    if mode == "none":
        return np.ones(len(y))
    if mode != "balanced":
        raise ValueError(f"class_weight must be 'balanced' or 'none', not {mode!r}")
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = int(np.count_nonzero(counts))
    return len(y) / (present * counts[y])


def smoothed_targets(y: np.ndarray, n_classes: int, smoothing: float) -> np.ndarray:
    t = np.full((len(y), n_classes), smoothing / n_classes)
    t[np.arange(len(y)), y] += 1.0 - smoothing
    return t


def objective(
    w: np.ndarray, b: np.ndarray, x: np.ndarray, target: np.ndarray, sw: np.ndarray, l2: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """J(W, b) and its gradients (see the module docstring) for a stack of K problems:
    w [K, r, C], b [K, C], x [K, n, r], target [K, n, C], sw [K, n] -> ([K], [K, r, C], [K, C]).
    A padding row has weight 0, a padding column x 0: neither changes anything."""
    z = x @ w + b[:, None, :]
    z = z - z.max(axis=2, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=2, keepdims=True))
    total = sw.sum(axis=1)
    loss = -(sw * (target * logp).sum(axis=2)).sum(axis=1) / total + 0.5 * l2 * (w * w).sum(axis=(1, 2))
    g = (np.exp(logp) - target) * (sw / total[:, None])[:, :, None]  # target rows sum to 1
    return loss, x.transpose(0, 2, 1) @ g + l2 * w, g.sum(axis=1)


def standard_deviations(x: np.ndarray) -> np.ndarray:
    """The scale each feature is standardized by: its std, with two exceptions for dead
    ReLU units. A feature constant over the fit set gets 1: it is 0 after centring, so
    its weight is 0 (w / 1e-6 used to fold into weights of ~1e4). A nearly dead one - at
    its most common value on MOSTLY_CONSTANT of the photos or more, firing on a few - is
    scaled up by at most 1 / SD_FLOOR_FRACTION of the median feature's spread: otherwise
    it gets weights ~100x the others', fitted to those few photos, which no quantized
    export survives (60% and 45% accuracy on the test models). Any other feature keeps
    its own std, so the fit does not depend on the features' units. MobileNet V1 on
    flowers-mini: no feature is floored."""
    std = x.std(axis=0)
    constant = std <= 1e-6
    sd = np.where(constant, 1.0, std + 1e-6)
    if (~constant).any():
        floor = SD_FLOOR_FRACTION * float(np.median(std[~constant]))
        mostly = (x == np.median(x, axis=0)).mean(axis=0) >= MOSTLY_CONSTANT
        sd = np.where(~constant & mostly, np.maximum(sd, floor + 1e-6), sd)
    return sd


@dataclass
class Problem:
    """One fit set, standardized and (when n < d) reduced to the span of its photos."""

    x: np.ndarray  # [n, r] features the optimiser sees
    basis: np.ndarray | None  # [d, r]: W = basis @ Z (None: no reduction)
    mu: np.ndarray
    sd: np.ndarray

    @classmethod
    def make(cls, x: np.ndarray) -> Problem:
        x = x.astype(np.float64)
        mu = x.mean(axis=0)
        sd = standard_deviations(x)
        xs = (x - mu) / sd
        n, d = xs.shape
        if n >= d:
            return cls(xs, None, mu, sd)
        # X X^T = U S^2 U^T (an n x n eigenproblem: cheaper than the SVD of X); F = U S, V = X^T U / S
        ev, u = np.linalg.eigh(xs @ xs.T)
        keep = ev > ev.max() * 1e-12
        s = np.sqrt(ev[keep])
        return cls(u[:, keep] * s, (xs.T @ u[:, keep]) / s, mu, sd)

    def project(self, x: np.ndarray) -> np.ndarray:
        xs = (x.astype(np.float64) - self.mu) / self.sd
        return xs if self.basis is None else xs @ self.basis


def fit_stack(
    xs: list[np.ndarray],
    ys: list[np.ndarray],
    sws: list[np.ndarray],
    n_classes: int,
    l2: float,
    smoothing: float,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Fit K problems (features [n_k, r_k]) at once, padded to a common [n, r]. Returns the
    parameters [K, r * C + C] (Z row-major, then b) and the iterations."""
    k, c = len(xs), n_classes
    n = max(len(a) for a in xs)
    r = max(a.shape[1] for a in xs)
    x = np.zeros((k, n, r))
    target = np.zeros((k, n, c))
    sw = np.zeros((k, n))
    for i, (a, yy, ww) in enumerate(zip(xs, ys, sws)):
        x[i, : a.shape[0], : a.shape[1]] = a
        target[i, : len(yy)] = smoothed_targets(yy, c, smoothing)  # padding rows: target 0, weight 0
        sw[i, : len(ww)] = ww

    def fg(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = theta[:, : r * c].reshape(k, r, c)
        loss, gw, gb = objective(w, theta[:, r * c :], x, target, sw, l2)
        return loss, np.concatenate([gw.reshape(k, -1), gb], axis=1)

    theta0 = np.zeros((k, r * c + c)) if start is None else start
    return lbfgs(fg, theta0)


def split_theta(theta: np.ndarray, r: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    return theta[: r * n_classes].reshape(r, n_classes), theta[r * n_classes :]


def fit(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    l2: float,
    label_smoothing: float = 0.1,
    class_weight: str = "balanced",
) -> tuple[Head, int]:
    """The head minimising J on (x, y): (Head on raw features, L-BFGS iterations)."""
    if l2 <= 0:
        raise ValueError("l2 must be > 0 (without it the minimum does not exist on separable data)")
    p = Problem.make(x)
    theta, iters = fit_stack([p.x], [y], [class_weights(y, n_classes, class_weight)], n_classes, l2, label_smoothing)
    z, b = split_theta(theta[0], p.x.shape[1], n_classes)
    w = z if p.basis is None else p.basis @ z
    # fold the standardization into the layer: ((x - mu) / sd) @ w + b == x @ w' + b'
    w_raw = w / p.sd[:, None]
    b_raw = b - p.mu @ w_raw
    return Head(w_raw.astype(np.float32), b_raw.astype(np.float32)), iters


def log_loss(probs: np.ndarray, y: np.ndarray, sw: np.ndarray | None = None) -> float:
    """Mean (weighted) negative log-probability of the true class (probabilities clipped at 1e-15)."""
    nll = -np.log(np.clip(probs[np.arange(len(y)), y], 1e-15, 1.0))
    if sw is None:
        return float(nll.mean())
    return float((sw * nll).sum() / sw.sum())


def calibrated(head: Head, temperature: float) -> Head:
    """The head with 1/T folded into its weights and bias: softmax(x W/T + b/T) is the
    calibrated probability, so head.npz and every export built from it need no extra op
    (computed in float64, stored float32 as the head is)."""
    s = 1.0 / temperature
    return Head(
        (head.weights.astype(np.float64) * s).astype(np.float32), (head.bias.astype(np.float64) * s).astype(np.float32)
    )
