"""imgtool/tflite/ at the library: the metadata writer and reader share schema.py's table
(every field written reads back by name; a name or kind the table has not is caught),
and the graph is read from the flatbuffer. MediaPipe's own reader and the published
metadata_schema.fbs check the table from outside (tests/test_tflite_export.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgtool.tflite import reading, schema, writing

EMBEDDER = "embedding/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"


def dump(view: reading.View, raw: bool = False) -> dict[str, Any]:
    """Every field of a metadata table that is present, read by name through the table
    (tables and vectors of tables as dicts; enums by name, or by number when `raw`)."""
    out: dict[str, Any] = {}
    for name, field in view.table.fields.items():
        value = view.get(name)
        if isinstance(value, reading.View):
            value = dump(value, raw)
        elif isinstance(value, list) and value and isinstance(value[0], reading.View):
            value = [dump(v, raw) for v in value]
        elif field.kind in schema.ENUMS:
            if value == schema.enum_name(field.kind, 0):
                continue
            value = schema.enum_value(field.kind, value) if raw else value
        if value in (None, 0, "", []):
            continue
        out[name] = value
    return out


def _info(normalization: tuple[float, float] | None, license: str = "") -> writing.ClassifierInfo:
    return writing.ClassifierInfo(
        "flowers", "0.1.0", "five flowers", ["daisy", "rose"], (224, 200), normalization, license=license
    )


def _image(**more: Any) -> dict[str, Any]:
    return {
        "name": "image",
        "description": "Input image to be classified.",
        "content": {
            "content_properties_type": 2,  # ImageProperties
            "content_properties": {"color_space": "RGB", "default_size": {"width": 200, "height": 224}},
        },
        **more,
    }


PROBABILITY = {
    "name": "probability",
    "description": "Probabilities of the 2 labels respectively.",
    "content": {"content_properties_type": 1, "content_properties": {}},  # FeatureProperties (no fields)
    "stats": {"max": [1.0], "min": [0.0]},
    "associated_files": [
        {
            "name": "labels.txt",
            "description": "Labels for categories that the model can recognize.",
            "type": "TENSOR_AXIS_LABELS",
        }
    ],
}


def test_every_field_the_writer_writes_reads_back_through_the_table() -> None:
    data = writing.classifier_metadata(_info(schema.normalization_for((-1.0, 1.0)), license="Apache-2.0"))
    assert data[4:8] == schema.METADATA_IDENTIFIER
    image = _image(
        process_units=[
            {
                "options_type": 1,  # NormalizationOptions
                "options": {"mean": [127.5], "std": [127.5]},
            }
        ],
        stats={"max": [1.0], "min": [-1.0]},
    )
    assert dump(reading.View.root("ModelMetadata", data)) == {
        "name": "flowers",
        "description": "five flowers",
        "version": "0.1.0",
        "author": "imgtool",
        "license": "Apache-2.0",
        "min_parser_version": "1.0.0",
        "subgraph_metadata": [{"input_tensor_metadata": [image], "output_tensor_metadata": [PROBABILITY]}],
    }
    # a uint8 input takes raw pixels: no NormalizationOptions, stats 0..255; no licence, none written
    raw = dump(reading.View.root("ModelMetadata", writing.classifier_metadata(_info(None))))
    assert "license" not in raw
    assert raw["subgraph_metadata"] == [
        {
            "input_tensor_metadata": [_image(stats={"max": [255.0], "min": [0.0]})],
            "output_tensor_metadata": [PROBABILITY],
        }
    ]


def test_the_typed_reader_gives_what_the_writer_wrote() -> None:
    meta = reading.parse_metadata(writing.classifier_metadata(_info((128.0, 128.0))))
    assert meta == reading.ModelMetadata(
        "flowers",
        "five flowers",
        "0.1.0",
        "imgtool",
        "",
        "1.0.0",
        (reading.TensorMetadata("image", "Input image to be classified.", (), (128.0, 128.0)),),
        (
            reading.TensorMetadata(
                "probability", "Probabilities of the 2 labels respectively.", (("labels.txt", "TENSOR_AXIS_LABELS"),)
            ),
        ),
    )
    assert meta.normalization == (128.0, 128.0) and meta.outputs[0].label_files == ("labels.txt",)
    assert reading.parse_metadata(b"\x10\x00\x00\x00M002" + bytes(16)) is None  # another identifier
    assert reading.parse_metadata(b"\x10\x00\x00\x00M001" + bytes(8)) is None  # damaged: says nothing


def test_a_name_or_kind_not_in_the_table_is_caught() -> None:
    w = writing.MetadataWriter()
    with pytest.raises(schema.SchemaError, match="Stats has no field 'maximum'"):
        w.table("Stats", maximum=w.floats([1.0]))
    with pytest.raises(schema.SchemaError, match="no table 'Statistics'"):
        w.table("Statistics")
    with pytest.raises(schema.SchemaError, match=r"TensorMetadata.stats is Stats, not string"):
        w.table("TensorMetadata", stats=w.string("0..1"))
    with pytest.raises(schema.SchemaError, match="ProcessUnitOptions has no member 'Stats'"):
        w.table("ProcessUnit", options=w.table("Stats"))
    with pytest.raises(schema.SchemaError, match="AssociatedFileType has no value 'LABELS'"):
        w.table("AssociatedFile", type="LABELS")
    with pytest.raises(schema.SchemaError, match="not written by MetadataWriter"):
        w.table("TensorMetadata", content=12)  # a bare offset: its kind cannot be checked
    with pytest.raises(schema.SchemaError, match="a ModelMetadata, not Stats"):
        w.finish(w.table("Stats"))
    view = reading.View.root("ModelMetadata", writing.classifier_metadata(_info(None)))
    with pytest.raises(schema.SchemaError, match="ModelMetadata has no field 'title'"):
        view.get("title")


def test_a_field_missing_from_the_table_is_an_error_not_a_model_without_metadata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reader catches what a damaged file raises, never a gap in its own table."""
    data = writing.classifier_metadata(_info(None))
    tensor = schema.TABLES["TensorMetadata"]
    monkeypatch.setitem(
        schema.TABLES,
        "TensorMetadata",
        schema.Table(
            "TensorMetadata",
            " ".join(f"{f.name}:{f.kind}" for f in tensor.fields.values() if f.name != "associated_files"),
        ),
    )
    with pytest.raises(schema.SchemaError, match="TensorMetadata has no field 'associated_files'"):
        reading.parse_metadata(data)


