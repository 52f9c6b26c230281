"""One shippable `model.tflite` for a retrained model folder: backbone + new last layer in
one graph ending in softmax, with TFLite metadata, optionally quantized.

Two ways to build the graph:

* TF backbones (the folder has `saved_model/`, the combined classifier TensorFlow built):
  its probabilities function is wrapped to take the backbone's own value range and
  converted with TFLiteConverter - the only way to quantize a float backbone
  (dynamic-range, float16, or full-integer int8 calibrated on the training photos).
* `.tflite` backbones (and TF backbones without `saved_model/`): the head is appended to
  the backbone's flatbuffer - [DEQUANTIZE] -> RESHAPE [N, F] -> FULLY_CONNECTED -> SOFTMAX.
  For a uint8-quantized backbone `int8` quantizes the appended head (uint8 weights, int32
  bias, uint8 logits calibrated on the training photos' features, uint8 softmax with scale
  1/256 and zero point 0); `dynamic` (int8 weights, float activations) and `float16`
  (float16 weights + DEQUANTIZE) only change the head, since the backbone is already
  quantized.

`export_model_dir` writes the file (atomically), checks it on the test split, and records
{file, quantize, bytes, test_accuracy, float_test_accuracy, ...} in metrics.json.

Layer: the work (reads through retrained.py; checks with convert.agreement).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from imgtool import caches, files, retrained, store
from imgtool.convert import agreement
from imgtool.errors import ImgtoolError, ModelError, StorageError, UsageError
from imgtool.retrained import RetrainedRecord
from imgtool.version import __version__

Quantize = Literal["none", "dynamic", "float16", "int8"]
QUANTIZE_MODES: tuple[Quantize, ...] = get_args(Quantize)
CALIBRATION_PHOTOS = 100  # training photos used to calibrate int8 (first by relative path)
SOFTMAX_UINT8 = (1.0 / 256.0, 0)  # the only output quantization TFLite's uint8 SOFTMAX takes


def _write(path: Path, data: bytes, what: str = "", elsewhere: str = "choose another `output`") -> None:
    """Atomic (readable like any file the user writes: store honours the umask); a write
    failure the user must fix is one line naming the file (exit 4)."""
    try:
        store.atomic_write_bytes(path, data)
    except OSError as err:
        if isinstance(err, StorageError) or not store.is_storage_error(err, path.parent):
            raise
        named = store.storage_error(err, what or f"the export {path}", elsewhere, shown="")
        named.filename = str(path)
        raise named from None


def is_imgtool_export(path: Path) -> bool:
    """A .tflite this tool exported (its TFLite metadata names `imgtool retrain`): the
    only existing file `export` replaces without `force`."""
    from imgtool import tflite_metadata

    try:
        if not path.is_file() or path.stat().st_size > (1 << 31):
            return False
        with open(path, "rb") as fh:
            if fh.read(8)[4:8] != b"TFL3":
                return False
        meta = tflite_metadata.read(path.read_bytes())
    except (OSError, ValueError):
        return False
    return meta is not None and str(meta.get("name") or "").endswith("(imgtool retrain)")


def quantize_mode(text: str) -> Quantize:
    """The quantization mode `text` names (UsageError listing the choices)."""
    for mode in QUANTIZE_MODES:
        if text == mode:
            return mode
    raise UsageError(f"`quantize` {text}: choose one of {', '.join(QUANTIZE_MODES)}")


def default_file(quantize: str) -> str:
    return "model.tflite" if quantize == "none" else f"model-{quantize}.tflite"


# ------------------------------------------------------------------ flatbuffer surgery

def _schema() -> Any:
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _opcode(model: Any, builtin: int, version: int = 1) -> int:
    schema = _schema()
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and code.customCode is None:
            code.version = max(code.version, version)
            return i
    model.operatorCodes.append(schema.OperatorCodeT(deprecatedBuiltinCode=min(builtin, 127), builtinCode=builtin,
                                                    version=version))
    return len(model.operatorCodes) - 1


def _quant(scale: float | list[float], zero: int | list[int]) -> Any:
    q = _schema().QuantizationParametersT()
    q.scale = [float(s) for s in np.atleast_1d(scale)]
    q.zeroPoint = [int(z) for z in np.atleast_1d(zero)]
    return q


def _tensor(model: Any, sg: Any, name: str, shape: list[int], ttype: int, data: np.ndarray | None = None,
            quant: Any = None) -> int:
    schema = _schema()
    t = schema.TensorT()
    t.name, t.shape, t.type = name, list(shape), ttype
    if data is not None:
        buf = schema.BufferT()
        buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
        model.buffers.append(buf)
        t.buffer = len(model.buffers) - 1
    else:
        t.buffer = 0  # the empty buffer: an activation
    if quant is not None:
        t.quantization = quant
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _op(sg: Any, opcode: int, inputs: list[int], outputs: list[int], options_type: int = 0,
        options: Any = None) -> None:
    op = _schema().OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, inputs, outputs
    op.builtinOptionsType, op.builtinOptions = options_type, options
    sg.operators.append(op)


def quantize_uint8(values: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, float, int]:
    """Asymmetric uint8 over [min(lo,0), max(hi,0)] (0.0 exactly representable)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zero = int(np.clip(round(-lo / scale), 0, 255))
    q = np.clip(np.round(values / scale) + zero, 0, 255).astype(np.uint8)
    return q, scale, zero


