"""The public Python API: `imgtool.classify` (one shot), `imgtool.load_model`,
`Model.classify`, `imgtool.retrain`,
`imgtool.evaluate`, `imgtool.export_model`, and the store: `imgtool.list_models`,
`download_model`, `model_path`, `remove_models`. The CLI is this plus printing.

Nothing here prints: messages go to the `imgtool` logger, progress to the optional
`progress` callback (`ui.ProgressCallback`: called as `progress(done, total, desc, unit)`).
Errors are `imgtool.errors.ImgtoolError` subclasses (each also a fitting built-in
exception). Inputs are never changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from imgtool import ui
from imgtool.errors import Advice, Call, Param, UsageError

if TYPE_CHECKING:
    from imgtool.caches import CacheInfo
    from imgtool.classifier import Classifier, Result
    from imgtool.evaluation import Evaluation
    from imgtool.findings import AuditResult
    from imgtool.model import Model as ResolvedModel
    from imgtool.model import Purpose
    from imgtool.retraining import RetrainResult
    from imgtool.tflite_export import ExportResult

Scores = Literal["auto", "probabilities", "logits"]
QuantizeMode = Literal["none", "dynamic", "float16", "int8"]
PathLike = str | os.PathLike[str]


def _single(inputs: Any) -> bool:
    from imgtool.images import is_in_memory

    return isinstance(inputs, (str, os.PathLike)) or is_in_memory(inputs)


class Model:
    """A loaded classifier: its labels, input size and how its outputs are read are all
    known here, at load. Make one with `load_model`."""

    def __init__(self, classifier: Classifier):
        self._classifier = classifier

    @property
    def ref(self) -> str:
        """The reference it was loaded from (as given)."""
        return self._classifier.model.ref

    @property
    def labels(self) -> list[str]:
        """One label per output (`class N` when the model carries none)."""
        return list(self._classifier.labels)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) every image is resized to."""
        return self._classifier.input_size

    @property
    def scores(self) -> str:
        """How the outputs are read: "probabilities" or "logits" (softmaxed)."""
        return self._classifier.decision.kind

    @property
    def scores_reason(self) -> str:
        """Why the outputs are read that way (catalog record, metadata, last op, ...)."""
        return self._classifier.decision.reason

    @property
    def classifier(self) -> Classifier:
        """The underlying `imgtool.classifier.Classifier` (engine, output width)."""
        return self._classifier

    def __repr__(self) -> str:
        return f"<imgtool.Model {self.ref!r}: {len(self._classifier.labels)} labels, input {self.input_size}>"

    @property
    def suggested_min_score(self) -> float | None:
        """The minimum score `retrain` suggests for this model (metrics.json open_set:
        the lowest at which 95% of the photos it accepts were right, out of fold), or None
        (not a retrained model, trained before scores were calibrated, or no threshold
        got there)."""
        from imgtool import store

        head = self._classifier.model.head
        if head is None:
            return None
        metrics = store.read_json(Path(head).parent / "metrics.json")
        value = ((metrics or {}).get("open_set") or {}).get("min_score") if isinstance(metrics, dict) else None
        return float(value) if isinstance(value, (int, float)) and 0 <= value <= 1 else None

    def resolve_min_score(self, value: float | str | None) -> float | None:
        """A `min_score` argument as a number: "auto" is `suggested_min_score`."""
        if value is None:
            return None
        if value == "auto":
            found = self.suggested_min_score
            if found is None:
                raise UsageError(f"min_score auto: {self.ref} records no suggested minimum score (only models "
                                 "retrained by this imgtool do, when a threshold reached 95% precision); give a number "
                                 "or retrain the model", parameter="min_score", model=self.ref)
            return found
        if isinstance(value, str) or not 0 <= value <= 1:
            raise UsageError(f"min_score {value!r}: give a score between 0 and 1, or auto", parameter="min_score")
        return float(value)

    def classify_iter(self, inputs: Any, top_k: int = 5, *, batch_size: int = 8, min_score: float | str | None = None,
                      progress: ui.ProgressCallback | None = None) -> Iterator[Result]:
        """Like `classify`, one Result at a time (memory stays flat over big folders)."""
        if top_k < 1:
            raise UsageError(f"top_k must be at least 1 (got {top_k})", parameter="top_k")
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1 (got {batch_size})", parameter="batch_size")
        threshold = self.resolve_min_score(min_score)
        items: Sequence[Any] | Iterable[Any] = [inputs] if _single(inputs) else inputs
        with ui.Tracker(None, "classifying", "img", progress or ui.current_callback()) as tracker:
            for res in self._classifier.classify(items, top_k=top_k, batch_size=batch_size):
                tracker.update(1)
                yield res if threshold is None else res.with_min_score(threshold)

    def classify(self, inputs: Any, top_k: int = 5, *, batch_size: int = 8, min_score: float | str | None = None,
                 progress: ui.ProgressCallback | None = None) -> list[Result]:
        """Classify `inputs`: a path (an image file, or a folder searched recursively), a
        PIL image, a uint8 array (HxWx3 RGB, HxWx4 RGBA or HxW gray), or a list of these.

        One `Result` per image, in order: `.predictions` (top_k `Prediction(label,
        score, index)`, best first) or `.error` (why that input failed; the others are
        still classified). `.path` is None for in-memory images. `min_score` (0..1, or
        "auto": the model's `suggested_min_score`): a result whose top score is below it
        has `.unknown` True ("none of these"); without it `.unknown` is None."""
        return list(self.classify_iter(inputs, top_k, batch_size=batch_size, min_score=min_score, progress=progress))


