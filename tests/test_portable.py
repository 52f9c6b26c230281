"""imgtool.inference.portable (a model prepared on a driver, run on a worker) and the parts of
imgtool.spark that need no Spark: the same decisions, ranking and errors as classify."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgtool.core.errors import ModelError, UsageError


def test_a_classifier_made_portable_keeps_classifys_decision(mobilenet: str) -> None:
    import imgtool
    from imgtool.core.store import sha256_file
    from imgtool.inference.portable import from_classifier

    model = imgtool.load_model(mobilenet)
    p = from_classifier(model.classifier)
    assert p.output == model.scores == "probabilities"
    assert p.width == 1001 and list(p.labels) == model.labels and p.input_size == (224, 224)
    assert p.tflite == Path(mobilenet) and p.tflite_sha256 == sha256_file(mobilenet) and p.head is None


def test_the_worker_engine_and_ranking_are_classifys(mobilenet: str, photos: Path) -> None:
    import imgtool
    from imgtool.data.images import decode
    from imgtool.inference.portable import from_classifier, open_engine, top_k
    from imgtool.numbers.scores import to_scores

    clf = imgtool.load_model(mobilenet).classifier
    p = from_classifier(clf)
    batch = np.stack([decode(str(photos / name), p.input_size) for name in ("cat.bmp", "parrot.jpg")])
    scores = to_scores(open_engine(p, mobilenet, None, threads=1).run(batch), p.output)
    assert np.array_equal(scores, clf.scores(batch))
    ties = np.zeros(1001, np.float32)
    ties[[89, 5, 700]] = [0.9, 0.05, 0.05]
    for row in (*scores, ties):
        assert top_k(p, row, 5) == clf.top_k(row, 5)  # Classifier.top_k itself, over the same labels


def test_a_changed_or_missing_copy_is_refused(mobilenet: str, tmp_path: Path) -> None:
    import imgtool
    from imgtool.inference.portable import from_classifier, open_engine

    p = from_classifier(imgtool.load_model(mobilenet).classifier)
    copy = tmp_path / "copy.tflite"
    shutil.copy(mobilenet, copy)
    with copy.open("r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        fh.write(b"\x00" if fh.read(1) != b"\x00" else b"\x01")
    with pytest.raises(ModelError, match="not the model that was prepared"):
        open_engine(p, str(copy), None, threads=1)
    with pytest.raises(ModelError, match="cannot read the copy"):
        open_engine(p, str(tmp_path / "gone.tflite"), None, threads=1)


def test_features_need_a_feature_extractor(embedder: str, mobilenet: str) -> None:
    from imgtool.inference.portable import for_features
    from imgtool.models.resolve import resolve

    p = for_features(resolve(embedder, purpose="features"))
    assert p.output == "features" and p.width == 1024 and len(p.backbone_id) == 20
    with pytest.raises(ModelError, match="classifier without a feature-vector twin"):
        for_features(resolve(mobilenet, purpose="features"))


def test_a_rows_photo_fails_as_it_fails_in_classify(photos: Path, tmp_path: Path) -> None:
    """Path rows get classify's errors for what classify lists; content rows decode as
    the file of those bytes would."""
    from imgtool.data import images
    from imgtool.spark import FOLDER, NO_PHOTO, pixels

    (tmp_path / "broken.jpg").write_bytes(b"not a JPEG")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "dangling.jpg")
    os.mkfifo(tmp_path / "fifo.jpg")
    listed = {
        i.path: i.error
        for i in images.expand_inputs([str(tmp_path / n) for n in ("missing.jpg", "dangling.jpg", "fifo.jpg")])
    }
    for path, error in listed.items():
        assert error and pixels(path, (224, 224)) == (None, error)
    arr, err = pixels(str(tmp_path / "broken.jpg"), (224, 224))
    assert arr is None and err == "not an image Pillow can read (unknown or corrupt format)"
    assert pixels(str(tmp_path), (224, 224)) == (None, FOLDER)
    assert pixels(None, (224, 224)) == (None, NO_PHOTO)
    data = (photos / "parrot.jpg").read_bytes()
    for content in (data, bytearray(data), memoryview(data)):
        arr, err = pixels(content, (224, 224))
        assert err is None and np.array_equal(arr, images.decode(str(photos / "parrot.jpg"), (224, 224)))
    assert pixels(b"junk", (224, 224)) == (None, "not an image Pillow can read (unknown or corrupt format)")


def test_udf_arguments_are_checked_before_spark_is_needed(mobilenet: str) -> None:
    from imgtool.spark import classify_udf, features_udf

    for bad in (0, -1, True, 2.0):
        with pytest.raises(UsageError, match="top_k"):
            classify_udf(mobilenet, top_k=bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="batch_size"):
        classify_udf(mobilenet, batch_size=0)
    with pytest.raises(UsageError, match="batch_size"):
        features_udf(mobilenet, batch_size=0)
    with pytest.raises(UsageError, match="ship 'hdfs': choose sparkfiles or path"):
        classify_udf(mobilenet, ship="hdfs")  # type: ignore[arg-type]


def test_requirements_spark_follow_pyproject() -> None:
    """.venv-spark (`make install-spark`) is imgtool's dependencies without TensorFlow,
    plus the `spark` extra and pytest, from requirements-spark.txt."""
    import tomllib

    from tests.conftest import ROOT

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    heavy = ("tensorflow", "tf-keras", "tensorboard")
    want = {d for d in project["dependencies"] if not d.startswith(heavy)}
    want |= set(project["optional-dependencies"]["spark"]) | {"pytest>=8"}
    lines = (ROOT / "requirements-spark.txt").read_text().splitlines()
    got = {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}
    assert got == want


@pytest.mark.parametrize("scores", ["auto", "logits"])
def test_a_udf_batch_holds_classifys_records(mobilenet: str, photos: Path, tmp_path: Path, scores: str) -> None:
    """What one predict_batch_udf call returns (run here without Spark), read back as
    records, equals `Model.classify`'s: labels, scores, order, errors, nulls."""
    import imgtool
    from imgtool.inference.portable import from_classifier, open_engine
    from imgtool.spark import _classify_batch, classify_record

    (tmp_path / "broken.jpg").write_bytes(b"not a JPEG")
    paths = [
        str(photos / "cat.bmp"),
        str(tmp_path / "broken.jpg"),
        str(photos / "parrot.jpg"),
        str(tmp_path / "missing.jpg"),
        str(photos / "sunflower.bmp"),
    ]
    model = imgtool.load_model(mobilenet, scores=scores)
    p = from_classifier(model.classifier)
    cols = _classify_batch(p, open_engine(p, mobilenet, None, threads=1), np.array(paths, dtype=object), 3)
    assert {k: v.shape for k, v in cols.items()} == {
        "labels": (5, 3),
        "scores": (5, 3),
        "indexes": (5, 3),
        "error": (5,),
    }
    rows = [{k: (list(v[i]) if v.ndim == 2 else v[i]) for k, v in cols.items()} for i in range(5)]
    assert [classify_record(path, row) for path, row in zip(paths, rows)] == [
        r.to_dict() for r in model.classify(paths, top_k=3)
    ]
    assert rows[1]["labels"] == [None, None, None] and rows[1]["error"]
