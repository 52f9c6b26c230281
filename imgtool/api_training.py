"""The public Python API's training and checking: `imgtool.retrain` (a new last layer),
`imgtool.evaluate` (a classifier on a labelled folder), `imgtool.audit` (what is wrong
with a labelled folder) and `imgtool.export_model` (one .tflite for a retrained folder).
Loading and classifying are api.py; the CLI is these plus printing.

Nothing here prints: messages go to the `imgtool` logger, progress to the optional
`progress` callback. Errors are `imgtool.core.errors.ImgtoolError` subclasses. Inputs are
never changed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgtool.api import Model, PathLike, load_model
from imgtool.core import ui
from imgtool.core.errors import Param, UsageError
from imgtool.core.options import Quantize, Scores

if TYPE_CHECKING:
    from imgtool.numbers.findings import AuditResult
    from imgtool.training.evaluation import Evaluation
    from imgtool.training.retraining import RetrainResult
    from imgtool.training.tflite_model import ExportResult


def retrain(folder: PathLike | None, *, progress: ui.ProgressCallback | None = None, **options: Any) -> RetrainResult:
    """Train a new last layer on `folder` (one sub-folder per class, or train/ + val/
    [+ test/] each holding the class sub-folders) over a frozen backbone `model`
    (default: $IMGTOOL_BACKBONE, else inception_v3's feature vector), and write the
    model folder `output` (default: FOLDER-model beside it).

    The keywords are `imgtool.core.options.RetrainOptions`' fields, the command's options
    (`model`, `output`, `seed`, `validation_percent`, `test_percent`, `l2`, ...), checked
    against the same choices, ranges and rules as the command line's.

    Returns a `RetrainResult`: `.output` (the folder written; None when `min_accuracy`
    was not reached - then `.below_minimum` says by how much and nothing is written),
    `.report` (its report.html), `.metrics` (what metrics.json holds),
    `.misclassified` (test photos, also in `.metrics`). `features`
    trains from `imgtool beam features` Parquet shards instead of photos (then
    `folder` is None). Percentages are 0..50; distortions (random_* in percent)
    add `distorted_copies` per training photo."""
    from imgtool.core import settings
    from imgtool.core.option_fields import deprecation, typed
    from imgtool.core.options import RetrainOptions, check_retrain
    from imgtool.training.retraining import retrain as run

    opts = typed(RetrainOptions, "retrain", image_dir=folder, **options)
    warning = deprecation(opts)
    if warning is not None:
        ui.warn(warning)
    check_retrain(opts)
    if opts.features is not None:
        opts.image_dir = _shards_root(opts.features)  # recorded as the model's source, as for a folder run
        ui.info(
            "Training from feature shards: no photo is read; report thumbnails show only photos still "
            "readable at the path recorded in the shards"
        )
    if opts.summaries_dir is not None and not _summaries_installed():
        raise UsageError(Param("summaries_dir") + f" needs TensorBoard, which is not installed; {SUMMARIES_HINT}")
    if opts.model is None:
        opts.model = settings.current().backbone
    with ui.reporting(progress):
        return run(opts)


#: TensorBoard is an extra of its own: only `summaries_dir` needs it.
SUMMARIES_HINT = "pip install 'imgtool-ml[summaries]' (`make install` includes it)"


def _summaries_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _shards_root(features: str) -> Path:
    """The folder the shards were made from (no shards there: said before any model is fetched)."""
    from imgtool.training.shards import dataset_root

    return Path(dataset_root(features))


def evaluate(
    model: PathLike | Model | None,
    folder: PathLike,
    *,
    scores: Scores = "auto",
    labels: PathLike | Sequence[str] | None = None,
    min_accuracy: float | None = None,
    progress: ui.ProgressCallback | None = None,
) -> Evaluation:
    """Score a classifier on a labelled folder (one sub-folder per class, named after
    the model's labels). `model`: a loaded `Model` or a reference for `load_model`.

    Returns an `Evaluation`: `.accuracy`, `.per_class` ({class: precision, recall, f1,
    support}), `.confusion` (rows: true, columns: predicted, in `.classes` order),
    `.failures` [(path, error)], `.misclassified`, `.seen_in_training` (photos the
    model was trained on; None if it records none) and `.metrics` (all of it).
    With `min_accuracy` (0..1), `.below_minimum` says by how much the accuracy falls
    short of it (None: it does not)."""
    from imgtool.core.option_fields import check_value
    from imgtool.core.options import EvaluateOptions
    from imgtool.numbers import metrics
    from imgtool.training.evaluation import evaluate_folder

    check_value(EvaluateOptions, "min_accuracy", min_accuracy)
    if isinstance(model, Model) and (scores != "auto" or labels is not None):
        raise UsageError("scores and labels belong to load_model; a loaded model already has them")
    loaded = model if isinstance(model, Model) else load_model(model, scores=scores, labels=labels, progress=progress)
    with ui.reporting(progress):
        ev = evaluate_folder(loaded.classifier, Path(folder))
    ev.below_minimum = metrics.below_minimum(ev.accuracy, min_accuracy)
    return ev


def audit(
    folder: PathLike,
    *,
    model: PathLike | None = None,
    seed: int = 0,
    validation_percent: float = 10.0,
    test_percent: float = 10.0,
    validation_dir: PathLike | None = None,
    test_dir: PathLike | None = None,
    input_size: tuple[int, int] | None = None,
    value_range: tuple[float, float] | None = None,
    bottleneck_dir: PathLike | None = None,
    progress: ui.ProgressCallback | None = None,
) -> AuditResult:
    """What is wrong with a labelled `folder` (the layouts `retrain` reads), before or
    without training, over the backbone `model` (default as for `retrain`), sharing
    retrain's feature cache and cross-validation.

    Returns an `AuditResult`: `.suspects` (photos whose label the out-of-fold prediction
    rejects, most suspicious first: `path`, `label`, `suggested`, `score`),
    `.duplicates` (byte-identical or near-identical groups, with `.label_conflict` and
    `.leakage`), `.outliers`, `.problems` (unreadable files, tiny classes, imbalance),
    `.summary`; `.found` is True when any of them is not empty; `.to_dict()`."""
    from imgtool.core import settings
    from imgtool.core.option_fields import check_value
    from imgtool.core.options import RetrainOptions
    from imgtool.training.auditing import run

    check_value(RetrainOptions, "validation_percent", validation_percent)  # retrain's splits, retrain's ranges
    check_value(RetrainOptions, "test_percent", test_percent)
    with ui.reporting(progress):
        return run(
            Path(folder),
            os.fspath(model) if model else settings.current().backbone,
            validation_dir=None if validation_dir is None else Path(validation_dir),
            test_dir=None if test_dir is None else Path(test_dir),
            validation_percent=validation_percent,
            test_percent=test_percent,
            seed=seed,
            input_size=input_size,
            value_range=value_range,
            bottleneck_dir=None if bottleneck_dir is None else Path(bottleneck_dir),
        )


def export_model(
    model_dir: PathLike, quantize: Quantize = "none", output: PathLike | None = None, force: bool = False
) -> list[ExportResult]:
    """Write a single .tflite (TFLite metadata and labels inside) for a folder written by
    `retrain`: the float `model.tflite` always (the reference for accuracy), and with
    `quantize` ("dynamic", "float16", "int8") the quantized file too, at `output` or
    beside it. Each result has its size and accuracy on the test split (None when the
    photos are gone); both are recorded in the folder's metrics.json. Float first.
    An existing `output` is replaced only when it is an export of imgtool, or with
    `force`; a device, FIFO, folder or symbolic link never (UsageError)."""
    from imgtool.training.tflite_model import export_model_dir

    return export_model_dir(Path(model_dir), quantize, None if output is None else Path(output), force=force)
