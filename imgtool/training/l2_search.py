"""Choosing the last layer's L2 by stratified k-fold cross-validation, and the refit with it
(the rules: imgtool/training/fitting.py's docstring; the objective and the fit live there):
the folds (`stratified_folds`, `cv_fold_count`), the out-of-fold scores of every L2
(`cross_validate`), the choice, refit and calibration (`select_and_fit`; `Selection`,
metrics.json's "head")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

from imgtool.core.errors import Param
from imgtool.numbers.calibration import Calibration, calibrate, scale
from imgtool.numbers.scores import softmax
from imgtool.training.fitting import (
    CV_FOLDS,
    Head,
    Problem,
    TrainConfig,
    calibrated,
    class_weights,
    fit,
    fit_stack,
    log_loss,
    split_theta,
)


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
        p = Problem.make(xf)
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
        theta, _ = fit_stack([p.x for p in problems], ys, sws, n_classes, l2, config.label_smoothing, theta)
        for f, (te, xte) in enumerate(zip(tests, xts)):
            z, b = split_theta(theta[f], r, n_classes)
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
    share a fold, see stratified_folds). BLAS runs single-threaded here: these matrices
    are small, and multi-threaded OpenBLAS on them is slower even on idle cores and ~100x
    slower when the cores are busy (measured: a 180x180 eigh 1 s against 2 ms)."""
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
