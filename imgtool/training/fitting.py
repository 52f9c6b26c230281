"""Training the new last layer: L2-regularised multinomial logistic regression on cached
bottlenecks, in numpy, fitted to convergence (full-batch L-BFGS).

How the head is chosen (`select_and_fit`):
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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

from imgtool.core.errors import Param
from imgtool.numbers.calibration import Calibration, calibrate, scale
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
class _Problem:
    """One fit set, standardized and (when n < d) reduced to the span of its photos."""

    x: np.ndarray  # [n, r] features the optimiser sees
    basis: np.ndarray | None  # [d, r]: W = basis @ Z (None: no reduction)
    mu: np.ndarray
    sd: np.ndarray

    @classmethod
    def make(cls, x: np.ndarray) -> _Problem:
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


def _fit_stack(
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


def _split_theta(theta: np.ndarray, r: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
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
    p = _Problem.make(x)
    theta, iters = _fit_stack([p.x], [y], [class_weights(y, n_classes, class_weight)], n_classes, l2, label_smoothing)
    z, b = _split_theta(theta[0], p.x.shape[1], n_classes)
    w = z if p.basis is None else p.basis @ z
    # fold the standardization into the layer: ((x - mu) / sd) @ w + b == x @ w' + b'
    w_raw = w / p.sd[:, None]
    b_raw = b - p.mu @ w_raw
    return Head(w_raw.astype(np.float32), b_raw.astype(np.float32)), iters


def stratified_folds(y: np.ndarray, k: int, seed: int, groups: Sequence[str] | None = None) -> np.ndarray:
    """Fold number (0..k-1) of each sample: each class's samples in a seeded random order
    dealt round-robin, continuing where the previous class stopped, so every fold gets
    floor or ceil of n_class / k of each class and the folds differ in size by at most one.
    `groups` (e.g. each photo's content hash): samples of one group all take the fold of
    its first sample, so a byte-identical copy is never scored by a model trained on its
    twin; without repeated groups the folds are exactly the ungrouped ones."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(y), dtype=int)
    offset = 0
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        folds[idx] = (offset + np.arange(len(idx))) % k
        offset += len(idx)
    if groups is not None:
        first: dict[str, int] = {}
        for i, g in enumerate(groups):
            folds[i] = folds[first.setdefault(g, i)]
    return folds


def cv_fold_count(y: np.ndarray, wanted: int = CV_FOLDS) -> int:
    """k for stratified CV: `wanted`, or the smallest class's size when that is smaller."""
    return int(min(wanted, np.bincount(y)[np.unique(y)].min()))


def log_loss(probs: np.ndarray, y: np.ndarray, sw: np.ndarray | None = None) -> float:
    """Mean (weighted) negative log-probability of the true class (probabilities clipped at 1e-15)."""
    nll = -np.log(np.clip(probs[np.arange(len(y)), y], 1e-15, 1.0))
    if sw is None:
        return float(nll.mean())
    return float((sw * nll).sum() / sw.sum())


# ---------------------------------------------------------------- selection


@dataclass
class Selection:
    """How the head was chosen; `as_dict()` is metrics.json's "head"."""

    method: str
    l2: float
    cv_folds: int
    candidates: list[dict[str, float]] = field(default_factory=list)
    cv_accuracy: float | None = None
    cv_accuracy_std: float | None = None
    cv_loss: float | None = None
    oof_probs: np.ndarray | None = None  # out-of-fold probabilities at the chosen L2 (calibrated when calibration is)
    iterations: int = 0
    oof_logits: np.ndarray | None = None  # out-of-fold logits at the chosen L2, before calibration
    calibration: Calibration | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "l2": self.l2,
            "epochs": None,
            "cv_folds": self.cv_folds,
            "cv_accuracy": self.cv_accuracy,
            "cv_accuracy_std": self.cv_accuracy_std,
            "cv_loss": self.cv_loss,
            "candidates": self.candidates,
            "fit_on": "train+validation",
            "curve": {
                "x": [c["l2"] for c in self.candidates],
                "x_label": "L2",
                "cv_accuracy": [c["cv_accuracy"] for c in self.candidates],
                "cv_loss": [c["cv_loss"] for c in self.candidates],
            },
        }


