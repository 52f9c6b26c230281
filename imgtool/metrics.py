"""Classification metrics: accuracy, per-class precision/recall, confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np


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
        per_class[name] = {
            "precision": round(tp / predicted, 4) if predicted else None,
            "recall": round(tp / support, 4) if support else None,
            "support": support,
        }
    total = int(cm.sum())
    return {
        "accuracy": round(float(np.trace(cm)) / total, 4) if total else None,
        "count": total,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
    }


def _pct(value: float | None, width: int) -> str:
    return f"{value:{width}.1%}" if value is not None else f"{'-':>{width}}"


def format_text(m: dict[str, Any], title: str = "test") -> str:
    classes = m["classes"]
    acc = m["accuracy"]
    lines = [f"{title} accuracy: " + (f"{acc:.1%} ({round(acc * m['count'])}/{m['count']})" if acc is not None else "n/a (no images)")]
    width = max(8, *(len(c) for c in classes))
    lines.append(f"  {'class':{width}}  precision  recall  support")
    for c in classes:
        pc = m["per_class"][c]
        lines.append(f"  {c:{width}}  {_pct(pc['precision'], 9)}  {_pct(pc['recall'], 6)}  {pc['support']:7}")
    lines.append("  confusion matrix (rows: true, columns: predicted):")
    lines.append("  " + " " * width + "".join(f" {c[:6]:>6}" for c in classes))
    for c, row in zip(classes, m["confusion_matrix"]):
        lines.append(f"  {c:{width}}" + "".join(f" {v:6}" for v in row))
    return "\n".join(lines)
