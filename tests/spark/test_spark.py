"""imgtool.spark in Spark local[2]: the UDFs' records against `imgtool classify` itself
(the installed command, a real subprocess) on the real fixtures.

Run in .venv-spark (`make test-spark`); tests/conftest.py leaves this folder out where
pyspark is not installed. That venv has no TensorFlow, so every test here also shows
that neither the driver nor the executors need it."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run

pytestmark = pytest.mark.spark

UPSCALED = "sunflowers/7176729812_7c053921fb_m.jpg"  # 159x240: resized up to 224x224, where Pillows differ


def classify_cli(model: str, paths: list[str], *args: str) -> dict[str, dict]:
    """`imgtool classify --format jsonl` records by path."""
    res = run("classify", "--format", "jsonl", "-q", "-m", model, *args, *paths)
    assert res.returncode in (0, 1), res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(records) == len(paths)
    return {r["path"]: r for r in records}


def spark_records(df, column: str = "path") -> dict[str, dict]:  # noqa: ANN001 - a DataFrame with `pred`
    from imgtool.spark import classify_record

    out = {}
    for r in df.collect():
        path = r[column].removeprefix("file:")  # binaryFile names local files file:/...
        out[path] = classify_record(path, r.pred)
    return out


@pytest.fixture(scope="module")
def photo_set(fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every flowers-mini photo, the ImageNet photos, a broken file and a missing path;
    and their `imgtool classify` records (one CLI run for the module)."""
    extra = tmp_path_factory.mktemp("extra")
    (extra / "broken.jpg").write_bytes(b"this is not a JPEG")
    flowers = sorted(str(p) for p in (fixtures / "flowers-mini").rglob("*.jpg"))
    imagenet = sorted(str(p) for p in (fixtures / "imagenet" / "images").iterdir() if p.suffix in (".jpg", ".bmp"))
    paths = [*flowers, *imagenet, str(extra / "broken.jpg"), str(extra / "missing.jpg")]
    model = str(fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite")
    return {
        "paths": paths,
        "extra": extra,
        "want": classify_cli(model, paths),
        "flowers": flowers,
        "imagenet": imagenet,
    }


def test_no_tensorflow_here() -> None:
    """The venv these tests run in: pyspark, LiteRT, no TensorFlow (so nothing here used it)."""
    assert importlib.util.find_spec("pyspark") is not None
    assert importlib.util.find_spec("tensorflow") is None


def test_import_imgtool_and_imgtool_spark_never_import_pyspark() -> None:
    import subprocess
    import sys

    code = (
        "import sys, imgtool, imgtool.spark; imgtool.load_model; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j', 'pandas', 'tensorflow')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_classify_paths_give_imgtool_classifys_records(spark, mobilenet: str, photo_set: dict) -> None:
    from imgtool.spark import classify_udf

    paths = photo_set["paths"]
    want = photo_set["want"]
    assert len(paths) == 250 + 4 + 2 and any(p.endswith(UPSCALED) for p in paths)
    assert want[str(photo_set["extra"] / "broken.jpg")] == {
        "path": str(photo_set["extra"] / "broken.jpg"),
        "error": "not an image Pillow can read (unknown or corrupt format)",
    }
    assert want[str(photo_set["extra"] / "missing.jpg")]["error"] == "no such file or directory"
    udf = classify_udf(mobilenet, top_k=5)
    # 5 partitions, batches of 8: photos meet other photos in other batches than classify's
    df = spark.createDataFrame([(p,) for p in paths], "path string").repartition(5)
    got = spark_records(df.select("path", udf("path").alias("pred")))
    assert got == want  # the same labels, scores, order and errors, one record per photo
    top1 = {Path(p).name: r["predictions"][0]["label"] for p, r in got.items() if p in photo_set["imagenet"]}
    assert top1 == {
        "cat.bmp": "Egyptian cat",
        "grace_hopper.bmp": "military uniform",
        "parrot.jpg": "macaw",
        "sunflower.bmp": "daisy",
    }


def test_classify_binary_file_content_gives_the_same_records(
    spark, mobilenet: str, fixtures: Path, photo_set: dict
) -> None:
    from imgtool.core.store import sha256_file
    from imgtool.spark import classify_udf

    shutil.copy(fixtures / "imagenet" / "images" / "parrot.jpg", photo_set["extra"] / "parrot.jpg")
    udf = classify_udf(mobilenet)  # a second UDF of the same model: shipped once (same sha256 name)
    files = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .load([str(fixtures / "flowers-mini"), str(photo_set["extra"])])
    )
    got = spark_records(files.select("path", udf("content").alias("pred")))
    want = {p: r for p, r in photo_set["want"].items() if "/flowers-mini/" in p or p.endswith("broken.jpg")}
    parrot = photo_set["want"][str(fixtures / "imagenet" / "images" / "parrot.jpg")]
    want[str(photo_set["extra"] / "parrot.jpg")] = {**parrot, "path": str(photo_set["extra"] / "parrot.jpg")}
    assert len(got) == 252 and got == want
    shipped = [Path(f).name for f in spark.sparkContext.listFiles]
    assert shipped.count(sha256_file(mobilenet) + ".tflite") == 1


def test_top_k_scores_labels_and_ship_by_path(
    spark, mobilenet: str, fixtures: Path, photo_set: dict, tmp_path: Path
) -> None:
    """top_k, scores and labels reach the UDF as `-k`, `--scores` and `--labels` reach
    classify; ship="path" reads the model where the driver resolved it."""
    from imgtool.spark import classify_udf

    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"L{i}\n" for i in range(1001)))
    paths = photo_set["imagenet"]
    want = classify_cli(mobilenet, paths, "-k", "3", "--scores", "logits", "--labels", str(labels))
    udf = classify_udf(mobilenet, top_k=3, scores="logits", labels=str(labels), ship="path")
    got = spark_records(
        spark.createDataFrame([(p,) for p in paths], "path string").select("path", udf("path").alias("pred"))
    )
    assert got == want
    assert all(len(r["predictions"]) == 3 and r["predictions"][0]["label"].startswith("L") for r in got.values())
    assert max(r["predictions"][0]["score"] for r in got.values()) < 0.01  # softmax over 1001 probabilities


