"""TFLite ModelMetadata for an image classifier, written from the published schema.

The schema is tensorflow/tflite-support's `metadata_schema.fbs` (Apache-2.0; file
identifier "M001", schema 1.5.0). The maintained writer (MediaPipe's `metadata_writers`)
does not work in the MediaPipe we can install beside our pins (1.2.2 lacks its compiled
metadata module) and `tflite-support` is unmaintained, so the few tables an image
classifier needs are written here with the `flatbuffers` Builder, field slots as in the
schema. What gets written is what tflite-support's `ImageClassifierWriter` writes:

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
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any

METADATA_NAME = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"
LABELS_FILE = "labels.txt"

# enum values and union tags from metadata_schema.fbs
ASSOCIATED_FILE_TENSOR_AXIS_LABELS = 2
COLOR_SPACE_RGB = 1
CONTENT_FEATURE_PROPERTIES = 1
CONTENT_IMAGE_PROPERTIES = 2
PROCESS_UNIT_NORMALIZATION = 1


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


def normalization_for(value_range: tuple[float, float]) -> tuple[float, float]:
    """mean/std that map pixels 0..255 onto [lo, hi]: (0 - mean)/std = lo, (255 - mean)/std = hi."""
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise ValueError(f"value range {value_range} is empty")
    std = 255.0 / (hi - lo)
    return -lo * std, std


def value_range_for(mean: float, std: float) -> tuple[float, float]:
    return (0.0 - mean) / std, (255.0 - mean) / std


# ------------------------------------------------------------------ writing

def _floats(b: Any, values: list[float]) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependFloat32(float(v))
    return b.EndVector()


def _offsets(b: Any, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _table(b: Any, n_slots: int, offsets: dict[int, int], scalars: dict[int, tuple[str, Any]] | None = None) -> int:
    """A table: `offsets` {slot: child offset}, `scalars` {slot: (Prepend*Slot name, value)}."""
    b.StartObject(n_slots)
    for slot, (kind, value) in (scalars or {}).items():
        getattr(b, f"Prepend{kind}Slot")(slot, value, 0)
    for slot, off in offsets.items():
        b.PrependUOffsetTRelativeSlot(slot, off, 0)
    return b.EndObject()


def _stats(b: Any, lo: float, hi: float) -> int:
    mx, mn = _floats(b, [hi]), _floats(b, [lo])
    return _table(b, 2, {0: mx, 1: mn})  # Stats { max:[float]; min:[float] }


def build(info: ClassifierInfo) -> bytes:
    """The ModelMetadata flatbuffer (identifier M001)."""
    import flatbuffers

    b = flatbuffers.Builder(1024)
    s = b.CreateString
    # output: probabilities, labels along axis 1
    labels = _table(b, 5, {0: s(LABELS_FILE), 1: s("Labels for categories that the model can recognize.")},
                    {2: ("Int8", ASSOCIATED_FILE_TENSOR_AXIS_LABELS)})  # AssociatedFile{name, description, type}
    feature = _table(b, 0, {})
    out_content = _table(b, 3, {1: feature}, {0: ("Uint8", CONTENT_FEATURE_PROPERTIES)})
    out_tensor = _table(b, 7, {0: s("probability"),
                               1: s(f"Probabilities of the {len(info.labels)} labels respectively."),
                               3: out_content, 5: _stats(b, 0.0, 1.0), 6: _offsets(b, [labels])})
    # input: an RGB image, normalised when the input is float
    h, w = info.input_size
    size = _table(b, 2, {}, {0: ("Uint32", w), 1: ("Uint32", h)})  # ImageSize{width, height}
    image_props = _table(b, 2, {1: size}, {0: ("Int8", COLOR_SPACE_RGB)})
    in_content = _table(b, 3, {1: image_props}, {0: ("Uint8", CONTENT_IMAGE_PROPERTIES)})
    in_fields = {0: s("image"), 1: s("Input image to be classified."), 3: in_content}
    if info.normalization is not None:
        mean, std = info.normalization
        norm = _table(b, 2, {0: _floats(b, [mean]), 1: _floats(b, [std])})
        unit = _table(b, 2, {1: norm}, {0: ("Uint8", PROCESS_UNIT_NORMALIZATION)})
        in_fields[4] = _offsets(b, [unit])
        lo, hi = value_range_for(mean, std)
        in_fields[5] = _stats(b, lo, hi)
    else:
        in_fields[5] = _stats(b, 0.0, 255.0)
    in_tensor = _table(b, 7, in_fields)
    subgraph = _table(b, 5, {2: _offsets(b, [in_tensor]), 3: _offsets(b, [out_tensor])})
    fields = {0: s(info.name), 1: s(info.description), 2: s(info.version), 3: _offsets(b, [subgraph]),
              4: s(info.author), 7: s(MIN_PARSER_VERSION)}
    if info.license:
        fields[5] = s(info.license)
    root = _table(b, 8, fields)
    b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def attach(model: bytes, info: ClassifierInfo) -> bytes:
    """The model with `info` as its TFLITE_METADATA buffer (replacing any earlier one)
    and labels.txt packed as an associated file."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(_strip_zip(model)))
    buf = schema.BufferT()
    import numpy as np

    buf.data = np.frombuffer(build(info), dtype=np.uint8)
    obj.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(obj.buffers) - 1
    obj.metadata = [m for m in (obj.metadata or []) if _name(m.name) != METADATA_NAME] + [entry]
    packed = bytes(flatbuffer_utils.convert_object_to_bytearray(obj))
    out = io.BytesIO()
    out.write(packed)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:  # offsets from the file start
        # a fixed timestamp: the same model and labels give the same bytes (exports are
        # compared and cached by their bytes)
        entry = zipfile.ZipInfo(LABELS_FILE, date_time=(1980, 1, 1, 0, 0, 0))
        entry.compress_type = zipfile.ZIP_STORED
        zf.writestr(entry, "\n".join(info.labels) + "\n")
    return out.getvalue()


