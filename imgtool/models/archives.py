"""Unpacking a downloaded model archive, safely: .tar (gzip, bzip2, xz or plain) or .zip,
told apart by their bytes, not their names (Kaggle serves either from one URL).

Absolute paths, `..`, links pointing outside the target and device files are refused
(tarfile's 'data' filter; the same rules by hand for zip), and so is an archive bomb, on
its headers, before anything is written: more than MAX_MEMBERS members or MAX_EXTRACT_BYTES
unpacked (exit 3), or more than the free space (exit 4).

Layer: foundations (on store)."""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path

from imgtool.core import store
from imgtool.core.errors import ModelError, StorageError, first_line

#: Caps on what an archive may unpack to, checked on its headers before anything is
#: written: 4x the largest model expected (a ~250 MB SavedModel), and a member count no
#: model needs (a SavedModel has a few dozen files).
MAX_EXTRACT_BYTES = 1 << 30
MAX_MEMBERS = 10_000

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def archive_kind(path: Path) -> str:
    """ "zip", "tflite" or "tar" (tarfile tells gzip/bzip2/xz/plain itself), by the bytes,
    not the name: Kaggle serves zip or tar.gz from the same URL."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:4] in ZIP_MAGIC:
        return "zip"
    if head[4:8] == b"TFL3":
        return "tflite"
    return "tar"


def extract_archive(archive: Path, target: Path, what: str = "") -> None:
    """Extract a .tar/.tar.gz or .zip (told apart by their bytes) safely: absolute paths,
    `..`, links pointing outside the target and device files are refused (tarfile's
    'data' filter; the same rules by hand for zip)."""
    target.mkdir(parents=True, exist_ok=True)
    if archive_kind(archive) == "zip":
        _extract_zip(archive, target, what)
        return
    try:
        with tarfile.open(archive, "r:*") as tar:
            members, total = [], 0
            for member in tar:  # headers only, stopping at the first past a cap: before anything is written
                if member.name.startswith(("/", "\\")) or ".." in Path(member.name).parts:
                    raise tarfile.FilterError(f"member {member.name!r} points outside the archive")
                members.append(member)
                total += member.size if member.isreg() else 0
                _check_caps(len(members), total, what or archive.name)
            _check_space(target, total, what or archive.name)
            tar.extractall(target, members=members, filter="data")
    except tarfile.FilterError as err:
        raise ModelError(
            f"{what or archive.name}: unsafe archive refused ({err}); the download is not a model"
        ) from None
    except StorageError:
        raise
    except (tarfile.TarError, EOFError, OSError) as err:
        if store.is_storage_error(err, target):
            raise  # a full disk or read-only cache, not a corrupt download
        reason = first_line(err, None).rstrip(":")
        if "could not be opened successfully" in reason:  # tarfile lists every method it tried, one a line
            reason = "not a gzip, bzip2, xz or plain tar file"
        raise ModelError(
            f"{what or archive.name}: not a readable .tar.gz archive ({reason}); the download is corrupt"
        ) from None


def _extract_zip(archive: Path, target: Path, what: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            _check_caps(len(members), sum(m.file_size for m in members if not m.is_dir()), what or archive.name)
            _check_space(target, sum(m.file_size for m in members), what or archive.name)
            for m in members:
                name = m.filename.replace("\\", "/")
                mode = m.external_attr >> 16
                if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in Path(name).parts:
                    raise _UnsafeZip(f"member {m.filename!r} points outside the archive")
                if stat.S_ISLNK(mode):
                    raise _UnsafeZip(f"member {m.filename!r} is a symbolic link")
                # zipfile.writestr (and other writers) store permission bits without a file
                # type: that is a plain file; only a type that is neither file nor folder is refused
                if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise _UnsafeZip(f"member {m.filename!r} is not a regular file")
            for m in members:
                zf.extract(m, target)
    except _UnsafeZip as err:
        raise ModelError(
            f"{what or archive.name}: unsafe archive refused ({err}); the download is not a model"
        ) from None
    except StorageError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        if isinstance(err, OSError) and store.is_storage_error(err, target):
            raise  # a full disk or read-only cache, not a corrupt download
        reason = first_line(err, None)
        raise ModelError(
            f"{what or archive.name}: not a readable .zip archive ({reason}); the download is corrupt"
        ) from None


class _UnsafeZip(Exception):
    pass


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def _check_caps(members: int, total: int, what: str) -> None:
    """An archive bomb is refused on its headers (exit 3): nothing of it is written."""
    if members > MAX_MEMBERS:
        raise ModelError(
            f"{what}: archive refused: it holds more than {MAX_MEMBERS:,} files, more than any model "
            "needs; the download is not a model (or not one imgtool takes)"
        )
    if total > MAX_EXTRACT_BYTES:
        raise ModelError(
            f"{what}: archive refused: it unpacks to more than {_mb(MAX_EXTRACT_BYTES)} "
            f"(the cap for a model archive); the download is not a model (or not one imgtool takes)"
        )


def _check_space(target: Path, total: int, what: str) -> None:
    """The unpacked size, against the free space, before the first byte is written (exit 4)."""
    import errno
    import shutil

    try:
        free = shutil.disk_usage(target).free
    except OSError:
        return
    if total > free:
        raise store.storage_error(
            OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target)),
            "the model cache",
            "set IMGTOOL_HOME to a writable folder with space",
            note=f" ({what} unpacks to {_mb(total)}, {_mb(free)} are free)",
        )