def append_head(backbone: bytes, weights: np.ndarray, bias: np.ndarray, quantize: Quantize = "none",
                calibration_features: np.ndarray | None = None) -> bytes:
    """The backbone flatbuffer with RESHAPE -> FULLY_CONNECTED -> SOFTMAX appended to its
    (only) output; a quantized output is dequantized first unless `quantize` is int8."""
    from ai_edge_litert.tools import flatbuffer_utils

    schema = _schema()
    TT, OP, OPT = schema.TensorType, schema.BuiltinOperator, schema.BuiltinOptions
    if quantize not in QUANTIZE_MODES:
        raise UsageError(f"`quantize` {quantize}: choose one of {', '.join(QUANTIZE_MODES)}")
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(backbone))
    if len(model.subgraphs) != 1 or len(model.subgraphs[0].outputs) != 1:
        raise ModelError("the backbone .tflite must have one subgraph with one output to append a layer to")
    sg = model.subgraphs[0]
    feat_idx = sg.outputs[0]
    feat = sg.tensors[feat_idx]
    n_feat, n_cls = weights.shape
    if int(np.prod(feat.shape[1:])) != n_feat:
        raise ModelError(f"the backbone gives {int(np.prod(feat.shape[1:]))} features; the head expects {n_feat}")
    fq = feat.quantization
    feat_quantized = feat.type in (TT.UINT8, TT.INT8)
    batch = int(feat.shape[0]) if feat.shape is not None and len(feat.shape) else 1
    w_t = np.ascontiguousarray(weights.astype(np.float32).T)  # FULLY_CONNECTED weights are [out, in]
    b = bias.astype(np.float32)
    shape_t = _tensor(model, sg, "head/reshape_shape", [2], TT.INT32, np.array([-1, n_feat], np.int32))
    reshape_opts = schema.ReshapeOptionsT()
    reshape_opts.newShape = [-1, n_feat]
    fc_opts = schema.FullyConnectedOptionsT()
    softmax_opts = schema.SoftmaxOptionsT()
    softmax_opts.beta = 1.0

    if quantize == "int8":
        if feat.type != TT.UINT8 or fq is None or not fq.scale:
            kind = "float" if feat.type == TT.FLOAT32 else f"of type {feat.type} (not uint8)"
            raise UsageError(f"int8 needs a uint8-quantized .tflite backbone, or a TF backbone with the folder's "
                             f"saved_model/; this backbone's output is {kind}")
        if calibration_features is None or not len(calibration_features):
            raise UsageError("int8 needs calibration: the training photos were not found")
        s_in, z_in = float(fq.scale[0]), int(fq.zeroPoint[0])
        wq, s_w, z_w = quantize_uint8(w_t, float(w_t.min()), float(w_t.max()))
        s_b = s_in * s_w
        bq = np.round(b / s_b).astype(np.int32)
        # the logits the integer kernel will compute on the calibration features (a margin of 5%)
        x_q = np.clip(np.round(calibration_features / s_in) + z_in, 0, 255)
        logits = ((x_q - z_in) @ (wq.astype(np.float64) - z_w).T + bq) * s_b
        lo, hi = float(logits.min()), float(logits.max())
        pad = 0.05 * (hi - lo)
        _, s_out, z_out = quantize_uint8(np.zeros(1), lo - pad, hi + pad)
        flat = _tensor(model, sg, "head/features", [batch, n_feat], TT.UINT8, quant=_quant(s_in, z_in))
        _op(sg, _opcode(model, OP.RESHAPE), [feat_idx, shape_t], [flat], OPT.ReshapeOptions, reshape_opts)
        w_idx = _tensor(model, sg, "head/weights", [n_cls, n_feat], TT.UINT8, wq, _quant(s_w, z_w))
        b_idx = _tensor(model, sg, "head/bias", [n_cls], TT.INT32, bq, _quant(s_b, 0))
        logit_idx = _tensor(model, sg, "head/logits", [batch, n_cls], TT.UINT8, quant=_quant(s_out, z_out))
        _op(sg, _opcode(model, OP.FULLY_CONNECTED), [flat, w_idx, b_idx], [logit_idx],
            OPT.FullyConnectedOptions, fc_opts)
        prob = _tensor(model, sg, "probability", [batch, n_cls], TT.UINT8, quant=_quant(*SOFTMAX_UINT8))
        _op(sg, _opcode(model, OP.SOFTMAX), [logit_idx], [prob], OPT.SoftmaxOptions, softmax_opts)
    else:
        src = feat_idx
        if feat_quantized:
            src = _tensor(model, sg, "head/features_float", list(feat.shape), TT.FLOAT32)
            _op(sg, _opcode(model, OP.DEQUANTIZE), [feat_idx], [src])
        elif feat.type != TT.FLOAT32:
            raise ModelError(f"the backbone's output type {feat.type} is neither float32 nor quantized")
        flat = _tensor(model, sg, "head/features", [batch, n_feat], TT.FLOAT32)
        _op(sg, _opcode(model, OP.RESHAPE), [src, shape_t], [flat], OPT.ReshapeOptions, reshape_opts)
        if quantize == "float16":
            w16 = _tensor(model, sg, "head/weights_fp16", [n_cls, n_feat], TT.FLOAT16, w_t.astype(np.float16))
            b16 = _tensor(model, sg, "head/bias_fp16", [n_cls], TT.FLOAT16, b.astype(np.float16))
            w_idx = _tensor(model, sg, "head/weights", [n_cls, n_feat], TT.FLOAT32)
            b_idx = _tensor(model, sg, "head/bias", [n_cls], TT.FLOAT32)
            deq = _opcode(model, OP.DEQUANTIZE, version=3)  # version 3: float16 input
            _op(sg, deq, [w16], [w_idx])
            _op(sg, deq, [b16], [b_idx])
            fc_version = 1
        elif quantize == "dynamic":
            scale = float(np.abs(w_t).max()) / 127.0 or 1.0
            wq8 = np.clip(np.round(w_t / scale), -127, 127).astype(np.int8)
            w_idx = _tensor(model, sg, "head/weights", [n_cls, n_feat], TT.INT8, wq8, _quant(scale, 0))
            b_idx = _tensor(model, sg, "head/bias", [n_cls], TT.FLOAT32, b)
            fc_version = 3  # version 3: hybrid (float input, int8 weights)
        else:
            w_idx = _tensor(model, sg, "head/weights", [n_cls, n_feat], TT.FLOAT32, w_t)
            b_idx = _tensor(model, sg, "head/bias", [n_cls], TT.FLOAT32, b)
            fc_version = 1
        logit_idx = _tensor(model, sg, "head/logits", [batch, n_cls], TT.FLOAT32)
        _op(sg, _opcode(model, OP.FULLY_CONNECTED, version=fc_version), [flat, w_idx, b_idx], [logit_idx],
            OPT.FullyConnectedOptions, fc_opts)
        prob = _tensor(model, sg, "probability", [batch, n_cls], TT.FLOAT32)
        _op(sg, _opcode(model, OP.SOFTMAX), [logit_idx], [prob], OPT.SoftmaxOptions, softmax_opts)
    sg.outputs = [prob]
    for sig in model.signatureDefs or []:
        out = schema.TensorMapT()
        out.name, out.tensorIndex = "probability", prob
        sig.outputs = [out]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# ------------------------------------------------------------------ TensorFlow conversion

