"""model.tflite for every retrained model: metadata, quantization, `imgtool export`, and
an outside client (MediaPipe Tasks' ImageClassifier, in its own venv) agreeing with imgtool.

The exports are built once per module: the shared MobileNet V1 embedding extractor (uint8)
on flowers-mini, and a generated TF feature-vector SavedModel (float, ~1 MB of weights) on
generated colour photos; both retrained with --quantize int8."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgtool.training import page_parts
from tests.conftest import ROOT, invoke, run

EMBEDDER = "embedding/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
MP_PYTHON = ROOT / ".venv-mediapipe" / "bin" / "python"
MP_SCRIPT = ROOT / "tests" / "support" / "mediapipe_classify.py"


# ------------------------------------------------------------------ unit: metadata


def _embedder_bytes(fixtures: Path) -> bytes:
    return (fixtures / EMBEDDER).read_bytes()


def test_normalization_maps_pixels_onto_the_value_range() -> None:
    from imgtool.tflite.schema import normalization_for, value_range_for

    assert normalization_for((-1.0, 1.0)) == (127.5, 127.5)
    assert normalization_for((0.0, 1.0)) == (0.0, 255.0)
    assert normalization_for((-1.0, 0.9921875)) == (128.0, 128.0)
    assert value_range_for(127.5, 127.5) == (-1.0, 1.0)
    assert value_range_for(0.0, 255.0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        normalization_for((1.0, 1.0))


def test_metadata_round_trip_and_packed_labels(fixtures: Path, tmp_path: Path) -> None:
    from ai_edge_litert import schema_py_generated as tfl

    from imgtool.data.labels import embedded_tflite_labels
    from imgtool.tflite import reading, schema, writing

    info = writing.ClassifierInfo(
        "flowers", "0.1.0", "five flowers", ["daisy", "rose"], (224, 200), schema.normalization_for((-1.0, 1.0))
    )
    once = writing.attach(_embedder_bytes(fixtures), info)
    meta = reading.metadata(once)
    assert meta is not None
    assert (meta.name, meta.description, meta.version, meta.author, meta.license, meta.min_parser_version) == (
        "flowers",
        "five flowers",
        "0.1.0",
        "imgtool",
        "",
        "1.0.0",
    )
    assert meta.normalization == (127.5, 127.5)
    assert [t.files for t in meta.outputs] == [(("labels.txt", "TENSOR_AXIS_LABELS"),)]
    info.labels, info.normalization, info.version = ["a", "b", "c"], None, "2"
    twice = writing.attach(once, info)  # replaces the metadata and the packed files
    meta = reading.metadata(twice)
    assert meta is not None and meta.version == "2" and meta.normalization is None
    model = tfl.Model.GetRootAs(twice, 0)
    names = [model.Metadata(i).Name().decode() for i in range(model.MetadataLength())]
    assert names.count("TFLITE_METADATA") == 1
    with zipfile.ZipFile(io.BytesIO(twice)) as zf:
        (entry,) = zf.infolist()
        assert entry.filename == "labels.txt" and zf.read(entry) == b"a\nb\nc\n"
        # offsets count from the start of the file, as MetadataPopulator writes them
        assert entry.header_offset == len(reading.flatbuffer_part(twice)) > 1_000_000
    (tmp_path / "m.tflite").write_bytes(twice)
    assert embedded_tflite_labels(tmp_path / "m.tflite") == ["a", "b", "c"]
    assert reading.file_value_range(tmp_path / "m.tflite") == {}
    (tmp_path / "n.tflite").write_bytes(once)
    # a uint8 input takes raw pixels: its NormalizationOptions describe the float model
    assert reading.file_value_range(tmp_path / "n.tflite") == {}
    assert reading.metadata(_embedder_bytes(fixtures)) is None


# ------------------------------------------------------------------ unit: numbers


def test_quantize_uint8_exact() -> None:
    from imgtool.tflite.head import quantize_uint8

    q, scale, zero = quantize_uint8(np.array([-1.0, 0.0, 0.5, 1.0]), -1.0, 1.0)
    assert scale == 2.0 / 255.0 and zero == 128
    assert q.tolist() == [0, 128, 192, 255]
    q, scale, zero = quantize_uint8(np.array([0.2, 0.6]), 0.2, 0.6)  # 0.0 is always representable
    assert scale == 0.6 / 255.0 and zero == 0 and q.tolist() == [85, 255]
    q, scale, zero = quantize_uint8(np.array([-3.0, -1.0]), -3.0, -1.0)
    assert scale == 3.0 / 255.0 and zero == 255 and q.tolist() == [0, 170]


def test_constant_feature_gets_zero_weight() -> None:
    """A dead feature used to fold into weights of ~1e4 (w / 1e-6), which made every
    quantized export of a ReLU backbone useless."""
    from imgtool.training.fitting import fit

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    x = np.stack([y + 0.3 * rng.standard_normal(40), np.zeros(40), np.full(40, 2.5)], axis=1)
    head, _ = fit(x.astype(np.float32), y, 2, 0.1)
    assert head.weights[1].tolist() == [0.0, 0.0] and head.weights[2].tolist() == [0.0, 0.0]
    assert abs(float(head.weights[0, 1] - head.weights[0, 0])) > 0.5  # the informative feature decides
    assert (head.predict(x).argmax(axis=1) == y).mean() >= 0.9


def test_nearly_dead_feature_is_not_scaled_up_past_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """One photo of 40 fires a feature at 0.01: without the floor its raw weight dwarfs
    the informative feature's, with it it stays below."""
    from imgtool.training import fitting as train_mod

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    dead = np.zeros(40)
    dead[3] = 0.01
    x = np.stack(
        [y + 0.3 * rng.standard_normal(40), rng.standard_normal(40), rng.standard_normal(40), dead], axis=1
    ).astype(np.float32)
    floored = np.abs(train_mod.fit(x, y, 2, 0.1)[0].weights).max(axis=1)
    assert floored[3] < 0.2 * floored[0]
    monkeypatch.setattr(train_mod, "SD_FLOOR_FRACTION", 0.0)
    unfloored = np.abs(train_mod.fit(x, y, 2, 0.1)[0].weights).max(axis=1)
    assert unfloored[3] > 20 * unfloored[0]


