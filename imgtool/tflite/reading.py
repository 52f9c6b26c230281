"""What a .tflite says, read from its bytes (no inference, no TensorFlow): the graph (which
operator computes an output, what the input tensor is) and its TFLite metadata.

The graph is read from the flatbuffer through LiteRT's generated schema, never from the
interpreter's node list: there, a delegate (XNNPACK, on by default) adds DELEGATE nodes that
write the same output tensors as the operators they took over, and a compiled model (Edge
TPU) is one custom op. The metadata (`TFLITE_METADATA`, the ModelMetadata flatbuffer of
tflite_support) is read by field name through schema.py's table (`View`).

A source is the model's bytes or a path (mapped, not read: a backbone may be 100 MB). A
file that is not a well-formed model has no metadata and no producer (None); the
functions that must say something about the graph raise NotAModel."""

from __future__ import annotations

import io
import mmap
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from os import PathLike
from typing import Any, Union

from imgtool.tflite import schema

# Operators that pass a tensor's meaning through unchanged: the output of RESHAPE(SOFTMAX(x))
# is still probabilities.
PASSTHROUGH = frozenset({"RESHAPE", "SQUEEZE", "DEQUANTIZE", "QUANTIZE", "EXPAND_DIMS", "CAST"})

Source = Union[bytes, bytearray, memoryview, mmap.mmap, str, "PathLike[str]"]
_DAMAGED = (IndexError, ValueError, TypeError, AttributeError, struct.error)  # what a bad flatbuffer raises


class NotAModel(ValueError):
    """The bytes are not a TFLite model flatbuffer (or a damaged one)."""


@contextmanager
def _buffer(source: Source) -> Iterator[Any]:
    """The model's bytes: as given, or the file mapped read-only (OSError when it cannot
    be opened as a regular file, ValueError when it is empty)."""
    if isinstance(source, (bytes, bytearray, memoryview, mmap.mmap)):
        yield source
        return
    from imgtool.core import files

    try:
        fh = files.open_regular(source)
    except files.FileProblem as err:
        raise OSError(str(err)) from None
    with fh:
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        yield buf
    finally:
        buf.close()


@contextmanager
def _model(source: Source) -> Iterator[Any]:
    """The schema's Model over the source; a malformed one is NotAModel."""
    from ai_edge_litert import schema_py_generated as tfl

    with _buffer(source) as buf:
        try:
            yield tfl.Model.GetRootAs(buf, 0)
        except NotAModel:
            raise
        except _DAMAGED as err:
            raise NotAModel(f"not a well-formed TFLite flatbuffer ({type(err).__name__}: {err})") from None


# ------------------------------------------------------------------ the graph


@dataclass(frozen=True)
class TensorFacts:
    """One tensor of the graph as the flatbuffer declares it."""

    index: int
    shape: tuple[int, ...]
    dtype: str  # the schema's TensorType name: FLOAT32, UINT8, INT8, ...
    scale: float | None = None  # the first quantization scale and zero point, when quantized
    zero_point: int | None = None


@lru_cache(maxsize=1)
def _names(enum: str) -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as tfl

    return {v: k for k, v in vars(getattr(tfl, enum)).items() if not k.startswith("_") and isinstance(v, int)}


def _op_name(model: Any, op: Any) -> str:
    """A builtin operator by its name (BUILTIN_<n> when LiteRT's schema has none), a custom
    op as CUSTOM:<its custom code>."""
    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    name = _names("BuiltinOperator").get(builtin, f"BUILTIN_{builtin}")
    if name == "CUSTOM":
        custom = code.CustomCode()
        return f"CUSTOM:{custom.decode('utf-8', 'replace')}" if custom else "CUSTOM"
    return name


def _writers(graph: Any) -> dict[int, Any]:
    """{tensor index: the (last) operator writing it}."""
    writers: dict[int, Any] = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        for t in op.OutputsAsNumpy() if op.OutputsLength() else ():
            writers[int(t)] = op
    return writers


def _tensor_facts(graph: Any, index: int) -> TensorFacts:
    t = graph.Tensors(index)
    q = t.Quantization()
    return TensorFacts(
        index,
        tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else (),
        _names("TensorType").get(int(t.Type()), str(t.Type())),
        float(q.Scale(0)) if q is not None and q.ScaleLength() else None,
        int(q.ZeroPoint(0)) if q is not None and q.ZeroPointLength() else None,
    )


def graph_input(source: Source, position: int = 0) -> TensorFacts:
    """The first subgraph's `position`-th input tensor (NotAModel when there is none)."""
    with _model(source) as model:
        graph = model.Subgraphs(0)
        return _tensor_facts(graph, int(graph.Inputs(position)))


