"""A classification head appended to a backbone's graph: its (only) output ->
[DEQUANTIZE] -> RESHAPE [N, F] -> FULLY_CONNECTED -> SOFTMAX, as a float or a uint8 head.

- float (`none`, `dynamic`, `float16`): a quantized output is dequantized first; the
  weights are float32, int8 with float activations (`dynamic`), or float16 behind a
  DEQUANTIZE (`float16`).
- uint8 (`int8`, for a uint8-quantized backbone): uint8 weights, int32 bias, uint8 logits
  calibrated on the training photos' features, uint8 softmax with scale 1/256 and zero
  point 0."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from imgtool.core.errors import ModelError, Param, UsageError
from imgtool.core.options import QUANTIZE_MODES, Quantize
from imgtool.tflite.writing import ModelEdit

SOFTMAX_UINT8 = (1.0 / 256.0, 0)  # the only output quantization TFLite's uint8 SOFTMAX takes


def quantize_uint8(values: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, float, int]:
    """Asymmetric uint8 over [min(lo,0), max(hi,0)] (0.0 exactly representable)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zero = int(np.clip(round(-lo / scale), 0, 255))
    q = np.clip(np.round(values / scale) + zero, 0, 255).astype(np.uint8)
    return q, scale, zero


@dataclass
class _Head:
    """What both builders start from: the backbone opened for editing, its output
    (`features`), the head's weights in FULLY_CONNECTED's [classes, features] layout, and
    the shape tensor of the RESHAPE to [N, F]."""

    edit: ModelEdit
    features: int
    weights: np.ndarray
    bias: np.ndarray
    batch: int
    shape: int

    @property
    def feature(self) -> Any:
        return self.edit.graph.tensors[self.features]

    @property
    def classes(self) -> int:
        return int(self.weights.shape[0])

    @property
    def width(self) -> int:
        return int(self.weights.shape[1])

    def reshape(self, src: int, ttype: int, quant: Any = None) -> int:
        """RESHAPE `src` to [N, F]: the flat features."""
        tfl = self.edit.tfl
        options = tfl.ReshapeOptionsT()
        options.newShape = [-1, self.width]
        flat = self.edit.tensor("head/features", [self.batch, self.width], ttype, quant=quant)
        self.edit.op(
            self.edit.opcode(tfl.BuiltinOperator.RESHAPE),
            [src, self.shape],
            [flat],
            tfl.BuiltinOptions.ReshapeOptions,
            options,
        )
        return flat

    def dense_softmax(
        self,
        flat: int,
        weights: int,
        bias: int,
        ttype: int,
        fc_version: int = 1,
        logits_quant: Any = None,
        prob_quant: Any = None,
    ) -> int:
        """FULLY_CONNECTED then SOFTMAX: the probability tensor."""
        tfl, edit = self.edit.tfl, self.edit
        logits = edit.tensor("head/logits", [self.batch, self.classes], ttype, quant=logits_quant)
        edit.op(
            edit.opcode(tfl.BuiltinOperator.FULLY_CONNECTED, version=fc_version),
            [flat, weights, bias],
            [logits],
            tfl.BuiltinOptions.FullyConnectedOptions,
            tfl.FullyConnectedOptionsT(),
        )
        softmax = tfl.SoftmaxOptionsT()
        softmax.beta = 1.0
        prob = edit.tensor("probability", [self.batch, self.classes], ttype, quant=prob_quant)
        edit.op(edit.opcode(tfl.BuiltinOperator.SOFTMAX), [logits], [prob], tfl.BuiltinOptions.SoftmaxOptions, softmax)
        return prob


def _start(backbone: bytes, weights: np.ndarray, bias: np.ndarray) -> _Head:
    edit = ModelEdit(backbone)
    if len(edit.model.subgraphs) != 1 or len(edit.graph.outputs) != 1:
        raise ModelError("the backbone .tflite must have one subgraph with one output to append a layer to")
    features = int(edit.graph.outputs[0])
    feat = edit.graph.tensors[features]
    n_feat = weights.shape[0]
    if int(np.prod(feat.shape[1:])) != n_feat:
        raise ModelError(f"the backbone gives {int(np.prod(feat.shape[1:]))} features; the head expects {n_feat}")
    batch = int(feat.shape[0]) if feat.shape is not None and len(feat.shape) else 1
    shape = edit.tensor("head/reshape_shape", [2], edit.tfl.TensorType.INT32, np.array([-1, n_feat], np.int32))
    return _Head(
        edit, features, np.ascontiguousarray(weights.astype(np.float32).T), bias.astype(np.float32), batch, shape
    )


