"""Model references -> ready models: the dispatcher behind every `--model` in the CLI.

refs.py parses what the user typed; this module turns each kind into a Model (model.py)
through the cache entries (entries.py), conversion (convert.py) and retrained folders
(retrained.py), and repairs a cached .tflite that no longer loads.

Layer: top of the model stack (above refs, model, entries, convert, retrained).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from imgtool.core import files, locks, store, ui
from imgtool.core.errors import Advice, Call, DownloadError, ModelError, ModelNotFoundError, Text
from imgtool.data import labels as labels_mod
from imgtool.models.catalog import (
    ModelConfig,
    ModelFormat,
    check_input_size,
    check_value_range,
    embedded_names,
    load_catalog,
    model_or_default,
)
from imgtool.models.convert import ConversionPurpose, conversion_for, ensure_tflite
from imgtool.models.entries import EntryRecord, download_entry, effective_config, ensure_entry, local_entry, read_record
from imgtool.models.recipe import Purpose, Recipe
from imgtool.models.refs import key_for
from imgtool.models.retrained import RETRAINED_FILE
from imgtool.models.retrained import load_model as load_retrained


@store.cache_writing()  # a full disk or read-only IMGTOOL_HOME: one line, exit 4
def resolve(
    ref: str | None = None,
    *,
    labels_file: str | None = None,
    purpose: Purpose = "classify",
    input_size: tuple[int, int] | None = None,
    value_range: tuple[float, float] | None = None,
    tensors: tuple[str | None, str | None] = (None, None),
) -> Recipe:
    """Turn what the user typed into a Model ready to run. `purpose` is "classify",
    "features" (the feature-vector twin / bottleneck tensor, for retraining) or "labels"."""
    from imgtool.models import refs

    ref = model_or_default(ref)
    if input_size is not None:  # checked before anything is fetched, converted or recorded
        input_size = check_input_size(input_size)
    if value_range is not None:
        value_range = check_value_range(value_range)
    catalog = load_catalog()
    overrides: dict[str, Any] = {
        k: v for k, v in (("input_size", input_size), ("value_range", value_range)) if v is not None
    }

    parsed = refs.parse(ref, catalog)
    if parsed.kind == "catalog":
        assert parsed.name is not None
        model = _from_catalog(parsed.name, catalog, purpose)
    elif parsed.kind == "url":
        assert parsed.url is not None
        model = _from_url(ref, parsed.url, purpose, overrides, tensors)
    else:
        assert parsed.path is not None
        model = _from_path(ref, parsed.path, purpose, overrides, tensors, own_labels=not labels_file)
    if overrides:
        model.config = replace(model.config, **overrides)
        model.given = dict(overrides)  # checked against the model's own when its engine is made
    if labels_file:
        model.labels = labels_mod.read_lines(Path(labels_file))
        model.labels_file = labels_file
    return model


def _converted(model: Recipe, entry: Path, purpose: Purpose, trial: bool = False) -> Recipe:
    """A model whose files live in a cache entry: converted when needed, repairable.
    `trial` (the input size was given by the caller): a failed conversion is not
    recorded, so a bad option never changes the entry for later runs."""
    model = ensure_tflite(model, entry, purpose=conversion_for(model.config, purpose), record_failure=not trial)
    model.repair = _repair_cached_tflite
    return model


def _from_catalog(name: str, catalog: dict[str, ModelConfig], purpose: Purpose) -> Recipe:
    if name not in catalog:
        raise ModelNotFoundError(f"unknown catalog model {name!r}; " + Advice.LIST_CATALOG, model=name)
    config = catalog[name]
    if purpose == "features" and config.features and config.features != name:
        if config.features not in catalog:
            raise ModelError(
                f"catalog model {name!r} names a feature twin {config.features!r} that is not in the catalog"
            )
        config = catalog[config.features]
    if config.embedded:
        return _embedded(name, config)
    try:
        entry = ensure_entry(config.name, config)
    except ModelError as err:
        if not (isinstance(err, DownloadError) or store.offline()):
            raise
        raise type(err)(err.text + _shipped_hint(catalog, purpose), model=name) from None
    config = effective_config(config, entry)
    model = Recipe(ref=name, config=config)
    return _converted(_attach(model, entry), entry, purpose)


def _embedded(ref: str, config: ModelConfig) -> Recipe:
    """A model that ships inside the package: read where it lies, never cached."""
    from imgtool.models import shipped

    path = shipped.path(config)
    model = Recipe(ref=ref, config=config, tflite=path)
    model.labels = labels_mod.embedded_tflite_labels(path)
    return model


def _shipped_hint(catalog: dict[str, ModelConfig], purpose: Purpose) -> Text | str:
    """When a catalog model cannot be had (offline, no cache): the embedded model that
    would do instead, or nothing when there is none."""
    names = embedded_names(catalog, "features" if purpose == "features" else "classifier")
    return "; or use " + Call("model=", names[0]) + ", which ships with imgtool" if names else ""


def _from_url(
    ref: str, url: str, purpose: Purpose, overrides: dict[str, Any], tensors: tuple[str | None, str | None]
) -> Recipe:
    key = key_for(url, "url")
    fmt: ModelFormat = "tflite" if url.split("?")[0].endswith(".tflite") else "savedmodel"
    config = ModelConfig(name=ref, format=fmt, urls=(url,), **overrides)
    entry = ensure_entry(key, config)
    record = read_record(entry) or EntryRecord()
    config = replace(config, format=record.format or fmt)
    if config.format == "graphdef":
        config = replace(
            config,
            graph=record.graph,
            input_tensor=tensors[0] or "Mul:0",
            output_tensor=tensors[1] or "softmax:0",
            feature_tensor="pool_3:0",
            value_range=config.value_range or (-1.0, 0.9921875),
            input_size=config.input_size or (299, 299),
        )
    model = _attach(Recipe(ref=ref, config=config), entry)
    return _converted(model, entry, purpose, trial="input_size" in overrides)


def _attach(model: Recipe, entry: Path) -> Recipe:
    """Fill a model's runnable parts from its store entry."""
    model.entry = entry
    record = read_record(entry) or EntryRecord()
    src = entry / "source"
    cfg = model.config
    if cfg.format == "tflite":
        model.tflite = src / (record.file or "model.tflite")
    elif cfg.format == "graphdef":
        model.tf_source = src / (record.graph or cfg.graph or "classify_image_graph_def.pb")
    else:
        model.tf_source = Path(record.source_dir) if record.source_dir else src
    if (entry / "labels.txt").is_file():
        model.labels = labels_mod.read_lines(entry / "labels.txt")
    elif model.tflite is not None:
        from imgtool.runtime import facts

        tflite = model.tflite
        model.labels = facts.cached(tflite, "embedded_labels", lambda: labels_mod.embedded_tflite_labels(tflite))
    return model


