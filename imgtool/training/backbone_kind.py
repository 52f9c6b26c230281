"""Is a resolved model a feature extractor (a usable retrain backbone) or a classifier?

Retraining on an ImageNet classifier's 1000 class scores instead of its features throws
most of the information away (47.6% test accuracy on flowers-mini, against ~84%), so a
classifier is refused unless the catalog knows its feature-vector twin (resolve()
already swaps a catalog name for its twin when asked for features)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

IMAGENET_WIDTHS = (1000, 1001)


def tflite_output(path: Path) -> tuple[int, str | None]:
    """(output width, name of the op that writes the first output) read from the model's
    flatbuffer without loading it (tflite.reading: no delegate folds the graph into one
    DELEGATE op there). NotAModel (a ValueError) when the file is not a TFLite model."""
    import numpy as np

    from imgtool.tflite import reading

    out, writer = reading.graph_output(path)
    return int(np.prod(out.shape[1:])), writer


def classifier_reason(model: Any) -> str | None:
    """Why `model` (resolved for purpose="features") looks like a classifier, or None."""
    cfg = model.config
    if cfg.output == "features":
        return None
    if cfg.output in ("logits", "probabilities"):
        return f"the catalog records its output as {cfg.output} and names no feature-vector twin"
    if model.tflite is None or not Path(model.tflite).is_file():
        return None  # runs in TensorFlow; nothing cheap to inspect
    try:
        width, op = tflite_output(Path(model.tflite))
    except (ValueError, RuntimeError, OSError):
        return None  # unloadable: the engine reports that properly
    if width in IMAGENET_WIDTHS and op == "SOFTMAX":
        return f"its output is {width} class probabilities (a SOFTMAX), not features"
    if width in IMAGENET_WIDTHS and model.labels:
        return f"its output is {width} wide and it carries {len(model.labels)} labels: class scores, not features"
    return None
