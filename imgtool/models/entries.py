"""Cache entries: one folder per downloaded (or locally converted) model under
IMGTOOL_HOME/models, described by a typed `entry.json` record; their lifecycle
(check, fetch, re-fetch when damaged), listing and removal.

store.py keeps the low-level parts (paths, locks, atomic writes); download.py fetches.
Layer: above catalog, download, labels, store; below convert and resolve.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgtool.core import locks, store, ui
from imgtool.core.errors import Call, FetchFailed, ModelError, first_line
from imgtool.core.records import BadRecord, Record, is_empty, is_none, known
from imgtool.data import labels as labels_mod
from imgtool.models.catalog import LabelSource, ModelConfig, ModelFormat
from imgtool.models.refs import key_for

ENTRY_FILE = "entry.json"
NO_RECORD = "no record"


@dataclass
class Conversion(Record):
    """One conversion of an entry's TF model to `<purpose>.tflite`."""

    ok: bool = False
    converted: float | None = known(None, omit=is_none)
    input_size: list[int] | None = known(None, omit=is_none)
    max_diff: float | None = known(None, omit=is_none)
    size: int | None = known(None, omit=is_none)
    error: str | None = known(None, omit=is_none)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EntryRecord(Record):
    """entry.json. Keys another version wrote and this one does not know are kept."""

    key: str = ""
    name: str | None = known(None, omit=is_none)
    created: float | None = known(None, omit=is_none)
    url: str | None = known(None, omit=is_none)  # the URL the source was fetched from
    sha256: str | None = known(None, omit=is_none)  # of the downloaded file
    # index into the record's candidates (None: an entry from before sources)
    source: int | None = known(None, omit=is_none)
    config: dict[str, Any] | None = known(None, omit=is_none)  # the effective ModelConfig of that source
    format: ModelFormat | None = known(None, omit=is_none)
    file: str | None = known(None, omit=is_none)  # a .tflite in source/
    graph: str | None = known(None, omit=is_none)  # a .pb in source/
    source_dir: str | None = known(None, omit=is_none)  # a local model's folder (local entries)
    source_dir_rel: str | None = known(None, omit=is_none)  # a SavedModel nested in source/
    local: bool = known(False, omit=is_empty)
    files: dict[str, int] = field(default_factory=dict)  # relative path -> size, checked on every use
    conversions: dict[str, Conversion] = known(factory=dict, omit=is_empty)
    extra: dict[str, Any] = field(default_factory=dict)


def read_record(entry: Path) -> EntryRecord | None:
    """The entry's record; None when there is none, or it is damaged (then the entry is
    fetched again)."""
    return _load(entry)[0]


def _load(entry: Path) -> tuple[EntryRecord | None, str]:
    """(the record, "") or (None, why not: no record, or a field of the wrong type)."""
    data = store.read_json(entry / ENTRY_FILE)
    if not isinstance(data, dict):
        return None, NO_RECORD
    try:
        return EntryRecord.from_dict(data), ""
    except BadRecord as err:
        return None, f"{ENTRY_FILE} is damaged: {err}"


def write_record(entry: Path, record: EntryRecord) -> None:
    store.atomic_write_json(entry / ENTRY_FILE, record.to_dict())


def entry_ok(entry: Path) -> tuple[bool, str]:
    record, why = _load(entry)
    if record is None:
        return False, why
    if record == EntryRecord():
        return False, NO_RECORD
    for rel, size in record.files.items():
        p = entry / rel
        try:
            actual = p.stat().st_size
        except OSError:
            return False, f"{rel} is missing"
        if actual != size:
            return False, f"{rel} is truncated or changed ({actual} bytes, expected {size})"
    return True, ""


def ensure_entry(key: str, config: ModelConfig) -> Path:
    entry = store.entry_dir(key)
    ok, why = entry_ok(entry)
    if ok:
        return entry
    if store.offline():
        raise ModelError(
            f"model {config.name} is not in the cache ({store.models_dir()}) and IMGTOOL_OFFLINE is set; "
            "run " + Call("download_model", config.name) + " where the network is reachable",
            model=config.name,
        )
    with locks.lock(key):
        ok, why = entry_ok(entry)  # another process may have fetched it while we waited
        if ok:
            return entry
        if (entry / ENTRY_FILE).exists():
            ui.info(f"cached model {config.name} is damaged ({why}); downloading it again")
        download_entry(key, config, entry)
    return entry


