"""Mistakes a real user makes, each answered with one line naming the fix (issue 16 item 6).
The rules live in the library (typed errors); these tests see them through the CLI's words
and exit codes. The Roboflow/split-named folder rules are in tests/test_splits.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import imgtool
from imgtool.cli.command import TF_FLAGS
from imgtool.core.errors import ModelNotFoundError, UsageError
from tests.conftest import invoke


def _error_line(res) -> str:  # noqa: ANN001
    lines = res.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), res.stderr
    return lines[-1]


def test_a_model_path_that_does_not_exist_is_no_such_file(photos: Path) -> None:
    photo = str(photos / "parrot.jpg")
    for ref in ("./missing.tflite", "missing.tflite", "models/flowers-model", "model.tar.gz"):
        res = invoke("classify", "-m", ref, photo)
        assert res.exit_code == 3, res.output
        assert _error_line(res) == (
            f"Error: {ref}: no such file or folder; give the path of a model file (.tflite, "
            ".pb, .tar.gz), a SavedModel or retrained folder, or a catalog name"
        )
        assert "did you mean" not in res.stderr
    # a mistyped catalog name (dots and all) still gets its suggestion
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'mobilenet_v2_1.0_22'.*did you mean"):
        imgtool.load_model("mobilenet_v2_1.0_22")


def test_models_path_suggests_a_download_only_for_what_can_be_downloaded() -> None:
    res = invoke("models", "path", "NOSUCH")
    assert res.exit_code == 3
    line = _error_line(res)
    assert line.startswith("Error: NOSUCH is not in the cache, and cannot be fetched: unknown model 'NOSUCH'")
    assert "download" not in line
    res = invoke("models", "path", "inception_v3")
    assert res.exit_code == 3
    assert _error_line(res).endswith("; `imgtool models download inception_v3` fetches it")


def test_a_model_given_as_an_input_to_classify_is_exit_2_before_any_download(
    mobilenet: str, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`imgtool classify MODEL_DIR photo.jpg` (arguments swapped) tried to download the
    default model. Now: exit 2 at once. Offline, a download attempt would be exit 3."""
    monkeypatch.setenv("IMGTOOL_OFFLINE", "1")
    folder = tmp_path / "flowers-model"
    folder.mkdir()
    (folder / "imgtool-model.json").write_text("{}")
    photo = str(photos / "parrot.jpg")
    for model in (str(folder), mobilenet):
        res = invoke("classify", model, photo)
        assert res.exit_code == 2, res.output
        assert _error_line(res) == f"Error: {model}: that is a model, not an image; did you mean `-m {model}`?"
    # the library says the same, in its own words
    loaded = imgtool.load_model(mobilenet)
    with pytest.raises(UsageError, match=r"that is a model, not an image; did you mean `load_model\("):
        loaded.classify([photo, str(folder)])
    assert loaded.classify(photo)[0].predictions[0].label == "macaw"  # a photo is still a photo


def test_labels_of_a_feature_extractor_is_exit_2_in_classifys_words(embedder: str, photos: Path) -> None:
    labels = invoke("labels", "-m", embedder)
    classify = invoke("classify", "-m", embedder, str(photos / "cat.bmp"))
    assert labels.exit_code == classify.exit_code == 2
    assert _error_line(labels) == _error_line(classify)
    assert "is a feature extractor (1024-wide feature vectors), not a classifier" in _error_line(labels)
    with pytest.raises(UsageError, match="is a feature extractor"):
        imgtool.api.model_labels(embedder)


@pytest.mark.parametrize("flag", sorted(TF_FLAGS))
def test_a_tensorflow_script_flag_names_what_replaces_it(flag: str) -> None:
    script, instead = TF_FLAGS[flag]
    for command in (["retrain"], ["classify"]):
        res = invoke(*command, f"{flag}=x" if flag.endswith("_dir") else flag, "x")
        assert res.exit_code == 2, res.output
        assert _error_line(res) == f"Error: {flag} is a flag of TensorFlow's {script}; in imgtool: {instead}"


def test_the_tensorflow_flags_say_the_examples_of_the_issue() -> None:
    def said(flag: str) -> str:
        return _error_line(invoke("retrain", flag, "1"))

    assert said("--image_dir").endswith("in imgtool: the IMAGE_DIR argument: imgtool retrain IMAGE_DIR")
    assert "-m/--model" in said("--tfhub_module")
    assert "not needed: the last layer is fitted to convergence" in said("--how_many_training_steps")
    assert "--value-range LO,HI with LO = -mean/std and HI = (255 - mean)/std" in said("--input_mean")
    assert said("--input_std") == said("--input_mean").replace("--input_mean", "--input_std")
    # after a bare `--` (Beam's options) nothing is looked at; our own --labels is not label_image's
    from imgtool.cli.command import tf_flag_error

    assert tf_flag_error(["--", "--image_dir=x"], set()) is None
    assert tf_flag_error(["--labels", "x"], {"--labels"}) is None