def graph_output(source: Source, position: int = 0) -> tuple[TensorFacts, str | None]:
    """The first subgraph's `position`-th output tensor and the name of the operator that
    writes it (no looking through: see output_producer), None when no operator does."""
    with _model(source) as model:
        graph = model.Subgraphs(0)
        index = int(graph.Outputs(position))
        writer = _writers(graph).get(index)
        return _tensor_facts(graph, index), None if writer is None else _op_name(model, writer)


def output_producer(source: Source, tensor: int, subgraph: int = 0) -> str | None:
    """The name of the operator that computes `tensor` (a tensor index, as the
    interpreter's output details give it), looking through RESHAPE, DEQUANTIZE and the
    like; a custom op by its custom code; None when no operator writes it (or the file
    cannot be read as a TFLite flatbuffer)."""
    try:
        with _model(source) as model:
            graph = model.Subgraphs(subgraph)
            if graph is None:
                return None
            writers = _writers(graph)
            seen: set[int] = set()
            while tensor in writers and tensor not in seen:
                seen.add(tensor)
                op = writers[tensor]
                name = _op_name(model, op)
                if name not in PASSTHROUGH or not op.InputsLength():
                    return name
                tensor = int(op.Inputs(0))
            return None
    except (OSError, *_DAMAGED):
        return None  # not a well-formed flatbuffer: the interpreter will say so when loading


def flatbuffer_part(model: bytes) -> bytes:
    """A model with packed files (a zip appended, as TFLite metadata packs its associated
    files): the flatbuffer part only; any other model as it is."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as zf:
            first = min((i.header_offset for i in zf.infolist()), default=None)
    except zipfile.BadZipFile:
        return model
    return model if first is None else model[:first]


# ------------------------------------------------------------------ the metadata


class View:
    """One table of a metadata flatbuffer, its fields read by name: the slot and the kind
    come from schema.py's table. An absent field reads as the schema's default: "" for a
    string, 0 for a number, [] for a vector, None for a table or a union."""

    def __init__(self, table: schema.Table, buf: Any, pos: int):
        from flatbuffers.table import Table

        self.table = table
        self._t = Table(buf, pos)

    @classmethod
    def root(cls, table: str, buf: Any) -> View:
        from flatbuffers import encode, packer

        return cls(schema.table(table), buf, int(encode.Get(packer.uoffset, buf, 0)))

    def get(self, name: str) -> Any:
        field = self.table.field(name)
        o = int(self._t.Offset(4 + 2 * field.slot))
        kind, t = field.kind, self._t
        if kind.startswith("["):
            return self._vector(kind[1:-1], o)
        if kind == "string":
            return t.String(o + t.Pos).decode("utf-8", "replace") if o else ""
        if kind in schema.SCALARS:
            return self._scalar(kind, o + t.Pos) if o else 0
        if kind in schema.ENUMS:
            return schema.enum_name(kind, self._scalar(schema.ENUMS[kind][0], o + t.Pos) if o else 0)
        if kind in schema.UNIONS:
            return self._union(field, o)
        return View(schema.table(kind), t.Bytes, t.Indirect(o + t.Pos)) if o else None

    def _scalar(self, kind: str, at: int) -> Any:
        from flatbuffers import number_types

        return self._t.Get(getattr(number_types, f"{schema.SCALARS[kind]}Flags"), at)

    def _vector(self, kind: str, o: int) -> list[Any]:
        if not o:
            return []
        t = self._t
        start, n = t.Vector(o), t.VectorLen(o)
        if kind == "string":
            return [t.String(start + 4 * i).decode("utf-8", "replace") for i in range(n)]
        if kind in schema.SCALARS:
            from flatbuffers import number_types

            width = getattr(number_types, f"{schema.SCALARS[kind]}Flags").bytewidth
            return [self._scalar(kind, start + width * i) for i in range(n)]
        table = schema.table(kind)
        return [View(table, t.Bytes, t.Indirect(start + 4 * i)) for i in range(n)]

    def _union(self, field: schema.Field, o: int) -> View | None:
        """The union's value as a View of its member table; None when absent, or when it
        is a member imgtool's table does not transcribe."""
        from flatbuffers.table import Table

        members = schema.UNIONS[field.kind]
        tag = self.get(f"{field.name}_type")
        if not o or not 0 < tag <= len(members) or members[tag - 1] not in schema.TABLES:
            return None
        inner = Table(bytearray(), 0)
        self._t.Union(inner, o)
        return View(schema.table(members[tag - 1]), inner.Bytes, inner.Pos)