def load_model(ref: PathLike | None = None, *, labels: PathLike | Sequence[str] | None = None,
               scores: Scores = "auto", input_size: tuple[int, int] | None = None,
               value_range: tuple[float, float] | None = None, input_tensor: str | None = None,
               output_tensor: str | None = None, progress: ui.ProgressCallback | None = None) -> Model:
    """Load a classifier, downloading (and converting) it once if needed.

    `ref`: a catalog name (`list_models()`), a .tflite file, a SavedModel folder, a .pb
    graph, a .tar.gz, a URL, a `hub:`/`kaggle:` handle or a folder written by `retrain`
    (default: $IMGTOOL_MODEL, else inception_v3). `labels`: a labels file (one a line)
    or a list of labels; always wins over the model's own. `scores`: what the model
    outputs ("auto": decided from the model). `input_size` (height, width),
    `value_range` (pixel 0..255 mapped linearly to lo..hi), `input_tensor` and
    `output_tensor` (frozen graphs) describe models that do not say."""
    model = _resolve(ref, labels=labels, purpose="classify", input_size=input_size, value_range=value_range,
                     tensors=(input_tensor, output_tensor), progress=progress)
    return Model(_classifier(model, scores))


def classify(inputs: Any, model: PathLike | Model | None = None, top_k: int = 5, *,
             labels: PathLike | Sequence[str] | None = None, scores: Scores = "auto", batch_size: int = 8,
             progress: ui.ProgressCallback | None = None) -> list[Result]:
    """One call: load `model` (any `load_model` reference, or a loaded `Model`; default
    $IMGTOOL_MODEL, else inception_v3) and classify `inputs` with it, as `Model.classify`
    does: one `Result` per image, in order. To classify again, keep the model:
    `load_model` once, then `Model.classify`."""
    if isinstance(model, Model):
        if scores != "auto" or labels is not None:
            raise UsageError("scores and labels belong to load_model; a loaded model already has them")
        loaded = model
    else:
        loaded = load_model(model, labels=labels, scores=scores, progress=progress)
    return loaded.classify(inputs, top_k, batch_size=batch_size, progress=progress)


def _resolve(ref: PathLike | None, *, labels: PathLike | Sequence[str] | None, purpose: Purpose,
             input_size: tuple[int, int] | None, value_range: tuple[float, float] | None,
             tensors: tuple[str | None, str | None], progress: ui.ProgressCallback | None) -> ResolvedModel:
    from imgtool.resolve import resolve

    given: list[str] | None = None
    labels_file: str | None = None
    if isinstance(labels, (str, os.PathLike)):
        labels_file = os.fspath(labels)
    elif labels is not None:
        given = list(labels)
        if not given or not all(isinstance(x, str) for x in given):
            raise UsageError("labels: " + Advice.GIVE_LABELS + ", or a non-empty list of strings", parameter="labels")
    with ui.reporting(progress):
        model = resolve(None if ref is None else os.fspath(ref), labels_file=labels_file, purpose=purpose,
                        input_size=input_size, value_range=value_range, tensors=tensors)
    if given is not None:
        model.labels = given
    return model


def _classifier(model: ResolvedModel, scores: str) -> Classifier:
    from imgtool.classifier import Classifier

    if scores not in ("auto", "probabilities", "logits"):
        raise UsageError(f"scores {scores!r}: choose auto, probabilities or logits", parameter="scores")
    return Classifier(model, scores=scores)


