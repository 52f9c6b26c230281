"""Scores that mean what they say: temperature scaling, the expected calibration error,
the reliability table, and the open-set threshold those make meaningful.

Temperature scaling (Guo et al., 2017): one number T > 0 divides every logit,
p = softmax(z / T). It never changes which class is on top (so accuracy is unchanged),
only how sure the scores are. T is fitted on out-of-fold logits - each photo scored by
a cross-validation model that did not see it - by the mean log-loss against the true,
unsmoothed labels, unweighted (a calibrated score is a frequency over photos as they
come). The log-loss is convex in 1/T, so its minimum is found by bisection on the sign
of its derivative: deterministic, no tolerance to tune, the same T on every machine.

ECE (10 bins): the photos are binned by their top-1 score, bin b = [b/10, (b+1)/10)
(a score of exactly 1 goes to the last bin); ECE = sum over bins of
(photos in the bin / all photos) * |accuracy in the bin - mean top-1 score in the bin|.

The suggested minimum score S (`suggest_min_score`): the lowest threshold at which the
photos whose calibrated top-1 score is >= S are right at least `TARGET_PRECISION` of the
time, out of fold; with it, the share of photos it accepts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ECE_BINS = 10
TARGET_PRECISION = 0.95
T_RANGE = (1e-2, 1e2)  # the temperatures the fit may return
BISECTIONS = 60  # halvings of log(T_RANGE): far below float resolution of T


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-probability of the true class under softmax(logits / T)."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature)
    return float(-logp[np.arange(len(y)), y].mean())


def _slope(logits: np.ndarray, y: np.ndarray, s: float) -> float:
    """d/ds of the mean NLL of softmax(s * z): E_p[z] - z_true (increasing in s)."""
    p = np.exp(log_softmax(s * logits))
    return float(((p * logits).sum(axis=1) - logits[np.arange(len(y)), y]).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T minimising the mean NLL of softmax(logits / T) against labels y, within
    T_RANGE (its nearer end when the minimum lies outside it)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y)
    if len(y) == 0:
        raise ValueError("fit_temperature needs at least one photo")
    lo, hi = math.log(1.0 / T_RANGE[1]), math.log(1.0 / T_RANGE[0])  # over log s, s = 1/T
    if _slope(z, y, math.exp(lo)) >= 0:
        return T_RANGE[1]
    if _slope(z, y, math.exp(hi)) <= 0:
        return T_RANGE[0]
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        if _slope(z, y, math.exp(mid)) < 0:
            lo = mid
        else:
            hi = mid
    return 1.0 / math.exp(0.5 * (lo + hi))


def scale(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softmax(logits / T)."""
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / temperature))


@dataclass(frozen=True)
class Bin:
    """One reliability bin: top-1 scores in [lo, hi)."""

    lo: float
    hi: float
    count: int
    confidence: float | None  # mean top-1 score (None: empty bin)
    accuracy: float | None  # share right

    def to_dict(self) -> dict[str, Any]:
        return {
            "lo": self.lo,
            "hi": self.hi,
            "count": self.count,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "accuracy": None if self.accuracy is None else round(self.accuracy, 4),
        }


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> list[Bin]:
    """The photos binned by top-1 score (see the module docstring)."""
    probs = np.asarray(probs, dtype=np.float64)
    return reliability_of(probs.max(axis=1), probs.argmax(axis=1) == np.asarray(y), bins)


def reliability_of(conf: np.ndarray, right: np.ndarray, bins: int = ECE_BINS) -> list[Bin]:
    """The reliability table from each photo's top-1 score and whether it was right."""
    conf = np.asarray(conf, dtype=np.float64)
    right = np.asarray(right, dtype=bool)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        n = int(m.sum())
        out.append(
            Bin(
                round(b / bins, 6),
                round((b + 1) / bins, 6),
                n,
                float(conf[m].mean()) if n else None,
                float(right[m].mean()) if n else None,
            )
        )
    return out


