"""Messages for people: everything here goes to stderr, so stdout carries results only.

`--quiet` silences info and progress; warnings about skipped inputs still appear unless
the caller asked for quiet, errors always do (the CLI prints them)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
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
    from imgtool import settings

    if _quiet or settings.current().no_progress:
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

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


# Native-library chatter: LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate",
# absl/TF's "I0000 00:00:... port.cc:153] oneDNN custom operations are on", the cuInit
# error on machines without a GPU, the converter's "fully_quantize: 0, ..." on stdout.
_NOISE = re.compile(r"^(INFO: |WARNING: All log messages before absl|[IWE]\d{4} \d\d:\d\d:\d\d|"
                    r"fully_quantize: |Estimated count of arithmetic ops|Summary on the non-converted ops|"
                    r"\s*$)")


@contextlib.contextmanager
def native_output_filtered() -> Iterator[None]:
    """Capture what C++ code writes to fds 1 and 2 while the block runs; drop known
    chatter and pass anything else to stderr (stdout carries results only)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = (os.dup(1), os.dup(2))
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as cap:
        os.dup2(cap.fileno(), 1)
        os.dup2(cap.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError, OSError):
                sys.stdout.flush()
                sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            cap.seek(0)
            for line in cap.read().decode("utf-8", "replace").splitlines():
                if not _NOISE.match(line):
                    print(line, file=sys.stderr)
