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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgtool import bottlenecks, dataset, metrics, reuse, ui
from imgtool.distort import Distortions
from imgtool.errors import ImgtoolError, Param, Text, UsageError
from imgtool.images import not_a_regular_file
from imgtool.train import TrainConfig
from imgtool.version import made_with

__all__ = ["Distortions", "RetrainOptions", "RetrainResult", "retrain"]

SUSPECTS_SHOWN = 10  # the most suspicious training photos in metrics.json and the report


@dataclass
class RetrainOptions:
    image_dir: Path
    output: Path | None = None
    model: str | None = None
    validation_percent: float = 10.0
    test_percent: float = 10.0
    train: TrainConfig = field(default_factory=TrainConfig)
    bottleneck_dir: Path | None = None
    distortions: Distortions = field(default_factory=Distortions)
    summaries_dir: Path | None = None
    min_accuracy: float | None = None
    steps: int | None = None  # deprecated and ignored: the head is fitted to convergence
    tf_exports: bool = True  # SavedModel + .tflite for TF backbones
    input_size: tuple[int, int] | None = None
    value_range: tuple[float, float] | None = None
    features: str | None = None  # train from `imgtool beam features` Parquet shards instead of image_dir
    quantize: str = "none"  # model.tflite is always written; dynamic/float16/int8 add model-<mode>.tflite
    validation_dir: Path | None = None  # given validation photos (class sub-folders)
    test_dir: Path | None = None  # given test photos (class sub-folders)
    force: bool = False  # replace an output folder that is not a model of these photos


@dataclass
class RetrainResult:
    output: Path | None
    metrics: dict[str, Any]
    misclassified: list[dict[str, Any]]
    below_minimum: str | None = None
    reused: bool = False  # the output folder of an earlier run of identical inputs (imgtool/reuse.py)

    @property
    def report(self) -> Path | None:
        """The model folder's report.html (None when no folder was written)."""
        return None if self.output is None else self.output / "report.html"


def _plan_splits(opts: RetrainOptions) -> tuple[list[str], list[dataset.Photo], str, float, float]:
    """Layout, split and the checks that need only the file names (no decoding)."""
    found = dataset.find_layout(opts.image_dir, opts.validation_dir, opts.test_dir)
    classes, files, layout = found.classes, found.photos, found.description
    given = {f.given for f in files if f.given is not None}
    v, t = found.percentages(opts.validation_percent, opts.test_percent)
    raw = dataset.assign_splits(files, len(classes), v, t)
    dataset.check_sizes(classes, raw)
    if opts.min_accuracy is not None and not any(s.split == "test" for s in raw):
        why = (Param("test_percent") + " is 0" if t == 0 and "test" not in given
               else f"no photo fell in the test split ({len(raw)} photos, {t:g}%)")
        raise UsageError(Param("min_accuracy") + " needs test photos, and there are none (" + why + "); raise "
                         + Param("test_percent") + ", give " + Param("test_dir") + ", or drop " + Param("min_accuracy"))
    return classes, files, layout, v, t


def _output_path(opts: RetrainOptions) -> Path:
    from imgtool import export, files, store

    output = opts.output or export.default_output(opts.image_dir)
    files.check_target(output, Param("output"), kind="folder")  # a name too long, a link: before anything else
    if output.parent.is_dir():  # a run killed mid-swap: its previous model back in place, its temporaries gone
        store.clean_stale(output.parent, f".{output.name}.")
    export.check_output(output, opts.image_dir, force=opts.force, photo_dirs=(opts.validation_dir, opts.test_dir))
    return output


def _check_catalog_backbone(ref: str) -> None:
    """Before resolving (which may download): a catalog classifier with no feature twin."""
    from imgtool.catalog import load_catalog

    name = ref.removeprefix("catalog:")
    if os.path.lexists(ref) and not ref.startswith("catalog:"):
        return
    cfg = load_catalog().get(name)
    if cfg is not None and cfg.output in ("logits", "probabilities") and not cfg.features:
        raise UsageError(Param("model") + f" {name} is a classifier, not a feature extractor (the catalog records "
                         f"its output as {cfg.output} and names no feature-vector twin); " + _give_features(),
                         model=name)


def _check_backbone(backbone: Any, ref: str) -> None:
    from imgtool.backbone_kind import classifier_reason
    from imgtool.catalog import load_catalog

    name = ref.removeprefix("catalog:")
    catalog = load_catalog() if ref.startswith("catalog:") or not os.path.lexists(ref) else {}
    if name in catalog and backbone.config.name != name:
        ui.info(f"{name} is a classifier; retraining on its feature-vector twin {backbone.config.name}")
    why = classifier_reason(backbone)
    if why is not None:
        raise UsageError(Param("model") + f" {backbone.ref} is a classifier, not a feature extractor ({why}); "
                         + _give_features(), model=backbone.ref)