def ece(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error over `bins` equal-width bins of the top-1 score."""
    return ece_of(reliability(probs, y, bins))


def ece_of(table: list[Bin]) -> float:
    """The ECE of a reliability table."""
    total = sum(b.count for b in table)
    if total == 0:
        raise ValueError("ece needs at least one photo")
    return float(
        sum(
            b.count / total * abs(b.accuracy - b.confidence)
            for b in table
            if b.count and b.accuracy is not None and b.confidence is not None
        )
    )


@dataclass(frozen=True)
class MinScore:
    """The suggested open-set threshold: photos scored below `value` are "unknown"."""

    value: float | None  # None: no threshold reaches the target precision
    accepted: float  # share of the out-of-fold photos with a top-1 score >= value
    precision: float | None  # share right among them
    target: float = TARGET_PRECISION

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_score": self.value,
            "accepted": round(self.accepted, 4),
            "precision": None if self.precision is None else round(self.precision, 4),
            "target_precision": self.target,
            "source": "out-of-fold calibrated top-1 scores of the train+validation photos",
        }


def suggest_min_score(probs: np.ndarray, y: np.ndarray, target: float = TARGET_PRECISION) -> MinScore:
    """The lowest threshold S (floored to 4 decimals, so a photo scored exactly at it is
    still accepted) at which the photos with top-1 score >= S are right at least `target`
    of the time. 0 when all of them are; None when no threshold gets there."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    right = probs.argmax(axis=1) == np.asarray(y)
    n = len(conf)
    if n == 0:
        return MinScore(None, 0.0, None, target)
    order = np.argsort(conf, kind="stable")  # ascending: accepting order[i:] means threshold conf[order[i]]
    c_sorted, r_sorted = conf[order], right[order]
    right_from = np.cumsum(r_sorted[::-1])[::-1]  # right among order[i:]
    count_from = np.arange(n, 0, -1)
    for i in range(n):
        if i and c_sorted[i] == c_sorted[i - 1]:
            continue  # a threshold accepts every photo of equal score
        if right_from[i] >= target * count_from[i]:
            value = 0.0 if i == 0 else math.floor(float(c_sorted[i]) * 1e4) / 1e4
            accepted = conf >= value
            return MinScore(value, float(accepted.mean()), float(right[accepted].mean()), target)
    return MinScore(None, 0.0, None, target)


@dataclass(frozen=True)
class Calibration:
    """What metrics.json's "calibration" holds: T, and the out-of-fold ECE and
    reliability table before and after it."""

    temperature: float
    ece_before: float
    ece_after: float
    log_loss_before: float
    log_loss_after: float
    bins_before: list[Bin]
    bins_after: list[Bin]
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "temperature scaling, fitted on the out-of-fold logits of train+validation "
            "by log-loss against the true labels; folded into the head (logits / T)",
            "temperature": round(self.temperature, 6),
            "ece_before": round(self.ece_before, 4),
            "ece_after": round(self.ece_after, 4),
            "log_loss_before": round(self.log_loss_before, 5),
            "log_loss_after": round(self.log_loss_after, 5),
            "bins": ECE_BINS,
            "count": self.count,
            "reliability_before": [b.to_dict() for b in self.bins_before],
            "reliability_after": [b.to_dict() for b in self.bins_after],
        }


def calibrate(logits: np.ndarray, y: np.ndarray) -> Calibration:
    """Fit T on (out-of-fold) logits and describe the scores before and after."""
    t = fit_temperature(logits, y)
    before, after = scale(logits, 1.0), scale(logits, t)
    return Calibration(
        t,
        ece(before, y),
        ece(after, y),
        nll(logits, y),
        nll(logits, y, t),
        reliability(before, y),
        reliability(after, y),
        len(y),
    )


def plain_sentence(bins: list[dict[str, Any]]) -> str | None:
    """ "Of the photos scored 0.8-0.9, 87% were right" for the fullest bin (ties: the
    higher bin), from a reliability table as metrics.json holds it."""
    full = [b for b in bins if b.get("count") and b.get("accuracy") is not None]
    if not full:
        return None
    b = max(full, key=lambda b: (b["count"], b["lo"]))
    return f"of the {b['count']} photos scored {b['lo']:.1f}–{b['hi']:.1f}, {b['accuracy']:.0%} were right"
