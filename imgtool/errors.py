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

Every class also derives from the built-in exception a Python caller would expect, so
`except ValueError` / `except LookupError` / `except OSError` around library calls works:
UsageError, DatasetError, ImageError, SettingError -> ValueError; ModelError ->
RuntimeError (ModelNotFoundError -> LookupError); DownloadError -> ConnectionError;
LockTimeoutError -> TimeoutError; StorageError -> OSError.
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


class UsageError(ImgtoolError, ValueError):
    """A request that cannot be carried out as given (bad argument, nothing to do)."""

    exit_code = EXIT_USAGE


class ModelError(ImgtoolError, RuntimeError):
    """The model could not be resolved, downloaded, verified or loaded."""

    exit_code = EXIT_MODEL


class ModelNotFoundError(ModelError, LookupError):
    """No model answers to the reference given (not a file, URL, handle or catalog name)."""


class DownloadError(ModelError, ConnectionError):
    """A model or labels file could not be downloaded. Also a ConnectionError (so an
    OSError, with errno None): it is never a storage error."""

    def __init__(self, message: str = ""):
        ConnectionError.__init__(self, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class LockTimeoutError(ModelError, TimeoutError):
    """Another process held a cache entry's lock for longer than IMGTOOL_LOCK_TIMEOUT
    (exit 3: the model could not be obtained). Also a TimeoutError (so an OSError, with
    errno None): it is never a storage error."""

    def __init__(self, message: str = ""):
        TimeoutError.__init__(self, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ImageError(ImgtoolError, ValueError):
    """One input image could not be read or decoded."""

    exit_code = EXIT_FAILED


class DatasetError(ImgtoolError, ValueError):
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
