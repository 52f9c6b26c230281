"""A retrain whose inputs are identical to those of the run that wrote its output folder
reuses that folder instead of fitting, exporting and rendering it again.

The result of `retrain` is decided by its inputs alone: the photos (their names, classes,
given splits and bytes), the backbone, every option, and the code: Python, imgtool, Pillow,
LiteRT and numpy. A run that wrote a model folder records them, with the facts of
every file it wrote, in one small JSON per output folder (a ResultsRecord, records.py):

    $IMGTOOL_HOME/results/<sha256 of the folder's absolute path>.json
        {"version": 2, "output": abs path, "inputs": {...}, "photos": {path: [facts, sha256]},
         "files": {relative path: [facts, sha256]}}

Facts are [size, mtime_ns, ctime_ns, inode, device] (facts.stat_identity with the ctime). A later run
reuses the folder only when its inputs are equal to the recorded ones, every photo either
has the recorded facts or hashes to the recorded sha256 (the ctime changes with any write,
and cannot be set back), and the folder holds exactly the recorded files, each with its
recorded facts or its recorded sha256: the same rule. A hash is needed because a ctime also
changes with the link count: the folder's backbone.tflite shares its inode with the cache
(export.link_or_copy), so another folder linking it, or one replaced or removed, changes
its ctime and not its bytes. For the same reason the code's and a backbone file's facts,
which are inputs, leave the ctime out (code_facts): an installer that hard-links from its
cache (uv), a copied venv, or the backbone linked into the folder it made changes the
ctime of a file whose content is the same, and a new version is a new file anyway.
Anything else - a photo edited, added or removed, another option, a changed backbone
file, a file in the folder edited, added or removed, a damaged or missing record - is a
full run, which records afresh. The photos' facts are taken before they are hashed, so a
photo rewritten during a run is hashed again next time. A record that cannot be written
(a read-only IMGTOOL_HOME) is only logged. The records are a cache like the others
(caches.py: `imgtool models remove results`): without one, the next rerun is a full run.

Layer: foundations (uses facts, records, store, files, version)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgtool.core import files, store
from imgtool.core.records import BadRecord, Record, short
from imgtool.core.version import __version__
from imgtool.runtime.facts import stat_identity

log = logging.getLogger("imgtool.training.reuse")

VERSION = 2  # 1: the folder's files by their facts only (a version-1 record is a full run, once)
MAX_RECORD_BYTES = 64 << 20  # a record of a million photos fits; anything larger is not ours
PACKAGES = ("PIL", "ai_edge_litert", "numpy")  # the code besides imgtool that decodes, runs and fits


@dataclass
class ResultsRecord(Record):
    """The JSON of one results record (the module docstring): each photo is [its facts or
    None, its sha256 or None], each file of the folder [its facts, its sha256]."""

    version: int = VERSION
    output: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    photos: dict[str, list[Any]] = field(default_factory=dict)
    files: dict[str, list[Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        for path, entry in self.photos.items():
            if len(entry) != 2:
                raise BadRecord(f"photos.{path} is {short(entry)}, not [facts, sha256]")
        for name, entry in self.files.items():
            if len(entry) != 2:
                raise BadRecord(f"files.{name} is {short(entry)}, not [facts, sha256]")


def facts(path: str | Path) -> list[int]:
    """A file's facts as the record keeps them: its stat identity with the ctime, as a list."""
    return list(stat_identity(path, ctime=True).values())


def code_facts(path: str | Path) -> list[int]:
    """The facts of a file that is an input rather than data (the code, a backbone file):
    without the ctime, which a hard link made or removed elsewhere changes (the module
    docstring); any rewrite still changes the inode or the mtime."""
    return list(stat_identity(path, ctime=False).values())


def photo_facts(paths: list[str]) -> dict[str, list[int] | None]:
    """The facts of each photo (None: it cannot be stat'ed), taken before anything reads it."""
    out: dict[str, list[int] | None] = {}
    for p in paths:
        try:
            out[p] = facts(p)
        except OSError:
            out[p] = None
    return out


def versions() -> dict[str, Any]:
    """The code that computed the numbers, besides the inputs: Python, imgtool (its version
    and the code_facts of its own files, so an edited checkout counts) and the code_facts of
    the packages that decode, run and fit (PACKAGES: an upgrade rewrites them).
    Facts rather than importlib.metadata: reading those is slower than a whole reuse."""
    import importlib.util

    here = Path(__file__).parent
    code = hashlib.sha256(json.dumps([[p.name, code_facts(p)] for p in sorted(here.glob("*.py"))]).encode()).hexdigest()
    out: dict[str, Any] = {"python": sys.version, "imgtool": __version__, "imgtool_code": code}
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        origin = None if spec is None else spec.origin
        out[name] = None if origin is None else [origin, code_facts(origin)]
    return out


