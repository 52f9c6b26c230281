"""Every file imgtool reads that a user gave or a folder holds, opened one way: a regular
file only (a FIFO opened for reading waits for a writer forever; a device can be
endless), never more than a stated number of bytes.

`problem(path)` says why a path cannot be read as a file (None: it can), without opening
it; `open_regular` opens it with O_NONBLOCK and checks the opened file (no window between
the check and the open); `read_bytes` / `read_text` read it under a size cap. Images
(images.py), models given with `model`, labels files, a model folder's backbone and the
labels in a .tflite's metadata all go through here. Each caller turns the one-line
reason into its own error (ImageError, UsageError or ModelError) and exit code.

Every path imgtool writes or replaces beside a user's files (retrain's -o, export's -o)
goes through `check_target` (lengths, symbolic links, file types, what it would replace).

Layer: foundations (imports only errors)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Literal

from imgtool.core.errors import Param, UsageError

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


# ---------------------------------------------------------------- paths written beside a user's files

#: What a temporary name adds to the name it is made from (".NAME.partial-PID",
#: ".NAME.PID.RANDOM.tmp"): a name within NAME_MAX less this can always be written.
TEMP_NAME_OVERHEAD = 32


def _name_max(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _check_name_length(path: Path, what: str | Param) -> None:
    """UsageError unless every part of `path` fits the file system with room for its
    temporary name, and the whole fits PATH_MAX."""
    text = os.fsencode(os.path.abspath(path))
    longest = max((len(part) for part in text.split(b"/")), default=0)
    limit = _name_max(Path(os.path.abspath(path)).parent) - TEMP_NAME_OVERHEAD
    if longest > limit or len(text) > 4096 - TEMP_NAME_OVERHEAD:
        raise UsageError(
            what + f" {path}: the name is too long ({longest} bytes in one part; this file system "
            f"takes {limit + TEMP_NAME_OVERHEAD}, and {TEMP_NAME_OVERHEAD} are needed for the temporary "
            "name it is first written under); choose a shorter path",
            path=path,
        )


def _check_kind(path: Path, what: str | Param, kind: Literal["file", "folder"]) -> None:
    """UsageError when `path` exists as something else than a `kind`."""
    if os.path.lexists(path):
        mode = os.lstat(path).st_mode
        if kind == "file" and not stat.S_ISREG(mode):
            other = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
            raise UsageError(what + f" {path} is {other}; it is never replaced: give a file path", path=path)
        if kind == "folder" and not stat.S_ISDIR(mode):
            other = "a file" if stat.S_ISREG(mode) else "not a folder (a device, FIFO or socket)"
            raise UsageError(what + f" {path} is {other}; give a folder path", path=path)


def check_target(
    path: Path,
    what: str | Param,
    *,
    kind: Literal["file", "folder"],
    protected: Iterable[tuple[str, Path | None]] = (),
    ours: Callable[[Path], bool] | None = None,
    force: bool = False,
) -> None:
    """The one check of a path imgtool is about to write or replace beside a user's files
    (retrain's output folder, export's output file), before any work (UsageError, exit 2):

    * every part of the name fits the file system (with room for the temporary name it
      is first written under), the whole fits PATH_MAX;
    * a symbolic link is refused (replacing it would leave the folder it points to and
      turn the link into a real folder: name the real place instead);
    * something of another type is refused, `force` or not (a device, a FIFO, a folder
      where a file is written, a file where a folder is);
    * it may not be or contain a `protected` path (the image folder, IMGTOOL_HOME):
      replacing it would delete them;
    * an existing non-empty one that `ours` does not recognise is replaced only with
      `force`."""
    _check_name_length(path, what)
    if os.path.islink(path):
        raise UsageError(
            what + f" {path} is a symbolic link (to {os.readlink(path)}); it is not followed or "
            "replaced: give the path it points to, or another path",
            path=path,
        )
    _check_kind(path, what, kind)
    out = Path(os.path.abspath(path)).resolve()
    for name, guarded in protected:
        if guarded is None:
            continue
        g = Path(os.path.abspath(guarded)).resolve()
        if out == g or out in g.parents:
            raise UsageError(
                what + f" {path} {'is' if out == g else 'contains'} {name} ({guarded}); replacing "
                "it would delete them: choose another path",
                path=path,
            )
    if force or ours is None or not os.path.lexists(path):
        return
    if kind == "folder" and not any(Path(path).iterdir()):
        return
    if not ours(Path(path)):
        raise UsageError(
            what + f" {path} exists and is not {'a file' if kind == 'file' else 'a folder'} imgtool "
            "wrote; choose another path, remove it, or pass " + Param("force") + " to replace it",
            path=path,
        )