def _float_weights(head: _Head, quantize: Quantize) -> tuple[int, int, int]:
    """(weights, bias, FULLY_CONNECTED version) as float32, int8 (dynamic) or float16."""
    edit, TT = head.edit, head.edit.tfl.TensorType
    w, b, n_cls, n_feat = head.weights, head.bias, head.classes, head.width
    if quantize == "float16":
        w16 = edit.tensor("head/weights_fp16", [n_cls, n_feat], TT.FLOAT16, w.astype(np.float16))
        b16 = edit.tensor("head/bias_fp16", [n_cls], TT.FLOAT16, b.astype(np.float16))
        w_idx = edit.tensor("head/weights", [n_cls, n_feat], TT.FLOAT32)
        b_idx = edit.tensor("head/bias", [n_cls], TT.FLOAT32)
        deq = edit.opcode(edit.tfl.BuiltinOperator.DEQUANTIZE, version=3)  # version 3: float16 input
        edit.op(deq, [w16], [w_idx])
        edit.op(deq, [b16], [b_idx])
        return w_idx, b_idx, 1
    if quantize == "dynamic":
        scale = float(np.abs(w).max()) / 127.0 or 1.0
        wq8 = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        w_idx = edit.tensor("head/weights", [n_cls, n_feat], TT.INT8, wq8, edit.quantization(scale, 0))
        return w_idx, edit.tensor("head/bias", [n_cls], TT.FLOAT32, b), 3  # version 3: hybrid (int8 weights)
    w_idx = edit.tensor("head/weights", [n_cls, n_feat], TT.FLOAT32, w)
    return w_idx, edit.tensor("head/bias", [n_cls], TT.FLOAT32, b), 1


def _float_head(head: _Head, quantize: Quantize) -> int:
    """The float head (a quantized backbone output dequantized first): its probabilities."""
    edit, TT = head.edit, head.edit.tfl.TensorType
    src, feat = head.features, head.feature
    if feat.type in (TT.UINT8, TT.INT8):
        src = edit.tensor("head/features_float", list(feat.shape), TT.FLOAT32)
        edit.op(edit.opcode(edit.tfl.BuiltinOperator.DEQUANTIZE), [head.features], [src])
    elif feat.type != TT.FLOAT32:
        raise ModelError(f"the backbone's output type {feat.type} is neither float32 nor quantized")
    flat = head.reshape(src, TT.FLOAT32)
    weights, bias, fc_version = _float_weights(head, quantize)
    return head.dense_softmax(flat, weights, bias, TT.FLOAT32, fc_version)


def _uint8_head(head: _Head, calibration_features: np.ndarray | None) -> int:
    """The uint8 head of a uint8 backbone: its logits' range is the one the integer kernel
    computes on the calibration features (with a margin of 5%)."""
    edit, TT = head.edit, head.edit.tfl.TensorType
    feat = head.feature
    fq = feat.quantization
    if feat.type != TT.UINT8 or fq is None or not fq.scale:
        kind = "float" if feat.type == TT.FLOAT32 else f"of type {feat.type} (not uint8)"
        raise UsageError(
            f"int8 needs a uint8-quantized .tflite backbone, or a TF backbone with the folder's "
            f"saved_model/; this backbone's output is {kind}"
        )
    if calibration_features is None or not len(calibration_features):
        raise UsageError("int8 needs calibration: the training photos were not found")
    s_in, z_in = float(fq.scale[0]), int(fq.zeroPoint[0])
    w_t = head.weights
    wq, s_w, z_w = quantize_uint8(w_t, float(w_t.min()), float(w_t.max()))
    s_b = s_in * s_w
    bq = np.round(head.bias / s_b).astype(np.int32)
    x_q = np.clip(np.round(calibration_features / s_in) + z_in, 0, 255)
    logits = ((x_q - z_in) @ (wq.astype(np.float64) - z_w).T + bq) * s_b
    lo, hi = float(logits.min()), float(logits.max())
    pad = 0.05 * (hi - lo)
    _, s_out, z_out = quantize_uint8(np.zeros(1), lo - pad, hi + pad)
    flat = head.reshape(head.features, TT.UINT8, edit.quantization(s_in, z_in))
    w_idx = edit.tensor("head/weights", [head.classes, head.width], TT.UINT8, wq, edit.quantization(s_w, z_w))
    b_idx = edit.tensor("head/bias", [head.classes], TT.INT32, bq, edit.quantization(s_b, 0))
    return head.dense_softmax(
        flat,
        w_idx,
        b_idx,
        TT.UINT8,
        logits_quant=edit.quantization(s_out, z_out),
        prob_quant=edit.quantization(*SOFTMAX_UINT8),
    )


def append_head(
    backbone: bytes,
    weights: np.ndarray,
    bias: np.ndarray,
    quantize: Quantize = "none",
    calibration_features: np.ndarray | None = None,
) -> bytes:
    """The backbone flatbuffer with RESHAPE -> FULLY_CONNECTED -> SOFTMAX appended to its
    (only) output; a quantized output is dequantized first unless `quantize` is int8.
    `weights` are [features, classes], as head.npz keeps them."""
    if quantize not in QUANTIZE_MODES:
        raise UsageError(Param("quantize") + f" {quantize}: choose one of {', '.join(QUANTIZE_MODES)}")
    head = _start(backbone, weights, bias)
    prob = _uint8_head(head, calibration_features) if quantize == "int8" else _float_head(head, quantize)
    head.edit.set_output(prob, "probability")
    return head.edit.to_bytes()
