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

Messages name what the caller can change as structured parts, not as words to be
rephrased: `Param("min_accuracy")` (a parameter), `Call("download_model", "x")` (a call to
make), `Advice.LIST_CATALOG` (a fixed piece of advice). Joined with `+` they make a
`Text`, a str that reads in the library's words (`min_accuracy`, `download_model('x')`)
and keeps its parts, so the CLI (command.cli_text) says each part in its own words
(--min-accuracy, `imgtool models download x`). Every error also carries optional fields:
`parameter` (the API's name of the parameter it is about), `hint` (the fix, also the end of
the message), `path` and `model`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_STORAGE = 4


# ---------------------------------------------------------------- the parts of a message


class _Part:
    """Something a message names that the CLI says differently; `+` with a str makes a Text."""

    def __add__(self, other: object) -> Text:
        return Text.of((self, other))

    def __radd__(self, other: object) -> Text:
        return Text.of((other, self))

    def __format__(self, spec: str) -> str:
        raise TypeError(f"{self!r} inside an f-string loses what it names; join it with +")


class Param(_Part):
    """A parameter of the Python API, as the API spells it: `Param("test_percent")` reads
    `test_percent` here and --test-percent on the command line."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __str__(self) -> str:
        return f"`{self.name}`"

    def __repr__(self) -> str:
        return f"Param({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Param) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Param", self.name))


# How the library spells each call it tells a caller to make, `{}` the repr of its argument;
# the CLI names the command that does the same (command.COMMAND_OF_CALL).
API_CALLS = {
    "download_model": "`download_model({})`",
    "remove_models": "`remove_models([{}])`",
    "load_model": "`load_model({})`",
    "load_model.labels": "`load_model({}).labels`",
    "model=": "`model={}`",
}


class Call(_Part):
    """A call the caller can make, with its one str argument: `Call("download_model", "x")`
    reads `download_model('x')` here and `imgtool models download x` on the command line."""

    __slots__ = ("arg", "function")

    def __init__(self, function: str, arg: str):
        if function not in API_CALLS:
            raise ValueError(f"no such call: {function!r} (one of {', '.join(API_CALLS)})")
        self.function, self.arg = function, arg

    def __str__(self) -> str:
        return API_CALLS[self.function].format(repr(self.arg))

    def __repr__(self) -> str:
        return f"Call({self.function!r}, {self.arg!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Call) and (other.function, other.arg) == (self.function, self.arg)

    def __hash__(self) -> int:
        return hash(("Call", self.function, self.arg))


class Advice(_Part, enum.Enum):
    """Advice in the library's words (the value); the CLI says each in its own
    (command.CLI_ADVICE)."""

    GIVE_LABELS = "give a labels file"
    RETRAIN_IT = "(it is a backbone to retrain)"
    PICK_CLASSIFIER = "pick a classifier from the catalog"
    LIST_CATALOG = "the catalog lists the models"
    REMOVE_CACHED = "remove it from the cache"
    NOT_RETRAINED = "not a model folder written by retrain"
    FEATURES_NEED_OUTPUT = "`features` needs `output`"

    def __str__(self) -> str:
        return str(self.value)


Part = str | Param | Call | Advice


class Text(str):
    """A message made of parts: as a str, the library's words; `.parts` keeps what each part
    names, and `say(part_in_words)` spells it another way (the CLI's)."""

    parts: tuple[Part, ...]

    def __new__(cls, parts: Iterable[Part] = ()) -> Text:
        kept = tuple(parts)
        text = super().__new__(cls, "".join(str(p) for p in kept))
        text.parts = kept
        return text

    @classmethod
    def of(cls, pieces: Iterable[object]) -> Text:
        """The pieces in a row: a Text's parts are kept, any other object is its str."""
        parts: list[Part] = []
        for piece in pieces:
            if isinstance(piece, Text):
                parts.extend(piece.parts)
            elif isinstance(piece, (Param, Call, Advice)):
                parts.append(piece)
            else:
                parts.append(str(piece))
        return cls(parts)

    def __add__(self, other: object) -> Text:
        return Text.of((self, other))

    def __radd__(self, other: object) -> Text:
        return Text.of((other, self))

    def __reduce__(self) -> tuple[type, tuple[tuple[Part, ...]]]:  # Beam serializes errors: rebuilt from its parts
        return (Text, (self.parts,))

    def say(self, part_in_words: Callable[[Part], str]) -> str:
        return "".join(p if isinstance(p, str) else part_in_words(p) for p in self.parts)

    def params(self) -> list[str]:
        """The parameters it names, in order."""
        return [p.name for p in self.parts if isinstance(p, Param)]


def as_text(message: object, hint: object = None) -> Text:
    """`message` (then `; hint`) as a Text; a plain str is one plain part."""
    whole = message if isinstance(message, Text) else Text.of((message,))
    return whole if hint is None else whole + "; " + hint


def first_line(err: BaseException | str, limit: int | None = 200) -> str:
    """The first line of an error's text (of a foreign library's, often many lines), at most
    `limit` characters; the exception's class name when it says nothing. An ImgtoolError
    that is one such line already comes back as its Text (what it names is kept)."""
    if isinstance(err, ImgtoolError):
        own = err.text
        if own and own == own.strip() and "\n" not in own and (limit is None or len(own) <= limit):
            return own
    said = str(err).strip()
    if not said:
        return type(err).__name__ if isinstance(err, BaseException) else ""
    line = said.splitlines()[0]
    return line if limit is None else line[:limit]


# ---------------------------------------------------------------- the errors


class ImgtoolError(Exception):
    """Base class: `str(err)` is one line a person can act on (`message`, then `; hint`).

    Fields, each None when it does not apply: `parameter`, the API's name of the parameter
    the error is about (by default the first one the message names); `hint`, the fix;
    `path`, the file or folder; `model`, the model reference. `text` is the whole line as
    a Text (the CLI says its parts as options and commands)."""

    exit_code = EXIT_FAILED

    def __init__(
        self,
        message: object = "",
        *,
        parameter: str | None = None,
        hint: object = None,
        path: object = None,
        model: str | None = None,
    ):
        whole = as_text(message, hint)
        super().__init__(whole)
        self._fields(whole, parameter, hint, path, model)

    def _fields(self, whole: Text, parameter: str | None, hint: object, path: object, model: str | None) -> None:
        self.text, self.message = whole, str(whole)
        named = whole.params()
        self.parameter = parameter if parameter is not None else (named[0] if named else None)
        self.hint = None if hint is None else as_text(hint)
        self.path = None if path is None else str(path)
        self.model = model

    def __str__(self) -> str:
        return str(self.text)


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


class LockTimeoutError(ModelError, TimeoutError):
    """Another process held a cache entry's lock for longer than IMGTOOL_LOCK_TIMEOUT
    (exit 3: the model could not be obtained). Also a TimeoutError (so an OSError, with
    errno None): it is never a storage error."""


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

    def __init__(
        self,
        message: object,
        errno: int | None = None,
        filename: str | None = None,
        *,
        parameter: str | None = None,
        hint: object = None,
        path: object = None,
        model: str | None = None,
    ):
        whole = as_text(message, hint)
        OSError.__init__(self, errno, whole, filename)
        self._fields(whole, parameter, hint, path if path is not None else filename, model)


class SettingError(UsageError):
    """An environment variable holds something imgtool cannot use (exit 2); `name` is the
    variable."""

    def __init__(self, name: str, value: str = "", takes: str = ""):
        super().__init__(f"{name}={value!r} is not valid: it takes {takes}", hint="fix or unset it")
        self.name = name


class FetchFailed(ModelError):
    """A source's URL could not be downloaded ("URL: problem")."""


class PipelineError(ImgtoolError):
    """A Beam pipeline failed while running (exit 1)."""


class NoWorkers(ImgtoolError):
    """No Beam worker connected within the bounded wait (exit 1). The runner's threads still
    wait for one, so the command ends the process right after saying so."""
