"""The TFLite formats' names and fields, each defined once.

The model flatbuffer (`schema.fbs`) is read and written through LiteRT's generated
`schema_py_generated`. Its TFLite metadata (`metadata_schema.fbs` of
tensorflow/tflite-support, Apache-2.0; identifier "M001", schema 1.5.0) has no generated
module we can install beside our pins, so the tables imgtool reads or writes are
transcribed here, every field in declaration order: a field's slot is its position,
and a union field takes two slots (`<name>_type`, then the value), as flatc numbers
them. `reading.View` and `writing.MetadataWriter` find every slot and kind here; a name
not in the table is a SchemaError, never a guessed slot.

Also here: what a NormalizationOptions means (model value = (pixel - mean) / std)."""

from __future__ import annotations

from dataclasses import dataclass

MODEL_IDENTIFIER = b"TFL3"  # schema.fbs file_identifier: bytes 4..8 of a .tflite
METADATA_NAME = "TFLITE_METADATA"  # the model's `metadata` entry whose buffer is the ModelMetadata
METADATA_IDENTIFIER = b"M001"  # metadata_schema.fbs file_identifier
MIN_PARSER_VERSION = "1.0.0"  # every field imgtool writes exists since schema 1.0.0

# flatbuffers scalar types -> the Builder's Prepend<Name>Slot / number_types.<Name>Flags
SCALARS = {
    "bool": "Bool",
    "byte": "Int8",
    "ubyte": "Uint8",
    "short": "Int16",
    "ushort": "Uint16",
    "int": "Int32",
    "uint": "Uint32",
    "long": "Int64",
    "ulong": "Uint64",
    "float": "Float32",
    "double": "Float64",
}

# enum name -> (underlying scalar type, {value name: number})
ENUMS: dict[str, tuple[str, dict[str, int]]] = {
    "AssociatedFileType": (
        "byte",
        {
            "UNKNOWN": 0,
            "DESCRIPTIONS": 1,
            "TENSOR_AXIS_LABELS": 2,
            "TENSOR_VALUE_LABELS": 3,
            "TENSOR_AXIS_SCORE_CALIBRATION": 4,
            "VOCABULARY": 5,
            "SCANN_INDEX_FILE": 6,
        },
    ),
    "ColorSpaceType": ("byte", {"UNKNOWN": 0, "RGB": 1, "GRAYSCALE": 2}),
}

# union name -> its member tables, in declaration order (type tag = position + 1; 0 is NONE)
UNIONS: dict[str, tuple[str, ...]] = {
    "ContentProperties": ("FeatureProperties", "ImageProperties", "BoundingBoxProperties", "AudioProperties"),
    "ProcessUnitOptions": (
        "NormalizationOptions",
        "ScoreCalibrationOptions",
        "ScoreThresholdingOptions",
        "BertTokenizerOptions",
        "SentencePieceTokenizerOptions",
        "RegexTokenizerOptions",
    ),
}


class SchemaError(LookupError):
    """A table or field that is not in imgtool's transcription of the schema (a bug here,
    not a damaged file: never caught as one)."""


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # the .fbs type: "string", a scalar, an enum, a table, a union, "[T]" for a vector of T
    slot: int


class Table:
    """One table of the schema: `declared` is its fields as the .fbs writes them,
    "name:type" separated by spaces, in declaration order."""

    def __init__(self, name: str, declared: str):
        self.name = name
        self.fields: dict[str, Field] = {}
        for item in declared.split():
            field, kind = item.split(":")
            if kind in UNIONS:
                self._add(f"{field}_type", "ubyte")
            self._add(field, kind)

    def _add(self, name: str, kind: str) -> None:
        self.fields[name] = Field(name, kind, len(self.fields))

    def field(self, name: str) -> Field:
        try:
            return self.fields[name]
        except KeyError:
            raise SchemaError(f"{self.name} has no field {name!r} in imgtool's table of metadata_schema.fbs") from None

    @property
    def slots(self) -> int:
        return len(self.fields)


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table("AssociatedFile", "name:string description:string type:AssociatedFileType locale:string version:string"),
        Table("FeatureProperties", ""),
        Table("ImageSize", "width:uint height:uint"),
        Table("ImageProperties", "color_space:ColorSpaceType default_size:ImageSize"),
        Table("Content", "content_properties:ContentProperties range:ValueRange"),
        Table("NormalizationOptions", "mean:[float] std:[float]"),
        Table("ProcessUnit", "options:ProcessUnitOptions"),
        Table("Stats", "max:[float] min:[float]"),
        Table(
            "TensorMetadata",
            "name:string description:string dimension_names:[string] content:Content "
            "process_units:[ProcessUnit] stats:Stats associated_files:[AssociatedFile]",
        ),
        Table(
            "SubGraphMetadata",
            "name:string description:string input_tensor_metadata:[TensorMetadata] "
            "output_tensor_metadata:[TensorMetadata] associated_files:[AssociatedFile] "
            "input_process_units:[ProcessUnit] output_process_units:[ProcessUnit] "
            "input_tensor_groups:[TensorGroup] output_tensor_groups:[TensorGroup] "
            "custom_metadata:[CustomMetadata]",
        ),
        Table(
            "ModelMetadata",
            "name:string description:string version:string subgraph_metadata:[SubGraphMetadata] "
            "author:string license:string associated_files:[AssociatedFile] "
            "min_parser_version:string",
        ),
    )
}


def table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise SchemaError(f"no table {name!r} in imgtool's table of metadata_schema.fbs") from None


def enum_value(enum: str, name: str) -> int:
    values = ENUMS[enum][1]
    if name not in values:
        raise SchemaError(f"{enum} has no value {name!r} in imgtool's table of metadata_schema.fbs")
    return values[name]


def enum_name(enum: str, value: int) -> str:
    """The name of `value` (its number as text when the schema we know has no such value)."""
    return next((k for k, v in ENUMS[enum][1].items() if v == value), str(value))


def union_tag(union: str, member: str) -> int:
    if member not in UNIONS[union]:
        raise SchemaError(f"{union} has no member {member!r} in imgtool's table of metadata_schema.fbs")
    return UNIONS[union].index(member) + 1


# ------------------------------------------------------------------ NormalizationOptions


def normalization_for(value_range: tuple[float, float]) -> tuple[float, float]:
    """mean/std that map pixels 0..255 onto [lo, hi]: (0 - mean)/std = lo, (255 - mean)/std = hi."""
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise ValueError(f"value range {value_range} is empty")
    std = 255.0 / (hi - lo)
    return -lo * std, std


def value_range_for(mean: float, std: float) -> tuple[float, float]:
    return (0.0 - mean) / std, (255.0 - mean) / std
