"""Tiny .tflite models whose outputs are known exactly, for the output-kind decision.

Every model takes float (or quantized) images [N, S, S, 3] with pixels in [0, 1], takes
the per-channel means, and scores K = 1001 classes: logit[1] = 12 * mean(R),
logit[2] = 12 * mean(G), logit[3] = 12 * mean(B), every other logit 0. A red level r
therefore gives class 1 the softmax probability e^(12r) / (e^(12r) + 1000): 0.60 at
r = 0.61, 0.99 at r = 1. Quantized to steps of 1/256, the 1000 other probabilities
(each below 1/1000) round to 0, so a quantized softmax's outputs sum to anything from
about 0.6 to 1.0 depending on the photo — the case that fooled a sum-based guess.

TensorFlow is imported only inside the builder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

SIZE = 8
WIDTH = 1001
GAIN = 12.0

KINDS = (
    "float_logits",
    "float_softmax",
    "float_softmax_reshaped",
    "float_sigmoid",
    "float_log_softmax",
    "uint8_softmax",
    "int8_softmax",
    "uint8_logits",
    "float_io_int8_softmax",
    "float_pooled_features",
    "float_flat_features",
)


def class1_probability(red: float) -> float:
    """Class 1's exact softmax probability for a solid image of red level `red` (0..1)."""
    e = np.exp(GAIN * red)
    return float(e / (e + (WIDTH - 1)))


def red_image(level: int, size: int = SIZE) -> np.ndarray:
    """uint8 [size, size, 3]: red at `level`, green and blue 0."""
    img = np.zeros((size, size, 3), np.uint8)
    img[..., 0] = level
    return img


def _representative(size: int) -> Iterator[list[Any]]:
    rng = np.random.default_rng(0)
    for i in range(96):
        if i < 32:
            img = np.zeros((1, size, size, 3), np.float32)
            img[..., i % 3] = (i // 3) / 10.0
        else:
            img = rng.random((1, size, size, 3), dtype=np.float32)
        yield [img]


def _function(kind: str) -> Any:
    """The model `kind` as a tf.function over float images in [0, 1]."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    w = np.zeros((3, WIDTH), np.float32)
    w[0, 1] = w[1, 2] = w[2, 3] = GAIN
    weights = tf.constant(w)

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    def model(x: Any) -> Any:
        if kind == "float_pooled_features":  # a backbone's pooled feature map [N,1,1,C]
            conv = tf.nn.conv2d(x, tf.constant(np.ones((1, 1, 3, 16), np.float32)), 1, "VALID")
            return tf.nn.avg_pool2d(conv, SIZE, 1, "VALID")
        if kind == "float_flat_features":  # pooled, flattened [N,C]
            conv = tf.nn.conv2d(x, tf.constant(np.ones((1, 1, 3, 16), np.float32)), 1, "VALID")
            return tf.reduce_mean(conv, axis=[1, 2])
        logits = tf.matmul(tf.reduce_mean(x, axis=[1, 2]), weights)
        if kind.endswith("_logits"):
            return logits
        if kind == "float_sigmoid":
            return tf.math.sigmoid(logits)
        if kind == "float_log_softmax":
            return tf.nn.log_softmax(logits)
        probs = tf.nn.softmax(logits)
        if kind == "float_softmax_reshaped":
            return tf.reshape(probs, [-1, 1, 1, WIDTH])
        return probs

    return model


def build(kind: str, out: Path) -> Path:
    """Write the model `kind` (one of KINDS) to `out` as a .tflite file."""
    import tensorflow as tf

    model = _function(kind)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()], model)
    if kind.startswith(("uint8", "int8", "float_io_int8")):  # full-integer inside
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _representative(SIZE)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if kind.startswith(("uint8", "int8")):  # ... and at the interface
        io_type = tf.uint8 if kind.startswith("uint8") else tf.int8
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(converter.convert())
    return out


def build_savedmodel(kind: str, dest: Path) -> Path:
    """The model `kind` as a TF2 SavedModel (serving signature: images -> output)."""
    import tensorflow as tf

    fn = _function(kind)
    module = tf.Module()
    module.fn = fn
    tf.saved_model.save(module, str(dest), signatures={"serving_default": fn})
    return Path(dest)
