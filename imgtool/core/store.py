"""The model store under IMGTOOL_HOME: where things live and atomic writes (the locks
on its entries are locks.py).

Layout (huggingface_hub's habits: one root, temporary names, a lock per entry):

    $IMGTOOL_HOME/
      models/<key>/entry.json      the record; written last, so its presence means "complete"
      models/<key>/source/         the extracted download (SavedModel, graph, ...)
      models/<key>/*.tflite        conversions made from it, verified before use
      models/<key>/labels.txt      labels, one a line, index = line number
      bottlenecks/<backbone>/...   retraining feature cache
      locks/<key>.lock             OS file locks (released by the kernel if a process dies)
      tmp/                         downloads and extractions in progress (same filesystem)

Every name that becomes a path under the root goes through `child` (one plain path
component, so nothing is written outside it); a path written beside a user's folder or
file (retrain's -o, export's -o) goes through `files.check_target`. Temporary names
carry the writer's PID: `clean_stale` removes (or, for a previous folder a killed swap
left aside, restores) those of processes that are gone.

Layer: foundations (entries.py builds the cache-entry lifecycle on it).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imgtool.core.errors import StorageError, UsageError


def home() -> Path:
    """IMGTOOL_HOME, else the platform's user cache dir (never the cwd or /tmp)."""
    from imgtool.core import settings

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


#: A name that may become one path component under IMGTOOL_HOME (a cache key, a catalog
#: name, a lock): letters, digits, then also `.`, `_`, `+`, `-`; never `/`, `..` or a
#: leading dot; short enough that every temporary name made from it fits NAME_MAX.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
NAME_RULE = "1 to 128 letters, digits, '.', '_', '+' or '-', starting with a letter or digit"


def safe_name(name: str) -> bool:
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None and ".." not in name


def child(root: Path, name: str, what: str = "name") -> Path:
    """`root / name`, for a name that is one plain path component (see SAFE_NAME): the one
    check for every name that becomes a path under IMGTOOL_HOME."""
    if not safe_name(name):
        raise UsageError(f"{what} {name!r} cannot be used as a file name under {root}: it must be {NAME_RULE}")
    return root / name


def entry_dir(key: str) -> Path:
    return child(models_dir(), key, "cache entry name")


def offline() -> bool:
    from imgtool.core import settings

    return settings.current().offline


