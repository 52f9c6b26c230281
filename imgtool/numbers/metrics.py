"""Classification metrics: accuracy, the majority-class baseline, per-class precision,
recall and F1, confusion matrix.

precision(c) = tp / photos predicted c; recall(c) = tp / photos truly c; F1 their harmonic
mean (None where undefined: nothing predicted / no photo of c; 0.0 when both are 0)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from imgtool.core.errors import Param, Text

FILE = "metrics.json"  # in every model folder retrain writes: the metrics, options and exports


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    n = len(classes)
    cm = np.zeros((n, n), dtype=int)
    for t, p in zip(y_true, y_pred):
        cm[int(t), int(p)] += 1
    per_class = {}
    for i, name in enumerate(classes):
        tp = int(cm[i, i])
        support = int(cm[i].sum())
        predicted = int(cm[:, i].sum())
        precision = tp / predicted if predicted else None
        recall = tp / support if support else None
        if precision is None or recall is None:
            f1 = None
        else:
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": None if precision is None else round(precision, 4),
            "recall": None if recall is None else round(recall, 4),
            "f1": None if f1 is None else round(f1, 4),
            "support": support,
        }
    total = int(cm.sum())
    supports = cm.sum(axis=1)
    majority = int(np.argmax(supports)) if total else None  # the first of equally common classes
    return {
        "accuracy": round(float(np.trace(cm)) / total, 4) if total else None,
        "count": total,
        # always answering the most common class of these photos would score this
        "baseline": None
        if majority is None
        else {"class": classes[majority], "accuracy": round(int(supports[majority]) / total, 4)},
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
    }


def write_file(folder: Path, metrics: dict[str, Any]) -> Path:
    """`folder`/metrics.json, atomically (temp name + rename): its one writer (retrain,
    export and a failed export's record all write it here)."""
    import json

    from imgtool.core import store

    path = folder / FILE
    store.atomic_write_bytes(path, (json.dumps(metrics, indent=2) + "\n").encode("utf-8"))
    return path


def below_minimum(reached: float | None, minimum: float | None, unknown: str = "n/a") -> Text | None:
    """Why an accuracy does not reach `min_accuracy` (`unknown`: how a missing accuracy is
    shown), or None when it does or there is no minimum. Retrain's and evaluate's gate."""
    if minimum is None or (reached is not None and reached >= minimum):
        return None
    shown = unknown if reached is None else f"{reached:.1%}"
    gap = "" if reached is None else f" by {minimum - reached:.1%}"
    return f"accuracy {shown} is below " + Param("min_accuracy") + f" {minimum:.1%}{gap}"


def _pct(value: float | None, width: int) -> str:
    return f"{value:{width}.1%}" if value is not None else f"{'-':>{width}}"


def format_text(m: dict[str, Any], title: str = "test") -> str:
    classes = m["classes"]
    acc = m["accuracy"]
    base = m.get("baseline")
    shown = f"{acc:.1%} ({round(acc * m['count'])}/{m['count']})" if acc is not None else "n/a (no images)"
    lines = [
        f"{title} accuracy: "
        + shown
        + (f"; majority-class baseline {base['accuracy']:.1%} (always {base['class']})" if base else "")
    ]
    width = max(8, *(len(c) for c in classes))
    lines.append(f"  {'class':{width}}  precision  recall      F1  support")
    for c in classes:
        pc = m["per_class"][c]
        lines.append(
            f"  {c:{width}}  {_pct(pc['precision'], 9)}  {_pct(pc['recall'], 6)}  {_pct(pc.get('f1'), 6)}"
            f"  {pc['support']:7}"
        )
    lines.append("  confusion matrix (rows: true, columns: predicted):")
    lines.append("  " + " " * width + "".join(f" {c[:6]:>6}" for c in classes))
    for c, row in zip(classes, m["confusion_matrix"]):
        lines.append(f"  {c:{width}}" + "".join(f" {v:6}" for v in row))
    return "\n".join(lines)


Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion `correct`/`n` (95% by default); None for n=0.
    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0% or 100%."""
    if n <= 0:
        return None
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if correct == 0 else max(0.0, centre - half)  # exact at the ends (rounding leaves 1 - 1e-16)
    hi = 1.0 if correct == n else min(1.0, centre + half)
    return lo, hi


def f1_score(precision: float | None, recall: float | None) -> float | None:
    """Harmonic mean of precision and recall; None when either is undefined."""
    if precision is None or recall is None:
        return None
    if precision + recall == 0:
        return 0.0
    return round(2 * precision * recall / (precision + recall), 4)


def majority_baseline(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The accuracy of always answering the most frequent training class, on the test
    photos: metrics["test"]["baseline"] when given, else computed from the counts."""
    test = metrics.get("test") or {}
    given = test.get("baseline")
    if isinstance(given, dict) and given.get("class") is not None and given.get("accuracy") is not None:
        return given
    counts = metrics.get("counts") or {}
    per_class = test.get("per_class") or {}
    n = test.get("count") or 0
    if not counts or not n:
        return None
    classes = metrics.get("classes") or list(counts)
    best = max(classes, key=lambda c: ((counts.get(c) or {}).get("train", 0), -classes.index(c)))
    support = (per_class.get(best) or {}).get("support", 0)
    return {"class": best, "accuracy": round(support / n, 4)}