def convert_saved_classifier(saved_model: Path, input_size: tuple[int, int], value_range: tuple[float, float],
                             quantize: Quantize, calibration: Iterator[np.ndarray] | None = None) -> bytes:
    """The folder's saved_model/ (backbone + head, TF-built) as .tflite, taking one image
    [1, H, W, 3] in the backbone's value range (the metadata says how to map pixels)."""
    from imgtool import tfutil, ui

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
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAs(data, 0)
    sg = m.Subgraphs(0)
    q = sg.Tensors(sg.Inputs(0)).Quantization()
    scale = float(q.Scale(0)) if q is not None and q.ScaleLength() else 0.0
    if abs(scale - want_scale) > 0.01 * want_scale:
        raise ModelError(f"int8 conversion gave the input scale {scale:g}, not {want_scale:g} (one pixel step); "
                         "the uint8 input would not take raw pixels")


CONVERSIONS_KEEP = 8  # most recent TF conversions kept in IMGTOOL_HOME/exports/tflite


def _cached_conversion(saved: Path, options: str, calibration: list[str], convert: Any) -> bytes:
    """TensorFlow's conversion (~10 s with its import on Inception v3) is kept under a key of
    the SavedModel's files, the options and the calibration photos, so that an identical
    retrain (whose saved_model/ is linked from the export cache) needs no TensorFlow."""
    import hashlib

    from imgtool import ui

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


# ------------------------------------------------------------------ the model folder

@dataclass
class ExportResult:
    path: Path
    quantize: Quantize
    bytes: int
    method: str  # "tensorflow" or "flatbuffer"
    test_accuracy: float | None
    float_test_accuracy: float | None
    test_count: int
    note: str | None = None
    # against imgtool's own two-step run (backbone engine, then the head) on the test photos
    max_prob_diff: float | None = None
    top1_agreement: float | None = None

    def record(self, folder: Path) -> dict[str, Any]:
        try:
            name = str(self.path.resolve().relative_to(folder.resolve()))
        except ValueError:
            name = str(self.path.resolve())
        return {"file": name, "quantize": self.quantize, "bytes": self.bytes, "method": self.method,
                "test_accuracy": self.test_accuracy, "float_test_accuracy": self.float_test_accuracy,
                "test_count": self.test_count, "max_prob_diff_vs_imgtool": self.max_prob_diff,
                "top1_agreement_vs_imgtool": self.top1_agreement, **({"note": self.note} if self.note else {})}


def _split_photos(folder: Path, meta: RetrainedRecord,
                  metrics: dict[str, Any]) -> tuple[list[tuple[str, int]], list[str], str | None]:
    """(test photos [(path, label)], training photo paths, why not) from the recorded image
    folder, held-out folders and split percentages: the same layout and split rule as
    retrain (dataset.find_layout, dataset.assign_splits)."""
    from imgtool import dataset
    from imgtool.errors import ImgtoolError
    from imgtool.records import BadRecord

    image_dir = Path(meta.image_dir or "")
    if not meta.image_dir or not image_dir.is_dir():
        return [], [], f"the training photos are not at {image_dir} any more"
    try:
        split = dataset.StoredSplit.from_dict(metrics.get("options") or {}, "options.")
        found = dataset.find_layout(image_dir, split.validation_dir, split.test_dir)
    except (ImgtoolError, BadRecord) as err:
        return [], [], f"the training photos cannot be read as they were ({err})"
    if found.classes != meta.classes:
        return [], [], f"the classes in {image_dir} are not the model's any more"
    skipped = {s.get("path") for s in metrics.get("skipped") or []}
    files = [f for f in found.photos if f.path not in skipped]
    samples = dataset.assign_splits(files, len(found.classes), split.validation_percent, split.test_percent,
                                    content=dataset.content_hashes(files))
    test = [(s.path, s.label) for s in samples if s.split == "test"]
    train = sorted((s for s in samples if s.split == "train"), key=lambda s: s.rel)
    return test, [s.path for s in train], None


