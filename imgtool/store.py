"""The model store under IMGTOOL_HOME: where things live, locks, and atomic writes.

Layout (huggingface_hub's habits: one root, temporary names, a lock per entry):

    $IMGTOOL_HOME/
      models/<key>/entry.json      the record; written last, so its presence means "complete"
      models/<key>/source/         the extracted download (SavedModel, graph, ...)
      models/<key>/*.tflite        conversions made from it, verified before use
      models/<key>/labels.txt      labels, one a line, index = line number
      bottlenecks/<backbone>/...   retraining feature cache
      locks/<key>.lock             OS file locks (released by the kernel if a process dies)
      tmp/                         downloads and extractions in progress (same filesystem)

Layer: foundations (entries.py builds the cache-entry lifecycle on it).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imgtool.errors import StorageError


def home() -> Path:
    """IMGTOOL_HOME, else the platform's user cache dir (never the cwd or /tmp)."""
    from imgtool import settings

    env = settings.current().home
    if env is not None:
        return env
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("imgtool", appauthor=False))


def models_dir() -> Path:
    return home() / "models"


def tmp_dir() -> Path:
    d = home() / "tmp"
    d.mkdir(parents=True, exist_ok=True)
    return d


def entry_dir(key: str) -> Path:
    return models_dir() / key


def offline() -> bool:
    from imgtool import settings

    return settings.current().offline


@contextlib.contextmanager
def lock(name: str, timeout: float = 3600.0) -> Iterator[None]:
    """An exclusive lock between processes. It is an OS (fcntl) lock, so a killed
    process's lock vanishes with it: a stale lock file is harmless."""
    from filelock import FileLock

    d = home() / "locks"
    d.mkdir(parents=True, exist_ok=True)
    with FileLock(str(d / f"{name}.lock"), timeout=timeout):
        yield


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Write to a temporary name in the same directory, fsync, rename into place.
    `durable=False` skips the fsync, for entries that verify themselves on read."""
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file's content, read in 1 MiB chunks: the key of a photo's
    cached bottleneck, a download's checksum and a staged model's name."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def replace_dir(staging: Path, final: Path) -> None:
    """Move a completely written directory into place; the previous one (if any) is
    removed only after the new one is in place, so an interruption leaves one whole copy."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        try:
            os.replace(staging, final)
        except BaseException:
            os.replace(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)


def read_json(path: Path) -> Any | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def dir_size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return total


# ---------------------------------------------------------------- write failures a user must fix

# errno -> (cause, what to do). ENOSPC/EDQUOT/EFBIG/EROFS only ever come from writing;
# EACCES/EPERM also from reading, so `writing()` converts those only under its root.
_WRITE_ONLY = {errno.ENOSPC: ("no space left on the device", "free some space or"),
               errno.EDQUOT: ("disk quota exceeded", "free some space or"),
               errno.EFBIG: ("file too large for the file-size limit (ulimit -f) or the file system",
                             "raise the limit or"),
               errno.EROFS: ("read-only file system", "")}
_DENIED = {errno.EACCES: ("permission denied", "make it writable or"),
           errno.EPERM: ("operation not permitted", "make it writable or")}


def is_storage_error(err: BaseException, root: Path | None = None) -> bool:
    """A write failure the user must fix: full disk, quota, file-size limit, read-only
    file system; permission denied too when it names a path under `root` (or no root)."""
    if not isinstance(err, OSError) or isinstance(err, StorageError):
        return False
    if err.errno in _WRITE_ONLY:
        return True
    if err.errno in _DENIED:
        return root is None or _under(err.filename, root)
    return False


def _under(filename: Any, root: Path) -> bool:
    if not isinstance(filename, (str, os.PathLike)):
        return False
    path, root = Path(os.path.abspath(filename)), Path(os.path.abspath(root))
    return path == root or root in path.parents


def write_cause(err: OSError) -> str:
    """The cause of a failed write in words ("no space left on the device")."""
    return {**_WRITE_ONLY, **_DENIED}.get(err.errno or 0, (err.strerror or type(err).__name__, ""))[0]


def storage_error(err: OSError, what: str, elsewhere: str, shown: str | Path | None = None,
                  note: str = "") -> StorageError:
    """One line: what could not be written, where, why, and the fix.
    `elsewhere` completes "...or <elsewhere>" (e.g. "choose another --output")."""
    cause, fix = write_cause(err), {**_WRITE_ONLY, **_DENIED}.get(err.errno or 0, ("", ""))[1]
    where = shown if shown is not None else err.filename
    at = f" ({where})" if where else ""
    msg = f"cannot write {what}{at}: {cause}; {(fix + ' ' if fix else '')}{elsewhere}{note}"
    return StorageError(msg, err.errno, str(where) if where else None)


@contextlib.contextmanager
def writing(what: str, root: Path | None, elsewhere: str) -> Iterator[None]:
    """Turns a write failure the user must fix (see `is_storage_error`) into a
    StorageError naming the file; other errors pass through. Usable as a decorator."""
    try:
        yield
    except OSError as err:
        if not is_storage_error(err, root):
            raise
        raise storage_error(err, what, elsewhere) from None


@contextlib.contextmanager
def cache_writing() -> Iterator[None]:
    """For code that fills the model cache (downloads, conversions, locks); as a
    decorator, IMGTOOL_HOME is read at each call."""
    with writing("the model cache", home(), "set IMGTOOL_HOME to a writable folder with space"):
        yield