def model_labels(ref: PathLike | None = None, **kwargs: Any) -> list[str] | None:
    """The labels a model carries (None if it carries none), without loading it for
    classification (no conversion, so no TensorFlow). Keywords as for `load_model`.
    A feature extractor is a UsageError, in classify's words (it has no labels to give)."""
    from imgtool.classifier import feature_extractor_message, is_feature_extractor

    model = _resolve(ref, labels=kwargs.get("labels"), purpose="labels", input_size=kwargs.get("input_size"),
                     value_range=kwargs.get("value_range"),
                     tensors=(kwargs.get("input_tensor"), kwargs.get("output_tensor")),
                     progress=kwargs.get("progress"))
    width = is_feature_extractor(model)
    if width is not None:  # no labels because it has none to give: the same words as classify
        raise UsageError(feature_extractor_message(model.ref, width), model=model.ref)
    return None if model.labels is None else list(model.labels)


def retrain(folder: PathLike | None, *, model: PathLike | None = None, output: PathLike | None = None, seed: int = 0,
            validation_percent: float = 10.0, test_percent: float = 10.0,
            validation_dir: PathLike | None = None, test_dir: PathLike | None = None,
            l2: float | None = None, label_smoothing: float = 0.1,
            class_weight: Literal["balanced", "none"] = "balanced",
            input_size: tuple[int, int] | None = None, value_range: tuple[float, float] | None = None,
            bottleneck_dir: PathLike | None = None, summaries_dir: PathLike | None = None,
            flip_left_right: bool = False, random_crop: float = 0.0, random_scale: float = 0.0,
            random_brightness: float = 0.0, distorted_copies: int = 4,
            min_accuracy: float | None = None, force: bool = False, tf_exports: bool = True,
            quantize: QuantizeMode = "none", features: str | None = None,
            progress: ui.ProgressCallback | None = None) -> RetrainResult:
    """Train a new last layer on `folder` (one sub-folder per class, or train/ + val/
    [+ test/] each holding the class sub-folders) over a frozen backbone `model`
    (default: $IMGTOOL_BACKBONE, else inception_v3's feature vector), and write the
    model folder `output` (default: FOLDER-model beside it).

    Returns a `RetrainResult`: `.output` (the folder written; None when `min_accuracy`
    was not reached - then `.below_minimum` says by how much and nothing is written),
    `.report` (its report.html), `.metrics` (what metrics.json holds),
    `.misclassified` (test photos, also in `.metrics`). `features`
    trains from `imgtool beam features` Parquet shards instead of photos (then
    `folder` may be None). Percentages are 0..50; distortions (random_* in percent)
    add `distorted_copies` per training photo."""
    from imgtool import settings
    from imgtool.retraining import Distortions, RetrainOptions
    from imgtool.retraining import retrain as run
    from imgtool.train import TrainConfig

    def path(p: PathLike | None) -> Path | None:
        return None if p is None else Path(p)

    if folder is None and features is None:
        raise UsageError("give the folder of photos (one sub-folder per class), or feature shards")
    for name, pct in (("validation_percent", validation_percent), ("test_percent", test_percent)):
        if not 0 <= pct <= 50:
            raise UsageError(f"{name} {pct:g} is outside 0..50", parameter=name)
    if min_accuracy is not None and not 0 <= min_accuracy <= 1:
        raise UsageError(f"min_accuracy {min_accuracy:g} is outside 0..1", parameter="min_accuracy")
    if class_weight not in ("balanced", "none"):
        raise UsageError(f"class_weight {class_weight!r}: choose balanced or none", parameter="class_weight")
    if quantize not in ("none", "dynamic", "float16", "int8"):
        raise UsageError(f"quantize {quantize!r}: choose none, dynamic, float16 or int8", parameter="quantize")
    if summaries_dir is not None and not _summaries_installed():
        raise UsageError(Param("summaries_dir") + f" needs TensorBoard, which is not installed; {SUMMARIES_HINT}")
    image_dir = Path(folder) if folder is not None else _shards_root(features)
    opts = RetrainOptions(
        image_dir=image_dir, output=path(output), model=os.fspath(model) if model else settings.current().backbone,
        validation_percent=validation_percent, test_percent=test_percent, bottleneck_dir=path(bottleneck_dir),
        summaries_dir=path(summaries_dir), min_accuracy=min_accuracy, input_size=input_size,
        value_range=value_range,
        train=TrainConfig(l2=l2, seed=seed, label_smoothing=label_smoothing, class_weight=class_weight),
        tf_exports=tf_exports, validation_dir=path(validation_dir), test_dir=path(test_dir), force=force,
        features=features, quantize=quantize,
        distortions=Distortions(flip_left_right, random_crop, random_scale, random_brightness, distorted_copies))
    with ui.reporting(progress):
        return run(opts)


