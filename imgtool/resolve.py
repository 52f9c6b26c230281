"""Model references -> ready models. One resolver for every `--model` in the CLI.

Accepted references, tried in this order:
  catalog:NAME            a catalog record, explicitly
  ./path, /path, path     a local .tflite file, SavedModel directory, frozen GraphDef .pb,
                          .tar.gz archive, or a folder written by `imgtool retrain`
  http(s)://...           a .tar.gz / .tflite URL; tfhub.dev and kaggle.com model pages too
  hub:OWNER/.../VERSION   a TF Hub handle (tfhub.dev), e.g. hub:google/imagenet/mobilenet_v2_100_224/classification/5
  kaggle:OWNER/MODEL/FRAMEWORK/VARIATION/VERSION   a Kaggle Models handle
  NAME                    a catalog name (`imgtool models list`)
A name that is both a catalog entry and a local path is an error naming both readings.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from imgtool import labels as labels_mod
from imgtool import store, ui
from imgtool.catalog import DEFAULT_MODEL, LabelSource, ModelConfig, load_catalog
from imgtool.engine import Engine, HeadEngine, LiteRTEngine, TFEngine
from imgtool.errors import ImgtoolError, ModelError, ModelNotFoundError, UsageError

ENTRY_FILE = "entry.json"
RETRAINED_FILE = "imgtool-model.json"
VERIFY_TOLERANCE = 1e-3  # relative to the output's scale


@dataclass
class Model:
    """A resolved model: what to run, how to feed it, and its labels."""

    ref: str
    config: ModelConfig
    labels: list[str] | None = None
    labels_file: str | None = None  # set when the labels came from --labels FILE
    tflite: Path | None = None
    tf_source: Path | None = None
    graph_tensors: tuple[str, str] | None = None
    entry: Path | None = None
    head: Path | None = None
    backbone: "Model | None" = None
    notes: list[str] = field(default_factory=list)

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self.config.input_size

    def engine(self) -> Engine:
        if self.head is not None:
            assert self.backbone is not None
            with np.load(self.head, allow_pickle=False) as npz:
                w, b = npz["weights"], npz["bias"]
            return HeadEngine(self.backbone.engine(), w, b)
        if self.tflite is not None:
            try:
                return LiteRTEngine(self.tflite, self.config.value_range)
            except ModelError:
                if self.entry is None:
                    raise  # the user's own file: nothing of ours to repair
                repaired = self._repair_cached_tflite()
                if repaired is not None:
                    return repaired
        if self.tf_source is None:
            raise ModelError(f"{self.ref}: nothing runnable was found")
        if self.input_size is None:
            raise ModelError(f"{self.ref}: cannot tell the input size; pass --input-size HEIGHT,WIDTH")
        return TFEngine(self.tf_source, self.input_size, self.config.value_range, self.graph_tensors)

    def _repair_cached_tflite(self) -> Engine | None:
        """A cached .tflite that no longer loads: a download is fetched again, a
        conversion made again (None: conversion failed, run in TF)."""
        assert self.entry is not None and self.tflite is not None
        if self.tf_source is None:
            if not self.config.urls:
                raise ModelError(f"{self.ref}: the cached model no longer loads; `imgtool models remove` it")
            with store.lock(self.entry.name):
                ui.info(f"cached model {self.config.name} no longer loads (damaged in the cache); downloading it again")
                _download_entry(self.entry.name, self.config, self.entry)
            if self.labels is None:  # they were read from the damaged file
                self.labels = labels_mod.embedded_tflite_labels(self.tflite)
            return LiteRTEngine(self.tflite, self.config.value_range)
        ui.info(f"the cached conversion {self.tflite} no longer loads; converting again")
        self.tflite.unlink(missing_ok=True)
        again = _ensure_tflite(self, self.entry, purpose=self.tflite.stem)
        if again.tflite is not None:
            return LiteRTEngine(again.tflite, self.config.value_range)
        self.tflite = None
        return None


# ---------------------------------------------------------------- parsing references

def _key_for(text: str, prefix: str) -> str:
    return f"{prefix}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"


def hub_handle_url(handle: str) -> str:
    return f"https://tfhub.dev/{handle.strip('/')}?tf-hub-format=compressed"


def kaggle_handle_url(handle: str) -> str:
    parts = handle.strip("/").split("/")
    if len(parts) != 5:
        raise UsageError(f"kaggle:{handle}: a Kaggle handle is OWNER/MODEL/FRAMEWORK/VARIATION/VERSION")
    return "https://www.kaggle.com/api/v1/models/" + "/".join(parts) + "/download"


def _page_to_download(url: str) -> str:
    marker = "kaggle.com/models/"
    if marker in url and "/api/" not in url:
        return kaggle_handle_url(url.split(marker, 1)[1].split("?")[0])
    return url


@store.cache_writing()  # a full disk or read-only IMGTOOL_HOME: one line, exit 4
def resolve(ref: str | None = None, *, labels_file: str | None = None, purpose: str = "classify",
            input_size: tuple[int, int] | None = None, value_range: tuple[float, float] | None = None,
            tensors: tuple[str | None, str | None] = (None, None)) -> Model:
    """Turn what the user typed into a Model ready to run. `purpose` is "classify" or
    "features" (the feature-vector twin / bottleneck tensor, for retraining)."""
    from imgtool import settings

    ref = ref or settings.current().model or DEFAULT_MODEL
    catalog = load_catalog()
    overrides = {k: v for k, v in (("input_size", input_size), ("value_range", value_range)) if v is not None}

    if ref.startswith("catalog:"):
        model = _from_catalog(ref[len("catalog:"):], catalog, purpose)
    elif ref.startswith(("http://", "https://")):
        url = _page_to_download(ref)
        model = _from_url(ref, url, purpose, overrides, tensors)
    elif ref.startswith("hub:"):
        model = _from_url(ref, hub_handle_url(ref[4:]), purpose, overrides, tensors)
    elif ref.startswith("kaggle:"):
        model = _from_url(ref, kaggle_handle_url(ref[7:]), purpose, overrides, tensors)
    elif os.path.lexists(ref):
        if ref in catalog and "/" not in ref and not ref.startswith("."):
            raise UsageError(f"{ref!r} is both a catalog model and a path here; "
                             f"write catalog:{ref} or ./{ref} to choose")
        model = _from_path(ref, Path(ref), purpose, overrides, tensors)
    elif ref in catalog:
        model = _from_catalog(ref, catalog, purpose)
    else:
        near = difflib.get_close_matches(ref, list(catalog), n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise ModelNotFoundError(f"unknown model {ref!r}: not a file, URL, hub handle or catalog name{hint}; "
                         "`imgtool models list` shows the catalog")
    if overrides:
        model.config = replace(model.config, **overrides)
    if labels_file:
        model.labels = labels_mod.read_lines(Path(labels_file))
        model.labels_file = labels_file
    return model


def _from_catalog(name: str, catalog: dict[str, ModelConfig], purpose: str) -> Model:
    if name not in catalog:
        raise ModelNotFoundError(f"unknown catalog model {name!r}; `imgtool models list` shows the catalog")
    config = catalog[name]
    if purpose == "features" and config.features and config.features != name:
        if config.features not in catalog:
            raise ModelError(f"catalog model {name!r} names a feature twin {config.features!r} that is not in the catalog")
        config = catalog[config.features]
    entry = _ensure_entry(config.name, config)
    config = _effective_config(config, entry)
    model = Model(ref=name, config=config)
    return _ensure_tflite(_attach(model, entry), entry, purpose=_purpose_file(config, purpose))


def _effective_config(config: ModelConfig, entry: Path) -> ModelConfig:
    """The config of the source the cache entry was fetched from: a record's later
    `sources` may differ in format, tensors, preprocessing and output kind. Found by the
    URL the entry records (the catalog's current settings for it); a URL the catalog no
    longer lists falls back to the effective config the entry recorded."""
    from imgtool.download import hub_download_url

    data = store.read_json(entry / ENTRY_FILE) or {}
    if "source" not in data:
        return config  # an entry from before sources: fetched from the record's urls
    for url, cfg in config.candidates():
        if data.get("url") in (url, hub_download_url(url)):
            return cfg
    recorded = data.get("config")
    if isinstance(recorded, dict):
        try:
            return ModelConfig.from_dict(config.name, recorded)
        except (ModelError, TypeError, ValueError):
            pass  # written by another version
    return config


def _purpose_file(config: ModelConfig, purpose: str) -> str:
    if purpose == "labels":
        return "labels"  # labels need no conversion, so no TensorFlow
    if purpose == "features" and config.format == "graphdef" and config.feature_tensor:
        return "features"
    return "model"


def _from_url(ref: str, url: str, purpose: str, overrides: dict[str, Any],
              tensors: tuple[str | None, str | None]) -> Model:
    key = _key_for(url, "url")
    fmt = "tflite" if url.split("?")[0].endswith(".tflite") else "savedmodel"
    config = ModelConfig(name=ref, format=fmt, urls=(url,), **overrides)
    entry = _ensure_entry(key, config)
    data = store.read_json(entry / ENTRY_FILE) or {}
    config = replace(config, format=data.get("format", fmt))
    if config.format == "graphdef":
        config = replace(config, graph=data.get("graph"),
                         input_tensor=tensors[0] or "Mul:0", output_tensor=tensors[1] or "softmax:0",
                         feature_tensor="pool_3:0", value_range=config.value_range or (-1.0, 0.9921875),
                         input_size=config.input_size or (299, 299))
    model = _attach(Model(ref=ref, config=config), entry)
    return _ensure_tflite(model, entry, purpose=_purpose_file(config, purpose))


def _attach(model: Model, entry: Path) -> Model:
    """Fill a model's runnable parts from its store entry."""
    model.entry = entry
    data = store.read_json(entry / ENTRY_FILE) or {}
    src = entry / "source"
    cfg = model.config
    if cfg.format == "tflite":
        model.tflite = src / data.get("file", "model.tflite")
    elif cfg.format == "graphdef":
        model.tf_source = src / (data.get("graph") or cfg.graph or "classify_image_graph_def.pb")
    else:
        model.tf_source = Path(data["source_dir"]) if data.get("source_dir") else src
    if (entry / "labels.txt").is_file():
        model.labels = labels_mod.read_lines(entry / "labels.txt")
    elif model.tflite is not None:
        model.labels = labels_mod.embedded_tflite_labels(model.tflite)
    return model


def _from_path(ref: str, path: Path, purpose: str, overrides: dict[str, Any],
               tensors: tuple[str | None, str | None]) -> Model:
    if not path.exists():
        raise ModelError(f"{ref}: broken symbolic link")
    if path.is_dir() and (path / RETRAINED_FILE).is_file():
        return _retrained(ref, path, purpose)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        config = ModelConfig(name=ref, format="savedmodel", **overrides)
        model = Model(ref=ref, config=config, tf_source=path.resolve())
        entry = _local_entry(path, config)
        model = _ensure_tflite(model, entry, purpose=_purpose_file(config, purpose))
        _local_labels(model, path)
        return model
    if path.is_dir():
        raise ModelError(f"{ref}: a folder, but not a SavedModel (no saved_model.pb) nor an imgtool retrain output")
    name = path.name.lower()
    if name.endswith(".tflite"):
        if "value_range" not in overrides:  # TFLite metadata says how to map pixels (e.g. imgtool's exports)
            from imgtool.tflite_metadata import file_value_range

            overrides = {**overrides, **file_value_range(path)}
        config = ModelConfig(name=ref, format="tflite", **overrides)
        model = Model(ref=ref, config=config, tflite=path)
        model.labels = labels_mod.embedded_tflite_labels(path)
        if model.labels is None:
            _local_labels(model, path)
        return model
    if name.endswith(".pb"):
        t_in, t_out = tensors[0] or "Mul:0", tensors[1] or "softmax:0"
        if purpose == "features":
            t_out = tensors[1] or "pool_3:0"
        config = ModelConfig(name=ref, format="graphdef", input_tensor=t_in, output_tensor=t_out,
                             input_size=overrides.get("input_size", (299, 299)),
                             value_range=overrides.get("value_range", (-1.0, 0.9921875)))
        model = Model(ref=ref, config=config, tf_source=path.resolve(), graph_tensors=(t_in, t_out))
        model = _ensure_tflite(model, _local_entry(path, config), purpose=_purpose_file(config, purpose))
        _local_labels(model, path)
        return model
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return _from_url(ref, "file://" + str(path.resolve()), purpose, overrides, tensors)
    raise ModelError(f"{ref}: not a model this tool can read (.tflite, SavedModel folder, .pb graph, .tar.gz)")


def _local_labels(model: Model, path: Path) -> None:
    if model.labels is None:
        model.labels = labels_mod.find_beside(path)


def _fingerprint(path: Path) -> str:
    parts = []
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        st = p.stat()
        parts.append(f"{p.relative_to(path) if path.is_dir() else p.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _local_entry(path: Path, config: ModelConfig) -> Path:
    """A store entry holding conversions of a local TF model; a changed model is a new entry."""
    real = path.resolve()
    # the conversion depends on the tensors and input size too: a .pb converted to
    # softmax:0 for classify must not be reused for pool_3:0 when retraining
    depends = f"{real}\n{_fingerprint(real)}\n{config.input_tensor}\n{config.output_tensor}\n{config.input_size}"
    key = _key_for(depends, "local")
    entry = store.entry_dir(key)
    if not (entry / ENTRY_FILE).is_file():
        with store.lock(key):
            if not (entry / ENTRY_FILE).is_file():
                entry.mkdir(parents=True, exist_ok=True)
                store.atomic_write_json(entry / ENTRY_FILE, {
                    "key": key, "format": config.format, "source_dir": str(real), "local": True,
                    "config": config.to_dict(), "created": time.time(), "files": {}})
    return entry


def _retrained(ref: str, path: Path, purpose: str) -> Model:
    """A folder written by `imgtool retrain`: backbone (.tflite, or SavedModel/.pb when it
    could not be converted) + head.npz + labels.txt."""
    try:
        meta = json.loads((path / RETRAINED_FILE).read_text(encoding="utf-8"))
        bb = meta["backbone"]
        backbone_file = path / bb["file"]
        head = path / meta["head"]
        size = tuple(bb["input_size"])
        vr = tuple(bb["value_range"]) if bb.get("value_range") else None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"{ref}: damaged retrained model ({RETRAINED_FILE}: {err}); retrain it again") from None
    if not backbone_file.exists() or not head.is_file() or not (path / "labels.txt").is_file():
        raise ModelError(f"{ref}: damaged retrained model (missing {backbone_file.name}, {head.name} or labels.txt); "
                         "retrain it again")
    fmt = {".tflite": "tflite", ".pb": "graphdef"}.get(backbone_file.suffix, "savedmodel")
    backbone = Model(ref=str(backbone_file), config=ModelConfig(
        name=str(backbone_file), format=fmt, input_size=size, value_range=vr, output="features"))
    if fmt == "tflite":
        backbone.tflite = backbone_file
    else:
        backbone.tf_source = backbone_file
        if fmt == "graphdef":
            t_in, t_out = bb.get("tensors") or ("Mul:0", "pool_3:0")
            backbone.graph_tensors = (t_in, t_out)
    if purpose == "features":
        return backbone
    config = ModelConfig(name=ref, format="tflite", input_size=size, value_range=vr, output="logits")
    return Model(ref=ref, config=config, labels=labels_mod.read_lines(path / "labels.txt"),
                 head=head, backbone=backbone)


# ---------------------------------------------------------------- the store entries

def _entry_ok(entry: Path) -> tuple[bool, str]:
    data = store.read_json(entry / ENTRY_FILE)
    if not data:
        return False, "no record"
    for rel, size in data.get("files", {}).items():
        p = entry / rel
        try:
            actual = p.stat().st_size
        except OSError:
            return False, f"{rel} is missing"
        if actual != size:
            return False, f"{rel} is truncated or changed ({actual} bytes, expected {size})"
    return True, ""


def _ensure_entry(key: str, config: ModelConfig) -> Path:
    entry = store.entry_dir(key)
    ok, why = _entry_ok(entry)
    if ok:
        return entry
    if store.offline():
        raise ModelError(f"model {config.name} is not in the cache ({store.models_dir()}) and IMGTOOL_OFFLINE is set; "
                         f"run `imgtool models download {config.name}` where the network is reachable")
    with store.lock(key):
        ok, why = _entry_ok(entry)  # another process may have fetched it while we waited
        if ok:
            return entry
        if (entry / ENTRY_FILE).exists():
            ui.info(f"cached model {config.name} is damaged ({why}); downloading it again")
        _download_entry(key, config, entry)
    return entry


def _download_entry(key: str, config: ModelConfig, entry: Path) -> None:
    """Fetch the first source that works into a new entry: the record's `urls`, then its
    `sources` (each with its own format and settings); entry.json says which was used
    and holds that source's effective config."""
    from imgtool import download

    tmp = store.tmp_dir()
    for stale in tmp.glob(f"{key}.*"):  # left by a killed process; we hold the lock
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
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
            record.update(source=index, config=cfg.to_dict())
            break
        else:
            last = errors[-1]
            if len(candidates) == 1 and not isinstance(last, _FetchFailed):
                raise last  # e.g. an unsafe archive: its own message says it all
            said = str(last).removeprefix(f"could not download {config.name}: ")
            raise download.DownloadError(download.failure_message(config.name, len(candidates), said))
        labels = _fetch_labels(cfg, staging / "source", key)
        if labels is not None:
            store.atomic_write_text(staging / "labels.txt", "\n".join(labels) + "\n")
        record["files"] = {str(p.relative_to(staging)): p.stat().st_size
                           for p in sorted(staging.rglob("*")) if p.is_file()}
        store.atomic_write_json(staging / ENTRY_FILE, record)
        store.replace_dir(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink(missing_ok=True)


def _stage_source(key: str, url: str, cfg: ModelConfig, staging: Path, archive: Path) -> dict[str, Any]:
    """Download one source and unpack it into staging/source; the entry record so far."""
    from imgtool import download

    src = staging / "source"
    src.mkdir(parents=True)
    record: dict[str, Any] = {"key": key, "name": cfg.name, "created": time.time()}
    if url.startswith("file://"):
        source_file = Path(url[len("file://"):])
        used = url
    else:
        source_file = archive
        try:
            used = download.fetch_url(download.Pinned(url, cfg.sha256, cfg.size), archive, what=cfg.name)
        except download.DownloadError as err:
            raise _FetchFailed(str(err)) from None
    record["url"] = used
    record["sha256"] = download.sha256_file(source_file)
    kind = download.archive_kind(source_file)
    if cfg.format == "tflite" or url.split("?")[0].endswith(".tflite") or kind == "tflite":
        shutil.copyfile(source_file, src / "model.tflite")
        _check_tflite_loads(src / "model.tflite", cfg.name, used)
        record.update(format="tflite", file="model.tflite")
    else:
        download.extract_archive(source_file, src, what=cfg.name)
        record.update(_describe_source(src, cfg))
    return record


class _FetchFailed(ModelError):
    """A source's URL could not be downloaded ("URL: problem")."""


def _check_tflite_loads(path: Path, name: str, url: str) -> None:
    """A .tflite download whose length looked right can still be cut short (a server that
    announces fewer bytes than it sends): load it before it is cached."""
    from ai_edge_litert.interpreter import Interpreter

    from imgtool.errors import DownloadError

    try:
        with ui.native_output_filtered():
            Interpreter(model_path=str(path))
    except (ValueError, RuntimeError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DownloadError(f"could not download {name}: {url}: the file received is not a loadable .tflite "
                            f"model ({first}); nothing was cached") from None


def _describe_source(src: Path, config: ModelConfig) -> dict[str, Any]:
    if (src / "saved_model.pb").is_file():
        return {"format": "savedmodel"}
    nested = [p.parent for p in src.rglob("saved_model.pb")]
    if len(nested) == 1:
        return {"format": "savedmodel", "source_dir_rel": str(nested[0].relative_to(src))}
    graphs = sorted(src.rglob("*.pb"))
    if config.graph and (src / config.graph).is_file():
        return {"format": "graphdef", "graph": config.graph}
    if graphs:
        return {"format": "graphdef", "graph": str(graphs[0].relative_to(src))}
    tfl = sorted(src.rglob("*.tflite"))
    if tfl:
        return {"format": "tflite", "file": str(tfl[0].relative_to(src))}
    raise ModelError(f"{config.name}: the archive holds no SavedModel, .pb graph or .tflite model")


def _fetch_labels(config: ModelConfig, src: Path, key: str) -> list[str] | None:
    from imgtool import download

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


def _ensure_tflite(model: Model, entry: Path, purpose: str = "model") -> Model:
    """Convert a TF model to `<purpose>.tflite` once, verify it against TF on a probe
    input, and use it; when conversion or the check fails, record why and run in TF."""
    config = model.config
    if config.format == "tflite" or purpose == "labels":
        return model
    if config.format == "graphdef":
        out_t = config.feature_tensor if purpose == "features" else config.output_tensor
        model.graph_tensors = (config.input_tensor or "Mul:0", out_t or "softmax:0")
        if purpose == "features":
            model.labels = None
            model.config = replace(config, output="features")
    data = store.read_json(entry / ENTRY_FILE) or {}
    if data.get("source_dir_rel"):
        model.tf_source = entry / "source" / data["source_dir_rel"]
    conv = data.get("conversions", {}).get(purpose)
    target = entry / f"{purpose}.tflite"
    if conv is None or (conv.get("ok") and not _size_matches(target, conv.get("size"))):
        with store.lock(entry.name):
            data = store.read_json(entry / ENTRY_FILE) or {}
            conv = data.get("conversions", {}).get(purpose)
            if conv is None or (conv.get("ok") and not _size_matches(target, conv.get("size"))):
                if conv is not None:
                    ui.info(f"the cached conversion {target.name} of {model.ref} is damaged; converting again")
                conv = _convert(model, target)
                data.setdefault("conversions", {})[purpose] = conv
                store.atomic_write_json(entry / ENTRY_FILE, data)
    if conv.get("ok"):
        model.tflite = target
        if conv.get("input_size") and model.config.input_size is None:
            model.config = replace(model.config, input_size=tuple(conv["input_size"]))
    else:
        model.notes.append(f"warning: running {model.ref} in TensorFlow (slower): its .tflite conversion failed "
                           f"({conv.get('error')}); `imgtool models remove {model.ref}` retries it")
        if conv.get("input_size") and model.config.input_size is None:
            model.config = replace(model.config, input_size=tuple(conv["input_size"]))
    return model


def _size_matches(path: Path, size: int | None) -> bool:
    try:
        return size is None or path.stat().st_size == size
    except OSError:
        return False


def _convert(model: Model, target: Path) -> dict[str, Any]:
    """Returns the conversion record: ok, size, max_diff, error."""
    import importlib.util

    from imgtool import tfutil

    config = model.config
    if importlib.util.find_spec("tensorflow") is None:  # e.g. .venv-beam: say so, record no failed conversion
        raise ModelError(f"{model.ref} needs a one-time conversion to .tflite, which needs TensorFlow, and this "
                         f"Python has none; run `imgtool models download {model.ref}` with the main install "
                         "(same IMGTOOL_HOME) first")
    assert model.tf_source is not None
    ui.info(f"Converting {config.name} to .tflite once (TensorFlow is loading; later runs skip this)")
    size = config.input_size
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    record: dict[str, Any] = {"ok": False, "converted": time.time()}
    try:
        if size is None and config.format == "savedmodel":
            size = tfutil.savedmodel_input_size(model.tf_source)
            if size is None:
                size = (224, 224)
                ui.warn(f"{model.ref}: input size unknown, assuming 224x224 (pass --input-size to change)")
        record["input_size"] = list(size)
        with ui.native_output_filtered():
            if config.format == "graphdef":
                reference = tfutil.convert_graphdef(model.tf_source, model.graph_tensors, size, tmp)
            else:
                reference = tfutil.convert_savedmodel(model.tf_source, size, tmp)
            diff, scale = _verify(reference, tmp, size, config.value_range)
        record["max_diff"] = diff
        if not diff <= VERIFY_TOLERANCE * max(1.0, scale):
            raise ModelError(f"the .tflite disagrees with TensorFlow on a probe image (max diff {diff:.3g})")
        record.update(ok=True, size=tmp.stat().st_size)
        os.replace(tmp, target)
    except ImgtoolError as err:
        record["error"] = str(err)
    except Exception as err:  # noqa: BLE001 - the converter raises anything; TF fallback covers it
        if store.is_storage_error(err, target.parent):
            raise  # a full disk is not a failed conversion: say so, record nothing
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        record["error"] = first
    finally:
        tmp.unlink(missing_ok=True)
    return record


def _verify(reference: Any, tflite: Path, size: tuple[int, int],
            value_range: tuple[float, float] | None) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    probe = rng.integers(0, 256, size=(2, *size, 3), dtype=np.uint8)
    probe[1] = np.linspace(0, 255, size[1], dtype=np.uint8)[None, :, None]  # a smooth image too
    engine = LiteRTEngine(tflite, value_range)
    from imgtool.engine import to_float

    want = np.concatenate([np.asarray(reference(to_float(probe[i:i + 1], value_range))).reshape(1, -1)
                           for i in range(len(probe))])
    got = engine.run(probe)
    if got.shape != want.shape:
        return float("inf"), 1.0
    return float(np.max(np.abs(got - want))), float(np.max(np.abs(want)))


# ---------------------------------------------------------------- store commands

def cached_entries() -> list[dict[str, Any]]:
    out = []
    root = store.models_dir()
    if not root.is_dir():
        return out
    for entry in sorted(root.iterdir()):
        data = store.read_json(entry / ENTRY_FILE)
        if data is None:
            continue
        ok, why = _entry_ok(entry)
        out.append({"key": entry.name, "name": data.get("name") or data.get("source_dir") or entry.name,
                    "path": str(entry), "bytes": store.dir_size(entry), "ok": ok, "problem": why or None,
                    "url": data.get("url"), "conversions": {k: v.get("ok") for k, v in data.get("conversions", {}).items()}})
    return out


def remove(name: str) -> list[str]:
    removed = []
    for e in cached_entries():
        if name in (e["key"], e["name"]) or name == "all":
            with store.lock(e["key"]):
                shutil.rmtree(e["path"], ignore_errors=True)
            removed.append(e["key"])
    return removed