@dataclass(frozen=True)
class TensorMetadata:
    """One tensor's entry in the TFLite metadata (the fields imgtool uses)."""

    name: str = ""
    description: str = ""
    files: tuple[tuple[str, str], ...] = ()  # associated files: (name, AssociatedFileType name)
    normalization: tuple[float, float] | None = None  # NormalizationOptions (mean, std), first channel

    @property
    def label_files(self) -> tuple[str, ...]:
        """The associated files of type TENSOR_AXIS_LABELS."""
        return tuple(name for name, kind in self.files if kind == "TENSOR_AXIS_LABELS")


@dataclass(frozen=True)
class ModelMetadata:
    """A model's TFLite metadata: its own fields, and its first subgraph's tensors."""

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    min_parser_version: str = ""
    inputs: tuple[TensorMetadata, ...] = ()
    outputs: tuple[TensorMetadata, ...] = ()

    @property
    def normalization(self) -> tuple[float, float] | None:
        """The first input's NormalizationOptions (mean, std), or None."""
        return self.inputs[0].normalization if self.inputs else None


def _tensor_metadata(view: View) -> TensorMetadata:
    normalization = None
    for unit in view.get("process_units"):
        options = unit.get("options")
        if options is not None and options.table.name == "NormalizationOptions":
            mean, std = options.get("mean"), options.get("std")
            if mean and std:
                normalization = (mean[0], std[0])
    files = tuple((f.get("name"), f.get("type")) for f in view.get("associated_files"))
    return TensorMetadata(view.get("name"), view.get("description"), files, normalization)


def parse_metadata(data: bytes) -> ModelMetadata | None:
    """A ModelMetadata flatbuffer (identifier M001) as read by imgtool; None when the bytes
    are not one or are damaged."""
    if len(data) < 8 or data[4:8] != schema.METADATA_IDENTIFIER:
        return None
    try:
        root = View.root("ModelMetadata", bytes(data))
        subgraphs = root.get("subgraph_metadata")
        tensors = {
            side: tuple(_tensor_metadata(t) for t in subgraphs[0].get(f"{side}_tensor_metadata")) if subgraphs else ()
            for side in ("input", "output")
        }
        return ModelMetadata(
            root.get("name"),
            root.get("description"),
            root.get("version"),
            root.get("author"),
            root.get("license"),
            root.get("min_parser_version"),
            tensors["input"],
            tensors["output"],
        )
    except _DAMAGED:
        return None  # damaged metadata says nothing; the graph still does


def _metadata_bytes(model: Any, buf: Any) -> bytes | None:
    """The buffer the model's TFLITE_METADATA entry names (kept inside the flatbuffer, or
    after it, by offset, as large models do)."""
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if (entry.Name() or b"").decode("utf-8", "replace") != schema.METADATA_NAME:
            continue
        buffer = model.Buffers(entry.Buffer())
        if buffer is None:
            return None
        if buffer.DataLength():
            return bytes(buffer.DataAsNumpy().tobytes())
        if buffer.Offset() and buffer.Size():
            return bytes(buf[buffer.Offset() : buffer.Offset() + buffer.Size()])
    return None


def metadata(source: Source) -> ModelMetadata | None:
    """The model's TFLite metadata, or None when it carries none (or it cannot be read)."""
    try:
        with _buffer(source) as buf, _model(buf) as model:
            data = _metadata_bytes(model, buf)
    except (OSError, *_DAMAGED):
        return None
    return None if data is None else parse_metadata(data)


def output_metadata(source: Source, position: int) -> TensorMetadata | None:
    """The metadata of the model's `position`-th output (0: the first), or None."""
    meta = metadata(source)
    return meta.outputs[position] if meta is not None and position < len(meta.outputs) else None


def file_value_range(path: Source) -> dict[str, tuple[float, float]]:
    """{"value_range": (lo, hi)} from a .tflite's input NormalizationOptions, else {}.

    Only for a float input: as in the TFLite Task Library, a quantized (uint8/int8)
    input takes the raw pixels and its quantization is the mapping; its NormalizationOptions
    (the shared MobileNet V2 has mean 127.5, std 127.5) describe the float model it came
    from, and applying them would re-round every pixel (cat.bmp 0.789 -> 0.754)."""
    try:
        with _buffer(path) as buf:
            meta = metadata(buf)
            if meta is None or not meta.normalization or graph_input(buf).dtype != "FLOAT32":
                return {}
    except (OSError, ValueError):
        return {}
    mean, std = meta.normalization
    return {"value_range": schema.value_range_for(mean, std)} if std else {}
