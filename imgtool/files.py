"""Every file imgtool reads that a user gave or a folder holds, opened one way: a regular
file only (a FIFO opened for reading waits for a writer forever; a device can be
endless), never more than a stated number of bytes.

`problem(path)` says why a path cannot be read as a file (None: it can), without opening
it; `open_regular` opens it with O_NONBLOCK and checks the opened file (no window between
the check and the open); `read_bytes` / `read_text` read it under a size cap. Images
(images.py), models given with `model`, labels files, a model folder's backbone and the
labels in a .tflite's metadata all go through here. Each caller turns the one-line
reason into its own error (ImageError, UsageError or ModelError) and exit code.

Layer: foundations (imports nothing of imgtool)."""

from __future__ import annotations

import os
import stat
from typing import IO

NOT_REGULAR = "not a regular file (a FIFO, socket or device)"
IS_DIR = "is a directory, not a file"

# Caps on what is read in full (memory), far above anything real:
LABELS_MAX_BYTES = 16 << 20  # a labels file: 21k ImageNet classes are ~0.5 MB
RECORD_MAX_BYTES = 16 << 20  # a JSON record (imgtool-model.json, entry.json, metrics.json)


class FileProblem(ValueError):
    """A path that cannot be read as a file: `str(err)` is the one-line reason."""


def stat_problem(path: str | os.PathLike[str]) -> tuple[os.stat_result | None, str | None]:
    """stat() without opening: (the result, None) or (None, why it failed)."""
    try:
        return os.stat(path), None
    except FileNotFoundError:
        if os.path.islink(path):
            return None, "broken symbolic link (its target does not exist)"
        return None, "no such file or directory"
    except OSError as err:
        return None, f"cannot access ({err.strerror or err})"


def problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` cannot be read as a regular file, or None when it can. Never opens it."""
    st, why = stat_problem(path)
    if st is not None and stat.S_ISDIR(st.st_mode):
        return IS_DIR
    if st is not None and not stat.S_ISREG(st.st_mode):
        return NOT_REGULAR
    return why


def check(path: str | os.PathLike[str]) -> None:
    """FileProblem unless `path` is a regular file."""
    why = problem(path)
    if why is not None:
        raise FileProblem(why)


def open_regular(path: str | os.PathLike[str]) -> IO[bytes]:
    """The file opened for reading (binary). Opened non-blocking, so a FIFO swapped in
    after any earlier check still cannot hang the open, then checked as opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileProblem(problem(path) or "no such file or directory") from None
    except IsADirectoryError:
        raise FileProblem(IS_DIR) from None
    except PermissionError:
        raise FileProblem("permission denied; make the file readable") from None
    except OSError as err:
        raise FileProblem(f"cannot open ({err.strerror or err})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise FileProblem(IS_DIR)
        if not stat.S_ISREG(mode):
            raise FileProblem(NOT_REGULAR)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike[str], cap: int) -> bytes:
    """The whole file, which must be a regular file of at most `cap` bytes."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > cap:
            raise FileProblem(f"{size:,} bytes, more than the {cap:,} this file may have")
        try:
            data = fh.read(cap + 1)
        except OSError as err:
            raise FileProblem(f"cannot read ({err.strerror or err})") from None
    if len(data) > cap:  # grew while being read
        raise FileProblem(f"more than the {cap:,} bytes this file may have")
    return data


def read_text(path: str | os.PathLike[str], cap: int) -> str:
    """read_bytes decoded as UTF-8 (FileProblem when it is not UTF-8 text)."""
    try:
        return read_bytes(path, cap).decode("utf-8")
    except UnicodeDecodeError:
        raise FileProblem("not UTF-8 text") from None
