"""The caches beside the models under IMGTOOL_HOME, for `imgtool models list/remove`.

    bottlenecks/   retrain's backbone features, one folder per backbone + preprocessing
                   (and model-hashes/, the memo of backbone file hashes)
    exports/       retrain's SavedModel + .tflite exports, kept for identical reruns
    results/       retrain's records of the inputs that wrote each output folder (imgtool/training/reuse.py),
                   so an identical rerun reuses its folder

All are pure optimisations: removing them costs recomputation, never a result (without its
record, the next rerun into a folder is a full run, which records afresh)."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from imgtool.core import store

#: name accepted by `imgtool models remove` -> (folder under IMGTOOL_HOME, what it holds)
CACHES: dict[str, tuple[str, str]] = {
    "bottlenecks": ("bottlenecks", "retrain's cached backbone features"),
    "exports": ("exports", "retrain's cached SavedModel/.tflite exports"),
    "results": ("results", "retrain's records of earlier runs, for identical reruns"),
}


@dataclass(frozen=True)
class CacheInfo:
    name: str
    path: Path
    bytes: int
    entries: int  # bottlenecks: cached feature vectors; exports: exported models; results: records
    description: str


SPECIAL_EXPORT_DIRS = ("tflite", "checks")


def prune(folder: Path, keep: int, suffix: str = "") -> list[Path]:
    """Keep the `keep` most recently written entries of a cache folder (those whose names
    end in `suffix`), remove the rest; returns what was removed. The one pruner of the
    export cache: its special folders (tflite/, checks/: caches of their own) and hidden
    names (entries being written) are never counted or removed."""
    try:
        entries = []
        for p in folder.iterdir():
            if p.name.startswith(".") or p.name in SPECIAL_EXPORT_DIRS or not p.name.endswith(suffix):
                continue
            with contextlib.suppress(OSError):
                entries.append((p.stat().st_mtime, p))
    except OSError:
        return []
    entries.sort(key=lambda e: e[0], reverse=True)
    removed = []
    for _, p in entries[keep:]:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def cache_dir(name: str) -> Path:
    return store.home() / CACHES[name][0]


def info(name: str) -> CacheInfo:
    path = cache_dir(name)
    entries = 0
    if path.is_dir():
        if name == "bottlenecks":
            entries = sum(1 for _ in path.glob("*/*/*.f32"))
        elif name == "results":  # one <key>.json per output folder; hidden names are being written
            entries = sum(1 for p in path.glob("*.json") if not p.name.startswith("."))
        else:  # exports/<key>/ (TF exports), exports/tflite/*.tflite (conversions); exports/checks/
            # holds the figures of exports already measured: part of the size, not entries
            entries = sum(
                1
                for p in path.iterdir()
                if p.is_dir() and not p.name.startswith(".") and p.name not in SPECIAL_EXPORT_DIRS
            )
            entries += sum(1 for _ in (path / "tflite").glob("*.tflite"))
    return CacheInfo(name, path, store.dir_size(path) if path.is_dir() else 0, entries, CACHES[name][1])


def remove(name: str) -> CacheInfo | None:
    """Remove one cache; return what it held (None when there was nothing). The folder is
    first renamed away, so a run starting meanwhile sees an empty cache, not half of one."""
    before = info(name)
    path = before.path
    if not path.exists():
        return None
    gone = store.tmp_dir() / f".{path.name}.removing-{os.getpid()}"
    try:
        os.replace(path, gone)
    except OSError:
        gone = path  # another filesystem or already moving: remove in place
    shutil.rmtree(gone, ignore_errors=True)
    with contextlib.suppress(OSError):
        if path.exists() and not any(path.iterdir()):
            path.rmdir()
    return before if (before.bytes or before.entries) else None


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover
