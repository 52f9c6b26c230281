"""Everything that needs TensorFlow: loading TF models and converting them to .tflite.

Imported only when a TF model must be converted (once, when first fetched) or run in TF
(when conversion failed). Importing TensorFlow costs ~3 s and ~500 MiB here.

Layer: running models, the lowest: imports no other engine code (engine imports it)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from imgtool.core.errors import ModelError, Param, first_line


def _tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from imgtool.core import ui

    with ui.native_output_filtered():
        import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def _savedmodel_function(tf, source: Path, batch: int | None, input_size: tuple[int, int] | None):  # noqa: ANN001
    """A concrete function images -> one output tensor, and the object keeping it alive."""
    try:
        obj = tf.saved_model.load(str(source))
    except Exception as err:  # noqa: BLE001 - TF raises many types for a bad SavedModel
        raise ModelError(f"{source}: not a loadable SavedModel ({first_line(err, 160)})", path=source) from None
    sig = getattr(obj, "signatures", {}).get("serving_default") if hasattr(obj, "signatures") else None
    if sig is not None:
        inputs = sig.structured_input_signature[1]
        if len(inputs) != 1:
            raise ModelError(f"{source}: the serving signature takes {len(inputs)} inputs; expected one image batch")
        in_key, spec = next(iter(inputs.items()))
        out_key = sorted(sig.structured_outputs)[0]
        shape = [batch, *(input_size or spec.shape[1:3]), 3]

        @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
        def call(x):  # noqa: ANN001, ANN202
            return sig(**{in_key: x})[out_key]

        return call, obj
    if not callable(obj):
        raise ModelError(f"{source}: the SavedModel has neither a serving signature nor __call__")
    if input_size is None:
        raise ModelError(f"{source}: cannot tell the input size; pass " + Param("input_size") + " HEIGHT,WIDTH")
    shape = [batch, *input_size, 3]

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def call_object(x):  # noqa: ANN001, ANN202
        try:
            out = obj(x, training=False)
        except (TypeError, ValueError):
            out = obj(x)
        if isinstance(out, dict):
            out = out[sorted(out)[0]]
        return out

    return call_object, obj


def savedmodel_input_size(source: Path) -> tuple[int, int] | None:
    tf = _tf()
    obj = tf.saved_model.load(str(source))
    sig = getattr(obj, "signatures", {}).get("serving_default")
    if sig is not None:
        spec = next(iter(sig.structured_input_signature[1].values()))
        if spec.shape.rank == 4 and spec.shape[1] and spec.shape[2]:
            return int(spec.shape[1]), int(spec.shape[2])
    return None


def _graph_session(tf, pb: Path, tensors: tuple[str, str]):  # noqa: ANN001
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(pb.read_bytes())
    except Exception as err:  # noqa: BLE001
        raise ModelError(f"{pb}: not a frozen GraphDef ({str(err)[:120]})") from None
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    try:
        inp = graph.get_tensor_by_name(tensors[0])
        out = graph.get_tensor_by_name(tensors[1])
    except (KeyError, ValueError) as err:
        raise ModelError(
            f"{pb}: {err}; name the tensors with " + Param("input_tensor") + "/" + Param("output_tensor"), path=pb
        ) from None
    return tf.compat.v1.Session(graph=graph), inp, out


_TF_PASSTHROUGH = {"Identity", "Reshape", "Squeeze", "StopGradient", "Cast"}
_TF_TO_TFLITE = {
    "Softmax": "SOFTMAX",
    "Sigmoid": "LOGISTIC",
    "LogSoftmax": "LOG_SOFTMAX",
    "AvgPool": "AVERAGE_POOL_2D",
    "MaxPool": "MAX_POOL_2D",
    "Mean": "MEAN",
    "MatMul": "FULLY_CONNECTED",
    "BiasAdd": "ADD",
    "Add": "ADD",
    "AddV2": "ADD",
}


def _producer(op) -> str:  # noqa: ANN001
    """The op computing a graph tensor, through Identity/Reshape, named as TFLite names it."""
    seen = 0
    while op.type in _TF_PASSTHROUGH and op.inputs and seen < 100:
        op, seen = op.inputs[0].op, seen + 1
    return _TF_TO_TFLITE.get(op.type, op.type)


def load_callable(
    source: Path, graph_tensors: tuple[str, str] | None = None, input_size: tuple[int, int] | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """float images [N,H,W,3] -> outputs, in TensorFlow."""
    tf = _tf()
    if graph_tensors:
        sess, inp, out = _graph_session(tf, source, graph_tensors)

        def run_graph(x: np.ndarray) -> np.ndarray:
            return np.concatenate([sess.run(out, {inp: x[i : i + 1]}).reshape(1, -1) for i in range(len(x))])

        run_graph.output_op = _producer(out.op)  # type: ignore[attr-defined]
        return run_graph
    fn, keep = _savedmodel_function(tf, source, None, input_size)

    def run_saved(x: np.ndarray) -> np.ndarray:
        _ = keep  # the loaded object owns the variables the function reads
        return fn(tf.constant(x)).numpy()

    return run_saved


def convert_savedmodel(source: Path, input_size: tuple[int, int], dest: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Convert to .tflite (dynamic batch) at `dest`; return the TF callable for verification."""
    tf = _tf()
    fn, keep = _savedmodel_function(tf, source, None, input_size)
    concrete = fn.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], keep)
    dest.write_bytes(converter.convert())

    def run(x: np.ndarray) -> np.ndarray:
        return concrete(tf.constant(x)).numpy()

    return run


