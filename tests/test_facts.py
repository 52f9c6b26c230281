"""The per-model-file facts record (imgtool/runtime/facts.py): a warm run reads it instead of the
model's flatbuffer and metadata zip, exactly when the model file is the one recorded; a
changed model or labels file is seen; the results are the same either way."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import imgtool

PHOTO = "parrot.jpg"


def _classify(model: Path, photo: Path, labels: Path | None = None) -> list[dict]:
    m = imgtool.load_model(str(model), labels=str(labels) if labels else None)
    return [r.to_dict() for r in m.classify([str(photo)], top_k=5)]


def _said(caplog: pytest.LogCaptureFixture, word: str) -> int:
    return sum(1 for r in caplog.records if r.name == "imgtool.runtime.facts" and word in r.getMessage())


@pytest.fixture
def model_copy(tmp_path: Path, mobilenet: str) -> Path:
    dest = tmp_path / "m" / "mobilenet_v2.tflite"  # a copy of its own, so the test may change it
    dest.parent.mkdir()
    shutil.copyfile(mobilenet, dest)
    return dest


def test_warm_run_reuses_the_record_and_gives_the_same_results(
    model_copy: Path, photos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="imgtool.runtime.facts")
    cold = _classify(model_copy, photos / PHOTO)
    assert _said(caplog, "reused") == 0 and _said(caplog, "written") >= 1
    records = list((Path(os.environ["IMGTOOL_HOME"]) / "facts").glob("*.json"))
    assert len(records) == 1
    caplog.clear()
    warm = _classify(model_copy, photos / PHOTO)
    assert _said(caplog, "reused") >= 1 and _said(caplog, "written") == 0
    assert warm == cold
    assert cold[0]["predictions"][0]["label"] == "macaw"  # the embedded labels, from the record on the warm run


def test_a_changed_model_file_invalidates_the_record(
    model_copy: Path, photos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="imgtool.runtime.facts")
    cold = _classify(model_copy, photos / PHOTO)
    # The same bytes, rewritten as a download or conversion would be (a new file renamed into place).
    fresh = tmp_path / "new.tflite"
    shutil.copyfile(model_copy, fresh)
    os.replace(fresh, model_copy)
    caplog.clear()
    again = _classify(model_copy, photos / PHOTO)
    assert _said(caplog, "reused") == 0 and _said(caplog, "written") >= 1
    assert again == cold
    # Only the mtime changes (same inode, same size): not the recorded file either.
    st = model_copy.stat()
    os.utime(model_copy, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    caplog.clear()
    assert _classify(model_copy, photos / PHOTO) == cold
    assert _said(caplog, "reused") == 0


def test_a_record_for_another_file_state_is_not_believed(model_copy: Path, photos: Path) -> None:
    """A record whose identity does not match the file (or a damaged one) is ignored and rewritten."""
    cold = _classify(model_copy, photos / PHOTO)
    (record,) = (Path(os.environ["IMGTOOL_HOME"]) / "facts").glob("*.json")
    record.write_text("{not json")
    assert _classify(model_copy, photos / PHOTO) == cold
    assert '"embedded_labels"' in record.read_text()


def test_a_changed_labels_file_is_seen_on_a_warm_run(
    model_copy: Path, photos: Path, fixtures: Path, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.txt"
    shutil.copyfile(fixtures / "imagenet" / "imagenet_labels.txt", labels)
    first = _classify(model_copy, photos / PHOTO, labels)
    assert first[0]["predictions"][0]["label"] == "macaw"
    lines = labels.read_text(encoding="utf-8").splitlines()
    top = first[0]["predictions"][0]["index"]
    lines[top] = "big parrot"
    labels.write_text("\n".join(lines) + "\n", encoding="utf-8")
    second = _classify(model_copy, photos / PHOTO, labels)
    assert second[0]["predictions"][0]["label"] == "big parrot"
    assert [p["score"] for p in second[0]["predictions"]] == [p["score"] for p in first[0]["predictions"]]


def test_a_read_only_home_still_classifies(model_copy: Path, photos: Path) -> None:
    """The record cannot be written: the facts are read from the model, the results are the same."""
    base = Path(tempfile.mkdtemp(prefix="imgtool-facts-ro-"))  # outside pytest's 0700 tmp, for uid 65534
    try:
        base.chmod(0o755)
        model, photo, ro = base / model_copy.name, base / PHOTO, base / "ro-home"
        shutil.copyfile(model_copy, model)
        shutil.copyfile(photos / PHOTO, photo)
        ro.mkdir(mode=0o555)
        cold = _classify(model, photo)
        code = (
            "import json, sys, imgtool; m = imgtool.load_model(sys.argv[1]); "
            "print(json.dumps([r.to_dict() for r in m.classify([sys.argv[2]], top_k=5)]))"
        )
        env = {**os.environ, "IMGTOOL_HOME": str(ro)}
        out = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                sys.executable,
                "-c",
                code,
                str(model),
                str(photo),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=base,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == cold
        assert not any(ro.iterdir())
    finally:
        shutil.rmtree(base, ignore_errors=True)