Extra: TypeAlias = "tuple[np.ndarray, np.ndarray, np.ndarray] | None"


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    grid: tuple[float, ...],
    extra: Extra = None,
    groups: Sequence[str] | None = None,
) -> tuple[list[dict[str, float]], list[np.ndarray]]:
    """Out-of-fold scores of each L2 in `grid`, in the order given. The k fold problems are
    fitted together (one stacked optimisation) and each warm-starts from its solution at
    the previous L2. `extra` = (x, y, source row in x) of distorted copies: a copy trains
    the folds its source photo trains, and is never scored. Returns (candidates,
    out-of-fold logits per L2: softmax them for the probabilities). `groups`: see
    stratified_folds (byte-identical copies share a fold)."""
    k = cv_fold_count(y, config.cv_folds)
    folds = stratified_folds(y, k, config.seed, groups)
    sw_all = class_weights(y, n_classes, config.class_weight)
    problems, tests, xts, ys, sws = [], [], [], [], []
    for f in range(k):
        tr, te = folds != f, folds == f
        xf, yf = x[tr], y[tr]
        if extra is not None and len(extra[0]):
            keep = folds[extra[2]] != f
            xf, yf = np.concatenate([xf, extra[0][keep]]), np.concatenate([yf, extra[1][keep]])
        p = _Problem.make(xf)
        problems.append(p)
        tests.append(te)
        xts.append(p.project(x[te]))
        ys.append(yf)
        sws.append(class_weights(yf, n_classes, config.class_weight))
    r = max(p.x.shape[1] for p in problems)
    oof = [np.zeros((len(y), n_classes)) for _ in grid]
    acc = np.zeros((len(grid), k))
    loss = np.zeros((len(grid), k))
    theta = None
    for j, l2 in enumerate(grid):
        theta, _ = _fit_stack([p.x for p in problems], ys, sws, n_classes, l2, config.label_smoothing, theta)
        for f, (te, xte) in enumerate(zip(tests, xts)):
            z, b = _split_theta(theta[f], r, n_classes)
            logits = xte @ z[: xte.shape[1]] + b
            probs = softmax(logits)
            oof[j][te] = logits
            acc[j, f] = float(np.mean(probs.argmax(axis=1) == y[te]))
            loss[j, f] = log_loss(probs, y[te], sw_all[te])
    candidates = [
        {
            "l2": float(l2),
            "cv_accuracy": round(float(acc[j].mean()), 4),
            "cv_accuracy_std": round(float(acc[j].std()), 4),
            "cv_loss": round(float(loss[j].mean()), 5),
        }
        for j, l2 in enumerate(grid)
    ]
    return candidates, oof


def select_and_fit(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    extra: Extra = None,
    groups: Sequence[str] | None = None,
) -> tuple[Head, Selection]:
    """Choose L2 by stratified k-fold CV on (x, y) (or take config.l2), refit on all of it
        (plus `extra`'s distorted copies, see cross_validate; `groups`: byte-identical copies
    share a fold, see stratified_folds). BLAS runs single-threaded
        here: these matrices are small, and multi-threaded OpenBLAS on them is slower even on
        idle cores and ~100x slower when the cores are busy (measured: a 180x180 eigh 1 s
        against 2 ms)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _select_and_fit(x, y, n_classes, config, extra, groups)


def _select_and_fit(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    extra: Extra = None,
    groups: Sequence[str] | None = None,
) -> tuple[Head, Selection]:
    k = cv_fold_count(y, config.cv_folds)
    if k < 2:
        raise ValueError("cross-validation needs at least 2 samples of every class")
    grid = (config.l2,) if config.l2 is not None else tuple(sorted(config.l2_grid, reverse=True))
    candidates, oof = cross_validate(x, y, n_classes, config, grid, extra, groups)
    # lowest mean CV log-loss; on a tie the stronger L2 (listed first)
    best = min(range(len(grid)), key=lambda j: (candidates[j]["cv_loss"], -grid[j]))
    l2 = grid[best]
    y_fit = y
    if extra is not None and len(extra[0]):
        x, y = np.concatenate([x, extra[0]]), np.concatenate([y, extra[1]])
    head, iters = fit(x, y, n_classes, l2, config.label_smoothing, config.class_weight)
    logits = oof[best]
    probs, cal = softmax(logits), None
    if config.calibrate:
        cal = calibrate(logits, y_fit)
        probs = scale(logits, cal.temperature)
        head = calibrated(head, cal.temperature)
    method = (
        f"L2 fixed at {l2:g} (" + Param("l2") + f"); {k}-fold cross-validation for the estimate, refit on "
        "train+validation"
        if config.l2 is not None
        else f"{k}-fold cross-validation of L2 by log-loss, refit on train+validation"
    )
    chosen = dict(candidates[best])
    for c in candidates:
        del c["cv_accuracy_std"]
    return head, Selection(
        method=method,
        l2=float(l2),
        cv_folds=k,
        candidates=candidates,
        cv_accuracy=chosen["cv_accuracy"],
        cv_accuracy_std=chosen["cv_accuracy_std"],
        cv_loss=chosen["cv_loss"],
        oof_probs=probs,
        iterations=iters,
        oof_logits=logits,
        calibration=cal,
    )


def calibrated(head: Head, temperature: float) -> Head:
    """The head with 1/T folded into its weights and bias: softmax(x W/T + b/T) is the
    calibrated probability, so head.npz and every export built from it need no extra op
    (computed in float64, stored float32 as the head is)."""
    s = 1.0 / temperature
    return Head(
        (head.weights.astype(np.float64) * s).astype(np.float32), (head.bias.astype(np.float64) * s).astype(np.float32)
    )