#: TensorBoard is an extra of its own: only `summaries_dir` needs it.
SUMMARIES_HINT = "pip install 'imgtool-ml[summaries]' (`make install` includes it)"


def _summaries_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _shards_root(features: str | None) -> Path:
    from imgtool.features import dataset_root

    assert features is not None
    return Path(dataset_root(features))


def evaluate(model: PathLike | Model | None, folder: PathLike, *, scores: Scores = "auto",
             labels: PathLike | Sequence[str] | None = None,
             progress: ui.ProgressCallback | None = None) -> Evaluation:
    """Score a classifier on a labelled folder (one sub-folder per class, named after
    the model's labels). `model`: a loaded `Model` or a reference for `load_model`.

    Returns an `Evaluation`: `.accuracy`, `.per_class` ({class: precision, recall, f1,
    support}), `.confusion` (rows: true, columns: predicted, in `.classes` order),
    `.failures` [(path, error)], `.misclassified`, `.seen_in_training` (photos the
    model was trained on; None if it records none) and `.metrics` (all of it)."""
    from imgtool.evaluation import evaluate_folder

    if isinstance(model, Model) and (scores != "auto" or labels is not None):
        raise UsageError("scores and labels belong to load_model; a loaded model already has them")
    loaded = model if isinstance(model, Model) else load_model(model, scores=scores, labels=labels,
                                                               progress=progress)
    with ui.reporting(progress):
        return evaluate_folder(loaded.classifier, Path(folder))


def audit(folder: PathLike, *, model: PathLike | None = None, seed: int = 0, validation_percent: float = 10.0,
          test_percent: float = 10.0, validation_dir: PathLike | None = None, test_dir: PathLike | None = None,
          input_size: tuple[int, int] | None = None, value_range: tuple[float, float] | None = None,
          bottleneck_dir: PathLike | None = None, progress: ui.ProgressCallback | None = None) -> AuditResult:
    """What is wrong with a labelled `folder` (the layouts `retrain` reads), before or
    without training, over the backbone `model` (default as for `retrain`), sharing
    retrain's feature cache and cross-validation.

    Returns an `AuditResult`: `.suspects` (photos whose label the out-of-fold prediction
    rejects, most suspicious first: `path`, `label`, `suggested`, `score`),
    `.duplicates` (byte-identical or near-identical groups, with `.label_conflict` and
    `.leakage`), `.outliers`, `.problems` (unreadable files, tiny classes, imbalance),
    `.summary`; `.found` is True when any of them is not empty; `.to_dict()`."""
    from imgtool import settings
    from imgtool.auditing import run

    for name, pct in (("validation_percent", validation_percent), ("test_percent", test_percent)):
        if not 0 <= pct <= 50:
            raise UsageError(f"{name} {pct:g} is outside 0..50", parameter=name)
    with ui.reporting(progress):
        return run(Path(folder), os.fspath(model) if model else settings.current().backbone,
                   validation_dir=None if validation_dir is None else Path(validation_dir),
                   test_dir=None if test_dir is None else Path(test_dir), validation_percent=validation_percent,
                   test_percent=test_percent, seed=seed, input_size=input_size, value_range=value_range,
                   bottleneck_dir=None if bottleneck_dir is None else Path(bottleneck_dir))


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
        return {"name": self.name, "description": self.description, "cached": self.cached, "kind": self.kind,
                "bytes": self.bytes, "embedded": self.embedded, "purpose": self.purpose}


