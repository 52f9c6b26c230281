"""`imgtool evaluate`: the retrain metrics for any classifier on a labelled folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgtool.core import ui
from imgtool.core.errors import DatasetError, Text
from imgtool.data import folders
from imgtool.data.labels import matches
from imgtool.inference.classifier import Classifier
from imgtool.numbers import metrics


def _norm(s: str) -> str:
    return s.replace("_", " ").replace("-", " ").strip().casefold()


def class_to_label_index(classes: list[str], labels: list[str]) -> dict[str, int]:
    """Each folder name to the model's output index: exact (any case, `_`/`-` as spaces),
    else as one synonym of a comma-separated label (`hot_dog` -> `hotdog, hot dog, red hot`)."""
    out = {}
    missing = []
    for c in classes:
        idx = next((i for i, lab in enumerate(labels) if _norm(lab) == _norm(c)), None)
        if idx is None:
            idx = next((i for i, lab in enumerate(labels) if matches(lab.replace("_", " "), c.replace("_", " "))), None)
        if idx is None:
            missing.append(c)
        else:
            out[c] = idx
    if missing:
        raise DatasetError(
            f"the model has no label for folder{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)}; name the folders after the model's labels"
        )
    return out


@dataclass
class Evaluation:
    """What `evaluate_folder` found.

    metrics: accuracy, per-class figures, confusion matrix (`metrics.evaluate`);
    misclassified: [{"path", "rel", "true", "predicted", "score"}];
    failures: [(path, error)] for inputs that could not be classified;
    seen_in_training: how many of the classified photos the model was trained on (by
    content hash), or None when the model records no training photos."""

    metrics: dict[str, Any]
    misclassified: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    seen_in_training: int | None = None
    below_minimum: Text | None = None  # why the accuracy falls short of `min_accuracy` (imgtool.evaluate)

    @property
    def accuracy(self) -> float | None:
        """Top-1 accuracy over the photos classified (None: none were)."""
        return self.metrics["accuracy"]

    @property
    def ece(self) -> float | None:
        """Expected calibration error of the top-1 scores (10 bins; None: nothing classified)."""
        return (self.metrics.get("calibration") or {}).get("ece")

    @property
    def per_class(self) -> dict[str, dict[str, Any]]:
        """{class: {"precision", "recall", "f1", "support"}} (None where undefined)."""
        return self.metrics["per_class"]

    @property
    def classes(self) -> list[str]:
        """The folder classes, plus "(other)" when a photo got a label of none of them."""
        return self.metrics["classes"]

    @property
    def confusion(self) -> list[list[int]]:
        """Counts, rows: true class, columns: predicted class (`classes` order)."""
        return self.metrics["confusion_matrix"]

    def to_dict(self) -> dict[str, Any]:
        """The metrics with seen_in_training, failures [{"path", "error"}] and misclassified."""
        return {
            **self.metrics,
            "seen_in_training": self.seen_in_training,
            "failures": [{"path": p, "error": e} for p, e in self.failures],
            "misclassified": self.misclassified,
        }


def training_photos_of(model: Any) -> set[str] | None:
    """The training photos' hashes recorded in a retrained model folder (None otherwise)."""
    head = getattr(model, "head", None)
    if head is None:
        return None
    from imgtool.models.retrained import read_training_photos

    return read_training_photos(Path(head).parent)


def count_seen(paths: list[str], training: set[str]) -> int:
    """How many of `paths` have the content of a training photo (a renamed or copied
    training photo counts; an unreadable file does not)."""
    from imgtool.runtime.bottlenecks import file_sha256

    n = 0
    for p in paths:
        try:
            n += file_sha256(p) in training
        except OSError:
            pass
    return n


def evaluate_folder(classifier: Classifier, image_dir: Path, training: set[str] | None = None) -> Evaluation:
    """Classify every photo under IMAGE_DIR/<class>/ and score the model against the
    folder names. `training`: content hashes of the model's training photos (default:
    those recorded in a retrained model folder) - `seen_in_training` counts them."""
    if training is None:
        training = training_photos_of(classifier.model)
    classes, files = folders.scan(image_dir)
    if not files:
        raise DatasetError(f"{image_dir}: no images in its sub-folders; one sub-folder per class")
    paths = [f.path for f in files]
    truth = {f.path: f.label for f in files}
    rel = {f.path: f.rel for f in files}
    y_true, y_pred, wrong = [], [], []
    top_scores: list[float] = []
    failures: list[tuple[str, str]] = []
    classified: list[str] = []
    mapping = class_to_label_index(classes, classifier.labels)  # before any work: labels are known at load
    inverse = {v: classes.index(k) for k, v in mapping.items()}
    for res in classifier.classify(paths, top_k=1):
        assert res.path is not None  # every input here is a file
        if res.error is not None:
            ui.warn(f"skipping {res.path}: {res.error}")
            failures.append((res.path, res.error))
            continue
        classified.append(res.path)
        top = res.predictions[0] if res.predictions else None
        t = truth[res.path]
        p = inverse.get(top.index, -1) if top else -1
        y_true.append(t)
        y_pred.append(p)
        top_scores.append(top.score if top is not None else 0.0)
        if p != t and top is not None:
            wrong.append(
                {"path": res.path, "rel": rel[res.path], "true": classes[t], "predicted": top.label, "score": top.score}
            )
    names = classes + (["(other)"] if any(p < 0 for p in y_pred) else [])
    y_pred_arr = np.array([p if p >= 0 else len(classes) for p in y_pred])
    m = metrics.evaluate(np.array(y_true), y_pred_arr, names)
    if y_true:
        from imgtool.numbers.calibration import ECE_BINS, ece_of, reliability_of

        table = reliability_of(np.array(top_scores), y_pred_arr == np.array(y_true))
        m["calibration"] = {
            "ece": round(ece_of(table), 4),
            "bins": ECE_BINS,
            "reliability": [b.to_dict() for b in table],
        }
    seen = count_seen(classified, training) if training is not None else None
    return Evaluation(m, wrong, failures, seen)
