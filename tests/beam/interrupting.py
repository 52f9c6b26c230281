"""Interrupt a real `python -m imgtool.beam` run once it has started writing: shared by
the local-runner and the worker-pool interrupt tests."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def interrupt_once_writing(
    args: list[str], out: Path, sig: int, *, wait_s: float, cwd: Path | None = None
) -> tuple[int, str, float]:
    """Start `python -m imgtool.beam ARGS`, wait (up to `wait_s`) for the writer's temporary
    folder `out/beam-temp-x-*` — the run has started — then send `sig`. Returns the exit
    code, stderr, and the seconds from the signal to the exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgtool.beam", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if list(out.glob("beam-temp-x-*")) or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(sig)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=120)
        return proc.returncode, err, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