def _give_features() -> str:
    """What to give instead of a classifier: the extractor that ships first, when there is one."""
    from imgtool.catalog import embedded_names, load_catalog

    shipped = [f"{n}, which ships with imgtool" for n in embedded_names(load_catalog(), "features")[:1]]
    examples = [*shipped, "a *_feature_vector catalog model", "an embedding extractor .tflite"]
    return f"give a feature-vector model (e.g. {', '.join(examples[:-1])}, or {examples[-1]})"


def feature_backbone(model: str | None, input_size: tuple[int, int] | None, value_range: tuple[float, float] | None,
                     bottleneck_dir: Path | None) -> tuple[Any, Any, str, bottlenecks.BottleneckCache]:
    """(backbone, its engine, its identity, its bottleneck cache): retrain's and audit's one
    way to a feature extractor, so both share the cache."""
    from imgtool.catalog import model_or_default
    from imgtool.resolve import resolve

    ref = model_or_default(model)  # the caller tried $IMGTOOL_BACKBONE; the checks see what resolve uses
    _check_catalog_backbone(ref)
    backbone = resolve(ref, purpose="features", input_size=input_size, value_range=value_range)
    for note in backbone.notes:
        ui.info(note)
    _check_backbone(backbone, ref)
    engine = backbone.engine()
    ident_file = backbone.tflite or backbone.tf_source
    assert ident_file is not None
    ident = bottlenecks.backbone_id(ident_file if ident_file.is_file() else ident_file / "saved_model.pb",
                                    engine.input_size, backbone.config.value_range,
                                    extra=str(backbone.graph_tensors or ""))
    return backbone, engine, ident, bottlenecks.BottleneckCache(ident, bottleneck_dir)


