"""Messages and progress, as data: the library prints nothing.

`info` and `warn` log to the `imgtool` logger (a NullHandler is attached in
`imgtool/__init__.py`, so a library caller sees nothing unless they configure logging).
Progress goes to a callback: `progress(total, desc, unit)` returns a tracker whose
`update(n)` calls the current callback as `callback(done, total, desc, unit)`; the API
functions take `progress=` and set it for their duration (`reporting`).

The CLI (`stderr_output`) turns both into today's stderr lines (`warning: ...` for
warnings, info lines as they are; `--quiet` silences them) and tqdm bars (on a terminal
only, IMGTOOL_NO_PROGRESS honoured); stdout carries results only."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, Protocol

log = logging.getLogger("imgtool")
_RAW = "imgtool_raw"  # a record attribute: print the message as it is (native output passed on)

_quiet = False


def set_quiet(value: bool) -> None:
    global _quiet
    _quiet = value


def quiet() -> bool:
    return _quiet


def info(msg: str) -> None:
    log.info(msg, stacklevel=2)


def warn(msg: str) -> None:
    log.warning(msg, stacklevel=2)


# ---------------------------------------------------------------- progress


class ProgressCallback(Protocol):
    """Called as work advances: `done` of `total` (None: unknown) units of `desc`;
    `unit` is "img" (images) or "B" (bytes). A task starts with done == 0 and, when it
    ends, its last call has done == total (a task that ends early says so with total
    set to what was done)."""

    def __call__(self, done: int, total: int | None, desc: str, unit: str) -> None: ...


class _ProgressVar:
    """The context variable holding the progress callback. Beam serializes this module
    with a pipeline's code and ships it to its workers, and a ContextVar cannot be
    serialized: a worker gets a fresh one (no callback there) instead."""

    def __init__(self) -> None:
        self.var: contextvars.ContextVar[ProgressCallback | None] = contextvars.ContextVar(
            "imgtool_progress", default=None
        )

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (_ProgressVar, ())


_callback = _ProgressVar()


@contextlib.contextmanager
def reporting(callback: ProgressCallback | None) -> Iterator[None]:
    """Send the progress of the library code run in this block to `callback` (None:
    keep whatever is set already, e.g. the CLI's bars)."""
    if callback is None:
        yield
        return
    token = _callback.var.set(callback)
    try:
        yield
    finally:
        _callback.var.reset(token)


class Tracker:
    """What `progress()` returns: counts and reports to the callback current at creation."""

    def __init__(self, total: int | None, desc: str, unit: str, callback: ProgressCallback | None):
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self._callback = callback
        if callback is not None:
            callback(0, total, desc, unit)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._callback is not None:
            self._callback(self.done, self.total, self.desc, self.unit)

    def close(self) -> None:
        """The task ended: said once, as done == total, unless the last update said it."""
        if self._callback is not None and self.done != self.total:
            self.total = self.done
            self._callback(self.done, self.total, self.desc, self.unit)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def current_callback() -> ProgressCallback | None:
    """The progress callback set by the innermost `reporting` block, if any."""
    return _callback.var.get()


def progress(total: int | None, desc: str, unit: str = "B") -> Tracker:
    """A tracker reporting to the current callback (none set: it only counts)."""
    return Tracker(total, desc, unit, _callback.var.get())


# ---------------------------------------------------------------- the CLI's side


def progress_enabled() -> bool:
    from imgtool.core import settings

    if _quiet or settings.current().no_progress:
        return False
    return sys.stderr.isatty()


def bar(total: int | None, desc: str, unit: str = "B") -> Any:
    """A tqdm bar on stderr when it is a terminal (and progress is wanted); otherwise a
    no-op with the same API."""
    if not progress_enabled():
        return _NoBar()
    from tqdm import tqdm

    scale = unit == "B"
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=scale,
        unit_divisor=1024 if scale else 1000,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    )


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


class Bars:
    """A progress callback that draws one tqdm bar per task (see `bar`)."""

    def __init__(self) -> None:
        self._bars: dict[str, tuple[Any, int]] = {}

    def __call__(self, done: int, total: int | None, desc: str, unit: str) -> None:
        current = self._bars.get(desc)
        if current is None or done == 0:
            if current is not None:
                current[0].close()
            current = (bar(total, desc, unit), 0)
        shown, before = current
        if done > before:
            shown.update(done - before)
        self._bars[desc] = (shown, done)
        if total is not None and done >= total:
            shown.close()
            del self._bars[desc]

    def close(self) -> None:
        for shown, _ in self._bars.values():
            shown.close()
        self._bars.clear()


class StderrHandler(logging.Handler):
    """The CLI's view of the `imgtool` logger: `warning: ...` for warnings, info lines as
    they are, nothing under --quiet (native output passed on is always shown). `rephrase`
    says a message (a str, or an errors.Text naming parameters) in the CLI's words (option
    names)."""

    def __init__(self, level: int = logging.NOTSET, rephrase: Callable[[object], str] | None = None):
        super().__init__(level)
        self.rephrase = rephrase or str

    def emit(self, record: logging.LogRecord) -> None:
        raw = getattr(record, _RAW, False)
        if _quiet and not raw:
            return
        try:
            msg = record.getMessage() if raw or record.args else self.rephrase(record.msg)
            if record.levelno >= logging.WARNING and not raw:
                msg = f"warning: {msg}"
            from imgtool.core.output import terminal_text

            # one record, one line: a file name's newline or ESC in the message is shown escaped;
            # sys.stderr looked up now: CliRunner swaps it per run
            print(terminal_text(msg, keep="\t"), file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


@contextlib.contextmanager
def stderr_output(rephrase: Callable[[object], str] | None = None) -> Iterator[None]:
    """For the length of a CLI command: log records to stderr, progress as tqdm bars.
    Undone afterwards, so library use in the same process (tests) stays silent."""
    handler = StderrHandler(logging.INFO, rephrase)
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # a root handler (e.g. a beam worker's basicConfig) must not print it twice
    bars = Bars()
    try:
        with reporting(bars):
            yield
    finally:
        bars.close()
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


# Native-library chatter: LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate",
# absl/TF's "I0000 00:00:... port.cc:153] oneDNN custom operations are on", the cuInit
# error on machines without a GPU, the converter's "fully_quantize: 0, ..." on stdout.
_NOISE = re.compile(
    r"^(INFO: |WARNING: All log messages before absl|[IWE]\d{4} \d\d:\d\d:\d\d|"
    r"fully_quantize: |Estimated count of arithmetic ops|Summary on the non-converted ops|"
    r"\s*$)"
)


@contextlib.contextmanager
def native_output_filtered() -> Iterator[None]:
    """Capture what C++ code writes to fds 1 and 2 while the block runs; drop known
    chatter and pass anything else to stderr (stdout carries results only)."""
    import tempfile  # here, not at import: `imgtool --help` never needs it

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
                    log.warning(line, extra={_RAW: True})