def list_models() -> list[ModelInfo]:
    """The catalog (IMGTOOL_CATALOG's records included), then the other models in the
    cache. `cached` is True only for an intact entry (`problem` says what is wrong).
    `embedded` models ship inside the package: usable offline, never in the cache
    (`cached` False, `bytes` their file's size)."""
    from imgtool.catalog import load_catalog
    from imgtool.entries import cached_entries

    cached = {e.key: e for e in cached_entries()}
    out = []
    for name, cfg in load_catalog().items():
        if cfg.embedded:
            out.append(ModelInfo(name, cfg.description, "catalog", False, cfg.size or 0, embedded=True,
                                 purpose=cfg.purpose))
            continue
        entry = cached.pop(name, None)
        out.append(ModelInfo(name, cfg.description, "catalog", bool(entry and entry.ok),
                             entry.bytes if entry else 0, name if entry else None,
                             entry.problem if entry else None, purpose=cfg.purpose))
    for key, e in cached.items():
        out.append(ModelInfo(e.name, e.url or "", "other", e.ok, e.bytes, key, e.problem))
    return out


def list_caches() -> list[CacheInfo]:
    """The caches beside the models (`bottlenecks`, `exports`, `results`): where, how big, how many
    entries. Removing them (`remove_models`) costs recomputation, never a result."""
    from imgtool import caches

    return [caches.info(name) for name in caches.CACHES]


def download_model(ref: PathLike | None = None, *, features: bool = False,
                   progress: ui.ProgressCallback | None = None) -> ModelInfo:
    """Download (and convert) a model into the cache now, e.g. while building a CI image,
    so later runs need no network. `features`: also the feature-vector twin `retrain`
    uses. `ref` as for `load_model`. Returns what is now cached."""
    from imgtool import store
    from imgtool.catalog import load_catalog
    from imgtool.resolve import resolve

    text = None if ref is None else os.fspath(ref)
    with ui.reporting(progress):
        model = resolve(text)
        if features:
            resolve(text, purpose="features")
    entry = model.entry
    catalog = load_catalog()
    if model.config.embedded:  # nothing to download: it ships with imgtool
        return ModelInfo(model.ref, model.config.description, "catalog", False, model.config.size or 0, None, None,
                         model.tflite, "litert", embedded=True, purpose=model.config.purpose)
    return ModelInfo(model.ref, model.config.description, "catalog" if model.ref in catalog else "other",
                     True, store.dir_size(entry) if entry is not None and entry.is_dir() else 0,
                     entry.name if entry is not None else None, None, entry,
                     "tensorflow" if model.tflite is None else "litert",
                     purpose=catalog[model.ref].purpose if model.ref in catalog else None)


def model_path(ref: str | None = None) -> Path:
    """The cache root (IMGTOOL_HOME) when `ref` is None, else the folder of the cache
    entry named `ref` (its catalog name, URL or entry key), or the file of a model that
    ships with imgtool. ModelNotFoundError when it is not cached: the message says how to
    fetch it, if it is something that can be fetched (a catalog name, URL, handle or local
    model), and says so if it is not."""
    from imgtool import refs, shipped, store
    from imgtool.catalog import load_catalog
    from imgtool.entries import cached_entries
    from imgtool.errors import ModelNotFoundError

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
    raise ModelNotFoundError(f"{ref} is not in the cache ({store.models_dir()}); " + Call("download_model", ref)
                             + " fetches it", model=ref)


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
    from imgtool import caches
    from imgtool.catalog import load_catalog
    from imgtool.entries import cached_entries
    from imgtool.entries import remove as remove_entry
    from imgtool.errors import ModelNotFoundError

    names = list(names)
    catalog = load_catalog()
    shipped = [n for n in names if n in catalog and catalog[n].embedded]
    if shipped:
        raise UsageError(f"{', '.join(shipped)} {'ships' if len(shipped) == 1 else 'ship'} with imgtool (inside the "
                         "package, not in the cache) and cannot be removed")
    out: list[Removed] = []
    missing = []
    for name in names:
        if name in caches.CACHES or name == "all":
            for cache in (caches.CACHES if name == "all" else (name,)):
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


def export_model(model_dir: PathLike, quantize: QuantizeMode = "none",
                 output: PathLike | None = None, force: bool = False) -> list[ExportResult]:
    """Write a single .tflite (TFLite metadata and labels inside) for a folder written by
    `retrain`: the float `model.tflite` always (the reference for accuracy), and with
    `quantize` ("dynamic", "float16", "int8") the quantized file too, at `output` or
    beside it. Each result has its size and accuracy on the test split (None when the
    photos are gone); both are recorded in the folder's metrics.json. Float first.
    An existing `output` is replaced only when it is an export of imgtool, or with
    `force`; a device, FIFO, folder or symbolic link never (UsageError)."""
    from imgtool.tflite_export import export_model_dir

    return export_model_dir(Path(model_dir), quantize, None if output is None else Path(output), force=force)