def retrain(opts: RetrainOptions) -> RetrainResult:
    if opts.features is None:
        classes, files, layout, v_pct, t_pct = _plan_splits(opts)  # before any heavy work
    else:  # the shards are read (and their splits checked) once the backbone is known
        classes, files, layout, v_pct, t_pct = [], [], "feature shards " + opts.features, \
            opts.validation_percent, opts.test_percent
    output = _output_path(opts)
    if opts.steps:
        ui.warn(Param("steps") + " is ignored: the last layer is fitted to convergence (L2 chosen by cross-validation)")
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

    backbone, engine, ident, cache = feature_backbone(opts.model, opts.input_size, opts.value_range,
                                                      opts.bottleneck_dir)
    if reusable and key is None:
        inputs = _inputs(opts, output, files, layout, {"ref": opts.model, "resolved": backbone.ref, "ident": ident})
        earlier = _reused(opts, output, inputs, photos)
        if earlier is not None:
            return earlier

    ui.info(f"Layout: {layout}")
    if opts.features is not None:  # shards of `imgtool beam features`: no photo is read (imgtool/features.py)
        from imgtool.features import training_set

        classes, samples, x_all, shas, bad = training_set(opts.features, ident, v_pct, t_pct)
        for path, why in bad:
            ui.warn(f"skipping {path}: {why}")
    else:
        samples, shas, bad = _usable_samples(opts, classes, files, cache, v_pct, t_pct)
        samples, x_all = _features(engine, samples, shas, cache, classes, opts)
    y_all = np.array([s.label for s in samples])
    split = np.array([s.split for s in samples])
    tr, va, te = (split == "train"), (split == "validation"), (split == "test")
    fit_mask = tr | va
    x_fit, y_fit = x_all[fit_mask], y_all[fit_mask]
    extra = None
    if opts.distortions.active():
        fit_samples = [s for s in samples if s.split != "test"]
        extra = _distorted_features(engine, fit_samples, opts)

    fit_shas = [shas[s.path] for s, keep in zip(samples, fit_mask) if keep]
    head, selection = _train_head(opts, x_fit, y_fit, len(classes), extra, fit_shas)
    probs = head.predict(x_all)
    pred = probs.argmax(axis=1)
    oof_pred = np.full(len(samples), -1)
    oof_pred[fit_mask] = selection.oof_probs.argmax(axis=1)
    validation = metrics.evaluate(y_all[va], oof_pred[va], classes)
    validation["source"] = "out-of-fold: each photo predicted by the cross-validation model that did not see it"
    cross = metrics.evaluate(y_fit, oof_pred[fit_mask], classes)
    cross["source"] = "out-of-fold predictions of every train+validation photo at the chosen L2"
    result_metrics: dict[str, Any] = {
        "test": metrics.evaluate(y_all[te], pred[te], classes),
        "validation": validation,
        "cross_validation": cross,
        "train": {"accuracy": round(float(np.mean(pred[tr] == y_all[tr])), 4) if tr.any() else None,
                  "count": int(tr.sum()), "note": "photos the head was fitted on (not a held-out estimate)"},
        "head": selection.as_dict(),
        "classes": classes,
        "counts": dataset.split_counts(classes, samples),
        "layout": layout,
        "skipped": [{"path": p, "reason": r} for p, r in bad],
        "backbone": backbone.ref,
        "made_with": made_with(),  # the Pillow that decoded and the LiteRT that ran the backbone
        "options": {
            "validation_percent": v_pct, "test_percent": t_pct,
            **{k: (list(val) if isinstance(val, tuple) else val) for k, val in asdict(opts.train).items()},
            "distortions": asdict(opts.distortions),
            "validation_dir": None if opts.validation_dir is None else str(opts.validation_dir),
            "test_dir": None if opts.test_dir is None else str(opts.test_dir),
        },
    }
    from imgtool import findings as audit_mod
    from imgtool.calibration import suggest_min_score

    if selection.calibration is not None:
        result_metrics["calibration"] = selection.calibration.to_dict()
        result_metrics["open_set"] = suggest_min_score(selection.oof_probs, y_fit).to_dict()
    fit_samples = [s for s, keep in zip(samples, fit_mask) if keep]
    result_metrics["suspects"] = [asdict(x) for x in audit_mod.suspects_of(fit_samples, classes, selection.oof_probs,
                                                                           y_fit, limit=SUSPECTS_SHOWN)]
    leaks = [g for g in audit_mod.groups_of(samples, classes, x_all, [shas[s.path] for s in samples]) if g.leakage]
    result_metrics["near_duplicates"] = {
        "rule": f"centred feature cosine >= {audit_mod.NEAR_DUPLICATE}; byte-identical photos share a split",
        "straddling": len(leaks), "groups": [g.to_dict() for g in leaks]}
    _warn_leaks(len(leaks))
    misclassified = [
        {"path": s.path, "rel": s.rel, "true": classes[s.label], "predicted": classes[int(pred[i])],
         "score": float(probs[i, pred[i]])}
        for i, s in enumerate(samples) if s.split == "test" and pred[i] != s.label
    ]
    result_metrics["misclassified"] = misclassified  # export re-renders report.html from metrics.json
    result = RetrainResult(None, result_metrics, misclassified)
    result.below_minimum = _below_minimum(opts.min_accuracy, result_metrics["test"]["accuracy"])
    if result.below_minimum is not None:
        return result
    # the photos the head was fitted or tuned on: `evaluate` warns when it is given them
    seen = sorted({shas[s.path] for s in samples if s.split != "test"})
    result.output = _write(opts, output, backbone, engine.input_size, head, classes, result_metrics,
                           misclassified, ident, training_hashes=seen)
    if inputs is not None:
        reuse.remember(output, inputs, photos, shas)
    return result


def _below_minimum(min_accuracy: float | None, reached: float | None) -> Text | None:
    """Why the model is not written (test accuracy under `min_accuracy`), or None."""
    if min_accuracy is None or (reached is not None and reached >= min_accuracy):
        return None
    shown = "n/a (no test images)" if reached is None else f"{reached:.1%}"
    gap = "" if reached is None else f" by {min_accuracy - reached:.1%}"
    return (f"accuracy {shown} is below " + Param("min_accuracy")
            + f" {min_accuracy:.1%}{gap}; the model was not written")


def _warn_leaks(n: int) -> None:
    if n:
        ui.warn(f"{n} group{'s' if n > 1 else ''} of near-duplicate photos straddle train and test "
                "(the test accuracy counts photos much like ones fitted on; see metrics.json near_duplicates, or "
                "`imgtool audit`)")


def _inputs(opts: RetrainOptions, output: Path, files: list[dataset.Photo], layout: str,
            backbone: dict[str, Any]) -> dict[str, Any]:
    """Everything that decides what a run writes and prints, as it reads back from JSON
    (imgtool/reuse.py). `min_accuracy` only gates, `force` only permits, `steps` is ignored."""
    options = {k: v for k, v in asdict(opts).items() if k not in ("min_accuracy", "force", "steps", "output")}
    return reuse.normal({"versions": reuse.versions(), "image_dir": str(opts.image_dir),
                         "image_dir_resolved": str(Path(opts.image_dir).resolve()), "output": str(output),
                         "layout": layout, "files": [[f.path, f.rel, f.label, f.given] for f in files],
                         "options": options, "backbone": backbone})


