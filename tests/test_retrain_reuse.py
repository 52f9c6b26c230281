"""A retrain rerun reuses its output folder (and says so) exactly when its inputs are
identical to the run that wrote it (imgtool/training/reuse.py); any changed input is a full run."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from imgtool import api_store, api_training
from imgtool.training import l2_search, reuse
from imgtool.training.retraining import RetrainResult
from tests.conftest import invoke

CLASSES = ["daisy", "roses", "tulips"]
COMPARED = ("head.npz", "model.tflite", "metrics.json", "report.html", "labels.txt", "training-photos.txt")


@pytest.fixture
def data(flowers: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "photos"
    for c in CLASSES:
        (dest / c).mkdir(parents=True)
        for f in sorted((flowers / c).iterdir())[:8]:
            shutil.copy(f, dest / c / f.name)
    return dest


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the head was fitted (a reused run fits none)."""
    calls: list[int] = []
    real = l2_search.select_and_fit

    def counted(*a: Any, **k: Any) -> Any:
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(l2_search, "select_and_fit", counted)
    return calls


def _bytes(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in COMPARED}


def _same(a: RetrainResult, b: RetrainResult) -> bool:
    return (
        json.dumps(a.metrics) == json.dumps(b.metrics)
        and a.misclassified == b.misclassified
        and a.output == b.output
        and a.below_minimum == b.below_minimum
    )