def test_value_range_and_input_size_the_tflite_contradicts_are_exit_2(
    mobilenet: str, embedder: str, photos: Path, tmp_path: Path
) -> None:
    """A uint8 model's quantization already says what 0..255 means; a .tflite's input size
    is fixed. Both were used (or ignored) silently: garbage, or not what was asked."""
    photo = str(photos / "parrot.jpg")
    res = invoke("classify", "-m", mobilenet, "--value-range", "0,255", photo)
    assert res.exit_code == 2
    assert _error_line(res) == (
        f"Error: --value-range 0,255 does not apply to {mobilenet}: its input is quantized "
        "(uint8: pixel values 0..255 already stand for -1..0.992188); leave --value-range out"
    )
    res = invoke("classify", "-m", mobilenet, "--input-size", "100,100", photo)
    assert res.exit_code == 2
    assert _error_line(res) == (
        f"Error: --input-size 100,100 does not apply to {mobilenet}: a .tflite has a fixed "
        "input size, here 224,224; leave --input-size out"
    )
    # what agrees with the model is fine (within one quantization step)
    res = invoke("classify", "-m", mobilenet, "--value-range", "-1,1", "--input-size", "224,224", "-f", "jsonl", photo)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["predictions"][0]["label"] == "macaw"
    # retrain's backbone, before any photo is read
    data = tmp_path / "d"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for p in sorted(photos.iterdir())[:2]:
            shutil.copy(p, data / c / p.name)
    res = invoke("retrain", str(data), "-m", embedder, "--value-range", "0,1", "-o", str(tmp_path / "m"))
    assert res.exit_code == 2 and "--value-range 0,1 does not apply to" in _error_line(res)
    assert "bottlenecks" not in res.stderr and not (tmp_path / "m").exists()


def test_labels_search_without_a_match_says_so_and_exits_1(mobilenet: str) -> None:
    res = invoke("labels", "-m", mobilenet, "-s", "zzzz")
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.strip() == (f"no label contains 'zzzz' (of the 1001 labels of {mobilenet}; try a shorter TEXT)")
    found = invoke("labels", "-m", mobilenet, "-s", "macaw")
    assert found.exit_code == 0 and found.stdout == "89\tmacaw\n" and found.stderr == ""


def test_split_named_folders_through_retrain(embedder: str, photos: Path, tmp_path: Path) -> None:
    """The layout rules of tests/test_splits.py, in the CLI's words: exit 2 before any model
    work for train/ alone; a warning naming the options for test/ beside real classes."""

    def folder(root: Path, classes: list[str]) -> Path:
        for c in classes:
            (root / c).mkdir(parents=True)
            for p in sorted(photos.iterdir())[:2]:
                shutil.copy(p, root / c / p.name)
        return root

    lone = folder(tmp_path / "lone" / "train", ["cats", "dogs"]).parent
    res = invoke("retrain", str(lone), "-m", embedder, "-o", str(tmp_path / "m1"))
    assert res.exit_code == 2 and "holds only train/, named like a split" in _error_line(res)
    assert "Computing" not in res.stderr
    beside = folder(tmp_path / "beside", ["cats", "dogs", "test"])
    res = invoke(
        "retrain",
        str(beside),
        "-m",
        embedder,
        "-o",
        str(tmp_path / "m2"),
        "--test-percent",
        "0",
        "--validation-percent",
        "0",
    )
    assert res.exit_code == 0, res.output
    assert (
        f"warning: {beside}: test/ is named like a split but used as a class beside 2 others; if held-out "
        "photos are in there, give them as --validation-dir or --test-dir instead"
    ) in res.stderr.splitlines()


def test_retrain_refusals_in_the_clis_words(
    flowers: Path, fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each retrain refusal that tests/test_retrain_checks.py sees as a library error, here
    as the CLI says it: the one line, on stderr, exit 2, before the backbone runs."""
    from imgtool.runtime import engine

    def fail(*a, **k):  # noqa: ANN202
        raise AssertionError("the backbone ran")

    monkeypatch.setattr(engine.LiteRTEngine, "run", fail)

    def folder(dest: Path, *, start: int = 0, classes: tuple[str, ...] = ("daisy", "roses")) -> Path:
        for c in classes:
            (dest / c).mkdir(parents=True, exist_ok=True)
            for f in sorted((flowers / c).iterdir())[start : start + 4]:
                shutil.copy(f, dest / c / f.name)
        return dest

    data = folder(tmp_path / "data")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "imgtool-model.json").write_text(json.dumps({"image_dir": "/somewhere/else"}))
    split = tmp_path / "ds"
    folder(split / "train")
    folder(split / "val", start=4)
    folder(split / "val", classes=("tulips",))
    clf = fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite"
    embedder = fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
    cases = [
        (
            (str(data), "-o", str(mine)),
            f"Error: --output {mine} exists and is not an imgtool model; choose another path, empty it, or pass "
            "--force to replace it",
        ),
        (
            (str(data), "-o", str(other)),
            f"Error: --output {other} holds a model of other photos (/somewhere/else); choose another path or pass "
            "--force to replace it",
        ),
        (
            (str(data), "--min-accuracy", "0.9", "--test-percent", "0"),
            "Error: --min-accuracy needs test photos, and there are none (--test-percent is 0); raise --test-percent, "
            "give --test-dir, or drop --min-accuracy",
        ),
        (
            (str(data), "-m", str(clf), "-o", str(tmp_path / "m")),
            f"Error: --model {clf} is a classifier, not a feature extractor (its output is 1001 class probabilities "
            "(a SOFTMAX), not features); give a feature-vector model (e.g. mobilenet_v1_embedding, which ships with "
            "imgtool, a *_feature_vector catalog model, or an embedding extractor .tflite)",
        ),
        (
            (str(split), "-m", str(embedder), "-o", str(tmp_path / "m2")),
            f"Error: {split}: the class folders of val/ differ from train/'s: val/ has tulips that train/ has not; "
            "every split needs the same classes",
        ),
    ]
    for args, line in cases:
        res = invoke("retrain", *args)
        assert (res.exit_code, res.stdout, res.stderr.strip()) == (2, "", line), args
    assert (mine / "notes.txt").read_text() == "keep"
    assert not (tmp_path / "m").exists() and not (tmp_path / "m2").exists()