def test_slots_follow_declaration_order_and_unions_take_two() -> None:
    content = schema.table("Content")
    assert [(f.name, f.kind, f.slot) for f in content.fields.values()] == [
        ("content_properties_type", "ubyte", 0),
        ("content_properties", "ContentProperties", 1),
        ("range", "ValueRange", 2),
    ]
    assert schema.table("ModelMetadata").field("min_parser_version").slot == 7
    assert schema.table("TensorMetadata").field("associated_files").slot == 6
    assert schema.union_tag("ContentProperties", "ImageProperties") == 2
    assert schema.enum_value("AssociatedFileType", "TENSOR_AXIS_LABELS") == 2
    assert schema.enum_name("AssociatedFileType", 99) == "99"  # a newer schema's value: kept as its number


def test_the_graph_is_read_from_the_flatbuffer(fixtures: Path, tmp_path: Path) -> None:
    path = fixtures / EMBEDDER
    assert reading.graph_input(path) == reading.TensorFacts(0, (1, 224, 224, 3), "UINT8", 0.0078125, 128)
    out, writer = reading.graph_output(path)
    assert (out.shape, out.dtype, out.zero_point, writer) == ((1, 1, 1, 1024), "UINT8", 0, "AVERAGE_POOL_2D")
    assert reading.graph_output(path.read_bytes()) == (out, writer)  # bytes or a path: the same
    assert reading.output_producer(path, out.index) == "AVERAGE_POOL_2D"
    assert reading.metadata(path) is None  # no TFLITE_METADATA
    junk, empty = tmp_path / "junk.tflite", tmp_path / "empty.tflite"
    junk.write_bytes(b"\x04\x00\x00\x00TFL3" + bytes(8))
    empty.write_bytes(b"")
    for bad in (junk, empty, junk.read_bytes()):
        with pytest.raises(reading.NotAModel if bad != empty else ValueError):
            reading.graph_output(bad)
        assert reading.output_producer(bad, 0) is None and reading.metadata(bad) is None
        assert reading.file_value_range(bad) == {}
    with pytest.raises(OSError):
        reading.graph_input(tmp_path)  # a folder: not a regular file