def temp_name(path: Path) -> Path:
    """A temporary name beside `path`, carrying this process's PID (see clean_stale)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Write to a temporary name in the same directory, fsync, rename into place.
    `durable=False` skips the fsync, for entries that verify themselves on read. The file
    is created as open() would (mode 0666 less the umask: a cache filled by one user is
    readable by others), and a failure names `path` when the OS named no file."""
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(path)  # a write() failing names no file: say which one
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


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on a folder (flock on the folder itself: no lock file is left
    beside a user's outputs, and it needs no write permission). Writers that swap entries
    of one folder take it, so two runs writing the same -o take turns instead of racing.
    Where the file system cannot lock, it is a no-op."""
    import fcntl

    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock (so does the kernel if the process dies)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False when the system
    or file system cannot, so the caller falls back to two renames."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def replace_dir(staging: Path, final: Path) -> None:
    """Move a completely written directory into place; the previous one (if any) is
    removed only after the new one is in place, so an interruption leaves one whole copy.

    Under a lock on the parent folder (two writers of one path take turns). The two are
    swapped in one atomic step where the system can; elsewhere by two renames, and a
    previous folder a killed process left at `.NAME.old-PID` is put back by the next run
    (`clean_stale`) before anything else."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(final.parent):
        clean_stale(final.parent, f".{final.name}.")
        if not os.path.lexists(final):
            os.replace(staging, final)
            return
        if _exchange(staging, final):  # staging now holds the previous copy
            shutil.rmtree(staging, ignore_errors=True)
            return
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        try:
            os.replace(staging, final)
        except BaseException:
            os.replace(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)


# .NAME.old-PID / .NAME.partial-PID / .NAME.removing-PID (folders beside an output),
# .NAME.PID[.RANDOM].tmp (atomic writes, conversions, the export cache),
# NAME.PID.incomplete|staging|download|labels|scratch (downloads, extractions, TensorFlow's scratch)
_STALE = re.compile(
    r"(?P<stem>.+?)\.(?:(?P<kind>old|partial|removing)-(?P<pid>\d+)"
    r"|(?P<pid2>\d+)(?:\.[0-9a-f]+)?\.(?:tmp|incomplete|staging|download|labels|scratch))"
)


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process (or a number we cannot ask about): keep its files
    return True


def clean_stale(folder: Path, prefix: str = "") -> list[str]:
    """Remove the temporaries (names starting with `prefix`) that processes no longer
    running left in `folder` (SIGKILL, power loss); a previous folder left aside as
    `.NAME.old-PID` while NAME is missing is renamed back instead. Returns what it did."""
    done: list[str] = []
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix)] if prefix else os.listdir(folder)
    except OSError:
        return done
    for name in sorted(names):
        m = _STALE.fullmatch(name)
        if m is None or pid_alive(int(m.group("pid") or m.group("pid2"))):
            continue
        path = Path(folder) / name
        try:
            if m.group("kind") == "old" and not os.path.lexists(final := path.with_name(m.group("stem")[1:])):
                os.replace(path, final)
                done.append(f"restored {final}")
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            done.append(f"removed {path}")
        except OSError:
            continue  # not ours to remove (permissions), or gone meanwhile
    if done:
        import logging

        logging.getLogger("imgtool.core.store").debug("left by processes that are gone: %s", "; ".join(done))
    return done


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A folder under IMGTOOL_HOME/tmp that Python's `tempfile` (and so TensorFlow's
    converter, which saves temporary SavedModels there) uses meanwhile: a killed
    conversion leaves nothing in the system's temporary folder, and the next run removes
    what it left here."""
    import tempfile

    root = tmp_dir()
    clean_stale(root)
    d = root / f"tf.{os.getpid()}.{os.urandom(4).hex()}.scratch"
    d.mkdir()
    before = tempfile.tempdir
    tempfile.tempdir = str(d)
    try:
        yield d
    finally:
        tempfile.tempdir = before
        shutil.rmtree(d, ignore_errors=True)


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
_WRITE_ONLY = {
    errno.ENOSPC: ("no space left on the device", "free some space or"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or"),
    errno.EFBIG: ("file too large for the file-size limit (ulimit -f) or the file system", "raise the limit or"),
    errno.EROFS: ("read-only file system", ""),
}
_DENIED = {
    errno.EACCES: ("permission denied", "make it writable or"),
    errno.EPERM: ("operation not permitted", "make it writable or"),
}


def is_storage_error(err: BaseException, root: Path | None = None) -> bool:
    """A write failure the user must fix: full disk, quota, file-size limit, read-only
    file system; permission denied too when it names `root`, a path under it or a folder
    above it (or when there is no root)."""
    if not isinstance(err, OSError) or isinstance(err, StorageError):
        return False
    if err.errno in _WRITE_ONLY:
        return True
    if err.errno in _DENIED:
        return root is None or _under(err.filename, root)
    return False


def _under(filename: Any, root: Path) -> bool:
    """`filename` is `root`, inside it, or a folder above it (made on the way to it)."""
    if not isinstance(filename, (str, os.PathLike)):
        return False
    path, root = Path(os.path.abspath(filename)), Path(os.path.abspath(root))
    return path == root or root in path.parents or path in root.parents


def write_cause(err: OSError) -> str:
    """The cause of a failed write in words ("no space left on the device")."""
    return {**_WRITE_ONLY, **_DENIED}.get(err.errno or 0, (err.strerror or type(err).__name__, ""))[0]


def storage_error(
    err: OSError, what: str, elsewhere: str, shown: str | Path | None = None, note: str = ""
) -> StorageError:
    """One line: what could not be written, where, why, and the fix.
    `elsewhere` completes "...or <elsewhere>" (e.g. "choose another --output")."""
    cause, fix = write_cause(err), {**_WRITE_ONLY, **_DENIED}.get(err.errno or 0, ("", ""))[1]
    where = shown if shown is not None else err.filename
    at = f" ({where})" if where else ""
    msg = f"cannot write {what}{at}: {cause}; {(fix + ' ' if fix else '')}" + elsewhere + note
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
