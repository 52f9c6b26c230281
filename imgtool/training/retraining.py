"""retrain-last-layer: a user's own classifier from a folder of photos.

Checks first, all before any model work (exit 2): the folder layout and split, class
sizes, the output path, option consistency, the backbone's kind. Then: hash files ->
validate uncached ones -> bottlenecks (cached) -> [distortions] -> choose and fit the last
layer (train.select_and_fit: L2 by k-fold cross-validation, refit on train+validation) ->
evaluate on the untouched test split -> write the output folder under a temporary name
and rename it into place."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imgtool.core import option_fields, ui
from imgtool.core.errors import Param, UsageError
from imgtool.core.options import RetrainOptions
from imgtool.core.version import made_with
from imgtool.data import folders, splits
from imgtool.data.distortions import Distortions
from imgtool.runtime import bottlenecks
from imgtool.training import reuse
from imgtool.training.featurize import distorted_features, feature_backbone, features_of, readable_files
from imgtool.training.fitting import TrainConfig
from imgtool.training.retrain_metrics import FittedHead, TrainingData, below_minimum, findings, scores, warn_leaks

__all__ = ["RetrainResult", "retrain"]


@dataclass
class RetrainResult:
    output: Path | None
    metrics: dict[str, Any]
    misclassified: list[dict[str, Any]]
    below_minimum: str | None = None
    reused: bool = False  # the output folder of an earlier run of identical inputs (imgtool/training/reuse.py)

    @property
    def report(self) -> Path | None:
        """The model folder's report.html (None when no folder was written)."""
        return None if self.output is None else self.output / "report.html"


def train_config(opts: RetrainOptions) -> TrainConfig:
    """How the last layer is fitted, from the options that say it."""
    return TrainConfig(l2=opts.l2, seed=opts.seed, label_smoothing=opts.label_smoothing, class_weight=opts.class_weight)


def distortions(opts: RetrainOptions) -> Distortions:
    """The distortions asked for, as imgtool.data.distortions draws them."""
    return Distortions(
        opts.flip_left_right, opts.random_crop, opts.random_scale, opts.random_brightness, opts.distorted_copies
    )


def _plan_splits(opts: RetrainOptions) -> tuple[list[str], list[folders.Photo], str, float, float]:
    """Layout, split and the checks that need only the file names (no decoding)."""
    found = folders.find_layout(opts.folder, opts.validation_dir, opts.test_dir)
    classes, files, layout = found.classes, found.photos, found.description
    given = {f.given for f in files if f.given is not None}
    v, t = found.percentages(opts.validation_percent, opts.test_percent)
    raw = splits.assign_splits(files, len(classes), v, t)
    splits.check_sizes(classes, raw)
    if opts.min_accuracy is not None and not any(s.split == "test" for s in raw):
        why = (
            Param("test_percent") + " is 0"
            if t == 0 and "test" not in given
            else f"no photo fell in the test split ({len(raw)} photos, {t:g}%)"
        )
        raise UsageError(
            Param("min_accuracy")
            + " needs test photos, and there are none ("
            + why
            + "); raise "
            + Param("test_percent")
            + ", give "
            + Param("test_dir")
            + ", or drop "
            + Param("min_accuracy")
        )
    return classes, files, layout, v, t


def _output_path(opts: RetrainOptions) -> Path:
    from imgtool.core import files, store
    from imgtool.training import model_folder

    output = opts.output or model_folder.default_output(opts.folder)
    files.check_target(output, Param("output"), kind="folder")  # a name too long, a link: before anything else
    if output.parent.is_dir():  # a run killed mid-swap: its previous model back in place, its temporaries gone
        store.clean_stale(output.parent, f".{output.name}.")
    model_folder.check_output(output, opts.folder, force=opts.force, photo_dirs=(opts.validation_dir, opts.test_dir))
    return output