def test_backbone_kind_reads_the_graph_without_an_interpreter(fixtures: Path, tmp_path: Path) -> None:
    from imgtool.training.backbone_kind import classifier_reason, tflite_output

    assert tflite_output(fixtures / EMBEDDER) == (1024, "AVERAGE_POOL_2D")
    assert tflite_output(fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite") == (1001, "SOFTMAX")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x04\x00\x00\x00TFL3" + bytes(8))

    class Unknown:  # a model whose catalog record says nothing about its output
        class config:
            output = None

        tflite, labels = str(junk), None

    assert classifier_reason(Unknown) is None  # unreadable: the engine reports it properly


def test_flatbuffer_part_drops_only_packed_files(fixtures: Path) -> None:
    plain = (fixtures / EMBEDDER).read_bytes()
    assert reading.flatbuffer_part(plain) is plain
    packed = writing.attach(plain, _info(None))
    part = reading.flatbuffer_part(packed)
    assert len(part) < len(packed) and packed.startswith(part)
    assert reading.metadata(part) == reading.metadata(packed) is not None  # the metadata is in the flatbuffer


def test_model_edit_keeps_a_model_it_does_not_change(fixtures: Path) -> None:
    """The object API round trip the head and the metadata are written through."""
    data = writing.ModelEdit((fixtures / EMBEDDER).read_bytes()).to_bytes()
    assert reading.graph_input(data) == reading.graph_input(fixtures / EMBEDDER)
    assert reading.graph_output(data) == reading.graph_output(fixtures / EMBEDDER)


@pytest.mark.parametrize(
    "quantize, ops",
    [
        ("none", ["DEQUANTIZE", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]),
        ("dynamic", ["DEQUANTIZE", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]),
        ("float16", ["DEQUANTIZE", "RESHAPE", "DEQUANTIZE", "DEQUANTIZE", "FULLY_CONNECTED", "SOFTMAX"]),
        ("int8", ["RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]),
    ],
)
def test_each_head_appends_its_operators(fixtures: Path, quantize: str, ops: list[str]) -> None:
    from ai_edge_litert import schema_py_generated as tfl

    from imgtool.tflite.head import append_head

    backbone = (fixtures / EMBEDDER).read_bytes()
    n_ops = tfl.Model.GetRootAs(backbone, 0).Subgraphs(0).OperatorsLength()
    rng = np.random.default_rng(0)
    w, b = (0.05 * rng.standard_normal((1024, 3))).astype(np.float32), np.zeros(3, np.float32)
    feats = rng.uniform(0, 6, (8, 1024)).astype(np.float32)
    data = append_head(backbone, w, b, quantize, calibration_features=feats)  # type: ignore[arg-type]
    model = tfl.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in vars(tfl.BuiltinOperator).items() if isinstance(v, int)}
    added = [
        names[model.OperatorCodes(graph.Operators(i).OpcodeIndex()).BuiltinCode()]
        for i in range(n_ops, graph.OperatorsLength())
    ]
    assert added == ops
    out, writer = reading.graph_output(data)
    assert writer == "SOFTMAX" and out.shape == (1, 3)
    assert (out.dtype, out.scale, out.zero_point) == (
        ("UINT8", 1 / 256, 0) if quantize == "int8" else ("FLOAT32", None, None)
    )