def test_the_floor_only_touches_mostly_constant_features() -> None:
    from imgtool.training.fitting import standard_deviations

    plain = np.array([1.0, 3.0, 5.0, 7.0, 9.0, 2.0, 4.0, 6.0, 8.0, 0.0])
    dead = np.array([0.0] * 9 + [0.01])  # 9 of 10 photos at 0
    tiny = np.array([0.001, 0.002, 0.0, 0.001, 0.0, 0.002, 0.001, 0.0, 0.001, 0.002])  # small but alive
    x = np.stack([dead, plain, 2 * plain, tiny], axis=1)
    sd = standard_deviations(x)
    floor = 0.1 * float(np.median(x.std(axis=0)))
    assert floor > 10 * dead.std()
    assert sd[0] == pytest.approx(floor + 1e-6, rel=1e-12)  # nearly dead: floored
    assert sd[1] == pytest.approx(plain.std() + 1e-6, rel=1e-12)  # a plain feature keeps its std
    assert sd[3] == pytest.approx(tiny.std() + 1e-6, rel=1e-12)  # below the floor but alive: its units are its own
    assert standard_deviations(np.ones((5, 2))).tolist() == [1.0, 1.0]  # constant: scale 1


def test_append_head_to_a_quantized_backbone_matches_the_two_step_run(fixtures: Path) -> None:
    from ai_edge_litert import schema_py_generated as schema

    from imgtool.core.errors import ModelError
    from imgtool.data import images
    from imgtool.numbers.scores import softmax
    from imgtool.runtime.engine import LiteRTEngine
    from imgtool.tflite.head import append_head

    rng = np.random.default_rng(3)
    w = (0.05 * rng.standard_normal((1024, 4))).astype(np.float32)
    b = np.array([0.1, -0.2, 0.0, 0.3], np.float32)
    backbone = _embedder_bytes(fixtures)
    photos = np.stack(
        [images.decode(str(p), (224, 224)) for p in sorted((fixtures / "flowers-mini" / "roses").iterdir())[:6]]
    )
    feats = LiteRTEngine(fixtures / EMBEDDER).run(photos)
    want = softmax(feats @ w + b)
    data = append_head(backbone, w, b)
    m = schema.Model.GetRootAs(data, 0)
    ops = [
        m.OperatorCodes(m.Subgraphs(0).Operators(i).OpcodeIndex()).BuiltinCode()
        for i in range(m.Subgraphs(0).OperatorsLength())
    ][-4:]
    assert ops == [
        schema.BuiltinOperator.DEQUANTIZE,
        schema.BuiltinOperator.RESHAPE,
        schema.BuiltinOperator.FULLY_CONNECTED,
        schema.BuiltinOperator.SOFTMAX,
    ]
    got = _run_bytes(data, photos)
    assert np.max(np.abs(got - want)) < 1e-5
    assert got.argmax(axis=1).tolist() == want.argmax(axis=1).tolist()
    q = append_head(backbone, w, b, "int8", calibration_features=feats)
    out = _details(q)["output"]
    assert out["dtype"] == np.uint8 and out["quantization"] == (1 / 256, 0)
    got8 = _run_bytes(q, photos)
    assert np.max(np.abs(got8 - want)) < 0.03
    for mode in ("dynamic", "float16"):
        assert np.max(np.abs(_run_bytes(append_head(backbone, w, b, mode), photos) - want)) < 0.01
    with pytest.raises(ModelError, match="1024 features; the head expects 10"):
        append_head(backbone, w[:10], b)