def _reused(opts: RetrainOptions, output: Path, inputs: dict[str, Any],
            photos: dict[str, list[int] | None]) -> RetrainResult | None:
    """The result an earlier run of identical inputs wrote into `output`, as a run now would
    return it (the same metrics, the same `min_accuracy` outcome), or None."""
    m = reuse.lookup(output, inputs, photos)
    if m is None or not isinstance(m.get("test"), dict):
        return None
    ui.info(f"reusing {output}: it was written by a run of identical inputs (the same photos, backbone, options "
            "and versions), so nothing is fitted or written again")
    for item in m.get("skipped") or []:
        ui.warn(f"skipping {item['path']}: {item['reason']}")
    _warn_leaks(int((m.get("near_duplicates") or {}).get("straddling") or 0))
    gate = _below_minimum(opts.min_accuracy, m["test"].get("accuracy"))
    if gate is not None:  # as a run now would: no export happened, nothing is written
        return RetrainResult(None, {k: v for k, v in m.items() if k != "exports"}, m["misclassified"], gate,
                             reused=True)
    return RetrainResult(output, m, m["misclassified"], reused=True)


def _usable_samples(opts: RetrainOptions, classes: list[str], files: list[dataset.Photo],
                    cache: bottlenecks.BottleneckCache, v_pct: float, t_pct: float
                    ) -> tuple[list[dataset.Sample], dict[str, str], list[tuple[str, str]]]:
    """Hash every file (the cache key), decode-check those without a cached bottleneck,
    list and drop the bad ones, split the rest and check every class is big enough."""
    good, shas, bad = readable_files(files, cache)
    for path, why in bad:
        ui.warn(f"skipping {path}: {why}")
    samples = dataset.assign_splits(good, len(classes), v_pct, t_pct, content=shas)
    dataset.check_sizes(classes, samples)
    counts = dataset.split_counts(classes, samples)
    for c in classes:
        n = counts[c]
        ui.info(f"  {c}: {sum(n.values())} images ({n['train']} train, {n['validation']} validation, {n['test']} test)")
    lacking = [c for c in classes if counts[c]["test"] == 0]
    if lacking and any(counts[c]["test"] for c in classes):
        ui.info(f"no test photos of {', '.join(lacking)} (the split is by hash: small classes may have none)")
    warning = dataset.imbalance(classes, samples)
    if warning:
        ui.warn(warning + " (" + Param("class_weight") + f" {opts.train.class_weight})")
    return samples, shas, bad


def readable_files(files: list[dataset.Photo], cache: bottlenecks.BottleneckCache
                   ) -> tuple[list[dataset.Photo], dict[str, str], list[tuple[str, str]]]:
    """(the files that decode, {path: content sha256}, [(path, why)] of the others): every
    file hashed (the cache key), those without a cached bottleneck decode-checked."""
    shas: dict[str, str] = {}
    bad: list[tuple[str, str]] = []
    for path in (f.path for f in files):
        problem = not_a_regular_file(path)  # never open a FIFO
        if problem is not None:
            bad.append((path, problem))
            continue
        try:
            shas[path] = bottlenecks.file_sha256(path)
        except OSError as err:
            bad.append((path, f"cannot read ({err.strerror or err})"))
    readable = [f for f in files if f.path in shas]
    known = {p for p, s in shas.items() if cache.has(s)}
    good, undecodable = dataset.validate_files(readable, known_good=known, workers=bottlenecks.default_workers())
    return good, shas, bad + undecodable


def features_of(engine: Any, samples: list[dataset.Sample], shas: dict[str, str], cache: bottlenecks.BottleneckCache
                ) -> tuple[list[dataset.Sample], np.ndarray, list[tuple[str, str]]]:
    """Bottlenecks of the samples (cache first): (the samples that have one, their
    features, [(path, why)] of those that failed here)."""
    paths = [s.path for s in samples]
    feats: list[np.ndarray | None] = [None] * len(samples)
    failed = []
    for i, vec, err in bottlenecks.extract(engine, paths, [shas[p] for p in paths], cache,
                                           workers=bottlenecks.default_workers()):
        if vec is None:
            failed.append((paths[i], str(err)))
        else:
            feats[i] = vec
    kept = [i for i, f in enumerate(feats) if f is not None]
    x = np.stack([f for f in feats if f is not None]).astype(np.float32) if kept else np.zeros((0, 0), np.float32)
    return [samples[i] for i in kept], x, failed