def _name(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value or "")


def _strip_zip(model: bytes) -> bytes:
    """A model that already has packed files: the flatbuffer part only."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as zf:
            first = min((i.header_offset for i in zf.infolist()), default=None)
    except zipfile.BadZipFile:
        return model
    return model if first is None else model[:first]


# ------------------------------------------------------------------ reading

def read(model: bytes) -> dict[str, Any] | None:
    """The fields imgtool uses from a model's metadata, or None when it has none:
    name, version, description, min_parser_version, input normalization (mean, std)
    or None, and the output's associated files [(name, type)]."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        m = schema.Model.GetRootAs(model, 0)
        buf = None
        for i in range(m.MetadataLength()):
            meta = m.Metadata(i)
            if _name(meta.Name()) == METADATA_NAME:
                b = m.Buffers(meta.Buffer())
                buf = bytes(model[b.Offset():b.Offset() + b.Size()]) if b.Offset() else b.DataAsNumpy().tobytes()
        if buf is None or len(buf) < 8 or buf[4:8] != FILE_IDENTIFIER:
            return None
        root = _root(buf)
        subgraph = _vector_tables(root, 3)[0]
        in_tensor = _vector_tables(subgraph, 2)[0]
        out_tensor = _vector_tables(subgraph, 3)[0]
        normalization = None
        for unit in _vector_tables(in_tensor, 4):
            if _scalar(unit, 0, "Uint8") == PROCESS_UNIT_NORMALIZATION:
                norm = _union(unit, 1)
                normalization = (_float_vector(norm, 0)[0], _float_vector(norm, 1)[0])
        files = [(_string(f, 0), _scalar(f, 2, "Int8")) for f in _vector_tables(out_tensor, 6)]
        return {"name": _string(root, 0), "description": _string(root, 1), "version": _string(root, 2),
                "min_parser_version": _string(root, 7), "normalization": normalization, "output_files": files}
    except Exception:  # noqa: BLE001 - a damaged file has no usable metadata; loading it says what is wrong
        return None


def file_value_range(path: Any) -> dict[str, tuple[float, float]]:
    """{"value_range": (lo, hi)} from a .tflite's input NormalizationOptions, else {}.

    Only for a float input: as in the TFLite Task Library, a quantized (uint8/int8)
    input takes the raw pixels and its quantization is the mapping; its NormalizationOptions
    (the shared MobileNet V2 has mean 127.5, std 127.5) describe the float model it came
    from, and applying them would re-round every pixel (cat.bmp 0.789 -> 0.754)."""
    from imgtool import files

    try:
        with files.open_regular(path) as fh:
            model = fh.read()
    except (OSError, files.FileProblem):
        return {}
    meta = read(model)
    if not meta or not meta["normalization"] or not _input_is_float(model):
        return {}
    mean, std = meta["normalization"]
    return {"value_range": value_range_for(mean, std)} if std else {}


def _input_is_float(model: bytes) -> bool:
    from ai_edge_litert import schema_py_generated as schema

    try:
        m = schema.Model.GetRootAs(model, 0)
        sub = m.Subgraphs(0)
        return bool(sub.Tensors(sub.Inputs(0)).Type() == schema.TensorType.FLOAT32)
    except Exception:  # noqa: BLE001 - unreadable: no normalization taken from it
        return False


def _root(buf: bytes) -> Any:
    from flatbuffers import encode, number_types, table

    n = encode.Get(number_types.UOffsetTFlags.packer_type, buf, 0)
    return table.Table(buf, n)


def _field(t: Any, slot: int) -> int:
    return t.Offset(4 + 2 * slot)


def _scalar(t: Any, slot: int, kind: str) -> Any:
    from flatbuffers import number_types

    o = _field(t, slot)
    return t.Get(getattr(number_types, f"{kind}Flags"), o + t.Pos) if o else 0


def _string(t: Any, slot: int) -> str | None:
    o = _field(t, slot)
    return t.String(o + t.Pos).decode("utf-8") if o else None


def _vector_tables(t: Any, slot: int) -> list[Any]:
    from flatbuffers import table

    o = _field(t, slot)
    if not o:
        return []
    start = t.Vector(o)
    return [table.Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(t.VectorLen(o))]


def _union(t: Any, slot: int) -> Any:
    from flatbuffers import table

    o = _field(t, slot)
    out = table.Table(bytearray(), 0)
    t.Union(out, o)
    return out


def _float_vector(t: Any, slot: int) -> list[float]:
    from flatbuffers import number_types

    o = _field(t, slot)
    if not o:
        return []
    start = t.Vector(o)
    return [t.Get(number_types.Float32Flags, start + 4 * i) for i in range(t.VectorLen(o))]
