"""Inference engines. One interface: `run(uint8 images [N,H,W,3]) -> float32 [N,K]`.

LiteRTEngine runs every .tflite (given, or converted once from a TF model); TFEngine runs
a SavedModel or frozen graph in TensorFlow when conversion was impossible. TensorFlow is
imported only inside TFEngine.

Layer: running models (above scores, tflite, tfutil; below model and the work)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from imgtool.core import files, ui
from imgtool.core.errors import ModelError, first_line
from imgtool.numbers.scores import OutputFacts


class Engine(Protocol):
    input_size: tuple[int, int]

    def run(self, images: np.ndarray) -> np.ndarray: ...

    def output_facts(self) -> OutputFacts:
        """What the model says about its output (width, dtype, quantization, last op), read
        from the model, not from any input."""
        ...


def to_float(images: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """uint8 pixels -> float32 in the model's range (0 -> lo, 255 -> hi; default [0, 1])."""
    lo, hi = value_range or (0.0, 1.0)
    return images.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)


def default_threads() -> int:
    from imgtool.core import settings

    return settings.current().threads or os.cpu_count() or 1


class LiteRTEngine:
    def __init__(
        self,
        path: Path | str,
        value_range: tuple[float, float] | None = None,
        output_name: str | None = None,
        threads: int | None = None,
    ):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        why = files.problem(path)  # LiteRT opens it by name: a FIFO would hang it
        if why is not None:
            raise ModelError(f"{path}: {why}; give a .tflite model file")
        try:
            with ui.native_output_filtered():
                self._it = Interpreter(model_path=str(path), num_threads=threads or default_threads())
                self._it.allocate_tensors()
        except (ValueError, RuntimeError, OSError) as err:
            raise ModelError(f"{path}: not a loadable .tflite model ({first_line(err, None)})", path=path) from None
        inputs = self._it.get_input_details()
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][3] != 3:
            raise ModelError(
                f"{path}: expected one image input [batch, height, width, 3], "
                f"found {[list(d['shape']) for d in inputs]}"
            )
        self._in = inputs[0]
        outputs = self._it.get_output_details()
        if not outputs:
            raise ModelError(f"{path}: not a loadable .tflite model (it has no outputs)")
        if output_name:
            named = [d for d in outputs if d["name"] == output_name]
            if not named:
                raise ModelError(
                    f"{path}: no output named {output_name!r} (outputs: {', '.join(d['name'] for d in outputs)})"
                )
            self._out = named[0]
        else:
            self._out = outputs[0]
        self.input_size = (int(self._in["shape"][1]), int(self._in["shape"][2]))
        self.value_range = value_range
        sig = self._in.get("shape_signature", self._in["shape"])
        self._dynamic_batch = int(sig[0]) == -1
        self._batch = int(self._in["shape"][0])
        self.quantized = self._in["dtype"] in (np.uint8, np.int8)
        self.output_width = int(np.prod(self._out["shape"][1:]))
        self._out_position = next(i for i, d in enumerate(outputs) if d["index"] == self._out["index"])

    @property
    def input_dtype(self) -> str:
        return np.dtype(self._in["dtype"]).name

    def input_scale(self) -> float:
        return float(self._in["quantization"][0])

    def quantized_input_range(self) -> tuple[float, float] | None:
        """For a quantized input, the real values the pixels 0..255 are fed as (what its
        quantization says; int8: pixel p is p - 128); None for raw uint8 pixels (no scale)
        or a float input."""
        if not self.quantized:
            return None
        scale, zero = self._in["quantization"]
        if not scale:
            return None
        lo = -128 if self._in["dtype"] == np.int8 else 0
        return (float((lo - zero) * scale), float((lo + 255 - zero) * scale))

    def output_facts(self) -> OutputFacts:
        from imgtool.runtime import facts

        dtype = np.dtype(self._out["dtype"]).name
        scale, zero = self._out["quantization"]
        position, tensor = self._out_position, int(self._out["index"])

        def read() -> dict[str, str | None]:  # the flatbuffer walk: once per model file (facts record)
            from imgtool.tflite import reading

            meta = reading.output_metadata(self.path, position)
            said = ": ".join(t for t in (meta.name, meta.description) if t) if meta else ""
            return {"producer": reading.output_producer(self.path, tensor), "metadata": said or None}

        told = facts.cached(self.path, f"output:{position}:{tensor}", read)
        return OutputFacts(
            width=self.output_width,
            shape=tuple(int(d) for d in self._out["shape"]),
            dtype=dtype,
            quantization=(float(scale), int(zero)) if dtype in ("uint8", "int8", "int16") and scale else None,
            producer=told["producer"],
            metadata=told["metadata"],
            source=str(self.path),
        )

    def _prepare(self, images: np.ndarray) -> np.ndarray:
        dtype = self._in["dtype"]
        if dtype == np.float32:
            return to_float(images, self.value_range)
        scale, zero = self._in["quantization"]
        if dtype == np.uint8 and (self.value_range is None or not scale):
            return images  # the usual convention for uint8 models: raw pixels
        # int8 with no value range: the uint8 convention shifted by 128 (what TFLite's own
        # uint8 -> int8 interface change does): pixel p is the quantized value p - 128
        real = to_float(
            images,
            self.value_range or (((-128.0 - zero) * scale, (127.0 - zero) * scale) if dtype == np.int8 else None),
        )
        info = np.iinfo(dtype)
        q = np.round(real / scale + zero)
        return np.clip(q, info.min, info.max).astype(dtype)

    def _dequantize(self, out: np.ndarray) -> np.ndarray:
        if out.dtype in (np.uint8, np.int8, np.int16):
            scale, zero = self._out["quantization"]
            return (out.astype(np.float32) - zero) * np.float32(scale or 1.0)
        return out.astype(np.float32, copy=False)

    def run(self, images: np.ndarray) -> np.ndarray:
        try:
            return self._run(images)
        except (RuntimeError, ValueError) as err:  # e.g. a damaged file LiteRT loads: "Input tensor 3 lacks data"
            raise ModelError(
                f"{self.path}: the .tflite model does not run ({first_line(err, None)}); it is damaged", path=self.path
            ) from None

    def _run(self, images: np.ndarray) -> np.ndarray:
        n = images.shape[0]
        x = self._prepare(images)
        it = self._it
        if self._dynamic_batch and n != self._batch:
            it.resize_tensor_input(self._in["index"], [n, *self.input_size, 3])
            it.allocate_tensors()
            self._batch = n
        if self._batch == n:
            it.set_tensor(self._in["index"], x)
            it.invoke()
            return self._dequantize(it.get_tensor(self._out["index"])).reshape(n, -1)
        rows = []
        for i in range(n):
            it.set_tensor(self._in["index"], x[i : i + 1])
            it.invoke()
            rows.append(self._dequantize(it.get_tensor(self._out["index"])).reshape(-1))
        return np.stack(rows)


