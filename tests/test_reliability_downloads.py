"""Reliability, parts 2 and 3: download faults and damaged cache state, the cases that
tests/test_models_remote.py does not already cover (it has: connection refused, 404,
500, stall mid-body, truncated and overlong bodies, dropped connection, redirect loop,
checksum mismatch, unsafe and corrupt archives, truncated cached file, damaged
conversion by size).

Added here: 429 with Retry-After and 503 (failing, and honoured-then-succeeding), a
server that never sends headers, Ctrl-C (SIGINT) mid-download then a rerun, SIGKILL
while holding the download lock then a new run, a cached file missing, a converted
.tflite deleted or corrupted at the same size, a downloaded .tflite corrupted in place.

Every server is a tests.support.httpserver.LoopbackServer on 127.0.0.1.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import IMGTOOL, default_sigint, invoke, run
from tests.support import httpserver
from tests.support.httpserver import LoopbackServer

# Reused from the download tests (fixtures and helpers), not duplicated.
from tests.test_models_remote import _top1, built, served  # noqa: F401

pytestmark = pytest.mark.slow

ROUTE = "/hub/cls.tar.gz"  # the default model (inception_v3) in test_models_remote's _catalog()
ENTRY = "inception_v3"


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("Error: ")]


def _assert_nothing_cached(home: Path) -> None:
    assert not (home / "models" / ENTRY / "entry.json").exists()
    tmp = home / "tmp"
    assert not tmp.exists() or [p.name for p in tmp.iterdir()] == []


def _cached_ok(home: Path) -> bool:
    from imgtool.models.entries import entry_ok as _entry_ok

    return _entry_ok(home / "models" / ENTRY)[0]


# ------------------------------------------------------------------ HTTP faults not covered elsewhere


@pytest.mark.parametrize(
    "fault,says",
    [
        ("429", "server answered HTTP 429"),
        ("503", "server answered HTTP 503"),
        ("stall_headers", "timed out waiting for the server"),
    ],
)
def test_fault_is_exit_3_clean_and_next_attempt_succeeds(
    fault: str, says: str, served: LoopbackServer, built: dict, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGTOOL_TIMEOUT", "1")
    monkeypatch.setenv("IMGTOOL_RETRIES", "1")
    served.set_fault(ROUTE, fault)
    t0 = time.monotonic()
    res = run("classify", str(built["red"]), timeout=60)
    assert time.monotonic() - t0 < 30  # a stalled server costs the timeout, not forever
    assert res.returncode == 3, res.stderr
    err = _error_lines(res.stderr)
    assert len(err) == 1 and ENTRY in err[0] and says in err[0], res.stderr
    assert "Traceback" not in res.stderr
    _assert_nothing_cached(isolated_home)
    served.set_fault(ROUTE, None)
    again = run("classify", "-f", "jsonl", str(built["red"]))
    assert again.returncode == 0, again.stderr
    assert _top1(again.stdout) == {"red": ("label 1", 1)}


@pytest.mark.parametrize("fault", ["429", "503"])
def test_retryable_status_is_retried_after_the_wait(
    fault: str, served: LoopbackServer, built: dict, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """429 carries Retry-After: 1 (503 none: the default wait, 1 s). With 2 attempts, the
    second comes after the wait and succeeds once the server recovers."""
    monkeypatch.setenv("IMGTOOL_RETRIES", "2")
    served.set_fault(ROUTE, fault)
    times: list[float] = []
    stop = threading.Event()

    def recover_after_first_hit() -> None:
        while not stop.is_set():
            n = served.hits(ROUTE)
            if n >= 1 and not times:
                times.append(time.monotonic())
                served.set_fault(ROUTE, None)
            if n >= 2:
                times.append(time.monotonic())
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=recover_after_first_hit, daemon=True)
    watcher.start()
    try:
        res = run("classify", "-f", "jsonl", str(built["red"]), timeout=120)
    finally:
        stop.set()
        watcher.join(5)
    assert res.returncode == 0, res.stderr
    assert _top1(res.stdout) == {"red": ("label 1", 1)}
    assert served.hits(ROUTE) == 2
    assert len(times) == 2 and times[1] - times[0] >= 0.8, times  # waited ~Retry-After before retrying
    assert _cached_ok(isolated_home)


# ------------------------------------------------------------------ interruption mid-download


def _held_download(served: LoopbackServer, built: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server sends the headers and the first 64 bytes, then holds the rest until the
    client goes away: the download cannot finish before the test's signal, however busy
    the machine (a slow but finishing body raced the signal and sometimes won)."""
    monkeypatch.setattr(httpserver, "STALL_SECONDS", 600.0)  # the hold outlasts any wait here
    monkeypatch.setenv("IMGTOOL_TIMEOUT", "600")  # and the client's read timeout never fires first
    served.add(ROUTE, built["cls_tgz"].read_bytes(), fault="stall", chunk_size=64)


