"""Training the new last layer: softmax regression on cached bottlenecks, in numpy.

Small enough that numpy beats starting TensorFlow (~3 s) by far; deterministic for a
given seed and data. Features are standardized with the training set's mean and std,
and that scaling is folded back into the weights, so the result is one dense layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from imgtool.engine import softmax


SD_FLOOR_FRACTION = 0.1  # features are standardized with at least this fraction of the median std


@dataclass
class TrainConfig:
    """Defaults chosen by 5-fold cross-validation (x2) on flowers-mini with the MobileNet V1
    embedding: 50 epochs, lr 0.001, L2 0.1, smoothing 0.1 gave 84.2% (lr 0.01 / L2 0.001:
    70-81%); see BENCHMARKS.md."""

    epochs: int = 50
    learning_rate: float = 0.001
    batch_size: int = 32
    l2: float = 0.1
    seed: int = 0
    label_smoothing: float = 0.1


@dataclass
class History:
    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    validation_accuracy: list[float] = field(default_factory=list)


@dataclass
class Head:
    weights: np.ndarray  # [features, classes], applies to raw (unscaled) features
    bias: np.ndarray  # [classes]

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weights + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x))


def train(x: np.ndarray, y: np.ndarray, n_classes: int, config: TrainConfig,
          x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
          on_epoch: Callable[[int, float, float, float | None], None] | None = None) -> tuple[Head, History]:
    """Mini-batch Adam on cross-entropy (with label smoothing) + L2. Returns the head
    from the epoch with the best validation accuracy (the last one if no validation)."""
    rng = np.random.default_rng(config.seed)
    x = x.astype(np.float64)
    mu = x.mean(axis=0)
    std = x.std(axis=0)
    # A feature constant over the training set (a dead ReLU unit) carries nothing: scale 1
    # and weight 0 (w / (0 + eps) folded into weights of ~1e4). A nearly dead one (firing
    # on one or two photos) is scaled up by at most SD_FLOOR_FRACTION of the median
    # feature's spread, or it gets weights 100x the others', fitted to those photos, which
    # no quantized export survives. MobileNet V1 on flowers-mini: no feature is below it.
    constant = std <= 1e-6
    floor = SD_FLOOR_FRACTION * float(np.median(std[~constant])) if (~constant).any() else 0.0
    sd = np.where(constant, 1.0, np.maximum(std, floor) + 1e-6)
    xs = (x - mu) / sd
    xv = None if x_val is None or len(x_val) == 0 else (x_val.astype(np.float64) - mu) / sd
    n, d = xs.shape
    w = rng.normal(0, 0.01, size=(d, n_classes))
    b = np.zeros(n_classes)
    target = np.full((n, n_classes), config.label_smoothing / n_classes)
    target[np.arange(n), y] += 1.0 - config.label_smoothing
    m_w, v_w, m_b, v_b = np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    history = History()
    best = (-1.0, w.copy(), b.copy())
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(n)
        for start in range(0, n, config.batch_size):
            idx = order[start:start + config.batch_size]
            p = softmax(xs[idx] @ w + b)
            g = (p - target[idx]) / len(idx)
            gw = xs[idx].T @ g + config.l2 * w
            gb = g.sum(axis=0)
            step += 1
            for param, grad, m, v in ((w, gw, m_w, v_w), (b, gb, m_b, v_b)):
                m *= beta1
                m += (1 - beta1) * grad
                v *= beta2
                v += (1 - beta2) * grad * grad
                mhat = m / (1 - beta1 ** step)
                vhat = v / (1 - beta2 ** step)
                param -= config.learning_rate * mhat / (np.sqrt(vhat) + eps)
        p_all = softmax(xs @ w + b)
        loss = float(-np.mean(np.sum(target * np.log(p_all + 1e-12), axis=1)) + 0.5 * config.l2 * np.sum(w * w))
        train_acc = float(np.mean(p_all.argmax(axis=1) == y))
        val_acc = None
        if xv is not None and y_val is not None:
            val_acc = float(np.mean((xv @ w + b).argmax(axis=1) == y_val))
            if val_acc > best[0]:
                best = (val_acc, w.copy(), b.copy())
        history.epoch.append(epoch)
        history.loss.append(loss)
        history.train_accuracy.append(train_acc)
        history.validation_accuracy.append(val_acc if val_acc is not None else float("nan"))
        if on_epoch:
            on_epoch(epoch, loss, train_acc, val_acc)
    if xv is not None and best[0] >= 0:
        w, b = best[1], best[2]
    # fold the standardization into the layer: ((x - mu) / sd) @ w + b == x @ w' + b'
    w_raw = np.where(constant[:, None], 0.0, w / sd[:, None])
    b_raw = b - mu @ w_raw
    return Head(w_raw.astype(np.float32), b_raw.astype(np.float32)), history
