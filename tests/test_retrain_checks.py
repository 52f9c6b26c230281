"""retrain: every check before any model work, the folder layouts, the output rule, the
backbone kind, class weights. Seen as a library caller sees them (the error's class and
fields, the result's metrics); the CLI's words and exit codes for the same refusals are
tests/test_mistakes.py's `test_retrain_refusals_in_the_clis_words`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import imgtool
from imgtool.core.errors import DatasetError, UsageError
from tests.conftest import invoke

CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def _copy(src: Path, dest: Path, classes: list[str], start: int, stop: int) -> Path:
    for c in classes:
        (dest / c).mkdir(parents=True, exist_ok=True)
        for f in sorted((src / c).iterdir())[start:stop]:
            shutil.copy(f, dest / c / f.name)
    return dest


@pytest.fixture
def no_model_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolving or running any model is a test failure."""
    from imgtool.models import resolve
    from imgtool.runtime import engine

    def fail(*a, **k):  # noqa: ANN202
        raise AssertionError("model work before the checks")

    monkeypatch.setattr(resolve, "resolve", fail)
    monkeypatch.setattr(engine.LiteRTEngine, "run", fail)


def test_output_checks_come_before_any_model_work(flowers: Path, tmp_path: Path, no_model_work: None) -> None:
    data = _copy(flowers, tmp_path / "data", ["daisy", "roses"], 0, 4)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(UsageError) as info:
        imgtool.retrain(data, output=mine)
    err = info.value
    assert (err.parameter, err.path, err.model, err.exit_code) == ("output", str(mine), None, 2)
    assert f"{mine} exists and is not an imgtool model" in str(err) and "force" in err.text.params()
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "imgtool-model.json").write_text(json.dumps({"image_dir": "/somewhere/else"}))
    with pytest.raises(UsageError) as info:
        imgtool.retrain(data, output=other)
    assert (info.value.parameter, info.value.path) == ("output", str(other))
    assert "holds a model of other photos (/somewhere/else)" in str(info.value)
    assert info.value.text.params() == ["output", "force"]
    with pytest.raises(UsageError) as info:
        imgtool.retrain(data, min_accuracy=0.9, test_percent=0)
    assert (info.value.parameter, info.value.path) == ("min_accuracy", None)
    assert "test_percent" in info.value.text.params()
    assert (mine / "notes.txt").read_text() == "keep"
    # force lets the output check pass: the next step is model work, which fails here
    with pytest.raises(AssertionError, match="model work before the checks"):
        imgtool.retrain(data, output=mine, force=True)


