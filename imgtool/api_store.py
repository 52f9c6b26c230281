"""The public Python API of the store (imgtool/__init__.py exports it with api.py's
names): `imgtool.list_models`, `list_caches`, `download_model`, `model_path`,
`remove_models`. Nothing here prints: each removal is also logged.

Layer: the Python API."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from imgtool.core import ui
from imgtool.core.errors import Call, UsageError

if TYPE_CHECKING:
    from imgtool.api import PathLike
    from imgtool.models.caches import CacheInfo


@dataclass(frozen=True)
class ModelInfo:
    """One model `list_models` knows: a catalog record ("catalog"), or something else in
    the cache ("other": a URL, a handle, a converted local model)."""

    name: str
    description: str
    kind: Literal["catalog", "other"]
    cached: bool
    bytes: int = 0
    key: str | None = None  # the cache entry's name
    problem: str | None = None  # why a cache entry is damaged
    path: Path | None = None  # the cache entry's folder (download_model); an embedded model's file
    runtime: Literal["litert", "tensorflow"] | None = None  # what runs it (download_model)
    embedded: bool = False  # ships inside the package: always there, never cached nor removed
    purpose: Literal["classifier", "features"] | None = None  # catalog models: a classifier or a feature extractor

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "other":
            return {"name": self.name, "key": self.key, "cached": self.cached, "kind": self.kind, "bytes": self.bytes}
        return {
            "name": self.name,
            "description": self.description,
            "cached": self.cached,
            "kind": self.kind,
            "bytes": self.bytes,
            "embedded": self.embedded,
            "purpose": self.purpose,
        }


def list_models() -> list[ModelInfo]:
    """The catalog (IMGTOOL_CATALOG's records included), then the other models in the
    cache. `cached` is True only for an intact entry (`problem` says what is wrong).
    `embedded` models ship inside the package: usable offline, never in the cache
    (`cached` False, `bytes` their file's size)."""
    from imgtool.models.catalog import load_catalog
    from imgtool.models.entries import cached_entries

    cached = {e.key: e for e in cached_entries()}
    out = []
    for name, cfg in load_catalog().items():
        if cfg.embedded:
            out.append(
                ModelInfo(name, cfg.description, "catalog", False, cfg.size or 0, embedded=True, purpose=cfg.purpose)
            )
            continue
        entry = cached.pop(name, None)
        out.append(
            ModelInfo(
                name,
                cfg.description,
                "catalog",
                bool(entry and entry.ok),
                entry.bytes if entry else 0,
                name if entry else None,
                entry.problem if entry else None,
                purpose=cfg.purpose,
            )
        )
    for key, e in cached.items():
        out.append(ModelInfo(e.name, e.url or "", "other", e.ok, e.bytes, key, e.problem))
    return out


def list_caches() -> list[CacheInfo]:
    """The caches beside the models (`bottlenecks`, `exports`, `results`): where, how big, how many
    entries. Removing them (`remove_models`) costs recomputation, never a result."""
    from imgtool.models import caches

    return [caches.info(name) for name in caches.CACHES]


def download_model(
    ref: PathLike | None = None, *, features: bool = False, progress: ui.ProgressCallback | None = None
) -> ModelInfo:
    """Download (and convert) a model into the cache now, e.g. while building a CI image,
    so later runs need no network. `features`: also the feature-vector twin `retrain`
    uses. `ref` as for `load_model`. Returns what is now cached."""
    from imgtool.core import store
    from imgtool.models.catalog import load_catalog
    from imgtool.models.resolve import resolve

    text = None if ref is None else os.fspath(ref)
    with ui.reporting(progress):
        model = resolve(text)
        if features:
            resolve(text, purpose="features")
    entry = model.entry
    catalog = load_catalog()
    if model.config.embedded:  # nothing to download: it ships with imgtool
        return ModelInfo(
            model.ref,
            model.config.description,
            "catalog",
            False,
            model.config.size or 0,
            None,
            None,
            model.tflite,
            "litert",
            embedded=True,
            purpose=model.config.purpose,
        )
    return ModelInfo(
        model.ref,
        model.config.description,
        "catalog" if model.ref in catalog else "other",
        True,
        store.dir_size(entry) if entry is not None and entry.is_dir() else 0,
        entry.name if entry is not None else None,
        None,
        entry,
        "tensorflow" if model.tflite is None else "litert",
        purpose=catalog[model.ref].purpose if model.ref in catalog else None,
    )


def model_path(ref: str | None = None) -> Path:
    """The cache root (IMGTOOL_HOME) when `ref` is None, else the folder of the cache
    entry named `ref` (its catalog name, URL or entry key), or the file of a model that
    ships with imgtool. ModelNotFoundError when it is not cached: the message says how to
    fetch it, if it is something that can be fetched (a catalog name, URL, handle or local
    model), and says so if it is not."""
    from imgtool.core import store
    from imgtool.core.errors import ModelNotFoundError
    from imgtool.models import refs, shipped
    from imgtool.models.catalog import load_catalog
    from imgtool.models.entries import cached_entries

    if ref is None:
        return store.home()
    config = load_catalog().get(ref)
    if config is not None and config.embedded:
        return shipped.path(config)
    for e in cached_entries():
        if ref in (e.key, e.name):
            return e.path
    try:
        refs.parse(ref, load_catalog())
    except ModelNotFoundError as err:  # nothing that download_model could fetch
        raise ModelNotFoundError(f"{ref} is not in the cache, and cannot be fetched: " + err.text, model=ref) from None
    raise ModelNotFoundError(
        f"{ref} is not in the cache ({store.models_dir()}); " + Call("download_model", ref) + " fetches it", model=ref
    )


@dataclass(frozen=True)
class Removed:
    """One thing `remove_models` removed: a cache entry ("model", `name` is its key) or
    one of the caches beside the models ("cache": "bottlenecks", "exports" or "results")."""

    name: str
    kind: Literal["model", "cache"]
    bytes: int
    entries: int = 1  # caches: the feature vectors / exports / records they held


def remove_models(names: Iterable[str]) -> list[Removed]:
    """Remove cached models (by catalog name, URL or entry key) and the caches named
    `bottlenecks`, `exports` and `results`; `all` removes everything. Nothing cached is fine (an
    empty list). A name that matches nothing raises ModelNotFoundError, after the others
    were removed; a model that ships with imgtool is never removed (UsageError, before
    anything is). Each removal is also logged."""
    from imgtool.core.errors import ModelNotFoundError
    from imgtool.models import caches
    from imgtool.models.catalog import load_catalog
    from imgtool.models.entries import cached_entries
    from imgtool.models.entries import remove as remove_entry

    names = list(names)
    catalog = load_catalog()
    shipped = [n for n in names if n in catalog and catalog[n].embedded]
    if shipped:
        raise UsageError(
            f"{', '.join(shipped)} {'ships' if len(shipped) == 1 else 'ship'} with imgtool (inside the "
            "package, not in the cache) and cannot be removed"
        )
    out: list[Removed] = []
    missing = []
    for name in names:
        if name in caches.CACHES or name == "all":
            for cache in caches.CACHES if name == "all" else (name,):
                gone = caches.remove(cache)
                if gone is not None:
                    out.append(Removed(cache, "cache", gone.bytes, gone.entries))
                    ui.info(f"removed the {cache} cache ({caches.human_size(gone.bytes)}, {gone.entries} entries)")
            if name in caches.CACHES:
                continue
        sizes = {e.key: e.bytes for e in cached_entries()}
        removed = remove_entry(name)
        if removed:
            out.extend(Removed(key, "model", sizes.get(key, 0)) for key in removed)
            ui.info(f"removed {', '.join(removed)}")
        elif name != "all":
            missing.append(name)
    if missing:
        raise ModelNotFoundError(f"not in the cache: {', '.join(missing)}")
    return out