def retrain(opts: RetrainOptions) -> RetrainResult:
    """The run (the module docstring has its steps); `opts` is never changed."""
    classes, files, layout, v_pct, t_pct = _plan(opts)  # before any heavy work
    output = _output_path(opts)
    # shards and summaries are not reused: the shards' content is not recorded, summaries are a side effect
    reusable = opts.features is None and opts.summaries_dir is None
    photos = reuse.photo_facts([f.path for f in files]) if reusable else {}  # before any photo is read
    inputs = None
    key = reuse.backbone_file_key(opts.model) if reusable else None
    if key is not None:  # a .tflite file: known by its facts, so a rerun need not resolve it
        inputs = _inputs(opts, output, files, layout, key)
        earlier = _reused(opts, output, inputs, photos)
        if earlier is not None:
            return earlier

    backbone, engine, ident, cache = feature_backbone(
        opts.model, opts.input_size, opts.value_range, opts.bottleneck_dir
    )
    if reusable and key is None:
        inputs = _inputs(opts, output, files, layout, {"ref": opts.model, "resolved": backbone.ref, "ident": ident})
        earlier = _reused(opts, output, inputs, photos)
        if earlier is not None:
            return earlier

    ui.info(f"Layout: {layout}")
    data = _training_data(opts, classes, files, engine, ident, cache, v_pct, t_pct)
    fit = _fit(opts, data, engine)
    result_metrics = {
        **scores(data, fit),
        "layout": layout,
        "skipped": [{"path": p, "reason": r} for p, r in data.bad],
        "backbone": backbone.ref,
        "made_with": made_with(),  # the Pillow that decoded and the LiteRT that ran the backbone
        "options": _stored_options(opts, v_pct, t_pct),
        **findings(data, fit),
    }
    result = RetrainResult(None, result_metrics, result_metrics["misclassified"])
    result.below_minimum = below_minimum(opts.min_accuracy, result_metrics["test"]["accuracy"])
    if result.below_minimum is not None:
        return result
    # the photos the head was fitted or tuned on: `evaluate` warns when it is given them
    seen = sorted({data.shas[s.path] for s in data.samples if s.split != "test"})
    result.output = _write(
        opts,
        output,
        backbone,
        engine.input_size,
        fit.head,
        data.classes,
        result_metrics,
        result.misclassified,
        ident,
        training_hashes=seen,
    )
    if inputs is not None:
        reuse.remember(output, inputs, photos, data.shas)
    return result


def _plan(opts: RetrainOptions) -> tuple[list[str], list[folders.Photo], str, float, float]:
    """(classes, files, layout, validation %, test %): for photos, found and split by name;
    shards are read (and their splits checked) once the backbone is known."""
    if opts.features is None:
        return _plan_splits(opts)
    return [], [], "feature shards " + opts.features, opts.validation_percent, opts.test_percent


def _training_data(
    opts: RetrainOptions,
    classes: list[str],
    files: list[folders.Photo],
    engine: Any,
    ident: str,
    cache: bottlenecks.BottleneckCache,
    v_pct: float,
    t_pct: float,
) -> TrainingData:
    if opts.features is not None:  # shards of `imgtool beam features`: no photo is read (imgtool/training/shards.py)
        from imgtool.training.shards import training_set

        classes, samples, x_all, shas, bad = training_set(opts.features, ident, v_pct, t_pct)
        for path, why in bad:
            ui.warn(f"skipping {path}: {why}")
    else:
        samples, shas, bad = _usable_samples(opts, classes, files, cache, v_pct, t_pct)
        samples, x_all = _features(engine, samples, shas, cache, classes, opts)
    return TrainingData(classes, samples, x_all, shas, bad)