def _decode_all(paths: list[str], size: tuple[int, int]) -> tuple[np.ndarray, list[int]]:
    from imgtool import images
    from imgtool.errors import ImageError

    arrays, kept = [], []
    for i, p in enumerate(paths):
        try:
            arrays.append(images.decode(p, size))
            kept.append(i)
        except ImageError:
            continue
    return (np.stack(arrays) if arrays else np.zeros((0, *size, 3), np.uint8)), kept


def engine_for(path: Path) -> Any:
    """imgtool's engine for an exported file: the value range from its metadata."""
    from imgtool import tflite_metadata
    from imgtool.engine import LiteRTEngine

    return LiteRTEngine(path, tflite_metadata.file_value_range(path).get("value_range"))


def _accuracy(path: Path, photos: np.ndarray, labels: np.ndarray) -> tuple[float | None, np.ndarray]:
    if not len(photos):
        return None, np.zeros((0, 0), np.float32)
    probs = engine_for(path).run(photos)
    return round(float(np.mean(probs.argmax(axis=1) == labels)), 4), probs


def _two_step(folder: Path, meta: RetrainedRecord, photos: np.ndarray) -> np.ndarray | None:
    """Probabilities from imgtool's own run of the folder: backbone, then head.npz."""
    if not len(photos):
        return None
    from imgtool.engine import HeadEngine, LiteRTEngine
    from imgtool.scores import softmax

    bb = folder / meta.backbone.file
    if bb.suffix != ".tflite" or not bb.is_file():
        return None
    with np.load(folder / meta.head, allow_pickle=False) as npz:
        engine = HeadEngine(LiteRTEngine(bb, meta.value_range), npz["weights"], npz["bias"])
    return softmax(engine.run(photos))


def build(folder: Path, quantize: Quantize,
          calibration_paths: list[str] | None = None) -> tuple[bytes, str, str | None]:
    """The .tflite bytes (metadata included) for a model folder: (bytes, method, note)."""
    from imgtool import tflite_metadata

    checked = retrained.parts(str(folder), folder)
    meta = checked.record
    size = meta.input_size
    vr = meta.value_range or (0.0, 1.0)
    classes = meta.classes
    weights, bias = checked.weights, checked.bias
    note = None
    saved = folder / "saved_model"
    backbone_file = folder / meta.backbone.file
    if saved.is_dir():
        method = "tensorflow"
        calib_paths = calibration_paths[:CALIBRATION_PHOTOS] if quantize == "int8" and calibration_paths else []

        def convert() -> bytes:
            calib = (a[None] for a in _decode_all(calib_paths, size)[0]) if calib_paths else None
            return convert_saved_classifier(saved, size, vr, quantize, calib)

        data = _cached_conversion(saved, f"{size}|{vr}|{quantize}|{__version__}", calib_paths, convert)
    elif backbone_file.suffix == ".tflite" and backbone_file.is_file():
        method = "flatbuffer"
        backbone = backbone_file.read_bytes()
        calib_feats = None
        if quantize == "int8" and calibration_paths:
            from imgtool.engine import LiteRTEngine

            photos, _ = _decode_all(calibration_paths[:CALIBRATION_PHOTOS], size)
            calib_feats = LiteRTEngine(backbone_file, meta.value_range).run(photos)
        data = append_head(backbone, weights, bias, quantize, calib_feats)
        if quantize in ("dynamic", "float16"):
            note = "only the appended layer is quantized (the backbone .tflite is kept as it is)"
    else:
        raise ModelError(f"{folder}: neither saved_model/ nor a .tflite backbone to export from; retrain it again")
    schema = _schema()
    sg = schema.Model.GetRootAs(data, 0).Subgraphs(0)
    uint8_input = sg.Tensors(sg.Inputs(0)).Type() in (schema.TensorType.UINT8, schema.TensorType.INT8)
    # named for the photos it learnt (the folder may still have its temporary name)
    trained_on = Path(meta.image_dir or folder.name).name
    info = tflite_metadata.ClassifierInfo(
        name=f"{trained_on} classifier (imgtool retrain)", version=__version__,
        description=(f"Classifies an RGB image into {len(classes)} classes: {', '.join(classes[:10])}"
                     f"{', ...' if len(classes) > 10 else ''}. Backbone {meta.backbone.ref or None} with a "
                     f"last layer retrained by imgtool {__version__}; quantization: {quantize}."),
        labels=classes, input_size=size,
        normalization=None if uint8_input else tflite_metadata.normalization_for(vr))
    return tflite_metadata.attach(data, info), method, note


