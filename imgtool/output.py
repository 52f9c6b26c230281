"""Result formats, shared by every command that prints records (text, json, jsonl, csv).

Writers stream: json is written as an array one element at a time, so memory does not
grow with the number of inputs."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from typing import Any, TextIO

FORMATS = ("text", "json", "jsonl", "csv")


def display_path(path: str) -> str:
    """Paths with undecodable bytes (surrogate-escaped) shown with \\x escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    if isinstance(record.get("path"), str):
        record = dict(record, path=display_path(record["path"]))
    return record


class Writer:
    def __init__(self, fmt: str, out: TextIO | None = None, csv_header: tuple[str, ...] = ()):
        self.fmt = fmt
        self.out = out or sys.stdout
        self._count = 0
        self._csv = csv.writer(self.out, lineterminator="\n") if fmt == "csv" else None
        self._csv_header = csv_header

    def __enter__(self) -> Writer:
        if self.fmt == "json":
            self.out.write("[")
        elif self._csv is not None and self._csv_header:
            self._csv.writerow(self._csv_header)
        return self

    def record(self, record: dict[str, Any], text: str | None = None, rows: Iterable[Iterable[Any]] = ()) -> None:
        if self.fmt == "json":
            self.out.write(("," if self._count else "") + "\n" + json.dumps(_jsonable(record), ensure_ascii=False))
        elif self.fmt == "jsonl":
            self.out.write(json.dumps(_jsonable(record), ensure_ascii=False) + "\n")
        elif self.fmt == "csv":
            assert self._csv is not None
            for row in rows:
                self._csv.writerow([display_path(v) if isinstance(v, str) else v for v in row])
        elif text is not None:
            self.out.write(text)
        self._count += 1
        self.out.flush()

    def __exit__(self, *exc: object) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self._count else "]\n")
        self.out.flush()
