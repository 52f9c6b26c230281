"""The lock on a cache entry, between processes: one process downloads, converts or
removes an entry while the others wait for it, and say so.

An OS file lock (filelock: fcntl), under `$IMGTOOL_HOME/locks/<name>.lock`, so a killed
process's lock vanishes with it and a stale lock file is harmless. A process that has
to wait says so at once and every NOTICE_EVERY seconds after (info lines: `--quiet`
silences them), and gives up after IMGTOOL_LOCK_TIMEOUT seconds (default an hour) with
LockTimeoutError (exit 3) naming the entry, the lock file and the fix. A folder's own
lock, taken by the writers of one output folder, is `store.folder_lock`.

Layer: foundations (on store, settings and ui)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from imgtool.core import settings, store, ui
from imgtool.core.errors import LockTimeoutError

if TYPE_CHECKING:
    from filelock import BaseFileLock

#: Seconds between two "still waiting" lines of a process waiting for a lock.
NOTICE_EVERY = 10.0


@contextlib.contextmanager
def lock(name: str, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock called `name` (one plain path component, see
    store.SAFE_NAME), waiting at most `timeout` seconds (None: IMGTOOL_LOCK_TIMEOUT)."""
    from filelock import FileLock

    d = store.home() / "locks"
    path = store.child(d, name, "lock name")
    d.mkdir(parents=True, exist_ok=True)
    held = FileLock(f"{path}.lock")
    _acquire(held, name, settings.current().lock_timeout if timeout is None else timeout)
    try:
        yield
    finally:
        held.release()


def _acquire(held: BaseFileLock, name: str, timeout: float) -> None:
    """Take the lock, or wait for it in steps of NOTICE_EVERY seconds, one line each."""
    from filelock import Timeout

    try:
        held.acquire(timeout=0)
        return
    except Timeout:
        pass
    ui.info(
        f"waiting for another imgtool process to finish with {name} (it holds {held.lock_file}); "
        f"giving up after {_seconds(timeout)}"
    )
    waited = 0.0
    while True:
        step = min(NOTICE_EVERY, timeout - waited)
        try:
            held.acquire(timeout=step)
            return
        except Timeout:
            waited += step
        if waited >= timeout:
            raise LockTimeoutError(
                f"{name}: another imgtool process has held its lock ({held.lock_file}) for {_seconds(timeout)}; "
                "let it finish or stop it, or set IMGTOOL_LOCK_TIMEOUT to wait longer"
            ) from None
        ui.info(
            f"still waiting for {name} ({_seconds(waited)} so far; giving up after {_seconds(timeout)}, "
            "IMGTOOL_LOCK_TIMEOUT)"
        )


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s >= 10 else f"{s:g} s"