def _details(data: bytes) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    return {"input": it.get_input_details()[0], "output": it.get_output_details()[0]}


def _run_bytes(data: bytes, photos: np.ndarray) -> np.ndarray:
    import tempfile

    from imgtool.runtime.engine import LiteRTEngine

    with tempfile.NamedTemporaryFile(suffix=".tflite") as tmp:
        tmp.write(data)
        tmp.flush()
        return LiteRTEngine(Path(tmp.name)).run(photos)


# ------------------------------------------------------------------ the exported folders


@pytest.fixture(scope="module")
def module_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("export-home")
    return {"IMGTOOL_HOME": str(home), "IMGTOOL_NO_PROGRESS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "IMGTOOL_OFFLINE": "1"}


@pytest.fixture(scope="module")
def flowers_model(fixtures: Path, tmp_path_factory: pytest.TempPathFactory, module_env: dict[str, str]) -> Path:
    out = tmp_path_factory.mktemp("flowers") / "flowers-model"
    res = run(
        "retrain",
        str(fixtures / "flowers-mini"),
        "-m",
        str(fixtures / EMBEDDER),
        "-o",
        str(out),
        "--quantize",
        "int8",
        env=module_env,
    )
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="module")
def tf_model(tmp_path_factory: pytest.TempPathFactory, module_env: dict[str, str]) -> Path:
    from tests.support import modelgen

    base = tmp_path_factory.mktemp("tfbackbone")
    backbone = modelgen.make_hub_mlp_feature_vector(base / "mlp_feature_vector")
    data = modelgen.make_colour_folders(base / "colours")
    out = base / "colours-model"
    res = run(
        "retrain",
        str(data),
        "-m",
        str(backbone),
        "-o",
        str(out),
        "--quantize",
        "int8",
        "--epochs",
        "100",
        "--learning-rate",
        "0.01",
        env=module_env,
    )
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(params=["mobilenet_v1_uint8", "tf_float"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue("flowers_model" if request.param == "mobilenet_v1_uint8" else "tf_model")


@pytest.fixture(scope="session")
def mediapipe_python() -> Path:
    """MediaPipe Tasks in its own venv (its pins may fight ours): `make install-mediapipe`."""
    ok = (
        MP_PYTHON.exists()
        and subprocess.run([str(MP_PYTHON), "-c", "import mediapipe"], capture_output=True).returncode == 0
    )
    if not ok:
        res = subprocess.run(["make", "install-mediapipe"], cwd=ROOT, capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            msg = f"could not install MediaPipe into {MP_PYTHON.parent.parent}: {res.stderr[-500:]}"
            if os.environ.get("CI"):
                pytest.fail(msg)
            pytest.skip(msg)
    return MP_PYTHON


def _test_split(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The test photos (paths), decoded at the model's size, and their labels."""
    from imgtool.models import retrained
    from imgtool.training import export_checks

    meta = retrained.read(folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    test, _, why = export_checks.split_photos(folder, meta, metrics)
    assert why is None and len(test) == metrics["test"]["count"]
    photos, kept = export_checks.decode_all([p for p, _ in test], meta.input_size)
    assert len(kept) == len(test)
    return [p for p, _ in test], photos, np.array([label for _, label in test])


def _exports(folder: Path) -> dict[str, dict[str, Any]]:
    return {r["file"]: r for r in json.loads((folder / "metrics.json").read_text())["exports"]}


def _mediapipe_top1(python: Path, model: Path, photos: np.ndarray, workdir: Path) -> list[tuple[int, str]]:
    """MediaPipe on the photos as imgtool decoded them (same size: no resize of its own)."""
    from PIL import Image

    workdir.mkdir(exist_ok=True)
    paths = []
    for i, arr in enumerate(photos):
        paths.append(str(workdir / f"{i:03}.png"))
        Image.fromarray(arr).save(paths[-1])
    res = subprocess.run([str(python), str(MP_SCRIPT), str(model), *paths], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert [r["path"] for r in rows] == paths
    return [(r["index"], r["name"]) for r in rows]


@pytest.mark.heavy
def test_every_export_is_recorded_with_size_and_accuracy(model_dir: Path) -> None:
    from imgtool.training.export_checks import engine_for

    _, photos, labels = _test_split(model_dir)
    records = _exports(model_dir)
    assert sorted(records) == ["model-int8.tflite", "model.tflite"]
    for name, r in records.items():
        assert r["bytes"] == (model_dir / name).stat().st_size
        assert r["test_count"] == len(labels)
        acc = float(np.mean(engine_for(model_dir / name).run(photos).argmax(axis=1) == labels))
        assert r["test_accuracy"] == round(acc, 4)
        assert r["float_test_accuracy"] == records["model.tflite"]["test_accuracy"]
    flt = records["model.tflite"]
    assert flt["quantize"] == "none" and flt["top1_agreement_vs_imgtool"] == 1.0
    assert flt["max_prob_diff_vs_imgtool"] < 1e-4
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert flt["test_accuracy"] == metrics["test"]["accuracy"]  # the float file is the trained model
    from imgtool.tflite import reading

    trained_on = Path(json.loads((model_dir / "imgtool-model.json").read_text())["image_dir"]).name
    for name in records:
        meta = reading.metadata(model_dir / name)
        assert meta is not None and meta.name == f"{trained_on} classifier (imgtool retrain)"
        assert meta.outputs[0].files == (("labels.txt", "TENSOR_AXIS_LABELS"),)
    html = (model_dir / "report.html").read_text()
    assert "Exported .tflite files" in html and "model-int8.tflite" in html


@pytest.mark.heavy
def test_int8_of_a_tf_backbone_stays_close_to_the_float_model(tf_model: Path) -> None:
    """The int8 file of a TF backbone (converter calibrated on the training photos) gives
    probabilities within 0.015 of the float file's on every photo of the folder. Top-1 cannot
    tell a bad calibration here (the four colours are too easy), the probabilities can.
    Measured on these photos: correct calibration 0.0033 (test) / 0.0036 (train); planted change
    this catches, calibration on one real photo plus zeros (`representative()` yielding
    zeros for photos[1:]): 0.042 / 0.046 (on 60 real flowers-mini photos: 0.005 against 0.13)."""
    from imgtool.models import retrained
    from imgtool.training import export_checks
    from imgtool.training.export_checks import engine_for

    meta = retrained.read(tf_model)
    metrics = json.loads((tf_model / "metrics.json").read_text())
    test, train_paths, why = export_checks.split_photos(tf_model, meta, metrics)
    assert why is None and len(train_paths) >= 50
    photos, kept = export_checks.decode_all([p for p, _ in test] + train_paths, meta.input_size)
    assert len(kept) == len(test) + len(train_paths)
    p_float = engine_for(tf_model / "model.tflite").run(photos)
    p_int8 = engine_for(tf_model / "model-int8.tflite").run(photos)
    assert np.abs(p_float - p_int8).max() < 0.015
    assert _exports(tf_model)["model-int8.tflite"]["max_prob_diff_vs_imgtool"] < 0.015


# MediaPipe's generated reader of metadata_schema.fbs, on the metadata bytes in argv[1]:
# every field that is set, as JSON (strings decoded, float vectors as lists)
_MP_READ_METADATA = """
import json, sys
import numpy as np
from mediapipe.tasks.metadata import metadata_schema_py_generated as m

def plain(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, list):
        return [plain(x) for x in v]
    if hasattr(v, "__dict__"):
        out = {k: plain(x) for k, x in vars(v).items()}
        return {k: x for k, x in out.items() if x not in (None, 0, "", [])}
    return v

print(json.dumps(plain(m.ModelMetadataT.InitFromPackedBuf(open(sys.argv[1], "rb").read(), 0))))
"""


def _camel(fields: Any) -> Any:
    """A dump's snake_case field names as flatc's Python object API spells them."""
    if isinstance(fields, list):
        return [_camel(x) for x in fields]
    if not isinstance(fields, dict):
        return fields
    return {k.split("_")[0] + "".join(w.title() for w in k.split("_")[1:]): _camel(v) for k, v in fields.items()}


@pytest.mark.parametrize("normalization", [(127.5, 127.5), None])
@pytest.mark.heavy
def test_mediapipe_reads_the_metadata_as_imgtool_does(
    mediapipe_python: Path, tmp_path: Path, normalization: tuple[float, float] | None
) -> None:
    """An outside reader (MediaPipe's flatc-generated one) finds every field where
    imgtool's table put it: slots, kinds, union tags and enum values."""
    from imgtool.tflite import reading, writing
    from tests.test_tflite_formats import dump

    data = writing.classifier_metadata(
        writing.ClassifierInfo(
            "flowers", "0.1.0", "five flowers", ["a", "b", "c"], (224, 200), normalization, license="MIT"
        )
    )
    (tmp_path / "metadata.bin").write_bytes(data)
    res = subprocess.run(
        [str(mediapipe_python), "-c", _MP_READ_METADATA, str(tmp_path / "metadata.bin")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    theirs = json.loads(res.stdout)
    assert theirs["subgraphMetadata"][0]["outputTensorMetadata"][0]["associatedFiles"][0]["type"] == 2
    assert theirs == _camel(dump(reading.View.root("ModelMetadata", data), raw=True))


@pytest.mark.heavy
def test_the_schema_table_is_the_published_metadata_schema(mediapipe_python: Path) -> None:
    """schema.py's tables, enums and unions, field by field in declaration order, against
    the metadata_schema.fbs that MediaPipe ships."""
    import re

    from imgtool.tflite import schema

    generated = "from mediapipe.tasks.metadata import metadata_schema_py_generated as g; print(g.__file__)"
    where = subprocess.run([str(mediapipe_python), "-c", generated], capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    fbs = re.sub(r"//[^\n]*", "", (Path(where.stdout.strip()).parent / "metadata_schema.fbs").read_text())
    assert 'file_identifier "M001";' in fbs
    blocks = {(m[1], m[2]): m[3] for m in re.finditer(r"\b(table|union|enum)\s+(\w+)[^{]*\{([^}]*)\}", fbs)}
    for name, table in schema.TABLES.items():
        declared = []
        for statement in blocks[("table", name)].split(";"):
            if m := re.match(r"\s*(\w+)\s*:\s*([\w\[\]]+)", statement):
                declared += [(f"{m[1]}_type", "ubyte")] if m[2] in schema.UNIONS else []
                declared.append((m[1], m[2]))
        assert [(f.name, f.kind) for f in table.fields.values()] == declared, name
    for name, members in schema.UNIONS.items():
        assert tuple(re.findall(r"\w+", blocks[("union", name)])) == members, name
    for name, (base, values) in schema.ENUMS.items():
        assert re.search(rf"enum\s+{name}\s*:\s*{base}\b", fbs), name
        assert dict((k, int(v)) for k, v in re.findall(r"(\w+)\s*=\s*(\d+)", blocks[("enum", name)])) == values, name


@pytest.mark.heavy
def test_mediapipe_top1_equals_imgtool(model_dir: Path, mediapipe_python: Path, tmp_path: Path) -> None:
    from imgtool.training.export_checks import engine_for

    _, photos, _ = _test_split(model_dir)
    classes = json.loads((model_dir / "imgtool-model.json").read_text())["classes"]
    for name in ("model.tflite", "model-int8.tflite"):
        ours = engine_for(model_dir / name).run(photos).argmax(axis=1).tolist()
        theirs = _mediapipe_top1(mediapipe_python, model_dir / name, photos, tmp_path / name)
        assert [i for i, _ in theirs] == ours, name
        assert [n for _, n in theirs] == [classes[i] for i in ours], name  # the labels from the metadata


@pytest.mark.heavy
def test_int8_is_full_integer_small_and_accurate(model_dir: Path) -> None:
    from imgtool.tflite import reading
    from imgtool.training.export_checks import engine_for

    flt, q = model_dir / "model.tflite", model_dir / "model-int8.tflite"
    d = _details(q.read_bytes())
    assert d["input"]["dtype"] == np.uint8 and d["output"]["dtype"] == np.uint8
    assert d["output"]["quantization"] == (1 / 256, 0)
    assert reading.metadata(q).normalization is None  # uint8 input: raw pixels
    records = _exports(model_dir)
    _, photos, labels = _test_split(model_dir)
    if model_dir.name.startswith("colours"):  # a float backbone: everything is quantized
        float_norm = reading.metadata(flt).normalization
        assert float_norm == (0.0, 255.0)  # the generated backbone takes [0, 1]
        assert q.stat().st_size <= 0.35 * flt.stat().st_size
        assert abs(records["model-int8.tflite"]["test_accuracy"] - records["model.tflite"]["test_accuracy"]) <= 0.03
        return
    # the uint8 MobileNet backbone is kept as it is: only the appended layer shrinks
    backbone = (model_dir / "backbone.tflite").stat().st_size
    assert q.stat().st_size - backbone <= 0.35 * (flt.stat().st_size - backbone)
    # uint8 probabilities have 1/256 steps: a photo may change class only if its float top
    # two are closer than two of them, and at most one such photo here
    p_float, p_int8 = engine_for(flt).run(photos), engine_for(q).run(photos)
    top2 = np.sort(p_float, axis=1)[:, -2:]
    flipped = np.flatnonzero(p_float.argmax(axis=1) != p_int8.argmax(axis=1))
    assert all(top2[i, 1] - top2[i, 0] < 2 / 256 for i in flipped)
    assert abs(int(np.sum(p_float.argmax(axis=1) == labels)) - int(np.sum(p_int8.argmax(axis=1) == labels))) <= 1
    assert np.max(np.abs(p_float - p_int8)) < 0.02


@pytest.mark.heavy
def test_classify_the_file_gives_the_folders_top1(model_dir: Path) -> None:
    paths, _, _ = _test_split(model_dir)
    classes = json.loads((model_dir / "imgtool-model.json").read_text())["classes"]

    def top1(model: Path) -> list[str]:
        res = run("classify", "-m", str(model), "-f", "jsonl", "-k", "1", *paths)
        assert res.returncode == 0, res.stderr
        return [json.loads(x)["predictions"][0]["label"] for x in res.stdout.splitlines()]

    assert top1(model_dir) == top1(model_dir / "model.tflite")
    labels = invoke("labels", "-m", str(model_dir / "model.tflite")).stdout.splitlines()
    assert labels == [f"{i}\t{c}" for i, c in enumerate(classes)]


# ------------------------------------------------------------------ imgtool export


@pytest.mark.heavy
def test_export_command(flowers_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(flowers_model, folder)
    out = tmp_path / "elsewhere" / "f16.tflite"
    res = invoke("export", str(folder), "--quantize", "float16", "-o", str(out), "-f", "json")
    assert res.exit_code == 0, res.output
    (record,) = json.loads(res.stdout)
    assert record["file"] == str(out) and record["bytes"] == out.stat().st_size and record["quantize"] == "float16"
    assert record["note"].startswith("only the appended layer is quantized")
    assert record["float_test_accuracy"] == _exports(folder)["model.tflite"]["test_accuracy"]
    assert abs(record["test_accuracy"] - record["float_test_accuracy"]) <= 0.05
    assert _exports(folder)[str(out)] == record
    text = invoke("export", str(folder), "--quantize", "dynamic")
    assert text.exit_code == 0 and (folder / "model-dynamic.tflite").is_file()
    assert "exported model-dynamic.tflite:" in text.stdout and "test accuracy" in text.stdout
    assert (
        text.stderr.strip().splitlines()[-1]
        == f"report: {folder / 'report.html'} (its exports table lists the new file)"
    )
    # report.html is drawn again from metrics.json: its table lists both new files, the mistakes stay
    html = (folder / "report.html").read_text()
    table = html[html.index("Exported .tflite files") :]
    table = table[: table.index("</table>")]
    for name in ("model.tflite", "model-int8.tflite", "model-dynamic.tflite", page_parts.esc(str(out))):
        assert f'<td class="name">{name}</td>' in table, name
    mistakes = json.loads((folder / "metrics.json").read_text())["misclassified"]
    assert f"Misclassified test photos ({len(mistakes)})" in html
    # the photos are gone: the file is still written, the accuracy is unknown
    meta = json.loads((folder / "imgtool-model.json").read_text())
    meta["image_dir"] = str(tmp_path / "gone")
    (folder / "imgtool-model.json").write_text(json.dumps(meta))
    (folder / "model.tflite").unlink()
    gone = invoke("export", str(folder), "-f", "json")
    assert gone.exit_code == 0, gone.output
    (record,) = json.loads(gone.stdout)
    assert record["test_accuracy"] is None and "test accuracy unknown" in record["note"]
    assert (folder / "model.tflite").is_file()
    no_calibration = run("export", str(folder), "--quantize", "int8")
    assert no_calibration.returncode == 2
    assert no_calibration.stderr.strip().splitlines()[-1].startswith("Error: int8 needs calibration")


@pytest.mark.heavy
def test_failed_quantized_export_keeps_the_model_and_says_why(
    tf_model: Path, tmp_path: Path, module_env: dict[str, str]
) -> None:
    """Without saved_model/ (--no-export) a float TF backbone cannot be made int8: the
    folder, its float model.tflite and the record of both are still written."""
    meta = json.loads((tf_model / "imgtool-model.json").read_text())
    out = tmp_path / "plain"
    res = run(
        "retrain",
        meta["image_dir"],
        "-m",
        meta["backbone"]["ref"],
        "-o",
        str(out),
        "--no-export",
        "--quantize",
        "int8",
        "--epochs",
        "5",
        "-f",
        "json",
        env=module_env,
    )
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert "warning: model-int8.tflite export skipped (int8 needs a uint8-quantized .tflite backbone" in res.stderr
    records = json.loads((out / "metrics.json").read_text())["exports"]
    assert [r["file"] for r in records] == ["model.tflite", "model-int8.tflite"]
    assert records[0]["method"] == "flatbuffer" and records[0]["top1_agreement_vs_imgtool"] == 1.0
    assert "error" in records[1] and not (out / "model-int8.tflite").exists()
    assert json.loads(res.stdout)["exports"] == records


@pytest.mark.heavy
def test_export_errors(tmp_path: Path) -> None:
    res = run("export", str(tmp_path))
    assert res.returncode == 2 and res.stderr.strip().startswith("Error: ") and "imgtool retrain" in res.stderr
    assert "Traceback" not in res.stderr
    bad = run("export", str(tmp_path), "--quantize", "int4")
    assert bad.returncode == 2 and "int4" in bad.stderr


@pytest.mark.heavy
def test_export_checks_are_reused_only_for_the_same_bytes_and_photos(
    flowers_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An identical rerun reuses an export's test-split figures (no decoding); other
    bytes (a changed head) or other photos are measured again."""
    from imgtool.training import export_checks, tflite_model

    folder = tmp_path / "copy"
    shutil.copytree(flowers_model, folder)
    decoded: list[int] = []
    real_decode_all = export_checks.decode_all

    def counting(paths: list[str], size: tuple[int, int]) -> Any:
        decoded.append(len(paths))
        return real_decode_all(paths, size)

    monkeypatch.setattr(export_checks, "decode_all", counting)
    first = [r.record(folder) for r in tflite_model.export_model_dir(folder)]
    assert decoded and decoded[0] > 0  # a miss: the test photos were decoded and run
    decoded.clear()
    again = [r.record(folder) for r in tflite_model.export_model_dir(folder)]
    assert again == first and decoded == []  # a hit: same bytes, same photos, same figures
    with np.load(folder / "head.npz") as npz:
        w, b = npz["weights"], npz["bias"]
    np.savez(folder / "head.npz", weights=w[:, ::-1], bias=b[::-1])  # another head: other bytes
    changed = [r.record(folder) for r in tflite_model.export_model_dir(folder)]
    assert decoded and changed[0]["test_accuracy"] != first[0]["test_accuracy"]


@pytest.mark.heavy
def test_the_same_model_gives_the_same_bytes(fixtures: Path) -> None:
    """Exports are compared and cached by their bytes: nothing time-dependent inside."""
    import time

    from imgtool.tflite import writing

    info = writing.ClassifierInfo("m", "1", "d", ["a", "b"], (224, 224), None)
    first = writing.attach(_embedder_bytes(fixtures), info)
    time.sleep(2.1)  # zip timestamps have a 2-second resolution
    assert writing.attach(_embedder_bytes(fixtures), info) == first
