"""Reliability, part 4: concurrent work sharing one IMGTOOL_HOME.

* two `classify` processes on a cold cache (one download, both classify), then on a
  damaged cache entry (one re-download, one "damaged" line, both classify);
* two `retrain` processes on overlapping copies of flowers-mini (so they compute and
  write the same bottleneck entries at the same time), each into its own -o: both
  succeed, both outputs load, every bottleneck entry verifies, and a third run finds
  everything cached.

(Two processes downloading and converting a TF model at once is
tests/test_models_remote.py::test_two_processes_download_once; an interrupted retrain
is tests/test_retrain.py::test_interrupted_run_keeps_previous_model_and_cache.)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import IMGTOOL, invoke
from tests.support.httpserver import LoopbackServer

pytestmark = pytest.mark.slow

#: fixtures/README.md: the top-1 label of mobilenet_v2_1.0_224_quant for each photo.
TOP1 = {
    "cat.bmp": "Egyptian cat",
    "parrot.jpg": "macaw",
    "grace_hopper.bmp": "military uniform",
    "sunflower.bmp": "daisy",
}


def _together(*argvs: list[str], timeout: float = 300) -> list[tuple[int, str, str]]:
    procs = [
        subprocess.Popen([IMGTOOL, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for argv in argvs
    ]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def _top1_by_name(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        r = json.loads(line)
        out[Path(r["path"]).name] = r["predictions"][0]["label"]
    return out


def test_two_classify_processes_share_one_home(
    http_server: LoopbackServer, fixtures: Path, isolated_home: Path
) -> None:
    model = (fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite").read_bytes()
    # 3.6 MB in 64 KB chunks, 20 ms apart (~1.1 s): both processes are certainly in flight together
    url = http_server.add("/mobilenet.tflite", model, chunk_size=65536, delay_per_chunk=0.02)
    photos = [str(fixtures / "imagenet" / "images" / n) for n in TOP1]
    argv = ["classify", "-m", url, "-f", "jsonl", "-k", "1", *photos]

    results = _together(argv, argv)
    for code, out, err in results:
        assert code == 0, err
        assert "Traceback" not in err
        assert _top1_by_name(out) == TOP1
    assert http_server.hits("/mobilenet.tflite") == 1
    assert sum(err.count("Downloading http") for _, _, err in results) == 1

    [entry] = (isolated_home / "models").iterdir()
    from imgtool.models.entries import entry_ok as _entry_ok

    assert _entry_ok(entry) == (True, "")
    (entry / "source" / "model.tflite").unlink()  # damaged while nobody runs
    results = _together(argv, argv)
    for code, out, err in results:
        assert code == 0, err
        assert _top1_by_name(out) == TOP1
    assert http_server.hits("/mobilenet.tflite") == 2  # re-fetched once, not twice
    assert (
        sum(err.count("is damaged (source/model.tflite is missing); downloading it again") for _, _, err in results)
        == 1
    )
    assert _entry_ok(entry) == (True, "")
    assert [p.name for p in (isolated_home / "tmp").iterdir()] == []
    assert not [p for p in (isolated_home / "models").iterdir() if p.name.startswith(".")]  # no .old-PID dirs


def _copy(src: Path, dest: Path, classes: list[str], start: int, stop: int) -> Path:
    for c in classes:
        (dest / c).mkdir(parents=True)
        for f in sorted((src / c).iterdir())[start:stop]:
            shutil.copy(f, dest / c / f.name)
    return dest


def _verify_bottlenecks(root: Path, dim: int) -> int:
    """Every entry: 32-byte sha256 of the payload, then `dim` float32. Returns the count."""
    entries = list(root.rglob("*.f32"))
    for p in entries:
        blob = p.read_bytes()
        assert len(blob) == 32 + 4 * dim, (p, len(blob))
        assert hashlib.sha256(blob[32:]).digest() == blob[:32], p
        assert p.name == f"{p.name[:64]}.f32" and p.parent.name == p.name[:2]
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")], "temporary files left behind"
    return len(entries)


def test_two_retrain_processes_share_one_home(fixtures: Path, tmp_path: Path, isolated_home: Path) -> None:
    flowers = fixtures / "flowers-mini"
    embedder = str(fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
    classes = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    a = _copy(flowers, tmp_path / "a" / "flowers", classes, 0, 30)  # photos 0..29 of each class
    b = _copy(flowers, tmp_path / "b" / "flowers", classes, 15, 45)  # photos 15..44: half shared with a
    out_a, out_b = tmp_path / "model-a", tmp_path / "model-b"

    results = _together(
        ["retrain", str(a), "-m", embedder, "-o", str(out_a), "-f", "json"],
        ["retrain", str(b), "-m", embedder, "-o", str(out_b), "-f", "json"],
    )
    for code, out, err in results:
        assert code == 0, err
        assert "Traceback" not in err and "damaged" not in err
        m = json.loads(out)
        assert m["classes"] == classes and m["train"]["count"] + m["validation"]["count"] + m["test"]["count"] == 150

    # both outputs load and classify
    for out_dir, data in ((out_a, a), (out_b, b)):
        photos = [str(sorted((data / c).iterdir())[0]) for c in classes]
        res = invoke("classify", "-m", str(out_dir), "-f", "jsonl", "-k", "5", *photos)
        assert res.exit_code == 0, res.output
        for line in res.stdout.splitlines():
            r = json.loads(line)
            assert sorted(p["label"] for p in r["predictions"]) == classes
            assert abs(sum(p["score"] for p in r["predictions"]) - 1) < 1e-3
        with np.load(out_dir / "head.npz", allow_pickle=False) as npz:
            assert npz["weights"].shape == (1024, 5) and np.isfinite(npz["weights"]).all()

    # the shared bottleneck cache: one entry per distinct photo, every one intact
    assert _verify_bottlenecks(isolated_home / "bottlenecks", dim=1024) == 5 * 45
    memo = list((isolated_home / "bottlenecks" / "model-hashes").iterdir())
    assert len(memo) == 1 and len(memo[0].read_text().strip()) == 64

    # a third run over both photo sets finds everything cached, nothing damaged
    both = _copy(flowers, tmp_path / "both" / "flowers", classes, 0, 45)
    res = invoke("retrain", str(both), "-m", embedder, "-o", str(tmp_path / "model-both"), "--epochs", "2")
    assert res.exit_code == 0, res.output
    assert "Computing" not in res.stderr and "damaged" not in res.stderr
