"""Every environment variable imgtool reads, parsed and checked in one place.

Like huggingface_hub's constants.py: small typed helpers (`_as_int`, `_as_float`,
`_as_bool`) and one error that names the variable and what it takes. The CLI calls
`current()` at start, before any work, so `IMGTOOL_RETRIES=x` is a usage error (exit 2)
and not a traceback halfway through a download; library code reads its settings from
`current()` too, never from os.environ directly.

`VARIABLES` lists each variable with what it takes: the README documents every one
(tests/test_docs.py checks it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from imgtool.core.errors import SettingError

N = TypeVar("N", int, float)

#: name -> what it takes (the same words as the README's environment table).
VARIABLES: dict[str, str] = {
    "IMGTOOL_HOME": "a directory for the model, bottleneck and export caches",
    "IMGTOOL_OFFLINE": "a boolean (1/true/yes/on or 0/false/no/off)",
    "IMGTOOL_MODEL": "a model reference, as --model takes",
    "IMGTOOL_BACKBONE": "a model reference, as retrain's --model takes",
    "IMGTOOL_CATALOG": "the path of a catalog JSON file",
    "IMGTOOL_TIMEOUT": "a number of seconds greater than 0",
    "IMGTOOL_RETRIES": "a whole number of attempts, 1 or more",
    "IMGTOOL_LOCK_TIMEOUT": "a number of seconds greater than 0",
    "IMGTOOL_THREADS": "a whole number of threads, 1 or more",
    "IMGTOOL_NO_PROGRESS": "a boolean (1/true/yes/on or 0/false/no/off)",
    "KAGGLE_USERNAME": "your Kaggle user name (with KAGGLE_KEY)",
    "KAGGLE_KEY": "your Kaggle API key (with KAGGLE_USERNAME)",
}

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return None if value is None else value.strip()


def _as_bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = _raw(env, name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise SettingError(name, value, VARIABLES[name])


def _as_number(
    env: Mapping[str, str], name: str, parse: Callable[[str], N], ok: Callable[[N], bool], default: N | None
) -> N | None:
    """`default` when unset or empty; else `parse(value)` if `ok` accepts it; else the
    error naming the variable and what it takes."""
    value = _raw(env, name)
    if not value:
        return default
    try:
        number = parse(value)
    except ValueError:
        raise SettingError(name, value, VARIABLES[name]) from None
    if not ok(number):
        raise SettingError(name, value, VARIABLES[name])
    return number


def _as_int(env: Mapping[str, str], name: str, default: int | None, minimum: int = 1) -> int | None:
    return _as_number(env, name, int, lambda n: n >= minimum, default)


THREADS_PER_CORE = 4  # IMGTOOL_THREADS may ask for at most this many threads per CPU core


def max_threads() -> int:
    """The most threads IMGTOOL_THREADS may ask for: 4 x the CPU cores (LiteRT crashes,
    exit 139, on 100000; 2**31 overflows its int)."""
    return THREADS_PER_CORE * (os.cpu_count() or 1)


def _as_threads(env: Mapping[str, str]) -> int | None:
    name = "IMGTOOL_THREADS"
    threads = _as_int(env, name, None)
    if threads is not None and threads > max_threads():
        raise SettingError(
            name,
            _raw(env, name) or "",
            f"{VARIABLES[name]}, at most {max_threads()} ({THREADS_PER_CORE} x the {os.cpu_count() or 1} CPU cores)",
        )
    return threads


def _as_float(env: Mapping[str, str], name: str, default: float) -> float:
    number = _as_number(env, name, float, lambda n: 0 < n < float("inf"), default)  # also refuses nan
    assert number is not None
    return number


def _as_str(env: Mapping[str, str], name: str) -> str | None:
    value = _raw(env, name)
    return value or None


def _as_dir(env: Mapping[str, str], name: str) -> Path | None:
    """A folder that exists or can be made: refused when it, or the nearest part of it
    that exists, is not a folder (a file, a device) - said at start, not as a traceback
    at the first write."""
    value = _as_str(env, name)
    if value is None:
        return None
    path = Path(value).expanduser()
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if os.path.lexists(probe) and not probe.is_dir():
        what = "it is" if probe == path else f"{probe} is"
        raise SettingError(name, value, f"{VARIABLES[name]} ({what} not a folder)")
    return path


@dataclass(frozen=True)
class Settings:
    home: Path | None  # None: the platform's user cache dir
    offline: bool
    model: str | None
    backbone: str | None
    catalog: str | None
    timeout: float  # read timeout of a download, seconds
    retries: int  # attempts per URL
    lock_timeout: float  # the longest wait for another process's lock on a cache entry, seconds
    threads: int | None  # LiteRT threads; None: all cores
    no_progress: bool
    kaggle_auth: tuple[str, str] | None  # (username, key), both set or None


DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 2
DEFAULT_LOCK_TIMEOUT = 3600.0


def parse(env: Mapping[str, str]) -> Settings:
    """Settings from an environment mapping; SettingError names the first bad variable."""
    user, key = _as_str(env, "KAGGLE_USERNAME"), _as_str(env, "KAGGLE_KEY")
    return Settings(
        home=_as_dir(env, "IMGTOOL_HOME"),
        offline=_as_bool(env, "IMGTOOL_OFFLINE"),
        model=_as_str(env, "IMGTOOL_MODEL"),
        backbone=_as_str(env, "IMGTOOL_BACKBONE"),
        catalog=_as_str(env, "IMGTOOL_CATALOG"),
        timeout=_as_float(env, "IMGTOOL_TIMEOUT", DEFAULT_TIMEOUT),
        retries=_as_int(env, "IMGTOOL_RETRIES", DEFAULT_RETRIES) or DEFAULT_RETRIES,
        lock_timeout=_as_float(env, "IMGTOOL_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT),
        threads=_as_threads(env),
        no_progress=_as_bool(env, "IMGTOOL_NO_PROGRESS"),
        kaggle_auth=(user, key) if user and key else None,
    )


_cache: tuple[tuple[str | None, ...], Settings] | None = None


def current() -> Settings:
    """The settings of this process's environment, parsed once per distinct environment
    (tests change it between calls; a long-running process pays nothing)."""
    global _cache
    snapshot = tuple(os.environ.get(name) for name in VARIABLES)
    if _cache is None or _cache[0] != snapshot:
        _cache = (snapshot, parse(os.environ))
    return _cache[1]
