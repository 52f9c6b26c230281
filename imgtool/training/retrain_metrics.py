"""What a retrain run reports, assembled from the photos' features and the fitted head:
metrics.json's figures (`scores`: test, out-of-fold validation and cross-validation,
train) and its findings (`findings`: calibration, open-set threshold, suspect labels,
near-duplicates straddling the splits, misclassified test photos), and the
`min_accuracy` gate (`below_minimum`). imgtool/training/retraining.py runs the steps."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from imgtool.core import ui
from imgtool.core.errors import Text
from imgtool.data import splits
from imgtool.numbers import metrics

SUSPECTS_SHOWN = 10  # the most suspicious training photos in metrics.json and the report


@dataclass
class TrainingData:
    """What the last layer is fitted and scored on: every usable photo with its features."""

    classes: list[str]
    samples: list[splits.Sample]
    x: np.ndarray  # their features, one row each
    shas: dict[str, str]  # {path: content sha256}
    bad: list[tuple[str, str]]  # [(path, why)] skipped

    def __post_init__(self) -> None:
        self.y = np.array([s.label for s in self.samples])
        split = np.array([s.split for s in self.samples])
        self.train, self.validation, self.test = (split == "train"), (split == "validation"), (split == "test")
        self.fitted = self.train | self.validation  # the head is fitted on train + validation


@dataclass
class FittedHead:
    head: Any
    selection: Any  # train.Selection: the chosen L2, its out-of-fold probabilities, the calibration
    probs: np.ndarray  # the head's probabilities for every sample
    pred: np.ndarray


def scores(data: TrainingData, fit: FittedHead) -> dict[str, Any]:
    """metrics.json's figures: test, out-of-fold validation and cross-validation, train."""
    classes, y, tr = data.classes, data.y, data.train
    oof_pred = np.full(len(data.samples), -1)
    oof_pred[data.fitted] = fit.selection.oof_probs.argmax(axis=1)
    validation = metrics.evaluate(y[data.validation], oof_pred[data.validation], classes)
    validation["source"] = "out-of-fold: each photo predicted by the cross-validation model that did not see it"
    cross = metrics.evaluate(y[data.fitted], oof_pred[data.fitted], classes)
    cross["source"] = "out-of-fold predictions of every train+validation photo at the chosen L2"
    return {
        "test": metrics.evaluate(y[data.test], fit.pred[data.test], classes),
        "validation": validation,
        "cross_validation": cross,
        "train": {
            "accuracy": round(float(np.mean(fit.pred[tr] == y[tr])), 4) if tr.any() else None,
            "count": int(tr.sum()),
            "note": "photos the head was fitted on (not a held-out estimate)",
        },
        "head": fit.selection.as_dict(),
        "classes": classes,
        "counts": splits.split_counts(classes, data.samples),
    }


def findings(data: TrainingData, fit: FittedHead) -> dict[str, Any]:
    """The calibration and open-set threshold, suspect labels, near-duplicates straddling
    the splits, and the misclassified test photos."""
    from imgtool.numbers import findings as audit_mod
    from imgtool.numbers.calibration import suggest_min_score

    out: dict[str, Any] = {}
    selection, classes, y_fit = fit.selection, data.classes, data.y[data.fitted]
    if selection.calibration is not None:
        out["calibration"] = selection.calibration.to_dict()
        out["open_set"] = suggest_min_score(selection.oof_probs, y_fit).to_dict()
    fit_samples = [s for s, keep in zip(data.samples, data.fitted) if keep]
    out["suspects"] = [
        asdict(x) for x in audit_mod.suspects_of(fit_samples, classes, selection.oof_probs, y_fit, limit=SUSPECTS_SHOWN)
    ]
    leaks = [
        g
        for g in audit_mod.groups_of(data.samples, classes, data.x, [data.shas[s.path] for s in data.samples])
        if g.leakage
    ]
    out["near_duplicates"] = {
        "rule": f"centred feature cosine >= {audit_mod.NEAR_DUPLICATE}; byte-identical photos share a split",
        "straddling": len(leaks),
        "groups": [g.to_dict() for g in leaks],
    }
    warn_leaks(len(leaks))
    out["misclassified"] = [  # export re-renders report.html from metrics.json
        {
            "path": s.path,
            "rel": s.rel,
            "true": classes[s.label],
            "predicted": classes[int(fit.pred[i])],
            "score": float(fit.probs[i, fit.pred[i]]),
        }
        for i, s in enumerate(data.samples)
        if s.split == "test" and fit.pred[i] != s.label
    ]
    return out


def below_minimum(min_accuracy: float | None, reached: float | None) -> Text | None:
    """Why the model is not written (test accuracy under `min_accuracy`), or None."""
    gate = metrics.below_minimum(reached, min_accuracy, "n/a (no test images)")
    return None if gate is None else gate + "; the model was not written"


def warn_leaks(n: int) -> None:
    if n:
        ui.warn(
            f"{n} group{'s' if n > 1 else ''} of near-duplicate photos straddle train and test "
            "(the test accuracy counts photos much like ones fitted on; see metrics.json near_duplicates, or "
            "`imgtool audit`)"
        )