def _fit(opts: RetrainOptions, data: TrainingData, engine: Any) -> FittedHead:
    """The last layer, fitted on train + validation (and their distorted copies)."""
    extra = None
    if opts.distorted():
        extra = distorted_features(engine, [s for s in data.samples if s.split != "test"], distortions(opts), opts.seed)
    fit_shas = [data.shas[s.path] for s, keep in zip(data.samples, data.fitted) if keep]
    head, selection = _train_head(opts, data.x[data.fitted], data.y[data.fitted], len(data.classes), extra, fit_shas)
    probs = head.predict(data.x)
    return FittedHead(head, selection, probs, probs.argmax(axis=1))


def _stored_options(opts: RetrainOptions, v_pct: float, t_pct: float) -> dict[str, Any]:
    """metrics.json's "options": the split as drawn, the fit and the distortions."""
    return {
        "validation_percent": v_pct,
        "test_percent": t_pct,
        **{k: (list(val) if isinstance(val, tuple) else val) for k, val in asdict(train_config(opts)).items()},
        "distortions": asdict(distortions(opts)),
        "validation_dir": None if opts.validation_dir is None else str(opts.validation_dir),
        "test_dir": None if opts.test_dir is None else str(opts.test_dir),
    }


def _inputs(
    opts: RetrainOptions, output: Path, files: list[folders.Photo], layout: str, backbone: dict[str, Any]
) -> dict[str, Any]:
    """Everything that decides what a run writes and prints, as it reads back from JSON
    (imgtool/training/reuse.py). `min_accuracy` only gates, `force` only permits, the deprecated
    options are ignored."""
    ignored = {"min_accuracy", "force", "output", *option_fields.deprecated_names(RetrainOptions)}
    kept = {k: v for k, v in asdict(opts).items() if k not in ignored}
    return reuse.normal(
        {
            "versions": reuse.versions(),
            "image_dir": str(opts.folder),
            "image_dir_resolved": str(opts.folder.resolve()),
            "output": str(output),
            "layout": layout,
            "files": [[f.path, f.rel, f.label, f.given] for f in files],
            "options": kept,
            "backbone": backbone,
        }
    )


def _reused(
    opts: RetrainOptions, output: Path, inputs: dict[str, Any], photos: dict[str, list[int] | None]
) -> RetrainResult | None:
    """The result an earlier run of identical inputs wrote into `output`, as a run now would
    return it (the same metrics, the same `min_accuracy` outcome), or None."""
    m = reuse.lookup(output, inputs, photos)
    if m is None or not isinstance(m.get("test"), dict):
        return None
    ui.info(
        f"reusing {output}: it was written by a run of identical inputs (the same photos, backbone, options "
        "and versions), so nothing is fitted or written again"
    )
    for item in m.get("skipped") or []:
        ui.warn(f"skipping {item['path']}: {item['reason']}")
    warn_leaks(int((m.get("near_duplicates") or {}).get("straddling") or 0))
    gate = below_minimum(opts.min_accuracy, m["test"].get("accuracy"))
    if gate is not None:  # as a run now would: no export happened, nothing is written
        return RetrainResult(
            None, {k: v for k, v in m.items() if k != "exports"}, m["misclassified"], gate, reused=True
        )
    return RetrainResult(output, m, m["misclassified"], reused=True)


def _usable_samples(
    opts: RetrainOptions,
    classes: list[str],
    files: list[folders.Photo],
    cache: bottlenecks.BottleneckCache,
    v_pct: float,
    t_pct: float,
) -> tuple[list[splits.Sample], dict[str, str], list[tuple[str, str]]]:
    """Hash every file (the cache key), decode-check those without a cached bottleneck,
    list and drop the bad ones, split the rest and check every class is big enough."""
    good, shas, bad = readable_files(files, cache)
    for path, why in bad:
        ui.warn(f"skipping {path}: {why}")
    samples = splits.assign_splits(good, len(classes), v_pct, t_pct, content=shas)
    splits.check_sizes(classes, samples)
    counts = splits.split_counts(classes, samples)
    for c in classes:
        n = counts[c]
        ui.info(f"  {c}: {sum(n.values())} images ({n['train']} train, {n['validation']} validation, {n['test']} test)")
    lacking = [c for c in classes if counts[c]["test"] == 0]
    if lacking and any(counts[c]["test"] for c in classes):
        ui.info(f"no test photos of {', '.join(lacking)} (the split is by hash: small classes may have none)")
    warning = splits.imbalance(classes, samples)
    if warning:
        ui.warn(warning + " (" + Param("class_weight") + f" {opts.class_weight})")
    return samples, shas, bad