def test_identical_rerun_reuses_says_so_and_matches_a_cold_run(
    data: Path,
    embedder: str,
    tmp_path: Path,
    fits: list[int],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "model"
    cold = api_training.retrain(data, model=embedder, output=out)
    assert not cold.reused and len(fits) == 1
    written = _bytes(out)
    stats = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    caplog.set_level(logging.INFO, logger="imgtool")
    caplog.clear()
    warm = api_training.retrain(data, model=embedder, output=out)
    assert warm.reused and len(fits) == 1  # nothing fitted, exported or rendered
    assert _same(warm, cold)
    assert any(m.startswith(f"reusing {out}: it was written by a run of identical inputs") for m in caplog.messages)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stats  # nothing written
    # the same inputs in a fresh IMGTOOL_HOME (no record, no bottleneck cache): a cold run, the same bytes
    monkeypatch.setenv("IMGTOOL_HOME", str(tmp_path / "other-home"))
    again = api_training.retrain(data, model=embedder, output=out)
    assert not again.reused and len(fits) == 2
    assert _bytes(out) == written
    assert _same(again, cold)


def test_cli_prints_the_same_in_every_format(
    data: Path, embedder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "model"
    args = ["retrain", str(data), "-m", embedder, "-o", str(out), "--print-misclassified"]
    for fmt in ("json", "text"):
        monkeypatch.setenv("IMGTOOL_HOME", str(tmp_path / f"home-{fmt}"))  # no record: the first run is cold
        cold = invoke(*args, "-f", fmt)
        warm = invoke(*args, "-f", fmt, "--force")  # --force permits a replacement; identical inputs still reuse
        assert warm.exit_code == cold.exit_code == 0, warm.output
        assert warm.stdout == cold.stdout and "reusing" not in cold.stderr
        assert "reusing" in warm.stderr and warm.stderr.strip().splitlines()[-1] == f"report: {out / 'report.html'}"
    quiet = invoke(*args, "-q", "-f", "json")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_min_accuracy_gate_of_a_reused_run_is_a_cold_runs(
    flowers: Path, embedder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "f"
    for c in ("daisy", "roses"):
        (data / c).mkdir(parents=True)
        for f in sorted((flowers / c).iterdir())[:10]:
            shutil.copy(f, data / c / f.name)
    for f in sorted((data / "roses").iterdir())[:5]:  # half the roses filed as daisies: no head is always right
        shutil.move(str(f), data / "daisy" / f.name)
    out = tmp_path / "model"
    args = ["retrain", str(data), "-m", embedder, "-o", str(out), "--test-percent", "40", "-f", "json"]
    assert invoke(*args).exit_code == 0
    files = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    warm = invoke(*args, "--min-accuracy", "1.0")
    monkeypatch.setenv("IMGTOOL_HOME", str(tmp_path / "other-home"))
    cold = invoke(*args, "--min-accuracy", "1.0")
    assert warm.exit_code == cold.exit_code == 1
    assert "reusing" in warm.stderr and "reusing" not in cold.stderr
    assert warm.stdout == cold.stdout and json.loads(warm.stdout)["output"] is None
    assert warm.stderr.strip().splitlines()[-1] == cold.stderr.strip().splitlines()[-1]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == files  # the gate writes and removes nothing


def _edit_photo(data: Path, **_: Any) -> None:
    p = sorted((data / "roses").iterdir())[0]
    raw = bytearray(p.read_bytes())
    raw[-3] ^= 0xFF  # one byte of the entropy-coded data: still decodes, another feature vector
    p.write_bytes(bytes(raw))


def _add_photo(data: Path, flowers: Path, **_: Any) -> None:
    extra = sorted((flowers / "roses").iterdir())[-1]
    shutil.copy(extra, data / "roses" / extra.name)


def _remove_photo(data: Path, **_: Any) -> None:
    sorted((data / "tulips").iterdir())[0].unlink()


def _tamper(out: Path, **_: Any) -> None:
    with open(out / "report.html", "a", encoding="utf-8") as fh:
        fh.write("<!-- edited -->")


def _drop_output_file(out: Path, **_: Any) -> None:
    (out / "model.tflite").unlink()


def _replace_backbone(backbone: Path, **_: Any) -> None:
    tmp = backbone.with_name(backbone.name + ".new")
    shutil.copyfile(backbone, tmp)  # the same bytes, but a new file: it is not known to be the one fitted on
    os.replace(tmp, backbone)


@pytest.mark.parametrize(
    "change,option",
    [
        (_edit_photo, {}),
        (_add_photo, {}),
        (_remove_photo, {}),
        (_tamper, {}),
        (_drop_output_file, {}),
        (_replace_backbone, {}),
        (None, {"seed": 1}),
        (None, {"label_smoothing": 0.2}),
        (None, {"quantize": "dynamic"}),
        (None, {"test_percent": 20.0}),
    ],
    ids=[
        "photo-bytes",
        "photo-added",
        "photo-removed",
        "output-tampered",
        "output-file-missing",
        "backbone-replaced",
        "seed",
        "label-smoothing",
        "quantize",
        "test-percent",
    ],
)
def test_any_changed_input_is_a_full_run(
    change: Any, option: dict[str, Any], data: Path, flowers: Path, embedder: str, tmp_path: Path, fits: list[int]
) -> None:
    backbone = tmp_path / "backbone.tflite"
    shutil.copyfile(embedder, backbone)
    out = tmp_path / "model"
    api_training.retrain(data, model=str(backbone), output=out)
    if change is not None:
        change(data=data, flowers=flowers, out=out, backbone=backbone)
    rerun = api_training.retrain(data, model=str(backbone), output=out, **option)
    assert not rerun.reused and len(fits) == 2
    assert (out / "model.tflite").is_file() and "edited" not in (out / "report.html").read_text()
    # and that run's own rerun is reused again
    assert api_training.retrain(data, model=str(backbone), output=out, **option).reused and len(fits) == 2


def test_a_photo_touched_but_unchanged_is_still_reused(
    data: Path, embedder: str, tmp_path: Path, fits: list[int]
) -> None:
    out = tmp_path / "model"
    api_training.retrain(data, model=embedder, output=out)
    p = sorted((data / "daisy").iterdir())[0]
    p.write_bytes(p.read_bytes())  # rewritten with the same bytes: new facts, the same content
    assert api_training.retrain(data, model=embedder, output=out).reused and len(fits) == 1


def test_no_reuse_into_another_folder(data: Path, embedder: str, tmp_path: Path, fits: list[int]) -> None:
    api_training.retrain(data, model=embedder, output=tmp_path / "a")
    assert not api_training.retrain(data, model=embedder, output=tmp_path / "b").reused
    assert len(fits) == 2


def test_removed_results_cache_only_means_a_full_run(
    data: Path, embedder: str, tmp_path: Path, isolated_home: Path, fits: list[int]
) -> None:
    out = tmp_path / "model"
    cold = api_training.retrain(data, model=embedder, output=out)
    written = _bytes(out)
    (info,) = [c for c in api_store.list_caches() if c.name == "results"]
    assert info.path == isolated_home / "results" and info.entries == 1 and info.bytes > 0
    assert api_store.remove_models(["results"]) == [api_store.Removed("results", "cache", info.bytes, 1)]
    assert not info.path.exists() and (isolated_home / "bottlenecks").is_dir()  # only the records went
    rerun = api_training.retrain(data, model=embedder, output=out)
    assert not rerun.reused and len(fits) == 2  # fitted again, the same result
    assert _bytes(out) == written and _same(rerun, cold)
    assert api_training.retrain(data, model=embedder, output=out).reused and len(fits) == 2  # recorded afresh


def test_the_record_is_typed_keeps_unknown_keys_and_a_damaged_one_is_a_full_run(
    data: Path, embedder: str, tmp_path: Path, isolated_home: Path, fits: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "model"
    api_training.retrain(data, model=embedder, output=out)
    (rec,) = (isolated_home / "results").glob("*.json")
    raw = rec.read_bytes()
    record = reuse.ResultsRecord.from_dict(json.loads(raw))
    assert record.output == str(out) and len(record.photos) == 24 and "model.tflite" in record.files
    assert (json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n").encode() == raw  # what remember writes
    newer = {**json.loads(raw), "written_by": "a later imgtool"}  # a key this version does not know
    rec.write_text(json.dumps(newer))
    assert reuse.ResultsRecord.from_dict(newer).extra == {"written_by": "a later imgtool"}
    assert api_training.retrain(data, model=embedder, output=out).reused and len(fits) == 1
    damaged = json.loads(raw)
    first = sorted(damaged["photos"])[0]
    damaged["photos"][first] = "not [facts, sha256]"
    rec.write_text(json.dumps(damaged))
    caplog.set_level(logging.DEBUG, logger="imgtool.training.reuse")
    assert not api_training.retrain(data, model=embedder, output=out).reused and len(fits) == 2
    assert any("is damaged: photos is " in m for m in caplog.messages)
    assert reuse.ResultsRecord.from_dict(json.loads(rec.read_bytes())).photos[first][1] is not None  # recorded afresh


def _ctime_changed_by_a_link(path: Path) -> None:
    """Plant what another folder linking the same inode does: a hard link made and removed
    (the link count changes, so the ctime does; the content does not), repeated until the
    ctime reads back different (the kernel's timestamp tick may hide a single change)."""
    before = path.stat().st_ctime_ns
    for i in range(1000):
        extra = path.with_name(f".{path.name}.link-{i}")
        os.link(path, extra)
        extra.unlink()
        if path.stat().st_ctime_ns != before:
            return
    raise AssertionError(f"the ctime of {path} did not change")


def test_a_backbone_the_cache_owns_is_reused_though_other_folders_link_it(
    data: Path, embedder: str, tmp_path: Path, isolated_home: Path, fits: list[int]
) -> None:
    """Plants a backbone .tflite under IMGTOOL_HOME (the model folder hard-links it, as it
    does a cached catalog model) and a second model folder linked to the same inode: each
    link changes the shared inode's ctime, never its bytes, so each rerun is reused."""
    backbone = isolated_home / "models" / "emb.tflite"
    backbone.parent.mkdir(parents=True)
    shutil.copyfile(embedder, backbone)
    a, b = tmp_path / "a", tmp_path / "b"
    api_training.retrain(data, model=str(backbone), output=a)
    assert (a / "backbone.tflite").stat().st_ino == backbone.stat().st_ino  # linked, not copied
    assert api_training.retrain(data, model=str(backbone), output=a).reused and len(fits) == 1  # its own link: reused
    api_training.retrain(data, model=str(backbone), output=b)  # another folder links the same inode
    _ctime_changed_by_a_link(backbone)
    assert api_training.retrain(data, model=str(backbone), output=a).reused and len(fits) == 2
    assert api_training.retrain(data, model=str(backbone), output=b).reused and len(fits) == 2


def test_an_output_rewritten_with_the_same_bytes_is_reused(
    data: Path, embedder: str, tmp_path: Path, fits: list[int]
) -> None:
    """Plants new facts (a rewrite, a link) on output files whose bytes are unchanged:
    reused; one byte more is a full run (test_any_changed_input_is_a_full_run)."""
    out = tmp_path / "model"
    api_training.retrain(data, model=embedder, output=out)
    report = out / "report.html"
    report.write_bytes(report.read_bytes())
    _ctime_changed_by_a_link(out / "model.tflite")
    assert api_training.retrain(data, model=embedder, output=out).reused and len(fits) == 1


def test_a_link_to_a_code_file_changes_no_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plants a hard link made and removed on an installed package's file (what an installer
    that links from its cache, or a copied venv, does to the shared inode): the code is the
    same, so are the inputs; the file rewritten is another version."""
    pkg = tmp_path / "site" / "fakepkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("VERSION = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(reuse, "PACKAGES", (*reuse.PACKAGES, "fakepkg"))
    before = reuse.versions()
    assert before["fakepkg"][0] == str(pkg / "__init__.py")
    _ctime_changed_by_a_link(pkg / "__init__.py")
    assert reuse.versions() == before
    (pkg / "__init__.py").write_text("VERSION = 22\n")
    assert reuse.versions() != before
