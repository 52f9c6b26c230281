"""Messages for people: everything here goes to stderr, so stdout carries results only.

`--quiet` silences info and progress; warnings about skipped inputs still appear unless
the caller asked for quiet, errors always do (the CLI prints them)."""

from __future__ import annotations

import os
import sys
from typing import Any

_quiet = False


def set_quiet(value: bool) -> None:
    global _quiet
    _quiet = value


def quiet() -> bool:
    return _quiet


def info(msg: str) -> None:
    if not _quiet:
        print(msg, file=sys.stderr, flush=True)


def warn(msg: str) -> None:
    if not _quiet:
        print(f"warning: {msg}", file=sys.stderr, flush=True)


def progress_enabled() -> bool:
    if _quiet or os.environ.get("IMGTOOL_NO_PROGRESS"):
        return False
    return sys.stderr.isatty()


def progress(total: int | None, desc: str, unit: str = "B") -> Any:
    """A tqdm bar on stderr when it is a terminal; otherwise a no-op with the same API."""
    if not progress_enabled():
        return _NoBar()
    from tqdm import tqdm

    scale = unit == "B"
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=scale, unit_divisor=1024 if scale else 1000,
                file=sys.stderr, leave=False, dynamic_ncols=True)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: object) -> None:
        pass