def convert_graphdef(
    pb: Path, tensors: tuple[str, str], input_size: tuple[int, int], dest: Path
) -> Callable[[np.ndarray], np.ndarray]:
    tf = _tf()
    in_name = tensors[0].split(":")[0]
    out_name = tensors[1].split(":")[0]
    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(pb), input_arrays=[in_name], output_arrays=[out_name], input_shapes={in_name: [1, *input_size, 3]}
    )
    dest.write_bytes(converter.convert())
    return load_callable(pb, tensors)


def export_classifier(
    backbone_dir: Path,
    input_size: tuple[int, int],
    value_range: tuple[float, float] | None,
    weights: np.ndarray,
    bias: np.ndarray,
    classes: list[str],
    saved_model_dir: Path,
) -> None:
    """A SavedModel (backbone + new layer) with a serving signature that takes images
    (float32 [N,H,W,3], pixel values 0..255) and returns probabilities and the top class
    (imgtool.training.tflite_model writes the shipped model.tflite from this SavedModel's
    `probabilities`)."""
    tf = _tf()
    backbone_fn, keep = _savedmodel_function(tf, backbone_dir, None, input_size)
    lo, hi = value_range or (0.0, 1.0)
    h, w = input_size

    class Classifier(tf.Module):  # type: ignore[name-defined]  # tf is imported at run time
        def __init__(self) -> None:
            super().__init__()
            self.backbone = keep
            self.weights = tf.Variable(weights, trainable=False, name="weights")
            self.bias = tf.Variable(bias, trainable=False, name="bias")
            self.class_names = tf.constant(classes)

        @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32, name="images")])
        def serve(self, images):  # noqa: ANN001, ANN201
            probs = self.probabilities(images)
            return {"probabilities": probs, "top_class": tf.gather(self.class_names, tf.argmax(probs, axis=-1))}

        @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32, name="images")])
        def probabilities(self, images):  # noqa: ANN001, ANN201
            x = images * ((hi - lo) / 255.0) + lo
            feats = tf.reshape(backbone_fn(x), [tf.shape(images)[0], -1])
            return tf.nn.softmax(tf.matmul(feats, self.weights) + self.bias)

    module = Classifier()
    tf.saved_model.save(module, str(saved_model_dir), signatures={"serving_default": module.serve})


def summary_writer(path: Path) -> Callable[[int, float, float, float | None], None]:
    """TensorBoard summaries (scalars: loss, train and validation accuracy)."""
    tf = _tf()
    writer = tf.summary.create_file_writer(str(path))

    def write(epoch: int, loss: float, train_acc: float, val_acc: float | None) -> None:
        with writer.as_default(step=epoch):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("accuracy/train", train_acc)
            if val_acc is not None:
                tf.summary.scalar("accuracy/validation", val_acc)
        writer.flush()

    return write


def scalar_writer(path: Path) -> Callable[[int, dict[str, float]], None]:
    """TensorBoard summaries: write(step, {name: value}) (retrain: the cross-validation
    curve, one step per L2 tried)."""
    tf = _tf()
    writer = tf.summary.create_file_writer(str(path))

    def write(step: int, scalars: dict[str, float]) -> None:
        with writer.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
        writer.flush()

    return write