def _features(
    engine: Any,
    samples: list[splits.Sample],
    shas: dict[str, str],
    cache: bottlenecks.BottleneckCache,
    classes: list[str],
    opts: RetrainOptions,
) -> tuple[list[splits.Sample], np.ndarray]:
    """Bottlenecks for every sample (cache first); a photo that fails here is dropped too."""
    kept, x, failed = features_of(engine, samples, shas, cache)
    for path, err in failed:
        ui.warn(f"skipping {path}: {err}")
    if failed:
        splits.check_sizes(classes, kept)
    return kept, x


def _train_head(
    opts: RetrainOptions,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    n_classes: int,
    extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    groups: list[str],
) -> tuple[Any, Any]:
    from imgtool.training.l2_search import select_and_fit

    config = train_config(opts)
    what = (
        f"L2 {config.l2:g} (" + Param("l2") + ")" if config.l2 is not None else f"L2 from {len(config.l2_grid)} values"
    )
    ui.info(
        f"Fitting the last layer on {len(x_fit)} photos"
        + (f" + {len(extra[0])} distorted copies" if extra is not None else "")
        + ": "
        + what
        + f" by cross-validation, class weights {config.class_weight}"
    )
    head, selection = select_and_fit(x_fit, y_fit, n_classes, config, extra=extra, groups=groups)
    for c in selection.candidates:
        mark = "  <- chosen" if c["l2"] == selection.l2 else ""
        ui.info(
            f"  L2 {c['l2']:<7g} cross-validated log-loss {c['cv_loss']:.4f}, accuracy {c['cv_accuracy']:.1%}{mark}"
        )
    writer = _summary_writer(opts.summaries_dir)
    if writer is not None:
        for step, c in enumerate(selection.candidates):
            writer(step, {"cv/loss": c["cv_loss"], "cv/accuracy": c["cv_accuracy"], "cv/l2": c["l2"]})
    return head, selection


def _summary_writer(path: Path | None) -> Any:
    if path is None:
        return None
    from imgtool.runtime import tfutil

    return tfutil.scalar_writer(path)


def _write(
    opts: RetrainOptions,
    output: Path,
    backbone: Any,
    size: tuple[int, int],
    head: Any,
    classes: list[str],
    result_metrics: dict[str, Any],
    misclassified: list[dict[str, Any]],
    ident: str,
    training_hashes: list[str] | None = None,
) -> Path:
    from imgtool.core import store
    from imgtool.training import model_folder, report

    model_folder.check_output(
        output,
        opts.folder,
        force=opts.force,  # again: it may have appeared meanwhile
        photo_dirs=(opts.validation_dir, opts.test_dir),
    )
    staging = output.with_name(f".{output.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    existed = output.exists()
    try:
        html = report.render(result_metrics, misclassified, report.title_for(str(opts.folder)))
        model_folder.write_model_dir(
            staging,
            backbone,
            size,
            head,
            classes,
            result_metrics,
            html,
            Path(opts.folder),
            backbone_ident=ident,
            tf_exports=opts.tf_exports,
            training_hashes=training_hashes,
        )
        from imgtool.training import tflite_model

        result_metrics["exports"] = tflite_model.export_for_retrain(staging, opts.quantize)  # re-renders report.html
        if output.exists():
            ui.info(f"replacing the previous model in {output}")
        store.replace_dir(staging, output)
    except OSError as err:  # full disk, file-size limit, read-only, permission denied: one line, exit 4
        raise model_folder.write_error(err, output, staging, existed) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output
