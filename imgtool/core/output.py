"""Result formats, shared by every command that prints records (text, json, jsonl, csv).

Writers stream: json is written as an array one element at a time, so memory does not
grow with the number of inputs. json and csv are imported by the Writer that uses them:
the CLI imports this module for every command, `--help` included."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

FORMATS = ("text", "json", "jsonl", "csv")


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


# C0 and C1 controls, DEL, the Unicode line/paragraph separators, and the bidi controls
# that reorder what a terminal shows: a label or file name holding one could clear the
# screen, set the window title, make an OSC 8 link, or start a new (forged) line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def terminal_text(text: str, keep: str = "") -> str:
    """`text` safe to print: every control character as a visible escape (ESC -> \\x1b,
    newline -> \\x0a); undecodable bytes of a file name (surrogate-escaped) as \\xNN. The
    one sanitiser for text and csv output and for every line on stderr."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: m.group() if m.group() in keep else _escape(m.group()), text)


def terminal_lines(text: str) -> str:
    """Lines made by the caller (fields already passed through `terminal_text`), made
    safe once more as a whole: newlines and tabs kept, every other control escaped."""
    return terminal_text(text, keep="\n\t")


def display_path(path: str) -> str:
    """A path as printed: `terminal_text` (undecodable bytes and controls escaped)."""
    return terminal_text(path)


def tolerant(stream: Any) -> Any:
    """A text stream that cannot encode a character (PYTHONIOENCODING=ascii, LC_ALL=C
    without UTF-8 mode) writes it as a backslash escape instead of raising."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None and getattr(stream, "errors", "strict") == "strict":
        try:
            reconfigure(errors="backslashreplace")
        except (ValueError, OSError, AttributeError):
            pass
    return stream


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    """JSON escapes controls itself; only undecodable bytes of a path need a spelling."""
    if isinstance(record.get("path"), str):
        record = dict(
            record, path=record["path"].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        )
    return record


class Writer:
    def __init__(self, fmt: str, out: TextIO | None = None, csv_header: tuple[str, ...] = ()):
        self.fmt = fmt
        self.out = out or sys.stdout  # the CLI made it tolerant (`tolerant`) for the run
        self._count = 0
        self._csv: Any = None
        if fmt == "csv":
            import csv

            self._csv = csv.writer(self.out, lineterminator="\n")
        elif fmt in ("json", "jsonl"):
            import json

            self._dumps = json.dumps
        self._csv_header = csv_header

    def __enter__(self) -> Writer:
        if self.fmt == "json":
            self.out.write("[")
        elif self._csv is not None and self._csv_header:
            self._csv.writerow(self._csv_header)
        return self

    def record(self, record: dict[str, Any], text: str | None = None, rows: Iterable[Iterable[Any]] = ()) -> None:
        if self.fmt == "json":
            self.out.write(("," if self._count else "") + "\n" + self._dumps(_jsonable(record), ensure_ascii=False))
        elif self.fmt == "jsonl":
            self.out.write(self._dumps(_jsonable(record), ensure_ascii=False) + "\n")
        elif self.fmt == "csv":
            assert self._csv is not None
            for row in rows:
                self._csv.writerow([display_path(v) if isinstance(v, str) else v for v in row])
        elif text is not None:
            self.out.write(terminal_lines(text))
        self._count += 1
        self.out.flush()

    def __exit__(self, *exc: object) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self._count else "]\n")
        self.out.flush()