def _features(engine: Any, samples: list[dataset.Sample], shas: dict[str, str], cache: bottlenecks.BottleneckCache,
              classes: list[str], opts: RetrainOptions) -> tuple[list[dataset.Sample], np.ndarray]:
    """Bottlenecks for every sample (cache first); a photo that fails here is dropped too."""
    kept, x, failed = features_of(engine, samples, shas, cache)
    for path, err in failed:
        ui.warn(f"skipping {path}: {err}")
    if failed:
        dataset.check_sizes(classes, kept)
    return kept, x


def _train_head(opts: RetrainOptions, x_fit: np.ndarray, y_fit: np.ndarray, n_classes: int,
                extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None, groups: list[str]) -> tuple[Any, Any]:
    from imgtool.train import select_and_fit

    config = opts.train  # never modified: the options object is the caller's
    what = (f"L2 {config.l2:g} (" + Param("l2") + ")" if config.l2 is not None
            else f"L2 from {len(config.l2_grid)} values")
    ui.info(f"Fitting the last layer on {len(x_fit)} photos"
            + (f" + {len(extra[0])} distorted copies" if extra is not None else "")
            + ": " + what + f" by cross-validation, class weights {config.class_weight}")
    head, selection = select_and_fit(x_fit, y_fit, n_classes, config, extra=extra, groups=groups)
    for c in selection.candidates:
        mark = "  <- chosen" if c["l2"] == selection.l2 else ""
        ui.info(f"  L2 {c['l2']:<7g} cross-validated log-loss {c['cv_loss']:.4f}, "
                f"accuracy {c['cv_accuracy']:.1%}{mark}")
    writer = _summary_writer(opts.summaries_dir)
    if writer is not None:
        for step, c in enumerate(selection.candidates):
            writer(step, {"cv/loss": c["cv_loss"], "cv/accuracy": c["cv_accuracy"], "cv/l2": c["l2"]})
    return head, selection


def _distorted_features(engine: Any, fit_samples: list[dataset.Sample],
                        opts: RetrainOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of distorted copies of each photo the head is fitted on: (x, y, index of
    the source photo in fit_samples) - cross-validation keeps a copy in its photo's fold."""
    from imgtool import distort, images

    d = opts.distortions
    n = len(fit_samples) * d.copies
    ui.info(f"Distortions on: {n} extra backbone passes ({d.copies} per training image), not cached "
            f"- this run costs about {d.copies + 1}x the extraction time of a plain run")
    rng = np.random.default_rng(opts.train.seed)
    xs, ys, src = [], [], []
    bar = ui.progress(n, "distortions", unit="img")
    for i, s in enumerate(fit_samples):
        try:
            batch = np.stack([images.decode_distorted(s.path, engine.input_size, distort.sample_plan(d, rng))
                              for _ in range(d.copies)])
        except ImgtoolError:
            continue
        xs.append(engine.run(batch))
        ys.extend([s.label] * d.copies)
        src.extend([i] * d.copies)
        bar.update(d.copies)
    bar.close()
    if not xs:
        return np.zeros((0, 0), np.float32), np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(xs), np.array(ys), np.array(src)


def _summary_writer(path: Path | None) -> Any:
    if path is None:
        return None
    from imgtool import tfutil

    return tfutil.scalar_writer(path)


def _write(opts: RetrainOptions, output: Path, backbone: Any, size: tuple[int, int], head: Any, classes: list[str],
           result_metrics: dict[str, Any], misclassified: list[dict[str, Any]], ident: str,
           training_hashes: list[str] | None = None) -> Path:
    from imgtool import export, report, store

    export.check_output(output, opts.image_dir, force=opts.force,  # again: it may have appeared meanwhile
                        photo_dirs=(opts.validation_dir, opts.test_dir))
    staging = output.with_name(f".{output.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    existed = output.exists()
    try:
        html = report.render(result_metrics, misclassified, report.title_for(str(opts.image_dir)))
        export.write_model_dir(staging, backbone, size, head, classes, result_metrics, html, Path(opts.image_dir),
                               backbone_ident=ident, tf_exports=opts.tf_exports, training_hashes=training_hashes)
        from imgtool import tflite_export

        result_metrics["exports"] = tflite_export.export_for_retrain(staging, opts.quantize)  # re-renders report.html
        if output.exists():
            ui.info(f"replacing the previous model in {output}")
        store.replace_dir(staging, output)
    except OSError as err:  # full disk, file-size limit, read-only, permission denied: one line, exit 4
        raise export.write_error(err, output, staging, existed) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output

