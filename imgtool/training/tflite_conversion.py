"""TensorFlow's half of `model.tflite`: a folder's saved_model/ (backbone + head, TF-built)
converted with TFLiteConverter - float, dynamic-range, float16 or full-integer int8
calibrated on the training photos - and the cache under IMGTOOL_HOME/exports/tflite that
lets an identical retrain skip TensorFlow.

Layer: the work (tflite_model.py calls it; the formats through imgtool.tflite).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from imgtool.core import store
from imgtool.core.errors import ModelError, UsageError
from imgtool.core.options import Quantize
from imgtool.models import caches
from imgtool.tflite import reading


def convert_saved_classifier(
    saved_model: Path,
    input_size: tuple[int, int],
    value_range: tuple[float, float],
    quantize: Quantize,
    calibration: Iterator[np.ndarray] | None = None,
) -> bytes:
    """The folder's saved_model/ (backbone + head, TF-built) as .tflite, taking one image
    [1, H, W, 3] in the backbone's value range (the metadata says how to map pixels)."""
    from imgtool.core import ui
    from imgtool.runtime import tfutil

    tf = tfutil._tf()
    with ui.native_output_filtered():
        obj = tf.saved_model.load(str(saved_model))
    if not hasattr(obj, "probabilities"):
        raise ModelError(f"{saved_model}: no `probabilities` function; retrain to export it again")
    lo, hi = value_range
    h, w = input_size

    @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name="image")])
    def classify(image):  # noqa: ANN001, ANN202
        return obj.probabilities((image - lo) * (255.0 / (hi - lo)))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([classify.get_concrete_function()], obj)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if calibration is None:
            raise UsageError("int8 needs calibration: the training photos were not found")
        photos = list(calibration)

        if not photos:
            raise UsageError("int8 needs calibration: no training photo could be read")
        pinned = photos[0].copy()
        pinned[0, 0, 0, :], pinned[0, 0, 1, :] = 0, 255  # input range exactly [lo, hi]: uint8 input = raw pixels

        def representative():  # noqa: ANN202
            # (whole black/white images would pin it too, but their logits are far outside
            # anything real and would stretch the logits' quantization range)
            for px in [pinned, *photos[1:]]:
                yield [px.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    with ui.native_output_filtered(), store.scratch_dir():  # the converter's temporary SavedModels
        data = bytes(converter.convert())
    if quantize == "int8":
        _check_raw_pixel_input(data, (hi - lo) / 255.0)
    return data


def _check_raw_pixel_input(data: bytes, want_scale: float) -> None:
    """A uint8 input must take raw pixels (MediaPipe and Edge TPU feed them as they are)."""
    scale = reading.graph_input(data).scale or 0.0
    if abs(scale - want_scale) > 0.01 * want_scale:
        raise ModelError(
            f"int8 conversion gave the input scale {scale:g}, not {want_scale:g} (one pixel step); "
            "the uint8 input would not take raw pixels"
        )


CONVERSIONS_KEEP = 8  # most recent TF conversions kept in IMGTOOL_HOME/exports/tflite


def cached_conversion(saved: Path, options: str, calibration: list[str], convert: Any) -> bytes:
    """TensorFlow's conversion (~10 s with its import on Inception v3) is kept under a key of
    the SavedModel's files, the options and the calibration photos, so that an identical
    retrain (whose saved_model/ is linked from the export cache) needs no TensorFlow."""
    import hashlib

    from imgtool.core import ui

    h = hashlib.sha256(options.encode("utf-8"))
    for p in sorted(x for x in saved.rglob("*") if x.is_file()):
        h.update(p.relative_to(saved).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    for c in calibration:
        st = os.stat(c)
        h.update(f"{c}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    root = store.home() / "exports" / "tflite"
    cached = root / f"{h.hexdigest()[:24]}.tflite"
    if cached.is_file():
        ui.info("Reusing the .tflite conversion of an identical earlier run")
        return cached.read_bytes()
    data = convert()
    try:
        store.atomic_write_bytes(cached, data)
        caches.prune(root, CONVERSIONS_KEEP, suffix=".tflite")
    except OSError as err:  # the cache is an optimisation
        ui.warn(f"could not keep the .tflite conversion for reuse ({err})")
    return data