def backbone_file_key(ref: str | None) -> dict[str, Any] | None:
    """The backbone's part of the inputs without resolving it, for a .tflite file named by
    a path (what it is depends on the file only): its path and code_facts. None for anything
    else (a catalog name, a hub handle, a folder): the caller resolves it and uses its
    identity instead."""
    if (
        ref is None
        or "/" not in ref
        or ref.startswith(("catalog:", "http://", "https://", "hub:", "kaggle:"))
        or not ref.lower().endswith(".tflite")
    ):
        return None
    if not os.path.isfile(ref):
        return None
    try:
        return {"ref": ref, "file": os.path.abspath(ref), "facts": code_facts(ref)}
    except OSError:
        return None


def normal(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples as lists, paths as strings): recorded and
    current inputs compare equal exactly when they are the same."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def _record_file(output: Path) -> Path:
    key = hashlib.sha256(os.path.abspath(output).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return store.home() / "results" / f"{key}.json"


def _folder_facts(output: Path) -> dict[str, list[int]]:
    out = {}
    for p in sorted(output.rglob("*")):
        if not p.is_dir():
            out[p.relative_to(output).as_posix()] = facts(p)
    return out


def _folder_files(output: Path) -> dict[str, list[Any]]:
    """Each file of the folder as the record keeps it: [facts, sha256], the facts taken
    before the file is hashed (one rewritten meanwhile is hashed again next time)."""
    return {name: [f, _sha256(str(output / name))] for name, f in _folder_facts(output).items()}


def _sha256(path: str) -> str | None:
    if files.problem(Path(path)) is not None:  # never open a FIFO
        return None
    return store.sha256_file(path)  # the photo's bottleneck key, as the run that recorded it hashed it


def lookup(output: Path, inputs: dict[str, Any], photos: dict[str, list[int] | None]) -> dict[str, Any] | None:
    """The metrics.json of `output` when it was written by a run of exactly these inputs
    and is unchanged since; None (why: logged) otherwise."""
    rec = _record_file(output)
    why = _mismatch(rec, output, inputs, photos)
    if why is not None:
        log.debug("no reuse of %s: %s", output, why)
        return None
    metrics = store.read_json(output / "metrics.json")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("misclassified"), list):
        log.debug("no reuse of %s: its metrics.json does not read back", output)
        return None
    return metrics


def _mismatch(rec: Path, output: Path, inputs: dict[str, Any], photos: dict[str, list[int] | None]) -> str | None:
    try:
        if rec.stat().st_size > MAX_RECORD_BYTES:
            return f"the record {rec} is too large to be ours"
    except OSError:
        return "no record of an earlier run"
    try:
        data = ResultsRecord.from_dict(store.read_json(rec))
    except BadRecord as err:
        return f"the record {rec} is damaged: {err}"
    if data.version != VERSION or data.output != os.path.abspath(output):
        return f"the record {rec} is not one this version reads"
    if data.inputs != inputs:
        changed = sorted(k for k in set(inputs) | set(data.inputs) if data.inputs.get(k) != inputs.get(k))
        return f"the inputs differ ({', '.join(changed)})"
    if set(data.photos) != set(photos):
        return "the photos differ"
    for path, now in photos.items():
        why = _changed(path, now, *data.photos[path])
        if why is not None:
            return why
    try:
        now_files = _folder_facts(output)
    except OSError:
        return "the folder cannot be read"
    if set(now_files) != set(data.files):
        return "the folder's files were added or removed since it was written"
    for name, now in now_files.items():
        why = _changed(str(output / name), now, *data.files[name])
        if why is not None:
            return why
    return None


def _changed(path: str, now: list[int] | None, was: Any, sha: Any) -> str | None:
    """Why the file at `path` (its facts `now`) is not the one recorded with facts `was`
    and `sha`, or None: the same facts, or else the same sha256."""
    if now is not None and now == was:
        return None
    try:
        if sha is None or now is None or _sha256(path) != sha:
            return f"{path} changed"
    except OSError:
        return f"{path} cannot be read"
    return None


def remember(output: Path, inputs: dict[str, Any], photos: dict[str, list[int] | None], shas: dict[str, str]) -> None:
    """Record that `output` was just written from `inputs`; `photos` are the facts taken
    before the photos were hashed into `shas` (a photo not hashed was not readable)."""
    rec = _record_file(output)
    try:
        data = ResultsRecord(
            output=os.path.abspath(output),
            inputs=inputs,
            photos={p: [f, shas.get(p)] for p, f in photos.items()},
            files=_folder_files(output),
        )
        store.atomic_write_json(rec, data.to_dict())
        log.debug("recorded the inputs of %s (%s)", output, rec)
    except OSError as err:  # a read-only or full IMGTOOL_HOME: the next identical run does the work again
        log.debug("cannot record the inputs of %s in %s: %s", output, rec, err)
