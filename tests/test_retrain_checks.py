"""retrain: every check before any model work (exit 2), the folder layouts, the output
rule, the backbone kind, class weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import invoke, run

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
    from imgtool import engine, resolve

    def fail(*a, **k):  # noqa: ANN202
        raise AssertionError("model work before the checks")

    monkeypatch.setattr(resolve, "resolve", fail)
    monkeypatch.setattr(engine.LiteRTEngine, "run", fail)


def test_output_checks_come_before_any_model_work(flowers: Path, tmp_path: Path, no_model_work: None) -> None:
    data = _copy(flowers, tmp_path / "data", ["daisy", "roses"], 0, 4)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    res = invoke("retrain", str(data), "-o", str(mine))
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"Error: --output {mine} exists and is not an imgtool model; choose another path, "
                                  "empty it, or pass --force to replace it")
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "imgtool-model.json").write_text(json.dumps({"image_dir": "/somewhere/else"}))
    res = invoke("retrain", str(data), "-o", str(other))
    assert res.exit_code == 2 and "holds a model of other photos (/somewhere/else)" in res.stderr
    assert "--force" in res.stderr
    res = invoke("retrain", str(data), "--min-accuracy", "0.9", "--test-percent", "0")
    assert res.exit_code == 2
    assert res.stderr.strip() == ("Error: --min-accuracy needs test photos, and there are none (--test-percent is 0); "
                                  "raise --test-percent, give --test-dir, or drop --min-accuracy")
    assert (mine / "notes.txt").read_text() == "keep"
    # --force lets the output check pass: the next step is model work, which fails here
    with pytest.raises(AssertionError, match="model work before the checks"):
        invoke("retrain", str(data), "-o", str(mine), "--force")


@pytest.mark.heavy
def test_output_onto_a_model_of_other_photos_needs_force(flowers: Path, embedder: str, tmp_path: Path) -> None:
    a = _copy(flowers, tmp_path / "a", ["daisy", "roses"], 0, 5)
    b = _copy(flowers, tmp_path / "b", ["daisy", "roses"], 5, 10)
    out = tmp_path / "model"
    assert invoke("retrain", str(a), "-m", embedder, "-o", str(out)).exit_code == 0
    # same photos, another option (an identical rerun reuses the folder): replaced
    again = invoke("retrain", str(a), "-m", embedder, "-o", str(out), "--seed", "1")
    assert again.exit_code == 0 and f"replacing the previous model in {out}" in again.stderr
    before = (out / "head.npz").read_bytes()
    other = invoke("retrain", str(b), "-m", embedder, "-o", str(out))
    assert other.exit_code == 2 and f"holds a model of other photos ({a.resolve()})" in other.stderr
    assert (out / "head.npz").read_bytes() == before
    forced = invoke("retrain", str(b), "-m", embedder, "-o", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads((out / "imgtool-model.json").read_text())["image_dir"] == str(b.resolve())


def test_classifier_backbone_is_refused_before_feature_extraction(flowers: Path, fixtures: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from imgtool import engine

    def fail(*a, **k):  # noqa: ANN202
        raise AssertionError("the backbone ran")

    monkeypatch.setattr(engine.LiteRTEngine, "run", fail)
    data = _copy(flowers, tmp_path / "data", ["daisy", "roses"], 0, 4)
    clf = fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite"
    res = invoke("retrain", str(data), "-m", str(clf), "-o", str(tmp_path / "m"))
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"Error: --model {clf} is a classifier, not a feature extractor (its output is 1001 "
                                  "class probabilities (a SOFTMAX), not features); give a feature-vector model (e.g. "
                                  "mobilenet_v1_embedding, which ships with imgtool, a *_feature_vector catalog "
                                  "model, or an embedding extractor .tflite)")
    assert not (tmp_path / "m").exists()
    from imgtool.backbone_kind import tflite_output

    assert tflite_output(clf) == (1001, "SOFTMAX")
    assert tflite_output(fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")[0] == 1024


def test_catalog_classifier_uses_its_twin_with_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    from imgtool.catalog import load_catalog
    from imgtool.errors import UsageError
    from imgtool.featurize import _check_backbone
    from imgtool.model import Model

    caplog.set_level("INFO", logger="imgtool")
    catalog = load_catalog()
    twin = Model(ref="mobilenet_v2", config=catalog["mobilenet_v2_feature_vector"])
    _check_backbone(twin, "mobilenet_v2")
    assert caplog.messages == ["mobilenet_v2 is a classifier; retraining on its feature-vector twin "
                               "mobilenet_v2_feature_vector"]
    caplog.clear()
    _check_backbone(Model(ref="inception_v3", config=catalog["inception_v3_feature_vector"]), "inception_v3")
    assert caplog.messages == ["inception_v3 is a classifier; retraining on its feature-vector twin "
                               "inception_v3_feature_vector"]
    bare = Model(ref="x", config=catalog["mobilenet_v2"])  # a classifier record, resolved as itself
    with pytest.raises(UsageError, match="catalog records its output as logits"):
        _check_backbone(bare, "x")


@pytest.mark.heavy
def test_train_val_test_layout_and_mismatch(flowers: Path, embedder: str, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _copy(flowers, root / "train", ["daisy", "roses"], 0, 8)
    _copy(flowers, root / "val", ["daisy", "roses"], 8, 11)
    _copy(flowers, root / "test", ["daisy", "roses"], 11, 14)
    res = invoke("retrain", str(root), "-m", embedder, "-o", str(tmp_path / "m"), "-f", "json")
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert m["classes"] == ["daisy", "roses"]  # not "train", "val", "test"
    assert m["counts"] == {c: {"train": 8, "validation": 3, "test": 3} for c in ("daisy", "roses")}
    assert m["layout"] == "given split: test/, train/, val/" and m["test"]["count"] == 6
    _copy(flowers, root / "val", ["tulips"], 0, 3)
    bad = invoke("retrain", str(root), "-m", embedder, "-o", str(tmp_path / "m2"))
    assert bad.exit_code == 2
    assert bad.stderr.strip() == (f"Error: {root}: the class folders of val/ differ from train/'s: val/ has tulips "
                                  "that train/ has not; every split needs the same classes")


@pytest.mark.heavy
def test_validation_and_test_dirs_elsewhere(flowers: Path, embedder: str, tmp_path: Path) -> None:
    data = _copy(flowers, tmp_path / "data", ["daisy", "roses"], 0, 10)
    val = _copy(flowers, tmp_path / "v", ["daisy", "roses"], 10, 13)
    test = _copy(flowers, tmp_path / "t", ["daisy"], 13, 17)
    res = invoke("retrain", str(data), "-m", embedder, "-o", str(tmp_path / "m"), "--validation-dir", str(val),
                 "--test-dir", str(test), "-f", "json")
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert m["counts"] == {"daisy": {"train": 10, "validation": 3, "test": 4},
                           "roses": {"train": 10, "validation": 3, "test": 0}}
    assert m["test"]["count"] == 4 and m["validation"]["count"] == 6
    assert m["options"]["validation_percent"] == 0.0 and m["options"]["test_percent"] == 0.0


@pytest.mark.heavy
def test_imbalance_warns_and_class_weight_is_recorded(flowers: Path, embedder: str, tmp_path: Path) -> None:
    data = _copy(flowers, tmp_path / "data", ["daisy"], 0, 40)
    _copy(flowers, data, ["roses"], 0, 6)
    res = invoke("retrain", str(data), "-m", embedder, "-o", str(tmp_path / "m"), "--test-percent", "0",
                 "--validation-percent", "0", "--class-weight", "none", "-f", "json")
    assert res.exit_code == 0, res.output
    assert ("warning: classes are imbalanced: 'daisy' has 40 photos, 'roses' 6 (6.7x)" in res.stderr
            and "(--class-weight none)" in res.stderr)
    m = json.loads(res.stdout)
    assert m["options"]["class_weight"] == "none"
    assert m["cross_validation"]["baseline"] == {"class": "daisy", "accuracy": round(40 / 46, 4)}
    bal = invoke("retrain", str(data), "-m", embedder, "-o", str(tmp_path / "b"), "--test-percent", "0",
                 "--validation-percent", "0", "-f", "json")
    mb = json.loads(bal.stdout)
    # balanced weights: the small class is recalled at least as well out-of-fold
    assert mb["cross_validation"]["per_class"]["roses"]["recall"] >= m["cross_validation"]["per_class"]["roses"]["recall"]
    a, b = np.load(tmp_path / "m" / "head.npz"), np.load(tmp_path / "b" / "head.npz")
    assert not np.array_equal(a["weights"], b["weights"])


@pytest.mark.heavy
def test_text_output_says_how_the_head_was_chosen(flowers: Path, embedder: str, tmp_path: Path) -> None:
    data = _copy(flowers, tmp_path / "data", ["daisy", "roses", "tulips"], 0, 12)
    res = run("retrain", str(data), "-m", embedder, "-o", str(tmp_path / "m"))
    assert res.returncode == 0, res.stderr
    assert "head: 5-fold cross-validation of L2 by log-loss, refit on train+validation; L2 " in res.stderr
    assert "<- chosen" in res.stderr
    assert "majority-class baseline" in res.stdout.splitlines()[0]
    fixed = run("retrain", str(data), "-m", embedder, "-o", str(tmp_path / "m"), "--l2", "0.5", "-f", "json")
    h = json.loads(fixed.stdout)["head"]
    assert h["l2"] == 0.5 and len(h["candidates"]) == 1 and h["method"].startswith("L2 fixed at 0.5")


def test_catalog_classifier_without_twin_is_refused_before_download(flowers: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     no_model_work: None) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"models": {"plain_classifier": {
        "format": "tflite", "urls": ["http://127.0.0.1:9/never.tflite"], "output": "probabilities"}}}))
    monkeypatch.setenv("IMGTOOL_CATALOG", str(catalog))
    data = _copy(flowers, tmp_path / "data", ["daisy", "roses"], 0, 4)
    res = invoke("retrain", str(data), "-m", "plain_classifier", "-o", str(tmp_path / "m"))
    assert res.exit_code == 2
    assert "--model plain_classifier is a classifier, not a feature extractor (the catalog records its output as " \
           "probabilities and names no feature-vector twin)" in res.stderr


def test_imgtool_model_is_the_backbone_the_checks_see(flowers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      no_model_work: None) -> None:
    """No --model and no $IMGTOOL_BACKBONE: retrain resolves $IMGTOOL_MODEL, and the checks
    before resolving used to look at inception_v3 instead (so a classifier without a twin was
    downloaded first, and the twin line named inception_v3)."""
    from imgtool.catalog import DEFAULT_MODEL, model_or_default

    monkeypatch.delenv("IMGTOOL_BACKBONE", raising=False)
    monkeypatch.delenv("IMGTOOL_MODEL", raising=False)
    assert model_or_default(None) == DEFAULT_MODEL and model_or_default("x") == "x"
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"models": {"plain_classifier": {
        "format": "tflite", "urls": ["http://127.0.0.1:9/never.tflite"], "output": "probabilities"}}}))
    monkeypatch.setenv("IMGTOOL_CATALOG", str(catalog))
    monkeypatch.setenv("IMGTOOL_MODEL", "plain_classifier")
    assert model_or_default(None) == "plain_classifier"
    data = _copy(flowers, tmp_path / "data", ["daisy", "roses"], 0, 4)
    res = invoke("retrain", str(data), "-o", str(tmp_path / "m"))
    assert res.exit_code == 2, res.output
    assert "--model plain_classifier is a classifier, not a feature extractor (the catalog records its output as " \
           "probabilities and names no feature-vector twin)" in res.stderr


@pytest.mark.heavy
def test_library_retrain_leaves_its_options_untouched(flowers: Path, embedder: str, tmp_path: Path) -> None:
    import copy

    from imgtool.options import RetrainOptions
    from imgtool.retraining import retrain

    data = _copy(flowers, tmp_path / "data", ["daisy", "roses"], 0, 8)
    opts = RetrainOptions(image_dir=data, output=tmp_path / "m", model=embedder, steps=5,
                          seed=2, class_weight="none")
    before = copy.deepcopy(opts)
    result = retrain(opts)
    assert result.output == tmp_path / "m" and result.metrics["options"]["seed"] == 2
    assert opts == before