def effective_config(config: ModelConfig, entry: Path) -> ModelConfig:
    """The config of the source the cache entry was fetched from: a record's later
    `sources` may differ in format, tensors, preprocessing and output kind. Found by the
    URL the entry records (the catalog's current settings for it); a URL the catalog no
    longer lists falls back to the effective config the entry recorded."""
    from imgtool.models.download import hub_download_url

    record = read_record(entry) or EntryRecord()
    if record.source is None:
        return config  # an entry from before sources: fetched from the record's urls
    for url, cfg in config.candidates():
        if record.url in (url, hub_download_url(url)):
            return cfg
    if isinstance(record.config, dict):
        try:
            return ModelConfig.from_dict(config.name, record.config)
        except (ModelError, TypeError, ValueError):
            pass  # written by another version
    return config


def download_entry(key: str, config: ModelConfig, entry: Path) -> None:
    """Fetch the first source that works into a new entry: the record's `urls`, then its
    `sources` (each with its own format and settings); entry.json says which was used
    and holds that source's effective config."""
    from imgtool.models import download

    store.entry_dir(key)  # the key becomes names in tmp/ too: one plain path component
    tmp = store.tmp_dir()
    store.clean_stale(tmp)  # what killed processes left (theirs only: live PIDs' files are kept)
    staging = tmp / f"{key}.{os.getpid()}.staging"
    archive = tmp / f"{key}.{os.getpid()}.download"
    shutil.rmtree(staging, ignore_errors=True)
    candidates = config.candidates()
    if not candidates:
        raise download.DownloadError(f"{config.name}: no download URL is known; pass a local path instead")
    if not all(url.startswith("file://") for url, _ in candidates):
        download.check_online(config.name)
    try:
        errors: list[ModelError] = []
        for index, (url, cfg) in enumerate(candidates):
            shutil.rmtree(staging, ignore_errors=True)
            try:
                record = _stage_source(key, url, cfg, staging, archive)
            except ModelError as err:
                errors.append(err)
                continue
            finally:
                archive.unlink(missing_ok=True)
            record.source, record.config = index, cfg.to_dict()
            break
        else:
            last = errors[-1]
            if len(candidates) == 1 and not isinstance(last, FetchFailed):
                raise last  # e.g. an unsafe archive: its own message says it all
            said = str(last).removeprefix(f"could not download {config.name}: ")
            raise download.DownloadError(download.failure_message(config.name, len(candidates), said))
        labels = _fetch_labels(cfg, staging / "source", key)
        if labels is not None:
            store.atomic_write_text(staging / "labels.txt", "\n".join(labels) + "\n")
        record.files = {
            str(p.relative_to(staging)): p.stat().st_size for p in sorted(staging.rglob("*")) if p.is_file()
        }
        write_record(staging, record)
        store.replace_dir(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink(missing_ok=True)


def _stage_source(key: str, url: str, cfg: ModelConfig, staging: Path, archive: Path) -> EntryRecord:
    """Download one source and unpack it into staging/source; the entry record so far."""
    from imgtool.models import archives, download

    src = staging / "source"
    src.mkdir(parents=True)
    record = EntryRecord(key=key, name=cfg.name, created=time.time())
    if url.startswith("file://"):
        source_file = Path(url[len("file://") :])
        used = url
    else:
        source_file = archive
        try:
            used = download.fetch_url(download.Pinned(url, cfg.sha256, cfg.size), archive, what=cfg.name)
        except download.DownloadError as err:
            raise FetchFailed(str(err)) from None
    record.url = used
    record.sha256 = store.sha256_file(source_file)
    kind = archives.archive_kind(source_file)
    if cfg.format == "tflite" or url.split("?")[0].endswith(".tflite") or kind == "tflite":
        if source_file == archive:  # our download: moved into place, so a download needs its size once
            os.replace(archive, src / "model.tflite")
        else:  # a user's own file (file://): copied
            shutil.copyfile(source_file, src / "model.tflite")
        _check_tflite_loads(src / "model.tflite", cfg.name, used)
        record.format, record.file = "tflite", "model.tflite"
    else:
        archives.extract_archive(source_file, src, what=cfg.name)
        _describe_source(src, cfg, record)
    return record


def _check_tflite_loads(path: Path, name: str, url: str) -> None:
    """A .tflite download whose length looked right can still be cut short (a server that
    announces fewer bytes than it sends): load it before it is cached."""
    from ai_edge_litert.interpreter import Interpreter

    from imgtool.core.errors import DownloadError

    try:
        with ui.native_output_filtered():
            Interpreter(model_path=str(path))
    except (ValueError, RuntimeError, OSError) as err:
        raise DownloadError(
            f"could not download {name}: {url}: the file received is not a loadable .tflite "
            f"model ({first_line(err, None)}); nothing was cached"
        ) from None


def _describe_source(src: Path, config: ModelConfig, record: EntryRecord) -> None:
    """What the unpacked archive holds: sets the record's format and where the model is."""
    if (src / "saved_model.pb").is_file():
        record.format = "savedmodel"
        return
    nested = [p.parent for p in src.rglob("saved_model.pb")]
    if len(nested) == 1:
        record.format, record.source_dir_rel = "savedmodel", str(nested[0].relative_to(src))
        return
    graphs = sorted(src.rglob("*.pb"))
    if config.graph and (src / config.graph).is_file():
        record.format, record.graph = "graphdef", config.graph
        return
    if graphs:
        record.format, record.graph = "graphdef", str(graphs[0].relative_to(src))
        return
    tfl = sorted(src.rglob("*.tflite"))
    if tfl:
        record.format, record.file = "tflite", str(tfl[0].relative_to(src))
        return
    raise ModelError(f"{config.name}: the archive holds no SavedModel, .pb graph or .tflite model")


def _fetch_labels(config: ModelConfig, src: Path, key: str) -> list[str] | None:
    from imgtool.models import download

    spec: LabelSource | None = config.labels
    if spec is None:
        return labels_mod.find_beside(src)
    if spec.format == "imagenet2015":
        return labels_mod.imagenet2015(src / (spec.label_map or ""), src / (spec.synsets or ""))
    if spec.member:
        return labels_mod.read_lines(src / spec.member)
    if spec.urls:
        dest = store.tmp_dir() / f"{key}.{os.getpid()}.labels"
        try:
            download.fetch(spec.urls, dest, sha256=spec.sha256, size=spec.size, what=f"{config.name} labels")
            return labels_mod.read_lines(dest)
        finally:
            dest.unlink(missing_ok=True)
    return None


def _fingerprint(path: Path) -> str:
    parts = []
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        st = p.stat()
        parts.append(f"{p.relative_to(path) if path.is_dir() else p.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def local_entry(path: Path, config: ModelConfig) -> Path:
    """A store entry holding conversions of a local TF model; a changed model is a new entry."""
    real = path.resolve()
    # the conversion depends on the tensors and input size too: a .pb converted to
    # softmax:0 for classify must not be reused for pool_3:0 when retraining
    depends = f"{real}\n{_fingerprint(real)}\n{config.input_tensor}\n{config.output_tensor}\n{config.input_size}"
    key = key_for(depends, "local")
    entry = store.entry_dir(key)
    if not (entry / ENTRY_FILE).is_file():
        with locks.lock(key):
            if not (entry / ENTRY_FILE).is_file():
                entry.mkdir(parents=True, exist_ok=True)
                write_record(
                    entry,
                    EntryRecord(
                        key=key,
                        format=config.format,
                        source_dir=str(real),
                        local=True,
                        config=config.to_dict(),
                        created=time.time(),
                        files={},
                    ),
                )
    return entry


# ---------------------------------------------------------------- listing and removal


@dataclass(frozen=True)
class CachedEntry:
    """One entry of the cache, as listed: `problem` says why it is not `ok`."""

    key: str
    name: str  # the catalog name, or a local model's folder, or the key
    path: Path
    bytes: int
    ok: bool
    problem: str | None
    url: str | None
    conversions: dict[str, bool]  # purpose -> whether its conversion worked


def cached_entries() -> list[CachedEntry]:
    out: list[CachedEntry] = []
    root = store.models_dir()
    if not root.is_dir():
        return out
    for entry in sorted(root.iterdir()):
        record, why = _load(entry)
        if why == NO_RECORD:
            continue  # not an entry
        record = record or EntryRecord()  # a damaged record: listed, so that it can be removed
        ok, why = entry_ok(entry)
        out.append(
            CachedEntry(
                entry.name,
                record.name or record.source_dir or entry.name,
                entry,
                store.dir_size(entry),
                ok,
                why or None,
                record.url,
                {k: v.ok for k, v in record.conversions.items()},
            )
        )
    return out


def remove(name: str) -> list[str]:
    removed = []
    for e in cached_entries():
        if name in (e.key, e.name) or name == "all":
            with locks.lock(e.key):
                shutil.rmtree(e.path, ignore_errors=True)
            removed.append(e.key)
    return removed