def _has_metadata(path: Path) -> bool:
    from imgtool import tflite_metadata

    try:
        return tflite_metadata.read(path.read_bytes()) is not None
    except OSError:
        return False



class _Checks:
    """An export's test-split figures (accuracy, and agreement with imgtool's own
    two-step run), computed from the exported bytes and the test photos. They depend on
    nothing else, so they are kept under a key of the file's bytes, the folder's backbone
    and head, and the test photos' contents and labels: an identical rerun (same photos,
    same seed: the same bytes) reuses them instead of decoding and running the test split
    twice more. Photos are decoded only on a miss."""

    def __init__(self, folder: Path, meta: RetrainedRecord, test: list[tuple[str, int]]):
        self.folder, self.meta, self.test = folder, meta, test
        self._photos: tuple[np.ndarray, np.ndarray] | None = None
        self._reference: np.ndarray | None = None
        self._reference_done = False
        self._base: str | None = None

    def _photo_set(self) -> tuple[np.ndarray, np.ndarray]:
        if self._photos is None:
            photos, kept = _decode_all([p for p, _ in self.test], self.meta.input_size)
            self._photos = photos, np.array([self.test[i][1] for i in kept], dtype=np.int64)
        return self._photos

    def _key(self, data: bytes) -> str | None:
        import hashlib

        if self._base is None:
            h = hashlib.sha256()
            try:
                bb = self.folder / self.meta.backbone.file
                h.update(bb.read_bytes() if bb.is_file() else b"-")
                with np.load(self.folder / self.meta.head, allow_pickle=False) as npz:  # its arrays: the
                    for name in ("weights", "bias"):  # .npz's own bytes carry zip timestamps
                        h.update(name.encode() + np.ascontiguousarray(npz[name], dtype=np.float32).tobytes())
                for path, label in self.test:
                    with files.open_regular(path) as fh:  # a FIFO among the photos cannot hang the export
                        h.update(f"{label}\0".encode() + hashlib.sha256(fh.read()).digest())
            except (OSError, files.FileProblem):
                return None  # a photo that cannot be read: no key, compute (and report) as usual
            self._base = h.hexdigest()
        return hashlib.sha256(self._base.encode() + hashlib.sha256(data).digest()).hexdigest()[:32]

    def of(self, data: bytes, path: Path) -> tuple[float | None, float | None, float | None, int]:
        """(test accuracy, max probability difference and top-1 agreement with the two-step
        run, number of test photos) of the exported file at `path`, whose bytes are `data`."""
        key = self._key(data) if self.test else None
        cache = store.home() / "exports" / "checks" / f"{key}.json"
        if key is not None:
            hit = store.read_json(cache)
            if hit:
                return hit["accuracy"], hit["max_diff"], hit["agreement"], int(hit["count"])
        photos, labels = self._photo_set()
        acc, probs = _accuracy(path, photos, labels)
        if not self._reference_done:
            self._reference, self._reference_done = _two_step(self.folder, self.meta, photos), True
        diff = agree = None
        if self._reference is not None and len(probs):
            check = agreement(probs, self._reference)
            diff = round(check.max_diff, 6)
            agree = round(check.top1, 4) if check.top1 is not None else None
        if key is not None:
            try:
                store.atomic_write_json(cache, {"accuracy": acc, "max_diff": diff, "agreement": agree,
                                                "count": len(labels)})
            except OSError:
                pass  # the cache is an optimisation; the figures are right either way
        return acc, diff, agree, len(labels)