def _file_value_range(path: Path) -> dict[str, tuple[float, float]]:
    """tflite.reading.file_value_range, from the file's facts record when it is unchanged."""
    from imgtool.runtime import facts

    def compute() -> list[float] | None:
        from imgtool.tflite.reading import file_value_range

        vr = file_value_range(path).get("value_range")
        return None if vr is None else [float(v) for v in vr]

    got = facts.cached(path, "value_range", compute)
    return {"value_range": (float(got[0]), float(got[1]))} if got else {}


def _from_path(
    ref: str,
    path: Path,
    purpose: Purpose,
    overrides: dict[str, Any],
    tensors: tuple[str | None, str | None],
    own_labels: bool = True,
) -> Recipe:
    """A model file or folder on disk. `own_labels` False (a labels file was given): the
    labels the model carries are not read at all."""
    if not path.exists():
        raise ModelError(f"{ref}: broken symbolic link")
    if not path.is_dir():
        why = files.problem(path)  # a FIFO given as the model would hang every open
        if why is not None:
            raise ModelError(f"{ref}: {why}; give a model file")
    if path.is_dir() and (path / RETRAINED_FILE).is_file():
        return load_retrained(ref, path, purpose)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        config = ModelConfig(name=ref, format="savedmodel", **overrides)
        model = Recipe(ref=ref, config=config, tf_source=path.resolve())
        entry = local_entry(path, config)
        model = _converted(model, entry, purpose, trial="input_size" in overrides)
        _local_labels(model, path)
        return model
    if path.is_dir():
        raise ModelError(f"{ref}: a folder, but not a SavedModel (no saved_model.pb) nor an imgtool retrain output")
    name = path.name.lower()
    if name.endswith(".tflite"):
        from imgtool.runtime import facts

        if "value_range" not in overrides:  # TFLite metadata says how to map pixels (e.g. imgtool's exports)
            overrides = {**overrides, **_file_value_range(path)}
        config = ModelConfig(name=ref, format="tflite", **overrides)
        model = Recipe(ref=ref, config=config, tflite=path)
        if own_labels:
            model.labels = facts.cached(path, "embedded_labels", lambda: labels_mod.embedded_tflite_labels(path))
            if model.labels is None:
                _local_labels(model, path)
        return model
    if name.endswith(".pb"):
        t_in, t_out = tensors[0] or "Mul:0", tensors[1] or "softmax:0"
        if purpose == "features":
            t_out = tensors[1] or "pool_3:0"
        config = ModelConfig(
            name=ref,
            format="graphdef",
            input_tensor=t_in,
            output_tensor=t_out,
            input_size=overrides.get("input_size", (299, 299)),
            value_range=overrides.get("value_range", (-1.0, 0.9921875)),
        )
        model = Recipe(ref=ref, config=config, tf_source=path.resolve(), graph_tensors=(t_in, t_out))
        model = _converted(model, local_entry(path, config), purpose, trial="input_size" in overrides)
        _local_labels(model, path)
        return model
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return _from_url(ref, "file://" + str(path.resolve()), purpose, overrides, tensors)
    raise ModelError(f"{ref}: not a model this tool can read (.tflite, SavedModel folder, .pb graph, .tar.gz)")


def _local_labels(model: Recipe, path: Path) -> None:
    if model.labels is None:
        model.labels = labels_mod.find_beside(path)


def _repair_cached_tflite(model: Recipe) -> bool:
    """A cached .tflite that no longer loads: a download is fetched again (True), a
    conversion made again (True; False when conversion failed: run in TF)."""
    assert model.entry is not None and model.tflite is not None
    if model.tf_source is None:
        if not model.config.urls:
            raise ModelError(f"{model.ref}: the cached model no longer loads; " + Advice.REMOVE_CACHED, model=model.ref)
        with locks.lock(model.entry.name):
            ui.info(f"cached model {model.config.name} no longer loads (damaged in the cache); downloading it again")
            download_entry(model.entry.name, model.config, model.entry)
        if model.labels is None:  # they were read from the damaged file
            model.labels = labels_mod.embedded_tflite_labels(model.tflite)
        return True
    ui.info(f"the cached conversion {model.tflite} no longer loads; converting again")
    conversion: ConversionPurpose = "features" if model.tflite.stem == "features" else "model"
    model.tflite.unlink(missing_ok=True)
    again = ensure_tflite(model, model.entry, purpose=conversion)
    if again.tflite is not None:
        return True
    model.tflite = None
    return False
