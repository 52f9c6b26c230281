"""retrain-last-layer and evaluate: real photos + real backbone, and the anchors' failures."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import imgtool
from imgtool.core.errors import DatasetError, UsageError
from tests.conftest import IMGTOOL, default_sigint, invoke, run

# every test runs the real backbone over photos, or `imgtool` as a subprocess
pytestmark = pytest.mark.heavy

CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def _copy_subset(src: Path, dest: Path, per_class: int, classes: list[str] = CLASSES) -> Path:
    for c in classes:
        (dest / c).mkdir(parents=True)
        for f in sorted((src / c).iterdir())[:per_class]:
            shutil.copy(f, dest / c / f.name)
    return dest


def test_flowers_accuracy_classify_labels_evaluate(flowers: Path, embedder: str, tmp_path: Path) -> None:
    out = tmp_path / "flowers-model"
    res = invoke("retrain", str(flowers), "-m", embedder, "-o", str(out), "--format", "json")
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    # the fixture README: a logistic last layer on these features reaches ~83-85% held out.
    # The test split is ~10% (about 20 photos), so the floor leaves room for its noise.
    assert m["test"]["accuracy"] >= 0.70, m["test"]
    assert m["test"]["count"] + m["validation"]["count"] + m["train"]["count"] == 250
    assert m["classes"] == CLASSES
    assert all(m["counts"][c]["test"] >= 1 and m["counts"][c]["validation"] >= 1 for c in CLASSES)
    assert "Computing 250 bottlenecks" in res.stderr
    for name in ("imgtool-model.json", "backbone.tflite", "head.npz", "labels.txt", "metrics.json", "report.html"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"] == m["test"] and saved["options"]["class_weight"] == "balanced"
    head = saved["head"]
    assert head["fit_on"] == "train+validation" and head["cv_folds"] == 5 and head["epochs"] is None
    assert head["l2"] in [c["l2"] for c in head["candidates"]]
    assert head["cv_loss"] == min(c["cv_loss"] for c in head["candidates"])
    assert head["curve"]["x"] == [c["l2"] for c in head["candidates"]] and head["curve"]["x_label"] == "L2"
    assert 0.7 <= head["cv_accuracy"] <= 0.95 and head["cv_accuracy_std"] > 0
    assert m["test"]["baseline"]["accuracy"] < 0.5
    html = (out / "report.html").read_text()
    # thumbnails: the misclassified test photos, and the 10 training photos whose labels to check
    assert "Confusion matrix" in html and html.count("data:image/jpeg;base64,") == len(m["misclassified"]) + 10
    assert len(m["suspects"]) == 10 and "Check these labels (10)" in html
    # the run ends saying where to look; metrics.json keeps the mistakes (export re-renders the report from it)
    assert res.stderr.strip().splitlines()[-1] == f"report: {out / 'report.html'}"
    assert m["report"] == str(out / "report.html")
    assert saved["misclassified"] == m["misclassified"] and m["misclassified"]

    labels = invoke("labels", "-m", str(out)).stdout.splitlines()
    assert labels == [f"{i}\t{c}" for i, c in enumerate(CLASSES)]
    photos = [str(sorted((flowers / c).iterdir())[0]) for c in CLASSES]
    records = imgtool.classify(photos, model=out, top_k=5)
    assert len(records) == len(CLASSES) and all(r.error is None for r in records)
    assert all(sorted(p.label for p in r.predictions) == CLASSES for r in records)
    assert all(abs(sum(p.score for p in r.predictions) - 1) < 1e-3 for r in records)
    ev = invoke("evaluate", "-m", str(out), str(flowers), "-f", "json")
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["accuracy"] >= 0.85  # mostly training photos: high
    gate = invoke("evaluate", "-m", str(out), str(flowers), "--min-accuracy", "1.0")
    assert gate.exit_code == 1 and "below --min-accuracy 100.0% by" in gate.stderr


def test_second_run_does_no_backbone_work_and_same_seed_same_model(
    flowers: Path, embedder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = _copy_subset(flowers, tmp_path / "f", 12)
    caplog.set_level("INFO", logger="imgtool")
    first = imgtool.retrain(data, model=embedder, output=tmp_path / "a")
    assert first.output == tmp_path / "a"
    assert "Computing 60 bottlenecks (cached for next time)" in caplog.messages
    caplog.clear()
    from imgtool.runtime import engine

    def no_backbone(*a, **k):
        raise AssertionError("the backbone ran on a warm cache")

    monkeypatch.setattr(engine.LiteRTEngine, "run", no_backbone)
    assert imgtool.retrain(data, model=embedder, output=tmp_path / "b").output == tmp_path / "b"
    assert not [m for m in caplog.messages if m.startswith("Computing")]
    a, b = np.load(tmp_path / "a" / "head.npz"), np.load(tmp_path / "b" / "head.npz")
    assert np.array_equal(a["weights"], b["weights"]) and np.array_equal(a["bias"], b["bias"])
    other = imgtool.retrain(data, model=embedder, output=tmp_path / "c", seed=7).metrics
    # the seed draws the cross-validation folds: other out-of-fold scores; the fit itself
    # is the unique minimum for the chosen L2, so the head differs only if the L2 or the
    # temperature (fitted on those out-of-fold scores) does
    first_metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert first_metrics["head"] == first.metrics["head"]
    first_head, seven = first_metrics["head"], other["head"]
    assert [c["cv_loss"] for c in first_head["candidates"]] != [c["cv_loss"] for c in seven["candidates"]]
    c = np.load(tmp_path / "c" / "head.npz")["weights"]
    same_t = first_metrics["calibration"]["temperature"] == other["calibration"]["temperature"]
    assert np.array_equal(c, a["weights"]) == (seven["l2"] == first_head["l2"] and same_t)


def test_small_class_is_a_clear_error_before_any_model_work(
    flowers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgtool.models import resolve

    def fail(*a, **k):  # noqa: ANN202
        raise AssertionError("model work (a download of the default backbone) before the checks")

    monkeypatch.setattr(resolve, "resolve", fail)
    data = _copy_subset(flowers, tmp_path / "f", 5, ["daisy", "roses"])
    for f in sorted((data / "roses").iterdir())[1:]:
        f.unlink()
    with pytest.raises(DatasetError) as info:
        imgtool.retrain(data)  # default backbone: would need a download
    assert info.value.exit_code == 2 and info.value.parameter is None
    assert str(info.value) == (
        "class 'roses' has 1 usable photo for training; each class needs at least 2 outside "
        "the test split (cross-validation needs 2 of each); add photos or remove the folder"
    )
    res = invoke("retrain", str(data))  # the CLI's words, once
    assert (res.exit_code, res.stdout) == (2, "")
    assert res.stderr.strip() == f"Error: {info.value}"
    shutil.rmtree(data / "roses")
    with pytest.raises(DatasetError, match=r"need at least 2 classes.*\(daisy\)"):
        imgtool.retrain(data)
    with pytest.raises(UsageError, match="no such folder") as info:
        imgtool.retrain(tmp_path / "nope")
    assert info.value.exit_code == 2


def test_corrupt_and_non_jpeg_photos(
    flowers: Path, embedder: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from PIL import Image

    data = _copy_subset(flowers, tmp_path / "f", 6, ["daisy", "tulips"])
    src = sorted((flowers / "daisy").iterdir())[10]
    Image.open(src).save(data / "daisy" / "as_png.png")
    Image.open(src).convert("L").save(data / "daisy" / "grey.bmp")
    (data / "daisy" / "broken.jpg").write_bytes(src.read_bytes()[:2000])
    (data / "tulips" / "notes.jpg").write_text("not a photo")
    (data / "tulips" / ".DS_Store").write_bytes(b"\0\1junk")
    caplog.set_level("WARNING", logger="imgtool")
    m = imgtool.retrain(data, model=embedder, output=tmp_path / "m").metrics
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping")]
    assert len(skipped) == 2
    assert any("broken.jpg" in s and "truncated" in s for s in skipped)
    assert any("notes.jpg" in s for s in skipped)
    assert sum(m["counts"]["daisy"].values()) == 8 and sum(m["counts"]["tulips"].values()) == 6
    assert {Path(s["path"]).name for s in m["skipped"]} == {"broken.jpg", "notes.jpg"}


def test_truncated_cache_entry_is_recomputed(
    flowers: Path, embedder: str, tmp_path: Path, isolated_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _copy_subset(flowers, tmp_path / "f", 4, ["daisy", "roses"])
    assert imgtool.retrain(data, model=embedder, output=tmp_path / "m").output == tmp_path / "m"
    entries = sorted((isolated_home / "bottlenecks").rglob("*.f32"))
    assert len(entries) == 8
    entries[0].write_bytes(entries[0].read_bytes()[:50])
    entries[1].write_bytes(b"")
    flipped = bytearray(entries[2].read_bytes())
    flipped[-1] ^= 0xFF
    entries[2].write_bytes(bytes(flipped))
    # another output: a rerun into "m" reuses that folder (its inputs are identical) and reads no cache
    caplog.set_level("INFO", logger="imgtool")
    assert imgtool.retrain(data, model=embedder, output=tmp_path / "m2").output == tmp_path / "m2"
    assert "3 damaged bottleneck cache entries removed; recomputing" in caplog.text
    assert "Computing 3 bottlenecks (cached for next time)" in caplog.messages


def test_moving_the_folder_keeps_the_split(flowers: Path, embedder: str, tmp_path: Path) -> None:
    data = _copy_subset(flowers, tmp_path / "one" / "flowers", 10)
    a = imgtool.retrain(data, model=embedder, output=tmp_path / "a").metrics
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(str(data), moved)
    b = imgtool.retrain(moved, model=embedder, output=tmp_path / "b").metrics
    assert a["counts"] == b["counts"] and a["test"] == b["test"]
    # adding images moves no old one
    from imgtool.data import folders, splits

    classes, files = folders.scan(moved)
    before = {s.rel: s.split for s in splits.assign_splits(files, len(classes), 10, 10)}
    _copy_extra = sorted((flowers / "daisy").iterdir())[30:40]
    for f in _copy_extra:
        shutil.copy(f, moved / "daisy" / f.name)
    classes, files = folders.scan(moved)
    after = {s.rel: s.split for s in splits.assign_splits(files, len(classes), 10, 10)}
    assert all(after[k] == v for k, v in before.items())


def test_min_accuracy_gate_writes_nothing(flowers: Path, embedder: str, tmp_path: Path) -> None:
    data = _copy_subset(flowers, tmp_path / "f", 10, ["daisy", "roses"])
    # half the roses filed as daisies: no head can be right on every test photo
    for f in sorted((data / "roses").iterdir())[:5]:
        shutil.move(str(f), data / "daisy" / f.name)
    result = imgtool.retrain(data, model=embedder, output=tmp_path / "m", min_accuracy=1.0, test_percent=40)
    assert result.output is None and result.report is None and result.below_minimum is not None
    assert result.below_minimum.startswith("accuracy ") and "below `min_accuracy` 100.0% by " in result.below_minimum
    assert result.metrics["test"]["accuracy"] < 1.0
    assert not (tmp_path / "m").exists()
    res = invoke(
        "retrain", str(data), "-m", embedder, "-o", str(tmp_path / "m"), "--min-accuracy", "1.0", "--test-percent", "40"
    )  # the CLI's exit code and words
    assert res.exit_code == 1, res.output
    err = res.stderr.strip().splitlines()[-1]
    assert err.startswith("Error: accuracy ") and "below --min-accuracy 100.0% by " in err
    assert not (tmp_path / "m").exists()


def test_default_output_never_overwrites_another_folder(
    flowers: Path, embedder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _copy_subset(flowers, tmp_path / "data" / "flowers", 4, ["daisy", "roses"])
    work = tmp_path / "work"
    work.mkdir()
    (work / "flowers-model").mkdir()
    (work / "flowers-model" / "precious.txt").write_text("mine")
    monkeypatch.chdir(work)
    res = invoke("retrain", str(data), "-m", embedder)  # the CLI says where it wrote
    assert res.exit_code == 0, res.output
    assert (work / "flowers-model" / "precious.txt").read_text() == "mine"
    assert (work / "flowers-model-2" / "imgtool-model.json").is_file()
    assert f"model written to {work / 'flowers-model-2'}" in res.stderr
    again = imgtool.retrain(data, model=embedder)  # same folder: its own previous model is replaced
    assert again.output is not None and again.output.resolve() == (work / "flowers-model-2").resolve()
    assert not (work / "flowers-model-3").exists()
    monkeypatch.chdir(data)  # inside the image folder: the default goes beside it
    inside = imgtool.retrain(data, model=embedder)
    assert inside.output is not None and inside.output.resolve() == (data.parent / "flowers-model").resolve()
    assert (data.parent / "flowers-model" / "labels.txt").is_file()
    with pytest.raises(UsageError) as info:
        imgtool.retrain(data, model=embedder, output=data / "out")
    assert (info.value.parameter, info.value.path) == ("output", str(data / "out"))
    assert "inside the image folder" in str(info.value)
    bad = invoke("retrain", str(data), "-m", embedder, "-o", str(data / "out"))
    assert bad.exit_code == 2 and f"Error: --output {data / 'out'} is inside the image folder" in bad.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_keeps_previous_model_and_cache(sig: int, flowers: Path, embedder: str, tmp_path: Path) -> None:
    out = tmp_path / "model"
    small = _copy_subset(flowers, tmp_path / "small", 3, ["daisy", "roses"])
    assert run("retrain", str(small), "-m", embedder, "-o", str(out), "-q").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen(
        [
            IMGTOOL,
            "retrain",
            str(flowers),
            "-m",
            embedder,
            "-o",
            str(out),
            "--force",
            "--bottleneck-dir",
            str(tmp_path / "bn"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "IMGTOOL_THREADS": "1"},
        preexec_fn=default_sigint,
    )
    assert proc.stderr is not None
    # the signal goes when the first bottleneck is in the cache (an event, not a delay: on busy
    # cores a fixed sleep either fires before any bottleneck or after the whole run)
    deadline = time.monotonic() + 240
    while not any((tmp_path / "bn").rglob("*.f32")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(sig)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, rest
    assert "Traceback" not in rest and "Interrupted" in rest
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.partial")]
    cached = len(list((tmp_path / "bn").rglob("*.f32")))
    assert 0 < cached < 250
    again = run(
        "retrain", str(flowers), "-m", embedder, "-o", str(out), "--force", "--bottleneck-dir", str(tmp_path / "bn")
    )
    assert again.returncode == 0, again.stderr
    assert f"Computing {250 - cached} bottlenecks" in again.stderr
    assert (out / "labels.txt").read_text().split() == CLASSES


def test_distortions_and_summaries(
    flowers: Path, embedder: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _copy_subset(flowers, tmp_path / "f", 5, ["daisy", "roses"])
    caplog.set_level("INFO", logger="imgtool")
    result = imgtool.retrain(
        data,
        model=embedder,
        output=tmp_path / "m",
        flip_left_right=True,
        random_crop=10,
        random_scale=10,
        random_brightness=10,
        distorted_copies=2,
        summaries_dir=tmp_path / "tb",
    )
    said = caplog.text
    assert "Distortions on:" in said and "not cached" in said
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert m["options"] == result.metrics["options"] and m["options"]["distortions"]["copies"] == 2
    fit = sum(n["train"] + n["validation"] for n in m["counts"].values())
    assert f"Fitting the last layer on {fit} photos + {2 * fit} distorted copies" in said
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_summaries_without_tensorboard_is_a_usage_error_naming_the_extra(
    flowers: Path, embedder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorBoard is the `summaries` extra: without it, summaries_dir is exit 2 before any work."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    data = _copy_subset(flowers, tmp_path / "f", 3, ["daisy", "roses"])
    with pytest.raises(UsageError) as info:
        imgtool.retrain(data, model=embedder, output=tmp_path / "m", summaries_dir=tmp_path / "tb")
    assert (info.value.parameter, info.value.exit_code) == ("summaries_dir", 2)
    assert str(info.value) == (
        "`summaries_dir` needs TensorBoard, which is not installed; "
        "pip install 'imgtool-ml[summaries]' (`make install` includes it)"
    )
    res = invoke(
        "retrain", str(data), "-m", embedder, "-o", str(tmp_path / "m"), "--summaries-dir", str(tmp_path / "tb")
    )
    assert res.exit_code == 2, res.output
    assert res.stderr.strip() == (
        "Error: --summaries-dir needs TensorBoard, which is not installed; "
        "pip install 'imgtool-ml[summaries]' (`make install` includes it)"
    )
    assert not (tmp_path / "m").exists() and not (tmp_path / "tb").exists()
    assert "bottlenecks" not in res.stderr


def test_deprecated_training_options_warn_and_change_nothing(flowers: Path, embedder: str, tmp_path: Path) -> None:
    data = _copy_subset(flowers, tmp_path / "f", 6, ["daisy", "roses"])
    plain = invoke("retrain", str(data), "-m", embedder, "-o", str(tmp_path / "a"), "-f", "json")
    old = invoke(
        "retrain",
        str(data),
        "-m",
        embedder,
        "-o",
        str(tmp_path / "b"),
        "--steps",
        "10",
        "--batch-size",
        "4",
        "--epochs",
        "3",
        "--learning-rate",
        "0.5",
        "-f",
        "json",
    )
    assert plain.exit_code == 0 and old.exit_code == 0, old.output
    assert "warning: --epochs, --steps, --learning-rate, --batch-size are deprecated and ignored" in old.stderr
    a, b = np.load(tmp_path / "a" / "head.npz"), np.load(tmp_path / "b" / "head.npz")
    assert np.array_equal(a["weights"], b["weights"])
