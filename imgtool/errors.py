"""Errors a user can cause, each with the exit code the CLI documents.

Exit codes (also in `imgtool --help` and the README):
  0  everything asked for was done
  1  some input failed, an expectation (--expect, --min-accuracy) was not met
  2  usage error (bad option, bad argument, nothing to do)
  3  the model could not be obtained or loaded
  4  something could not be written: disk full (ENOSPC) or over quota (EDQUOT), a file
     too large (EFBIG, e.g. `ulimit -f`), a read-only file system (EROFS), permission
     denied (EACCES/EPERM) - for the model cache, the retrained model folder or an
     export; nothing half-written is left and a previous model folder is unchanged
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_STORAGE = 4


class ImgtoolError(Exception):
    """Base class: `str(err)` is one line a person can act on."""

    exit_code = EXIT_FAILED


class UsageError(ImgtoolError):
    exit_code = EXIT_USAGE


class ModelError(ImgtoolError):
    """The model could not be resolved, downloaded, verified or loaded."""

    exit_code = EXIT_MODEL


class DownloadError(ModelError):
    pass


class ImageError(ImgtoolError):
    """One input image could not be read or decoded."""

    exit_code = EXIT_FAILED


class DatasetError(ImgtoolError):
    """A training folder cannot be used as it is (too few classes or images)."""

    exit_code = EXIT_USAGE


class StorageError(ImgtoolError, OSError):
    """A write failed for a reason the user must fix (space, limits, permissions).

    Also an OSError (errno and filename kept), so library callers that catch OSError
    around a write still catch it; `str(err)` is the one line for people."""

    exit_code = EXIT_STORAGE

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None):
        OSError.__init__(self, errno, message, filename)
        self.message = message

    def __str__(self) -> str:
        return self.message
