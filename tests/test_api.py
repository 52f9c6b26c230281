"""The public Python API (`import imgtool`), tested at library level with the real
fixtures: load_model, Model.classify / classify_iter (paths, folders, PIL images, arrays),
retrain, evaluate, list_models, the error classes, and that the library prints nothing."""

from __future__ import annotations

import copy
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imgtool
from imgtool.core import errors

CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


@pytest.fixture(scope="module")
def classifier_path(mobilenet: str) -> str:
    return mobilenet


@pytest.fixture(scope="module")
def model(classifier_path: str) -> imgtool.Model:
    return imgtool.load_model(classifier_path)


@pytest.fixture(scope="module")
def small_flowers(fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 photos of each of the 5 classes of flowers-mini (a copy: tests may add files)."""
    dest = tmp_path_factory.mktemp("flowers") / "flowers"
    for c in CLASSES:
        (dest / c).mkdir(parents=True)
        for f in sorted((fixtures / "flowers-mini" / c).iterdir())[:12]:
            shutil.copy(f, dest / c / f.name)
    return dest


def _preds(results: list[Any]) -> list[list[tuple[str, float, int]]]:
    return [[(p.label, p.score, p.index) for p in r.predictions] for r in results]


# ---------------------------------------------------------------- import


def test_import_is_instant_and_every_public_name_resolves() -> None:
    code = (
        "import json, sys, imgtool\n"
        "heavy = [m for m in ('tensorflow', 'ai_edge_litert', 'numpy', 'PIL', 'click') if m in sys.modules]\n"
        "print(json.dumps(heavy))\n"
        "missing = [n for n in imgtool.__all__ if getattr(imgtool, n, None) is None]\n"
        "print(json.dumps(missing))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert json.loads(out[0]) == []
    assert json.loads(out[1]) == []
    assert {
        "load_model",
        "Model",
        "Result",
        "Prediction",
        "retrain",
        "RetrainResult",
        "evaluate",
        "Evaluation",
        "list_models",
        "ModelInfo",
        "ImgtoolError",
    } <= set(imgtool.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        imgtool.nonsense  # noqa: B018


def test_no_submodule_shares_a_name_with_a_public_function() -> None:
    """`imgtool.retrain`, `imgtool.evaluate` (and later `imgtool.classify`) are functions:
    a submodule of the same name would rebind the attribute on first import."""
    import pkgutil

    from imgtool.inference.classifier import Classifier  # noqa: F401 - imports the submodule imgtool.inference.classifier
    from imgtool.training.evaluation import evaluate_folder  # noqa: F401 - imports the submodule imgtool.training.evaluation
    from imgtool.training.retraining import RetrainResult

    submodules = {m.name for m in pkgutil.iter_modules(imgtool.__path__)}
    assert not submodules & set(imgtool.__all__), submodules & set(imgtool.__all__)
    assert callable(imgtool.retrain) and imgtool.retrain.__module__ == "imgtool.api_training"
    assert callable(imgtool.evaluate) and imgtool.evaluate.__module__ == "imgtool.api_training"
    assert callable(imgtool.classify) and imgtool.classify.__module__ == "imgtool.api"
    assert sys.modules["imgtool.training.retraining"].RetrainResult is RetrainResult


def test_classify_in_one_call_is_load_model_then_classify(
    model: imgtool.Model, classifier_path: str, photos: Path
) -> None:
    """Hugging Face users expect a one-shot call: `imgtool.classify(inputs, model=..., top_k=...)`."""
    cat = photos / "cat.bmp"
    once = imgtool.classify([cat, photos], model=classifier_path, top_k=3)
    assert _preds(once) == _preds(model.classify([cat, photos], top_k=3))
    assert once[0].path == str(cat) and once[0].predictions[0].label == "Egyptian cat" and len(once) == 5
    single = imgtool.classify(cat, model=model, top_k=1)  # one path, and a model already loaded
    assert len(single) == 1 and single[0].predictions[0].label == "Egyptian cat"
    shipped = imgtool.classify(cat, model="mobilenet_v2_quant", top_k=1)  # the embedded classifier: same file
    assert _preds(shipped) == _preds(single)
    renamed = imgtool.classify(cat, model=classifier_path, top_k=1, labels=[f"thing {i}" for i in range(1001)])
    assert renamed[0].predictions[0].label == "thing 286"
    with pytest.raises(imgtool.UsageError, match="belong to load_model"):
        imgtool.classify(cat, model=model, scores="logits")
    with pytest.raises(imgtool.UsageError, match="top_k must be at least 1"):
        imgtool.classify(cat, model=model, top_k=0)


# ---------------------------------------------------------------- load_model


def test_load_model_knows_labels_size_and_output_kind_at_load(model: imgtool.Model) -> None:
    assert len(model.labels) == 1001
    assert model.labels[:2] == ["background", "tench, Tinca tinca"]
    assert model.labels[286] == "Egyptian cat"
    assert model.input_size == (224, 224)
    assert model.scores == "probabilities" and "metadata" in model.scores_reason
    model.labels.append("changed")  # a copy: the model's own labels stay as they are
    assert len(model.labels) == 1001


def test_load_model_labels_keyword_file_or_list(classifier_path: str, photos: Path, tmp_path: Path) -> None:
    names = [f"thing {i}" for i in range(1001)]
    listed = imgtool.load_model(classifier_path, labels=names)
    assert listed.labels == names
    assert listed.classify(photos / "cat.bmp", top_k=1)[0].predictions[0].label == "thing 286"
    f = tmp_path / "labels.txt"
    f.write_text("\n".join(names) + "\n")
    assert imgtool.load_model(classifier_path, labels=f).labels == names
    with pytest.raises(ValueError, match="labels file, or a non-empty list of strings"):
        imgtool.load_model(classifier_path, labels=[1, 2])  # type: ignore[list-item]


def test_unknown_model_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match=r"unknown model 'inception_v33'.*did you mean inception_v3"):
        imgtool.load_model("inception_v33")
    with pytest.raises(imgtool.ModelNotFoundError):
        imgtool.load_model("catalog:no-such-model")


def test_bad_scores_keyword_is_a_value_error(classifier_path: str) -> None:
    with pytest.raises(ValueError, match="scores 'softmax': choose auto, probabilities or logits"):
        imgtool.load_model(classifier_path, scores="softmax")  # type: ignore[arg-type]


# ---------------------------------------------------------------- classify


def test_classify_a_file_and_a_folder(model: imgtool.Model, photos: Path) -> None:
    [cat] = model.classify(str(photos / "cat.bmp"), top_k=2)
    assert isinstance(cat, imgtool.Result) and cat.error is None and cat.path == str(photos / "cat.bmp")
    assert _preds([cat]) == [[("Egyptian cat", 0.789062, 286), ("tabby, tabby cat", 0.109375, 282)]]
    folder = model.classify(photos, top_k=1)  # a Path works as well as a str
    assert [Path(r.path).name for r in folder] == ["cat.bmp", "grace_hopper.bmp", "parrot.jpg", "sunflower.bmp"]
    assert [r.predictions[0].label for r in folder] == ["Egyptian cat", "military uniform", "macaw", "daisy"]
    assert [r.predictions[0].score for r in folder] == [0.789062, 0.921875, 0.996094, 0.988281]


def test_an_array_of_the_decoded_pixels_scores_as_the_file(model: imgtool.Model, photos: Path) -> None:
    from imgtool.data.images import decode

    for name in ("cat.bmp", "parrot.jpg"):
        path = str(photos / name)
        arr = decode(path, model.input_size)
        kept = arr.copy()
        [from_file] = model.classify(path)
        [from_array] = model.classify(arr)
        assert _preds([from_array]) == _preds([from_file])
        assert from_array.path is None and from_array.error is None
        assert np.array_equal(arr, kept)  # the input is never changed
        record = from_array.to_dict()
        assert (
            record["path"] is None
            and json.loads(json.dumps(record))["predictions"][0]["index"] == from_file.predictions[0].index
        )


def test_a_pil_image_is_converted_and_resized_as_its_file(model: imgtool.Model, photos: Path) -> None:
    from PIL import Image

    for name in ("cat.bmp", "grace_hopper.bmp"):  # full-size BMPs: no JPEG draft mode on the file path either
        path = photos / name
        with Image.open(path) as im:
            before = (im.mode, im.size, im.tobytes())
            [from_pil] = model.classify(im)
            assert (im.mode, im.size, im.tobytes()) == before
        [from_file] = model.classify(path)
        assert from_pil.path is None
        assert _preds([from_pil]) == _preds([from_file])


def test_gray_and_rgba_arrays_are_made_rgb_as_files_are(model: imgtool.Model, photos: Path, tmp_path: Path) -> None:
    from PIL import Image

    from imgtool.data.images import decode

    rgb = decode(str(photos / "parrot.jpg"), (300, 260))  # not the model size: both routes resize
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[:, 130:] = 255  # left half transparent: composited over white, like a PNG file
    rgba = np.dstack([rgb, alpha])
    for arr, mode in ((gray, "L"), (rgba, "RGBA")):
        f = tmp_path / f"{mode}.png"
        Image.fromarray(arr, mode).save(f)
        kept = arr.copy()
        [a] = model.classify(arr, top_k=5)
        [b] = model.classify(f, top_k=5)
        assert _preds([a]) == _preds([b]), mode
        assert np.array_equal(arr, kept)
    [half] = model.classify(rgba, top_k=1)
    [whole] = model.classify(rgb, top_k=1)
    assert half.predictions != whole.predictions  # the alpha was used, not dropped


def test_a_mixed_list_keeps_order_reports_bad_inputs_and_is_not_changed(
    model: imgtool.Model, photos: Path, tmp_path: Path
) -> None:
    from PIL import Image

    from imgtool.data.images import decode

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    arr = decode(str(photos / "cat.bmp"), (224, 224))
    pil = Image.open(photos / "grace_hopper.bmp")
    floats = np.zeros((4, 4, 3), np.float32)
    inputs: list[Any] = [
        str(photos / "parrot.jpg"),
        arr,
        str(broken),
        pil,
        floats,
        str(tmp_path / "missing.png"),
        photos,
    ]
    given = list(inputs)
    results = model.classify(inputs, top_k=1)
    assert inputs == given and all(a is b for a, b in zip(inputs, given))
    assert [r.path for r in results] == [
        str(photos / "parrot.jpg"),
        None,
        str(broken),
        None,
        None,
        str(tmp_path / "missing.png"),
        *(str(photos / n) for n in ("cat.bmp", "grace_hopper.bmp", "parrot.jpg", "sunflower.bmp")),
    ]
    assert [r.predictions[0].label if r.predictions else None for r in results] == [
        "macaw",
        "Egyptian cat",
        None,
        "military uniform",
        None,
        None,
        "Egyptian cat",
        "military uniform",
        "macaw",
        "daisy",
    ]
    assert results[2].error and "not an image Pillow can read" in results[2].error
    assert results[4].error == "array of float32: give uint8 pixels (0..255)"
    assert results[5].error == "no such file or directory"


def test_bad_arrays_and_wrong_types(model: imgtool.Model) -> None:
    [r] = model.classify(np.zeros((5, 5, 2), np.uint8))
    assert r.error == "array of shape (5, 5, 2): give HxWx3 (RGB), HxWx4 (RGBA) or HxW (gray)"
    with pytest.raises(ValueError, match="cannot classify a int: give a path"):
        model.classify([3])
    with pytest.raises(imgtool.UsageError, match="top_k must be at least 1"):
        model.classify("x.jpg", top_k=0)


def test_classify_iter_streams_and_reports_progress(model: imgtool.Model, photos: Path) -> None:
    seen: list[tuple[int, int | None, str, str]] = []
    it = model.classify_iter(photos, top_k=1, batch_size=2, progress=lambda *a: seen.append(a))
    assert not isinstance(it, list)
    first = next(it)
    assert Path(first.path).name == "cat.bmp"
    rest = list(it)
    assert len(rest) == 3
    assert seen == [
        (0, None, "classifying", "img"),
        *((i, None, "classifying", "img") for i in range(1, 5)),
        (4, 4, "classifying", "img"),
    ]  # the end, said once


def test_the_library_prints_nothing(classifier_path: str, photos: Path, capfd: pytest.CaptureFixture) -> None:
    m = imgtool.load_model(classifier_path, labels=None)
    m.classify([photos, str(photos / "nope.jpg")])
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


# ---------------------------------------------------------------- retrain and evaluate


def test_retrain_returns_data_prints_nothing_and_evaluate_scores_it(
    small_flowers: Path, embedder: str, tmp_path: Path, capfd: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imgtool")
    calls: list[tuple[int, int | None, str, str]] = []
    out = tmp_path / "flowers-model"
    result = imgtool.retrain(
        small_flowers,
        model=embedder,
        output=out,
        seed=3,
        test_percent=20,
        bottleneck_dir=tmp_path / "bn",
        tf_exports=False,
        progress=lambda *a: calls.append(a),
    )
    assert capfd.readouterr() == ("", "")  # not a line on stdout or stderr: it was all logged
    assert isinstance(result, imgtool.RetrainResult)
    assert result.output == out and (out / "imgtool-model.json").is_file()
    assert result.metrics == json.loads((out / "metrics.json").read_text())
    assert result.metrics["classes"] == CLASSES and result.metrics["options"]["seed"] == 3
    assert result.below_minimum is None
    assert any(m.startswith("Fitting the last layer on ") for m in caplog.messages)
    assert ("bottlenecks" in {c[2] for c in calls}) and calls[-1][0] == calls[-1][1] == 60

    # the same through the options object, which retrain() leaves as it was
    from imgtool.core.options import RetrainOptions
    from imgtool.training.retraining import retrain as retrain_opts

    opts = RetrainOptions(
        image_dir=small_flowers,
        output=tmp_path / "again",
        model=embedder,
        test_percent=20,
        bottleneck_dir=tmp_path / "bn",
        tf_exports=False,
        seed=3,
    )
    before = copy.deepcopy(opts)
    again = retrain_opts(opts)
    assert opts == before
    assert again.metrics["test"] == result.metrics["test"]  # same seed, same data: same model

    # evaluate: by reference and as a loaded model; a broken photo is a failure, not an abort
    extra = tmp_path / "check"
    shutil.copytree(small_flowers, extra)
    (extra / "daisy" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    ev = imgtool.evaluate(str(out), extra)
    assert isinstance(ev, imgtool.Evaluation)
    assert ev.failures == [(str(extra / "daisy" / "broken.jpg"), ev.failures[0][1])] and ev.failures[0][1]
    assert ev.metrics["count"] == 60 and ev.classes == CLASSES
    assert ev.accuracy == ev.metrics["accuracy"] and ev.accuracy is not None and ev.accuracy > 0.6
    assert sum(map(sum, ev.confusion)) == 60 and ev.confusion == ev.metrics["confusion_matrix"]
    assert set(ev.per_class) == set(CLASSES) and sum(c["support"] for c in ev.per_class.values()) == 60
    n_fit = sum(1 for s in result.metrics["counts"].values() for k in ("train", "validation") for _ in range(s[k]))
    assert ev.seen_in_training == n_fit
    assert ev.to_dict()["failures"] == [{"path": p, "error": e} for p, e in ev.failures]
    loaded = imgtool.load_model(out)
    assert loaded.labels == CLASSES
    assert imgtool.evaluate(loaded, extra).metrics == ev.metrics
    assert capfd.readouterr() == ("", "")


def test_retrain_checks_its_arguments_before_any_work(small_flowers: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"test_percent 60 is outside 0\.\.50"):
        imgtool.retrain(small_flowers, test_percent=60)
    with pytest.raises(imgtool.UsageError, match=r"give `folder` \(one sub-folder per class\), or `features`"):
        imgtool.retrain(None)
    (tmp_path / "one" / "a").mkdir(parents=True)
    with pytest.raises(ValueError) as info:
        imgtool.retrain(tmp_path / "one")
    assert isinstance(info.value, imgtool.ImgtoolError) and info.value.exit_code == errors.EXIT_USAGE


def test_evaluate_folder_named_after_no_label_is_a_value_error(
    model: imgtool.Model, tmp_path: Path, photos: Path
) -> None:
    (tmp_path / "ev" / "no-such-label").mkdir(parents=True)
    shutil.copy(photos / "cat.bmp", tmp_path / "ev" / "no-such-label")
    with pytest.raises(ValueError, match="the model has no label for folder 'no-such-label'"):
        imgtool.evaluate(model, tmp_path / "ev")
    (tmp_path / "ev2" / "Egyptian_cat").mkdir(parents=True)
    shutil.copy(photos / "cat.bmp", tmp_path / "ev2" / "Egyptian_cat")
    ev = imgtool.evaluate(model, tmp_path / "ev2")
    assert ev.accuracy == 1.0 and ev.failures == [] and ev.seen_in_training is None
    with pytest.raises(ValueError, match="scores and labels belong to load_model"):
        imgtool.evaluate(model, tmp_path / "ev2", scores="logits")


# ---------------------------------------------------------------- list_models


def test_list_models_catalog_and_extra_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    infos = imgtool.list_models()
    by_name = {i.name: i for i in infos}
    assert "inception_v3" in by_name and all(isinstance(i, imgtool.ModelInfo) for i in infos)
    inc = by_name["inception_v3"]
    assert (inc.kind, inc.cached, inc.bytes, inc.key) == ("catalog", False, 0, None) and inc.description
    extra = tmp_path / "catalog.json"
    extra.write_text(
        json.dumps(
            {"models": {"mine": {"format": "tflite", "urls": ["http://127.0.0.1:9/m.tflite"], "description": "my own"}}}
        )
    )
    monkeypatch.setenv("IMGTOOL_CATALOG", str(extra))
    mine = [i for i in imgtool.list_models() if i.name == "mine"]
    assert [(i.description, i.kind, i.cached) for i in mine] == [("my own", "catalog", False)]


def test_list_models_sees_a_cached_entry(classifier_path: str, isolated_home: Path) -> None:
    from imgtool.core import store

    entry = store.entry_dir("url-0123456789abcdef")
    (entry / "source").mkdir(parents=True)
    shutil.copy(classifier_path, entry / "source" / "model.tflite")
    size = (entry / "source" / "model.tflite").stat().st_size
    (entry / "entry.json").write_text(
        json.dumps(
            {
                "key": entry.name,
                "name": "https://example.org/m.tflite",
                "url": "https://example.org/m.tflite",
                "format": "tflite",
                "files": {"source/model.tflite": size},
            }
        )
    )
    [other] = [i for i in imgtool.list_models() if i.kind == "other"]
    assert (other.name, other.key, other.cached, other.problem) == (
        "https://example.org/m.tflite",
        entry.name,
        True,
        None,
    )
    assert other.bytes >= size
    (entry / "source" / "model.tflite").write_bytes(b"short")
    [other] = [i for i in imgtool.list_models() if i.kind == "other"]
    assert other.cached is False and other.problem and "truncated" in other.problem


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "cls, bases",
    [
        (errors.UsageError, (ValueError,)),
        (errors.DatasetError, (ValueError,)),
        (errors.ImageError, (ValueError,)),
        (errors.ModelError, (RuntimeError,)),
        (errors.ModelNotFoundError, (LookupError, RuntimeError)),
        (errors.DownloadError, (ConnectionError, OSError, RuntimeError)),
        (errors.StorageError, (OSError,)),
    ],
)
def test_every_error_is_also_its_builtin(cls: type, bases: tuple[type, ...]) -> None:
    from imgtool.core.errors import SettingError

    err = cls("what went wrong; what to do")
    assert isinstance(err, imgtool.ImgtoolError) and all(isinstance(err, b) for b in bases)
    assert str(err) == "what went wrong; what to do"
    assert issubclass(SettingError, ValueError) and SettingError is imgtool.SettingError


def test_a_download_error_is_never_taken_for_a_storage_error() -> None:
    from imgtool.core import store

    err = errors.DownloadError("https://x: server answered HTTP 404")
    assert err.errno is None and err.exit_code == errors.EXIT_MODEL
    assert store.is_storage_error(err) is False


def test_the_progress_variable_pickles_for_beam_workers() -> None:
    """Beam ships imgtool.core.ui to workers by value: the progress context variable must
    pickle, and arrive empty (no caller's callback on a worker)."""
    import pickle

    from imgtool.core import ui

    seen: list[int] = []
    with ui.reporting(lambda done, total, desc, unit: seen.append(done)):
        copy = pickle.loads(pickle.dumps(ui._callback))
        assert ui.current_callback() is not None
    assert copy.var.get() is None and copy.var is not ui._callback.var


# ---------------------------------------------------------------- the store: download, path, remove


def test_download_model_then_its_path_then_remove_it(
    mobilenet: str, http_server: Any, isolated_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imgtool")
    data = Path(mobilenet).read_bytes()
    url = http_server.add("/m.tflite", data)
    assert imgtool.model_path() == isolated_home
    with pytest.raises(LookupError, match=r"is not in the cache"):
        imgtool.model_path(url)

    calls: list[tuple[Any, ...]] = []
    info = imgtool.download_model(url, progress=lambda *a: calls.append(a))
    assert isinstance(info, imgtool.ModelInfo)
    assert (info.name, info.kind, info.cached, info.runtime) == (url, "other", True, "litert")
    assert info.key is not None and info.key.startswith("url-")
    assert info.path == isolated_home / "models" / info.key
    assert info.bytes == sum(p.stat().st_size for p in info.path.rglob("*") if p.is_file()) >= len(data)
    assert calls and calls[-1][0] == calls[-1][1] == len(data)  # the download's bytes
    assert imgtool.model_path(url) == imgtool.model_path(info.key) == info.path
    assert [(i.key, i.cached) for i in imgtool.list_models() if i.kind == "other"] == [(info.key, True)]

    with pytest.raises(imgtool.ModelNotFoundError, match=r"^not in the cache: nothing_like_it$"):
        imgtool.remove_models([url, "nothing_like_it"])  # the others are still removed
    assert not info.path.exists()
    assert f"removed {info.key}" in caplog.messages
    assert imgtool.remove_models(["all"]) == []


def test_remove_models_takes_the_caches_by_name(isolated_home: Path) -> None:
    vectors = isolated_home / "bottlenecks" / "backbone" / "daisy"
    vectors.mkdir(parents=True)
    for i in range(3):
        (vectors / f"{i}.f32").write_bytes(b"\0" * 4096)
    (isolated_home / "exports" / ("a" * 24)).mkdir(parents=True)
    (isolated_home / "exports" / ("a" * 24) / "model.tflite").write_bytes(b"t" * 100)
    assert [(c.name, c.path, c.bytes, c.entries) for c in imgtool.list_caches()] == [
        ("bottlenecks", isolated_home / "bottlenecks", 3 * 4096, 3),
        ("exports", isolated_home / "exports", 100, 1),
        ("results", isolated_home / "results", 0, 0),
    ]
    assert imgtool.remove_models(["bottlenecks"]) == [imgtool.Removed("bottlenecks", "cache", 3 * 4096, 3)]
    assert not (isolated_home / "bottlenecks").exists() and (isolated_home / "exports").is_dir()
    assert imgtool.remove_models(["all"]) == [imgtool.Removed("exports", "cache", 100, 1)]
    assert imgtool.remove_models(["bottlenecks", "exports", "results", "all"]) == []
    assert [(c.name, c.bytes, c.entries) for c in imgtool.list_caches()] == [
        ("bottlenecks", 0, 0),
        ("exports", 0, 0),
        ("results", 0, 0),
    ]


@pytest.fixture(scope="module")
def retrained_folder(flowers: Path, embedder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model retrained on 3 classes x 10 photos (a copy of the photos: the split is recorded)."""
    base = tmp_path_factory.mktemp("api-export")
    for c in CLASSES[:3]:
        (base / "photos" / c).mkdir(parents=True)
        for f in sorted((flowers / c).iterdir())[:10]:
            shutil.copy(f, base / "photos" / c / f.name)
    result = imgtool.retrain(
        base / "photos",
        model=embedder,
        output=base / "model",
        test_percent=30,
        bottleneck_dir=base / "bn",
        tf_exports=False,
    )
    return result.output


def test_export_model_returns_typed_results_and_records_them(
    retrained_folder: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    capfd.readouterr()
    out = tmp_path / "small.tflite"
    [fl] = imgtool.export_model(retrained_folder)  # the float model, rewritten
    [dyn] = imgtool.export_model(retrained_folder, "dynamic", out)  # the float one is there: not rebuilt
    assert capfd.readouterr() == ("", "")
    assert [(type(r), r.path, r.quantize) for r in (fl, dyn)] == [
        (imgtool.ExportResult, retrained_folder / "model.tflite", "none"),
        (imgtool.ExportResult, out, "dynamic"),
    ]
    test_count = json.loads((retrained_folder / "metrics.json").read_text())["counts"]
    for r in (fl, dyn):
        assert r.bytes == r.path.stat().st_size
        assert r.test_count == sum(c["test"] for c in test_count.values()) > 0
        assert r.test_accuracy is not None and 0 <= r.test_accuracy <= 1
    assert dyn.float_test_accuracy == fl.test_accuracy
    recorded = json.loads((retrained_folder / "metrics.json").read_text())["exports"]
    assert [r.record(retrained_folder) for r in (fl, dyn)] == recorded
    assert imgtool.load_model(out).labels == CLASSES[:3]

    with pytest.raises(ValueError, match="int4"):
        imgtool.export_model(retrained_folder, "int4")  # type: ignore[arg-type]
    with pytest.raises(imgtool.UsageError, match="not a model folder"):
        imgtool.export_model(tmp_path)


def test_the_model_record_names_the_pillow_and_litert_that_made_it(retrained_folder: Path) -> None:
    """Pillow decides the input array (12 and 13 upscale differently) and LiteRT runs the
    backbone: the record names both, as installed when it was trained (issue 18)."""
    from importlib.metadata import version

    record = json.loads((retrained_folder / "imgtool-model.json").read_text())
    assert record["made_with"] == {"pillow": version("pillow"), "litert": version("ai-edge-litert")}
    from imgtool.models import retrained

    assert retrained.read(retrained_folder).made_with == record["made_with"]  # and it reads back
    assert json.loads((retrained_folder / "metrics.json").read_text())["made_with"] == record["made_with"]