class TFEngine:
    """A SavedModel or a frozen GraphDef run in TensorFlow (slow start; the fallback)."""

    def __init__(
        self,
        source: Path,
        input_size: tuple[int, int],
        value_range: tuple[float, float] | None,
        graph_tensors: tuple[str, str] | None = None,
    ):
        from imgtool.runtime import tfutil

        self.input_size = input_size
        self.value_range = value_range
        self.source = Path(source)
        with ui.native_output_filtered():
            self._fn = tfutil.load_callable(source, graph_tensors, input_size)
        self._facts: OutputFacts | None = None

    def run(self, images: np.ndarray) -> np.ndarray:
        out = self._fn(to_float(images, self.value_range))
        return np.asarray(out, dtype=np.float32).reshape(images.shape[0], -1)

    def output_facts(self) -> OutputFacts:
        """The width from one run on a black image (the output's shape is what is read,
        never its values); the last op as the graph names it, when TF can tell."""
        if self._facts is None:
            probe = np.zeros((1, *self.input_size, 3), np.uint8)
            out = np.asarray(self._fn(to_float(probe, self.value_range)))
            op = getattr(self._fn, "output_op", None)
            self._facts = OutputFacts(
                width=int(np.prod(out.shape[1:])),
                shape=tuple(int(d) for d in out.shape),
                producer=op,
                source=str(self.source),
            )
        return self._facts


class HeadEngine:
    """A backbone engine followed by a dense layer (a retrained last layer)."""

    def __init__(self, backbone: Engine, weights: np.ndarray, bias: np.ndarray):
        self.backbone = backbone
        self.input_size = backbone.input_size
        self.weights = weights.astype(np.float32)
        self.bias = bias.astype(np.float32)

    def run(self, images: np.ndarray) -> np.ndarray:
        feats = self.backbone.run(images)
        if feats.shape[1] != self.weights.shape[0]:
            raise ModelError(
                f"the backbone gives {feats.shape[1]} features, the retrained last layer expects "
                f"{self.weights.shape[0]}: the model folder's backbone is not the one it was trained "
                "on; retrain it again"
            )
        return feats @ self.weights + self.bias

    def output_facts(self) -> OutputFacts:
        width = int(self.weights.shape[1])
        return OutputFacts(width=width, shape=(1, width), producer="FULLY_CONNECTED", source="retrained last layer")