def _start_and_wait_until_downloading(home: Path, built: dict) -> subprocess.Popen:
    """Start a classify that downloads the model; return once it is writing the body
    (its `.incomplete` file exists: the headers and the first bytes were served)."""
    proc = subprocess.Popen(
        [IMGTOOL, "classify", "-f", "jsonl", str(built["red"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if any((home / "tmp").glob("*.incomplete")):
            return proc
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the download never started")


def test_sigint_mid_download_then_rerun(
    served: LoopbackServer, built: dict, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _held_download(served, built, monkeypatch)
    proc = _start_and_wait_until_downloading(isolated_home, built)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "Interrupted; nothing half-written was kept."
    assert out == ""
    _assert_nothing_cached(isolated_home)
    served.add(ROUTE, built["cls_tgz"].read_bytes())  # the next attempt, at full speed
    again = run("classify", "-f", "jsonl", str(built["red"]))
    assert again.returncode == 0, again.stderr
    assert _top1(again.stdout) == {"red": ("label 1", 1)}
    assert served.hits(ROUTE) == 2
    assert _cached_ok(isolated_home)


def test_sigkill_while_holding_the_download_lock_then_new_run_proceeds(
    served: LoopbackServer, built: dict, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from filelock import FileLock, Timeout

    _held_download(served, built, monkeypatch)
    proc = _start_and_wait_until_downloading(isolated_home, built)
    lock_file = isolated_home / "locks" / f"{ENTRY}.lock"
    with pytest.raises(Timeout):  # it really holds the entry's lock
        FileLock(str(lock_file), timeout=0.1).acquire()
    proc.kill()  # SIGKILL: no cleanup runs
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    leftovers = sorted(p.name for p in (isolated_home / "tmp").iterdir())
    assert leftovers and all(n.startswith(f"{ENTRY}.{proc.pid}.") for n in leftovers), leftovers
    assert lock_file.exists()  # the stale lock file is left behind ...
    assert not (isolated_home / "models" / ENTRY / "entry.json").exists()  # ... and nothing that looks cached

    served.add(ROUTE, built["cls_tgz"].read_bytes())
    t0 = time.monotonic()
    again = run("classify", "-f", "jsonl", str(built["red"]), timeout=120)
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - t0 < 60  # did not wait on the dead process's lock
    assert _top1(again.stdout) == {"red": ("label 1", 1)}
    assert again.stderr.count(f"Downloading {ENTRY} from") == 1
    assert [p.name for p in (isolated_home / "tmp").iterdir()] == []  # the killed run's leftovers removed
    assert _cached_ok(isolated_home)


# ------------------------------------------------------------------ damaged state


def test_cached_file_missing_and_conversion_missing_or_unloadable(
    served: LoopbackServer, built: dict, isolated_home: Path
) -> None:
    assert invoke("models", "download", "-q").exit_code == 0
    entry = isolated_home / "models" / ENTRY
    record = json.loads((entry / "entry.json").read_text())

    # 1. a file of the download is missing (not truncated): re-fetched, one line
    victim = sorted(r for r in record["files"] if r.startswith("source/variables/"))[0]
    (entry / victim).unlink()
    res = invoke("classify", "-f", "jsonl", str(built["red"]))
    assert res.exit_code == 0, res.output
    assert _top1(res.stdout) == {"red": ("label 1", 1)}
    assert res.stderr.count(f"cached model {ENTRY} is damaged ({victim} is missing); downloading it again") == 1
    assert served.hits(ROUTE) == 2 and _cached_ok(isolated_home)

    # 2. the converted .tflite is missing: converted again, one line
    (entry / "model.tflite").unlink()
    res = invoke("classify", "-f", "jsonl", str(built["green"]))
    assert res.exit_code == 0, res.output
    assert _top1(res.stdout) == {"green": ("label 2", 2)}
    assert res.stderr.count(f"the cached conversion model.tflite of {ENTRY} is damaged; converting again") == 1

    # 3. the converted .tflite has the recorded size but no longer loads: converted again, one line
    size = (entry / "model.tflite").stat().st_size
    (entry / "model.tflite").write_bytes(b"\0" * size)
    res = invoke("classify", "-f", "jsonl", str(built["blue"]))
    assert res.exit_code == 0, res.output
    assert _top1(res.stdout) == {"blue": ("label 3", 3)}
    assert res.stderr.count(f"the cached conversion {entry / 'model.tflite'} no longer loads; converting again") == 1
    assert served.hits(ROUTE) == 2  # none of this downloaded again
    res = invoke("classify", "-f", "jsonl", str(built["blue"]))
    assert res.exit_code == 0 and "again" not in res.stderr  # and it stays repaired


def test_downloaded_tflite_corrupted_in_place_is_refetched(
    http_server: LoopbackServer, fixtures: Path, isolated_home: Path
) -> None:
    model = fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite"
    parrot = str(fixtures / "imagenet" / "images" / "parrot.jpg")
    url = http_server.add("/m.tflite", model.read_bytes())
    first = run("classify", "-m", url, "-k", "1", "-f", "jsonl", parrot)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["predictions"][0]["label"] == "macaw"
    [cached] = (isolated_home / "models").glob("url-*/source/model.tflite")
    cached.write_bytes(b"\0" * cached.stat().st_size)  # bit rot / a partial overwrite, same size
    res = run("classify", "-m", url, "-k", "1", "-f", "jsonl", parrot)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["predictions"][0]["label"] == "macaw"
    assert "downloading it again" in res.stderr
    assert http_server.hits("/m.tflite") == 2


# ------------------------------------------------------------------ faults whose handling breaks the promise


def test_tflite_body_longer_than_content_length_is_not_cached(
    http_server: LoopbackServer, fixtures: Path, isolated_home: Path
) -> None:
    """The .tflite twin of test_models_remote's `overlong` case (an archive fails to
    extract, so it was never cached; a bare .tflite is copied as it came)."""
    model = fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite"
    parrot = str(fixtures / "imagenet" / "images" / "parrot.jpg")
    url = http_server.add("/m.tflite", model.read_bytes(), fault="overlong")
    res = run("classify", "-m", url, parrot)
    assert res.returncode == 3, res.stderr
    err = _error_lines(res.stderr)
    assert len(err) == 1 and url in err[0], res.stderr
    assert not list((isolated_home / "models").glob("*/entry.json")), "a half-downloaded model looks cached"
    http_server.set_fault("/m.tflite", None)
    again = run("classify", "-m", url, "-k", "1", "-f", "jsonl", parrot)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["predictions"][0]["label"] == "macaw"


def test_corrupt_archive_is_one_line_naming_the_model(served: LoopbackServer, built: dict, isolated_home: Path) -> None:
    served.add(ROUTE, b"\x1f\x8b\x08\x00garbage" * 10)
    res = run("classify", str(built["red"]))
    assert res.returncode == 3
    lines = res.stderr.strip().splitlines()
    assert [ln.split(" ", 1)[0] for ln in lines] == ["Downloading", "Error:"], lines
    assert lines[1].startswith(f"Error: {ENTRY}: not a readable .tar.gz archive"), lines[1]
    assert ".download" not in lines[1]
    _assert_nothing_cached(isolated_home)
    served.add(ROUTE, built["cls_tgz"].read_bytes())
    assert run("classify", "-q", str(built["red"])).returncode == 0