def test_a_loaded_model_and_rows_that_are_not_photos(spark, mobilenet: str, photo_set: dict) -> None:
    import imgtool
    from imgtool.spark import NO_PHOTO, classify_udf

    udf = classify_udf(imgtool.load_model(mobilenet), top_k=2)
    df = spark.createDataFrame([(str(photo_set["extra"]),), (None,), (photo_set["imagenet"][0],)], "path string")
    rows = df.select("path", udf("path").alias("pred")).collect()
    folder, null, photo = (r.pred for r in rows)
    assert folder.error.startswith("is a folder, not a photo") and folder.labels == [None, None]
    assert folder.scores == [None, None] and folder.indexes == [None, None]
    assert null.error == NO_PHOTO
    assert photo.error is None and photo.labels[0] == "Egyptian cat" and len(photo.labels) == 2


def test_features_are_retrains_bottlenecks(spark, embedder: str, photo_set: dict, tmp_path: Path) -> None:
    """features_udf gives each photo the vector imgtool retrain computes and caches."""
    from imgtool.core.store import sha256_file
    from imgtool.models.resolve import resolve
    from imgtool.runtime.bottlenecks import BottleneckCache, extract
    from imgtool.spark import features_udf

    paths = [*photo_set["flowers"][::10], str(photo_set["extra"] / "broken.jpg")]
    engine = resolve(embedder, purpose="features").engine()
    good = paths[:-1]
    want = {
        good[i]: vec
        for i, vec, err in extract(
            engine, good, [sha256_file(p) for p in good], BottleneckCache("t", tmp_path / "cache")
        )
    }
    assert len(want) == 25
    udf = features_udf(embedder, batch_size=4)
    df = spark.createDataFrame([(p,) for p in paths], "path string").repartition(3)
    got = {r.path: r.f for r in df.select("path", udf("path").alias("f")).collect()}
    for p in good:
        assert got[p].error is None
        assert np.array_equal(np.asarray(got[p].features, dtype=np.float32), want[p]), p
    broken = got[paths[-1]]
    assert broken.error == "not an image Pillow can read (unknown or corrupt format)"
    assert len(broken.features) == 1024 and set(broken.features) == {None}
    # binary content: the same vectors
    files = spark.read.format("binaryFile").load(good[:3])
    for r in files.select("path", udf("content").alias("f")).collect():
        assert np.array_equal(np.asarray(r.f.features, dtype=np.float32), want[r.path.removeprefix("file:")])


def test_a_retrained_folder_ships_its_backbone_and_head(spark, embedder: str, fixtures: Path, tmp_path: Path) -> None:
    """A folder written by `imgtool retrain` (here without TensorFlow: no TF exports) runs
    on the executors as backbone.tflite + head.npz, both shipped, with classify's records."""
    import imgtool
    from imgtool.core.store import sha256_file
    from imgtool.spark import classify_udf

    data = tmp_path / "data"
    for cls in ("daisy", "roses"):
        (data / cls).mkdir(parents=True)
        for f in sorted((fixtures / "flowers-mini" / cls).glob("*.jpg"))[:10]:
            shutil.copy(f, data / cls / f.name)
    folder = imgtool.retrain(
        data, output=tmp_path / "model", model=embedder, tf_exports=False, validation_percent=0, test_percent=20
    ).output
    assert folder is not None and (folder / "head.npz").is_file()
    paths = sorted(str(p) for p in (fixtures / "flowers-mini" / "tulips").glob("*.jpg"))[:12]
    paths += sorted(str(p) for p in (fixtures / "flowers-mini" / "daisy").glob("*.jpg"))[-4:]
    want = classify_cli(str(folder), paths)
    udf = classify_udf(str(folder), top_k=2)
    got = spark_records(
        spark.createDataFrame([(p,) for p in paths], "path string")
        .repartition(2)
        .select("path", udf("path").alias("pred"))
    )
    assert got == want
    assert {p["label"] for r in got.values() for p in r["predictions"]} == {"daisy", "roses"}
    shipped = {Path(f).name for f in spark.sparkContext.listFiles}
    assert {sha256_file(folder / "head.npz") + ".npz", sha256_file(folder / "backbone.tflite") + ".tflite"} <= shipped


def test_the_schemas_are_the_documented_ones() -> None:
    from imgtool.spark import CLASSIFY_SCHEMA, FEATURES_SCHEMA, classify_schema, features_schema
    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "scale-out.md").read_text()
    for text, struct in ((CLASSIFY_SCHEMA, classify_schema()), (FEATURES_SCHEMA, features_schema())):
        assert f"`{text}`" in doc
        assert struct.simpleString() == "struct<" + text.replace(", ", ",").replace(" ", ":") + ">"
