"""A small record of what a model file says about itself, so a second run need not read it again.

Reading a .tflite's metadata (its value range, embedded labels, output description) and the
operator behind its output means importing the flatbuffer schema and opening the metadata
zip: more than the rest of a one-photo run before the first invoke. Those facts depend on
the file only, so they are kept in one small JSON per model file:

    $IMGTOOL_HOME/facts/<sha256 of the identity>.json
        {"version": 1, "identity": {"path", "size", "mtime_ns", "ino", "dev"}, "facts": {name: value}}

The identity is the file's absolute path, size, mtime_ns, inode and device (`stat_identity`,
the one stat identity of a file, here without the ctime; reuse.py records it with): any
rewrite of the model (a new download, a conversion renamed into place, an edit) changes
it, and the record is then ignored and rewritten. A labels file given beside the model is never kept
here: reading it is cheaper than checking a record, so its current content always counts.
The record is written atomically (store.atomic_write_json); one that cannot be written
(a read-only IMGTOOL_HOME) is only logged, and the facts are computed each run.

Layer: foundations (uses records, store; used by resolve, engine and reuse)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgtool.core import store
from imgtool.core.records import BadRecord, Record

log = logging.getLogger("imgtool.runtime.facts")

VERSION = 1
MAX_RECORD_BYTES = 1 << 20  # labels of a 20,000-class model fit; anything larger is not ours


def stat_identity(path: str | os.PathLike[str], *, ctime: bool) -> dict[str, int]:
    """A file's identity by its stat (following links): size, mtime_ns, with `ctime` ctime_ns,
    ino and dev, in that order. Any rewrite of the file changes it (a new file has another
    inode, an edit another mtime); the ctime also changes with any write and cannot be set
    back, so it catches an edit whose mtime was restored. The one definition: the facts
    record's identity (without ctime) and reuse's facts (with it, as a list) are this."""
    st = os.stat(path)
    out = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if ctime:
        out["ctime_ns"] = st.st_ctime_ns
    out.update(ino=st.st_ino, dev=st.st_dev)
    return out


def identity(path: Path) -> dict[str, Any]:
    """The facts record's identity of a model file: its absolute path and stat identity."""
    return {"path": os.path.abspath(path), **stat_identity(path, ctime=False)}


@dataclass
class FactsRecord(Record):
    """The JSON of one facts record (the module docstring)."""

    version: int = VERSION
    identity: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class ModelFacts:
    """The facts record of one model file. `get(name, compute)` returns the recorded value,
    or computes it (a JSON value), records it and returns it. `reused` says whether the
    record on disk matched the file when it was opened."""

    def __init__(self, path: Path):
        self.identity = identity(path)
        digest = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()
        self.file = store.home() / "facts" / f"{digest[:32]}.json"
        self.values: dict[str, Any] = {}
        self.reused = False
        data = self._read()
        if data is not None:
            self.values = data
            self.reused = True

    def _read(self) -> dict[str, Any] | None:
        try:
            if self.file.stat().st_size > MAX_RECORD_BYTES:
                return None
        except OSError:
            return None
        try:
            record = FactsRecord.from_dict(store.read_json(self.file))
        except BadRecord:
            return None
        if record.version != VERSION or record.identity != self.identity:
            return None
        return record.facts

    def get(self, name: str, compute: Callable[[], Any]) -> Any:
        if name in self.values:
            log.debug("facts record of %s: %s reused (%s)", self.identity["path"], name, self.file)
            return self.values[name]
        value = compute()
        self.values[name] = value
        self._write(name)
        return value

    def _write(self, name: str) -> None:
        try:
            store.atomic_write_json(self.file, FactsRecord(identity=self.identity, facts=self.values).to_dict())
            log.debug("facts record of %s: %s written (%s)", self.identity["path"], name, self.file)
        except OSError as err:  # a read-only or full IMGTOOL_HOME: the facts are read from the model each run
            log.debug("cannot write the facts record %s: %s", self.file, err)


def of(path: Path | str) -> ModelFacts | None:
    """The facts record of the model file at `path` (None if it cannot be stat'ed: the
    caller reads the file itself and says what is wrong)."""
    try:
        return ModelFacts(Path(path))  # read each time: a few hundred bytes, and never stale
    except OSError:
        return None


def cached(path: Path | str, name: str, compute: Callable[[], Any]) -> Any:
    """`compute()` (a JSON value about the file at `path`), from its facts record when the
    file is unchanged since it was recorded."""
    rec = of(path)
    return compute() if rec is None else rec.get(name, compute)
