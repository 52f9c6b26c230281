"""A cache entry's lock held by another process: the wait says so (then every
NOTICE_EVERY seconds), gives up after IMGTOOL_LOCK_TIMEOUT with one line and exit 3,
and proceeds as soon as the other process lets go. The holder is a real second process."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgtool.core import locks
from imgtool.core.errors import EXIT_MODEL, LockTimeoutError
from tests.conftest import IMGTOOL, run
from tests.support.httpserver import LoopbackServer
from tests.test_models_remote import built, served  # noqa: F401

ENTRY = "inception_v3"  # the default model of test_models_remote's catalog

HOLDER = """
import sys
from imgtool.core import locks
with locks.lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()  # until the test says to let go
"""


@pytest.fixture
def holder(isolated_home: Path) -> Iterator[subprocess.Popen]:
    """Another process holding ENTRY's lock until its stdin gets a line."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, ENTRY], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def _waiting_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "imgtool" and "waiting" in r.getMessage()]


def test_the_wait_says_so_every_notice_and_the_timeout_is_a_lock_timeout_error(
    holder: subprocess.Popen, isolated_home: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(locks, "NOTICE_EVERY", 0.25)
    monkeypatch.setenv("IMGTOOL_LOCK_TIMEOUT", "0.75")
    caplog.set_level(logging.INFO, logger="imgtool")
    lock_file = isolated_home / "locks" / f"{ENTRY}.lock"
    with pytest.raises(LockTimeoutError) as err, locks.lock(ENTRY):
        raise AssertionError("the lock was taken while another process held it")
    assert _waiting_lines(caplog) == [
        f"waiting for another imgtool process to finish with {ENTRY} (it holds {lock_file}); giving up after 0.75 s",
        f"still waiting for {ENTRY} (0.25 s so far; giving up after 0.75 s, IMGTOOL_LOCK_TIMEOUT)",
        f"still waiting for {ENTRY} (0.5 s so far; giving up after 0.75 s, IMGTOOL_LOCK_TIMEOUT)",
    ]
    assert str(err.value) == (
        f"{ENTRY}: another imgtool process has held its lock ({lock_file}) for 0.75 s; "
        "let it finish or stop it, or set IMGTOOL_LOCK_TIMEOUT to wait longer"
    )
    assert err.value.exit_code == EXIT_MODEL and isinstance(err.value, TimeoutError)


def test_a_free_lock_is_taken_without_a_word(isolated_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="imgtool")
    with locks.lock(ENTRY):
        pass
    assert _waiting_lines(caplog) == []


def test_the_cli_waits_then_gives_up_in_one_line_exit_3(
    served: LoopbackServer, holder: subprocess.Popen, isolated_home: Path
) -> None:
    env = {"IMGTOOL_LOCK_TIMEOUT": "1"}
    res = run("models", "download", ENTRY, env=env, timeout=120)
    lock_file = isolated_home / "locks" / f"{ENTRY}.lock"
    assert res.returncode == EXIT_MODEL, res.stderr
    assert res.stderr.splitlines() == [
        f"waiting for another imgtool process to finish with {ENTRY} (it holds {lock_file}); giving up after 1 s",
        f"Error: {ENTRY}: another imgtool process has held its lock ({lock_file}) for 1 s; let it finish or stop "
        "it, or set IMGTOOL_LOCK_TIMEOUT to wait longer",
    ]
    quiet = run("models", "download", "-q", ENTRY, env=env, timeout=120)
    assert quiet.returncode == EXIT_MODEL and quiet.stderr.splitlines() == res.stderr.splitlines()[1:]
    assert served.hits("/hub/cls.tar.gz") == 0  # nothing was downloaded meanwhile


def test_the_cli_proceeds_once_the_other_process_lets_go(
    served: LoopbackServer, holder: subprocess.Popen, isolated_home: Path
) -> None:
    proc = subprocess.Popen(
        [IMGTOOL, "models", "download", ENTRY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.startswith(f"waiting for another imgtool process to finish with {ENTRY} "), first
    assert holder.stdin is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()
    _, rest = proc.communicate(timeout=240)
    assert proc.returncode == 0, rest
    assert "Error" not in rest and served.hits("/hub/cls.tar.gz") == 1
    assert (isolated_home / "models" / ENTRY / "entry.json").is_file()
