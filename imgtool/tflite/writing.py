"""TFLite flatbuffers written: the ModelMetadata of an image classifier (built table by
table, every field by its name in schema.py's table), attached to a model with its packed
labels; and the edits of a model's graph (ModelEdit: buffers, tensors, operators) that
head.py appends a layer with.

The maintained metadata writer (MediaPipe's `metadata_writers`) does not work in the
MediaPipe we can install beside our pins (1.2.2 lacks its compiled metadata module) and
`tflite-support` is unmaintained, so what an image classifier needs is written here with
the `flatbuffers` Builder. What gets written is what tflite-support's
`ImageClassifierWriter` writes:

  ModelMetadata {name, description, version, author, license, min_parser_version "1.0.0",
    subgraph_metadata: [{
      input_tensor_metadata: [{name "image", content: ImageProperties{RGB, WxH},
                               process_units: [NormalizationOptions{mean, std}] (float
                               input only), stats{min, max}}],
      output_tensor_metadata: [{name "probability", content: FeatureProperties,
                                stats{min 0, max 1},
                                associated_files: [labels.txt TENSOR_AXIS_LABELS]}]}]}

The metadata goes into a model buffer named "TFLITE_METADATA" listed in the model's
`metadata`; associated files are a zip appended to the flatbuffer (written in append
mode, so offsets are from the start of the file, as MetadataPopulator does). Every
field used exists since schema 1.0.0, hence min_parser_version "1.0.0".

The bytes are a pure function of the inputs (no timestamps): exports are compared and
cached by their bytes."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from imgtool.tflite import schema
from imgtool.tflite.reading import flatbuffer_part

LABELS_FILE = "labels.txt"


class Ref(NamedTuple):
    """Something written into the metadata flatbuffer: its .fbs kind and its offset."""

    kind: str
    offset: int


class MetadataWriter:
    """A metadata flatbuffer built bottom-up. `table` takes every field by its name in
    schema.py's table and checks its kind there: a string where a table belongs, or a name
    the schema has not, is a SchemaError. Scalars are written before offsets, each in the
    order given (the order decides the bytes)."""

    def __init__(self, size: int = 1024):
        import flatbuffers

        self.b = flatbuffers.Builder(size)

    def string(self, text: str) -> Ref:
        return Ref("string", self.b.CreateString(text))

    def floats(self, values: list[float]) -> Ref:
        self.b.StartVector(4, len(values), 4)
        for v in reversed(values):
            self.b.PrependFloat32(float(v))
        return Ref("[float]", self.b.EndVector())

    def vector(self, items: list[Ref]) -> Ref:
        """A vector of tables, all of one kind (at least one)."""
        kinds = {r.kind for r in items}
        if len(kinds) != 1 or next(iter(kinds)) not in schema.TABLES:
            raise schema.SchemaError(f"a vector holds tables of one kind, not {sorted(kinds)}")
        self.b.StartVector(4, len(items), 4)
        for r in reversed(items):
            self.b.PrependUOffsetTRelative(r.offset)
        return Ref(f"[{items[0].kind}]", self.b.EndVector())

    def table(self, name: str, /, **fields: Any) -> Ref:
        table = schema.table(name)
        scalars: list[tuple[schema.Field, str, Any]] = []
        offsets: list[tuple[schema.Field, int]] = []
        for key, value in fields.items():
            field = table.field(key)
            if field.kind in schema.SCALARS:
                scalars.append((field, field.kind, value))
            elif field.kind in schema.ENUMS:
                scalars.append((field, schema.ENUMS[field.kind][0], schema.enum_value(field.kind, value)))
            elif field.kind in schema.UNIONS:
                scalars.append((table.field(f"{key}_type"), "ubyte", schema.union_tag(field.kind, _ref(value).kind)))
                offsets.append((field, value.offset))
            elif _ref(value).kind != field.kind:
                raise schema.SchemaError(f"{name}.{key} is {field.kind}, not {value.kind}")
            else:
                offsets.append((field, value.offset))
        self.b.StartObject(table.slots)
        for field, kind, number in scalars:
            getattr(self.b, f"Prepend{schema.SCALARS[kind]}Slot")(field.slot, number, 0)
        for field, offset in offsets:
            self.b.PrependUOffsetTRelativeSlot(field.slot, offset, 0)
        return Ref(name, self.b.EndObject())

    def finish(self, root: Ref) -> bytes:
        if root.kind != "ModelMetadata":
            raise schema.SchemaError(f"the root of TFLite metadata is a ModelMetadata, not {root.kind}")
        self.b.Finish(root.offset, file_identifier=schema.METADATA_IDENTIFIER)
        return bytes(self.b.Output())


def _ref(value: Any) -> Ref:
    if not isinstance(value, Ref):
        raise schema.SchemaError(f"{value!r} was not written by MetadataWriter")
    return value


# ------------------------------------------------------------------ an image classifier's metadata


@dataclass
class ClassifierInfo:
    name: str
    version: str
    description: str
    labels: list[str]
    input_size: tuple[int, int]  # height, width
    # (mean, std) per channel for float input: model value = (pixel - mean) / std.
    # None for uint8 input (the model takes raw pixels).
    normalization: tuple[float, float] | None
    author: str = "imgtool"
    license: str = ""


def _stats(w: MetadataWriter, lo: float, hi: float) -> Ref:
    return w.table("Stats", max=w.floats([hi]), min=w.floats([lo]))


def _output_tensor(w: MetadataWriter, classes: int) -> Ref:
    """Probabilities, with the labels along axis 1."""
    labels = w.table(
        "AssociatedFile",
        name=w.string(LABELS_FILE),
        description=w.string("Labels for categories that the model can recognize."),
        type="TENSOR_AXIS_LABELS",
    )
    content = w.table("Content", content_properties=w.table("FeatureProperties"))
    return w.table(
        "TensorMetadata",
        name=w.string("probability"),
        description=w.string(f"Probabilities of the {classes} labels respectively."),
        content=content,
        stats=_stats(w, 0.0, 1.0),
        associated_files=w.vector([labels]),
    )


def _input_tensor(w: MetadataWriter, size: tuple[int, int], normalization: tuple[float, float] | None) -> Ref:
    """An RGB image, normalised when the input is float."""
    height, width = size
    image = w.table("ImageProperties", color_space="RGB", default_size=w.table("ImageSize", width=width, height=height))
    content = w.table("Content", content_properties=image)  # before the strings: the order decides the bytes
    fields = {"name": w.string("image"), "description": w.string("Input image to be classified."), "content": content}
    if normalization is not None:
        mean, std = normalization
        options = w.table("NormalizationOptions", mean=w.floats([mean]), std=w.floats([std]))
        fields["process_units"] = w.vector([w.table("ProcessUnit", options=options)])
        fields["stats"] = _stats(w, *schema.value_range_for(mean, std))
    else:
        fields["stats"] = _stats(w, 0.0, 255.0)
    return w.table("TensorMetadata", **fields)


def classifier_metadata(info: ClassifierInfo) -> bytes:
    """The ModelMetadata flatbuffer (identifier M001) of an image classifier."""
    w = MetadataWriter()
    output = _output_tensor(w, len(info.labels))
    image = _input_tensor(w, info.input_size, info.normalization)
    subgraph = w.table(
        "SubGraphMetadata", input_tensor_metadata=w.vector([image]), output_tensor_metadata=w.vector([output])
    )
    fields = {
        "name": w.string(info.name),
        "description": w.string(info.description),
        "version": w.string(info.version),
        "subgraph_metadata": w.vector([subgraph]),
        "author": w.string(info.author),
        "min_parser_version": w.string(schema.MIN_PARSER_VERSION),
    }
    if info.license:
        fields["license"] = w.string(info.license)
    return w.finish(w.table("ModelMetadata", **fields))


# ------------------------------------------------------------------ the model flatbuffer


class ModelEdit:
    """A model flatbuffer opened for editing through LiteRT's object API (schema.ModelT);
    tensors and operators go into its first subgraph."""

    def __init__(self, model: bytes):
        from ai_edge_litert import schema_py_generated as tfl
        from ai_edge_litert.tools import flatbuffer_utils

        self.tfl = tfl
        self.model = flatbuffer_utils.read_model_from_bytearray(bytearray(model))

    @property
    def graph(self) -> Any:
        return self.model.subgraphs[0]

    def buffer(self, data: bytes) -> int:
        """A new buffer holding `data`: its index."""
        buf = self.tfl.BufferT()
        buf.data = np.frombuffer(data, dtype=np.uint8)
        self.model.buffers.append(buf)
        return len(self.model.buffers) - 1

    def opcode(self, builtin: int, version: int = 1) -> int:
        """The index of the builtin operator's code (added when new; its version raised to
        at least `version`)."""
        for i, code in enumerate(self.model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and code.customCode is None:
                code.version = max(code.version, version)
                return i
        self.model.operatorCodes.append(
            self.tfl.OperatorCodeT(deprecatedBuiltinCode=min(builtin, 127), builtinCode=builtin, version=version)
        )
        return len(self.model.operatorCodes) - 1

    def quantization(self, scale: float | list[float], zero: int | list[int]) -> Any:
        q = self.tfl.QuantizationParametersT()
        q.scale = [float(s) for s in np.atleast_1d(scale)]
        q.zeroPoint = [int(z) for z in np.atleast_1d(zero)]
        return q

    def tensor(self, name: str, shape: list[int], ttype: int, data: np.ndarray | None = None, quant: Any = None) -> int:
        """A new tensor: a constant holding `data`, else an activation (the empty buffer 0)."""
        t = self.tfl.TensorT()
        t.name, t.shape, t.type = name, list(shape), ttype
        t.buffer = 0 if data is None else self.buffer(np.ascontiguousarray(data).tobytes())
        if quant is not None:
            t.quantization = quant
        self.graph.tensors.append(t)
        return len(self.graph.tensors) - 1

    def op(
        self, opcode: int, inputs: list[int], outputs: list[int], options_type: int = 0, options: Any = None
    ) -> None:
        op = self.tfl.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode, inputs, outputs
        op.builtinOptionsType, op.builtinOptions = options_type, options
        self.graph.operators.append(op)

    def set_output(self, tensor: int, name: str) -> None:
        """`tensor` as the graph's one output, and every signature's, under `name`."""
        self.graph.outputs = [tensor]
        for sig in self.model.signatureDefs or []:
            out = self.tfl.TensorMapT()
            out.name, out.tensorIndex = name, tensor
            sig.outputs = [out]

    def to_bytes(self) -> bytes:
        from ai_edge_litert.tools import flatbuffer_utils

        return bytes(flatbuffer_utils.convert_object_to_bytearray(self.model))


def _name(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value or "")


def attach(model: bytes, info: ClassifierInfo) -> bytes:
    """The model with `info` as its TFLITE_METADATA buffer (replacing any earlier one)
    and labels.txt packed as an associated file."""
    edit = ModelEdit(flatbuffer_part(model))
    entry = edit.tfl.MetadataT()
    entry.name = schema.METADATA_NAME
    entry.buffer = edit.buffer(classifier_metadata(info))
    edit.model.metadata = [m for m in (edit.model.metadata or []) if _name(m.name) != schema.METADATA_NAME] + [entry]
    out = io.BytesIO()
    out.write(edit.to_bytes())
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:  # offsets from the file start
        # a fixed timestamp: the same model and labels give the same bytes
        member = zipfile.ZipInfo(LABELS_FILE, date_time=(1980, 1, 1, 0, 0, 0))
        member.compress_type = zipfile.ZIP_STORED
        zf.writestr(member, "\n".join(info.labels) + "\n")
    return out.getvalue()