def export_model_dir(folder: Path, quantize: str = "none", output: Path | None = None,
                     force: bool = False) -> list[ExportResult]:
    """Write the float `model.tflite` (always: the reference for accuracy) and, unless
    quantize is none, the quantized file; record both in metrics.json. Returns the
    results, float first. An `output` that exists is replaced only when it is an export of
    this tool, or with `force`; one that is not a regular file (a device, a FIFO, a
    symbolic link) never."""
    quantize = quantize_mode(quantize)
    folder = Path(folder)
    if not retrained.is_model_dir(folder):
        raise UsageError(f"{folder}: not a model folder written by retrain (no {retrained.RETRAINED_FILE})")
    meta = retrained.parts(str(folder), folder).record  # the one typed reader: "damaged retrained model", exit 3
    if output is not None:
        store.check_target(Path(output), "`output`", kind="file", ours=is_imgtool_export, force=force)
    for name in ("model.tflite", default_file(quantize), "metrics.json"):  # in the folder: ours, but files only
        store.check_target(folder / name, f"{folder}'s", kind="file")
    metrics = store.read_json(folder / "metrics.json") or {}
    test, train_paths, why = _split_photos(folder, meta, metrics)
    checks = _Checks(folder, meta, test)

    float_path = folder / "model.tflite"
    results: list[ExportResult] = []
    wanted: list[tuple[Quantize, Path]] = [("none", float_path)]
    if quantize != "none":
        wanted.append((quantize, output or folder / default_file(quantize)))
    elif output is not None:
        wanted = [("none", output)]
    float_acc: float | None = None
    unchecked: list[ExportResult] = []  # written, its figures not yet measured
    try:
        for mode, path in wanted:
            if mode == "none" and path == float_path and quantize != "none" and _has_metadata(float_path):
                data = None  # the float reference is there already (one without metadata predates it: rebuilt)
            else:
                data, method, note = build(folder, mode, train_paths)
                _write(path, data)
                unchecked = [ExportResult(path, mode, len(data), method, None, float_acc, 0,
                                          "test accuracy not measured: interrupted before the check")]
            acc, diff, agree, count = checks.of(data if data is not None else path.read_bytes(), path)
            unchecked = []
            if mode == "none":
                float_acc = acc
            if data is None:
                continue
            results.append(ExportResult(path, mode, path.stat().st_size, method, acc, float_acc, count,
                                        note if why is None else f"test accuracy unknown: {why}"
                                        + (f"; {note}" if note else ""), diff, agree))
    finally:  # what was written is recorded, also when a later export fails or the run is interrupted
        records = [r for r in metrics.get("exports") or [] if isinstance(r, dict) and "bytes" in r]
        for r in results + unchecked:
            rec = r.record(folder)
            records = [x for x in records if x.get("file") != rec["file"]] + [rec]
        metrics["exports"] = records
        _write(folder / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode("utf-8"),
               what=f"the export record {folder / 'metrics.json'}", elsewhere="write the model folder elsewhere")
        _render_report(folder, meta, metrics)
    return results


def _render_report(folder: Path, meta: RetrainedRecord, metrics: dict[str, Any]) -> None:
    """report.html again, from the metrics.json just written: its exports table lists the
    new file. A folder without a report (none was ever written) gets none."""
    from imgtool import report

    page = folder / "report.html"
    if page.is_file():
        html = report.render(metrics, metrics.get("misclassified"), report.title_for(meta.image_dir))
        _write(page, html.encode("utf-8"), what=f"the report {page}", elsewhere="write the model folder elsewhere")


def export_for_retrain(staging: Path, quantize: str) -> list[dict[str, Any]]:
    """retrain's step: the exports written into the model folder being built. A failure
    is a warning (the folder still works with imgtool), recorded as such."""
    from imgtool import ui

    try:
        with ui.native_output_filtered():
            results = export_model_dir(staging, quantize)
        return [r.record(staging) for r in results]
    except Exception as err:  # an extra must not lose the trained model
        if isinstance(err, OSError) and (isinstance(err, StorageError) or store.is_storage_error(err, staging)):
            raise  # a full disk is not an optional extra: the folder would be written without its model.tflite
        text = str(err).strip()
        first = text if isinstance(err, ImgtoolError) else (text.splitlines()[0][:200] if text else type(err).__name__)
    ui.warn(f"{default_file(quantize)} export skipped ({first}); the model folder still works with imgtool")
    records = [{"file": default_file(quantize), "quantize": quantize, "error": first}]
    metrics = store.read_json(staging / "metrics.json") or {}
    metrics["exports"] = [r for r in metrics.get("exports") or [] if "bytes" in r] + records
    _write(staging / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode("utf-8"))
    return metrics["exports"]
