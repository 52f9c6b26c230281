"""`imgtool evaluate`: the retrain metrics for any classifier on a labelled folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imgtool import dataset, metrics, ui
from imgtool.classify import Classifier
from imgtool.errors import DatasetError
from imgtool.labels import matches


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
        raise DatasetError(f"the model has no label for folder{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(repr(m) for m in missing)}; name the folders after the model's labels "
                           "(`imgtool labels --model M`)")
    return out


def evaluate_folder(classifier: Classifier, image_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Returns (metrics, misclassified, number of inputs that failed to decode)."""
    classes, files = dataset.scan(image_dir)
    if not files:
        raise DatasetError(f"{image_dir}: no images in its sub-folders; one sub-folder per class")
    paths = [p for p, _, _ in files]
    truth = {p: lab for p, _, lab in files}
    rel = {p: r for p, r, _ in files}
    y_true, y_pred, wrong = [], [], []
    failed = 0
    mapping = class_to_label_index(classes, classifier.labels)  # before any work: labels are known at load
    inverse = {v: classes.index(k) for k, v in mapping.items()}
    for res in classifier.classify(paths, top_k=1):
        if res.error is not None:
            ui.warn(f"skipping {res.path}: {res.error}")
            failed += 1
            continue
        top = res.predictions[0] if res.predictions else None
        t = truth[res.path]
        p = inverse.get(top.index, -1) if top else -1
        y_true.append(t)
        y_pred.append(p)
        if p != t and top is not None:
            wrong.append({"path": res.path, "rel": rel[res.path], "true": classes[t], "predicted": top.label,
                          "score": top.score})
    names = classes + (["(other)"] if any(p < 0 for p in y_pred) else [])
    y_pred_arr = np.array([p if p >= 0 else len(classes) for p in y_pred])
    m = metrics.evaluate(np.array(y_true), y_pred_arr, names)
    return m, wrong, failed