@pytest.mark.heavy
def test_output_onto_a_model_of_other_photos_needs_force(
    flowers: Path, embedder: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = _copy(flowers, tmp_path / "a", ["daisy", "roses"], 0, 5)
    b = _copy(flowers, tmp_path / "b", ["daisy", "roses"], 5, 10)
    out = tmp_path / "model"
    assert imgtool.retrain(a, model=embedder, output=out).output == out
    # same photos, another option (an identical rerun reuses the folder): replaced
    caplog.set_level("INFO", logger="imgtool")
    assert imgtool.retrain(a, model=embedder, output=out, seed=1).output == out
    assert f"replacing the previous model in {out}" in caplog.messages
    before = (out / "head.npz").read_bytes()
    with pytest.raises(UsageError) as info:
        imgtool.retrain(b, model=embedder, output=out)
    assert (info.value.parameter, info.value.path) == ("output", str(out))
    assert f"holds a model of other photos ({a.resolve()})" in str(info.value)
    assert (out / "head.npz").read_bytes() == before
    assert imgtool.retrain(b, model=embedder, output=out, force=True).output == out
    assert json.loads((out / "imgtool-model.json").read_text())["image_dir"] == str(b.resolve())


def test_classifier_backbone_is_refused_before_feature_extraction(
    flowers: Path, fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgtool.runtime import engine

    def fail(*a, **k):  # noqa: ANN202
        raise AssertionError("the backbone ran")

    monkeypatch.setattr(engine.LiteRTEngine, "run", fail)
    data = _copy(flowers, tmp_path / "data", ["daisy", "roses"], 0, 4)
    clf = fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite"
    with pytest.raises(UsageError) as info:
        imgtool.retrain(data, model=clf, output=tmp_path / "m")
    assert (info.value.parameter, info.value.exit_code) == ("model", 2)
    assert str(info.value).startswith(
        f"`model` {clf} is a classifier, not a feature extractor (its output is 1001 "
        "class probabilities (a SOFTMAX), not features)"
    )
    assert not (tmp_path / "m").exists()
    from imgtool.training.backbone_kind import tflite_output

    assert tflite_output(clf) == (1001, "SOFTMAX")
    assert tflite_output(fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")[0] == 1024


def test_catalog_classifier_uses_its_twin_with_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    from imgtool.core.errors import UsageError
    from imgtool.models.catalog import load_catalog
    from imgtool.models.recipe import Recipe
    from imgtool.training.featurize import _check_backbone

    caplog.set_level("INFO", logger="imgtool")
    catalog = load_catalog()
    twin = Recipe(ref="mobilenet_v2", config=catalog["mobilenet_v2_feature_vector"])
    _check_backbone(twin, "mobilenet_v2")
    assert caplog.messages == [
        "mobilenet_v2 is a classifier; retraining on its feature-vector twin mobilenet_v2_feature_vector"
    ]
    caplog.clear()
    _check_backbone(Recipe(ref="inception_v3", config=catalog["inception_v3_feature_vector"]), "inception_v3")
    assert caplog.messages == [
        "inception_v3 is a classifier; retraining on its feature-vector twin inception_v3_feature_vector"
    ]
    bare = Recipe(ref="x", config=catalog["mobilenet_v2"])  # a classifier record, resolved as itself
    with pytest.raises(UsageError, match="catalog records its output as logits"):
        _check_backbone(bare, "x")


@pytest.mark.heavy
def test_train_val_test_layout_and_mismatch(flowers: Path, embedder: str, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _copy(flowers, root / "train", ["daisy", "roses"], 0, 8)
    _copy(flowers, root / "val", ["daisy", "roses"], 8, 11)
    _copy(flowers, root / "test", ["daisy", "roses"], 11, 14)
    m = imgtool.retrain(root, model=embedder, output=tmp_path / "m").metrics
    assert m["classes"] == ["daisy", "roses"]  # not "train", "val", "test"
    assert m["counts"] == {c: {"train": 8, "validation": 3, "test": 3} for c in ("daisy", "roses")}
    assert m["layout"] == "given split: test/, train/, val/" and m["test"]["count"] == 6
    _copy(flowers, root / "val", ["tulips"], 0, 3)
    with pytest.raises(DatasetError) as info:
        imgtool.retrain(root, model=embedder, output=tmp_path / "m2")
    assert info.value.exit_code == 2 and info.value.parameter is None
    assert str(info.value) == (
        f"{root}: the class folders of val/ differ from train/'s: val/ has tulips that "
        "train/ has not; every split needs the same classes"
    )
    assert not (tmp_path / "m2").exists()


@pytest.mark.heavy
def test_validation_and_test_dirs_elsewhere(flowers: Path, embedder: str, tmp_path: Path) -> None:
    data = _copy(flowers, tmp_path / "data", ["daisy", "roses"], 0, 10)
    val = _copy(flowers, tmp_path / "v", ["daisy", "roses"], 10, 13)
    test = _copy(flowers, tmp_path / "t", ["daisy"], 13, 17)
    m = imgtool.retrain(data, model=embedder, output=tmp_path / "m", validation_dir=val, test_dir=test).metrics
    assert m["counts"] == {
        "daisy": {"train": 10, "validation": 3, "test": 4},
        "roses": {"train": 10, "validation": 3, "test": 0},
    }
    assert m["test"]["count"] == 4 and m["validation"]["count"] == 6
    assert m["options"]["validation_percent"] == 0.0 and m["options"]["test_percent"] == 0.0


@pytest.mark.heavy
def test_imbalance_warns_and_class_weight_is_recorded(
    flowers: Path, embedder: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _copy(flowers, tmp_path / "data", ["daisy"], 0, 40)
    _copy(flowers, data, ["roses"], 0, 6)
    caplog.set_level("WARNING", logger="imgtool")
    m = imgtool.retrain(
        data, model=embedder, output=tmp_path / "m", test_percent=0, validation_percent=0, class_weight="none"
    ).metrics
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(
        w.startswith("classes are imbalanced: 'daisy' has 40 photos, 'roses' 6 (6.7x)")
        and w.endswith("(`class_weight` none)")
        for w in warned
    ), warned
    assert m["options"]["class_weight"] == "none"
    assert m["cross_validation"]["baseline"] == {"class": "daisy", "accuracy": round(40 / 46, 4)}
    mb = imgtool.retrain(data, model=embedder, output=tmp_path / "b", test_percent=0, validation_percent=0).metrics
    # balanced weights: the small class is recalled at least as well out-of-fold
    assert (
        mb["cross_validation"]["per_class"]["roses"]["recall"] >= m["cross_validation"]["per_class"]["roses"]["recall"]
    )
    a, b = np.load(tmp_path / "m" / "head.npz"), np.load(tmp_path / "b" / "head.npz")
    assert not np.array_equal(a["weights"], b["weights"])


@pytest.mark.heavy
def test_text_output_says_how_the_head_was_chosen(flowers: Path, embedder: str, tmp_path: Path) -> None:
    """The CLI's own printing (the library returns the numbers): streams and words."""
    data = _copy(flowers, tmp_path / "data", ["daisy", "roses", "tulips"], 0, 12)
    res = invoke("retrain", str(data), "-m", embedder, "-o", str(tmp_path / "m"))
    assert res.exit_code == 0, res.output
    assert "head: 5-fold cross-validation of L2 by log-loss, refit on train+validation; L2 " in res.stderr
    assert "<- chosen" in res.stderr
    assert "majority-class baseline" in res.stdout.splitlines()[0]
    fixed = invoke("retrain", str(data), "-m", embedder, "-o", str(tmp_path / "m"), "--l2", "0.5", "-f", "json")
    h = json.loads(fixed.stdout)["head"]
    assert h["l2"] == 0.5 and len(h["candidates"]) == 1 and h["method"].startswith("L2 fixed at 0.5")


def _plain_classifier_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps(
            {
                "models": {
                    "plain_classifier": {
                        "format": "tflite",
                        "urls": ["http://127.0.0.1:9/never.tflite"],
                        "output": "probabilities",
                    }
                }
            }
        )
    )
    monkeypatch.setenv("IMGTOOL_CATALOG", str(catalog))


def test_catalog_classifier_without_twin_is_refused_before_download(
    flowers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_model_work: None
) -> None:
    _plain_classifier_catalog(tmp_path, monkeypatch)
    data = _copy(flowers, tmp_path / "data", ["daisy", "roses"], 0, 4)
    with pytest.raises(UsageError) as info:
        imgtool.retrain(data, model="plain_classifier", output=tmp_path / "m")
    assert info.value.parameter == "model"
    assert str(info.value).startswith(
        "`model` plain_classifier is a classifier, not a feature extractor (the "
        "catalog records its output as probabilities and names no feature-vector twin)"
    )


def test_imgtool_model_is_the_backbone_the_checks_see(
    flowers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_model_work: None
) -> None:
    """No --model and no $IMGTOOL_BACKBONE: retrain resolves $IMGTOOL_MODEL, and the checks
    before resolving used to look at inception_v3 instead (so a classifier without a twin was
    downloaded first, and the twin line named inception_v3). Both ways in: the CLI and the
    library."""
    from imgtool.models.catalog import DEFAULT_MODEL, model_or_default

    monkeypatch.delenv("IMGTOOL_BACKBONE", raising=False)
    monkeypatch.delenv("IMGTOOL_MODEL", raising=False)
    assert model_or_default(None) == DEFAULT_MODEL and model_or_default("x") == "x"
    _plain_classifier_catalog(tmp_path, monkeypatch)
    monkeypatch.setenv("IMGTOOL_MODEL", "plain_classifier")
    assert model_or_default(None) == "plain_classifier"
    data = _copy(flowers, tmp_path / "data", ["daisy", "roses"], 0, 4)
    with pytest.raises(UsageError) as info:
        imgtool.retrain(data, output=tmp_path / "m")
    assert info.value.parameter == "model" and "plain_classifier is a classifier" in str(info.value)
    res = invoke("retrain", str(data), "-o", str(tmp_path / "m"))
    assert res.exit_code == 2, res.output
    assert (
        "--model plain_classifier is a classifier, not a feature extractor (the catalog records its output as "
        "probabilities and names no feature-vector twin)" in res.stderr
    )


@pytest.mark.heavy
def test_library_retrain_leaves_its_options_untouched(flowers: Path, embedder: str, tmp_path: Path) -> None:
    import copy

    from imgtool.core.options import RetrainOptions
    from imgtool.training.retraining import retrain

    data = _copy(flowers, tmp_path / "data", ["daisy", "roses"], 0, 8)
    opts = RetrainOptions(image_dir=data, output=tmp_path / "m", model=embedder, steps=5, seed=2, class_weight="none")
    before = copy.deepcopy(opts)
    result = retrain(opts)
    assert result.output == tmp_path / "m" and result.metrics["options"]["seed"] == 2
    assert opts == before
