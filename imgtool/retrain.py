"""retrain-last-layer: a user's own classifier from a folder of photos.

scan -> check counts -> resolve backbone -> hash files -> validate uncached ones ->
split -> bottlenecks (cached) -> [distortions] -> train the last layer -> evaluate ->
write the output folder under a temporary name and rename it into place."""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from imgtool import bottlenecks, dataset, metrics, ui
from imgtool.images import not_a_regular_file
from imgtool.errors import ImgtoolError
from imgtool.train import TrainConfig


@dataclass
class Distortions:
    flip_left_right: bool = False
    random_crop: float = 0.0  # percent of the image that may be cut away
    random_scale: float = 0.0  # percent of upscaling
    random_brightness: float = 0.0  # percent of brightness change
    copies: int = 4  # distorted copies of each training image

    def active(self) -> bool:
        return self.flip_left_right or bool(self.random_crop or self.random_scale or self.random_brightness)


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
    steps: int | None = None  # instead of epochs: mini-batch steps in all
    tf_exports: bool = True  # SavedModel + .tflite for TF backbones
    input_size: tuple[int, int] | None = None
    value_range: tuple[float, float] | None = None
    features: str | None = None  # train from `imgtool beam features` Parquet shards instead of image_dir
    quantize: str = "none"  # model.tflite is always written; dynamic/float16/int8 add model-<mode>.tflite


@dataclass
class RetrainResult:
    output: Path | None
    metrics: dict[str, Any]
    misclassified: list[dict[str, Any]]
    below_minimum: str | None = None


def _distort(arr: np.ndarray, d: Distortions, rng: np.random.Generator) -> np.ndarray:
    """retrain.py's distortions on a decoded, model-sized image."""
    from PIL import Image, ImageEnhance

    h, w = arr.shape[:2]
    im = Image.fromarray(arr)
    if d.flip_left_right and rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    scale = 1.0 + rng.uniform(0, d.random_scale / 100.0)
    keep = 1.0 - rng.uniform(0, d.random_crop / 100.0)
    if scale != 1.0 or keep != 1.0:
        cw, ch = max(1, int(w * keep / scale)), max(1, int(h * keep / scale))
        x0 = int(rng.integers(0, w - cw + 1))
        y0 = int(rng.integers(0, h - ch + 1))
        im = im.resize((w, h), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    if d.random_brightness:
        im = ImageEnhance.Brightness(im).enhance(1.0 + rng.uniform(-1, 1) * d.random_brightness / 100.0)
    return np.asarray(im, dtype=np.uint8)


def retrain(opts: RetrainOptions) -> RetrainResult:
    from imgtool.resolve import resolve

    if opts.features is None:
        classes, files = dataset.scan(opts.image_dir)
        raw = dataset.assign_splits(files, len(classes), opts.validation_percent, opts.test_percent)
        dataset.check_sizes(classes, raw, opts.validation_percent, opts.test_percent)  # before any heavy work

    backbone = resolve(opts.model, purpose="features", input_size=opts.input_size, value_range=opts.value_range)
    for note in backbone.notes:
        ui.info(note)
    engine = backbone.engine()
    ident_file = backbone.tflite or backbone.tf_source
    assert ident_file is not None
    ident = bottlenecks.backbone_id(ident_file if ident_file.is_file() else ident_file / "saved_model.pb",
                                    engine.input_size, backbone.config.value_range,
                                    extra=str(backbone.graph_tensors or ""))
    cache = bottlenecks.BottleneckCache(ident, opts.bottleneck_dir)

    if opts.features is not None:  # shards of `imgtool beam features`: no photo is read (imgtool/features.py)
        from imgtool.features import training_set

        classes, samples, x_all, shas, bad = training_set(opts.features, ident, opts.validation_percent, opts.test_percent)
        for path, why in bad:
            ui.warn(f"skipping {path}: {why}")
    else:
        samples, shas, bad = _usable_samples(opts, classes, files, cache)
        samples, x_all = _features(engine, samples, shas, cache, classes, opts)
    y_all = np.array([s.label for s in samples])
    split = np.array([s.split for s in samples])
    tr, va, te = (split == "train"), (split == "validation"), (split == "test")
    x_tr, y_tr = x_all[tr], y_all[tr]
    if opts.distortions.active():
        x_aug, y_aug = _distorted_features(engine, [s for s in samples if s.split == "train"], opts)
        x_tr, y_tr = np.concatenate([x_tr, x_aug]), np.concatenate([y_tr, y_aug])

    head, history = _train_head(opts, x_tr, y_tr, x_all[va], y_all[va], len(classes))
    probs = head.predict(x_all)
    pred = probs.argmax(axis=1)
    result_metrics: dict[str, Any] = {
        "test": metrics.evaluate(y_all[te], pred[te], classes),
        "validation": metrics.evaluate(y_all[va], pred[va], classes),
        "train": {"accuracy": round(float(np.mean(pred[tr] == y_all[tr])), 4), "count": int(tr.sum())},
        "classes": classes,
        "counts": dataset.split_counts(classes, samples),
        "skipped": [{"path": p, "reason": r} for p, r in bad],
        "backbone": backbone.ref,
        "options": {
            "validation_percent": opts.validation_percent, "test_percent": opts.test_percent,
            **asdict(opts.train), "distortions": asdict(opts.distortions),
        },
        "history": {"loss": [round(v, 5) for v in history.loss],
                    "validation_accuracy": [None if v != v else round(v, 4) for v in history.validation_accuracy]},
    }
    misclassified = [
        {"path": s.path, "rel": s.rel, "true": classes[s.label], "predicted": classes[int(pred[i])],
         "score": float(probs[i, pred[i]])}
        for i, s in enumerate(samples) if s.split == "test" and pred[i] != s.label
    ]
    result = RetrainResult(None, result_metrics, misclassified)
    if opts.min_accuracy is not None:
        reached = result_metrics["test"]["accuracy"]
        if reached is None:
            reached = result_metrics["validation"]["accuracy"]
        if reached is None or reached < opts.min_accuracy:
            shown = "n/a (no held-out images)" if reached is None else f"{reached:.1%}"
            gap = "" if reached is None else f" by {opts.min_accuracy - reached:.1%}"
            result.below_minimum = (f"accuracy {shown} is below --min-accuracy {opts.min_accuracy:.1%}{gap}; "
                                    "the model was not written")
            return result
    # the photos the head was fitted or tuned on: `evaluate` warns when it is given them
    seen = sorted({shas[s.path] for s in samples if s.split != "test"})
    result.output = _write(opts, backbone, engine.input_size, head, classes, result_metrics, misclassified, ident,
                           training_hashes=seen)
    return result


def _usable_samples(opts: RetrainOptions, classes: list[str], files: list[tuple[str, str, int]],
                    cache: bottlenecks.BottleneckCache) -> tuple[list[dataset.Sample], dict[str, str], list[tuple[str, str]]]:
    """Hash every file (the cache key), decode-check those without a cached bottleneck,
    list and drop the bad ones, split the rest and check every class is big enough."""
    shas: dict[str, str] = {}
    bad: list[tuple[str, str]] = []
    for path, _, _ in files:
        problem = not_a_regular_file(path)  # never open a FIFO
        if problem is not None:
            bad.append((path, problem))
            continue
        try:
            shas[path] = bottlenecks.file_sha256(path)
        except OSError as err:
            bad.append((path, f"cannot read ({err.strerror or err})"))
    readable = [f for f in files if f[0] in shas]
    known = {p for p, s in shas.items() if cache.has(s)}
    good, undecodable = dataset.validate_files(readable, known_good=known, workers=bottlenecks.default_workers())
    bad += undecodable
    for path, why in bad:
        ui.warn(f"skipping {path}: {why}")
    samples = dataset.assign_splits(good, len(classes), opts.validation_percent, opts.test_percent)
    dataset.check_sizes(classes, samples, opts.validation_percent, opts.test_percent)
    counts = dataset.split_counts(classes, samples)
    for c in classes:
        n = counts[c]
        ui.info(f"  {c}: {sum(n.values())} images ({n['train']} train, {n['validation']} validation, {n['test']} test)")
    return samples, shas, bad


def _features(engine: Any, samples: list[dataset.Sample], shas: dict[str, str], cache: bottlenecks.BottleneckCache,
              classes: list[str], opts: RetrainOptions) -> tuple[list[dataset.Sample], np.ndarray]:
    """Bottlenecks for every sample (cache first); a photo that fails here is dropped too."""
    paths = [s.path for s in samples]
    feats: list[np.ndarray | None] = [None] * len(samples)
    for i, vec, err in bottlenecks.extract(engine, paths, [shas[p] for p in paths], cache,
                                           workers=bottlenecks.default_workers()):
        if vec is None:
            ui.warn(f"skipping {paths[i]}: {err}")
        else:
            feats[i] = vec
    kept = [i for i, f in enumerate(feats) if f is not None]
    if len(kept) != len(samples):
        samples = [samples[i] for i in kept]
        dataset.check_sizes(classes, samples, opts.validation_percent, opts.test_percent)
    return samples, np.stack([feats[i] for i in kept]).astype(np.float32)


def _train_head(opts: RetrainOptions, x_tr: np.ndarray, y_tr: np.ndarray, x_va: np.ndarray, y_va: np.ndarray,
                n_classes: int) -> tuple[Any, Any]:
    from imgtool.train import train

    config = opts.train
    if opts.steps:
        config = replace(config, epochs=max(1, math.ceil(opts.steps * config.batch_size / len(x_tr))))
        opts.train = config  # recorded in metrics.json as the epochs actually run
    writer = _summary_writer(opts.summaries_dir)
    every = max(1, config.epochs // 10)

    def on_epoch(epoch: int, loss: float, train_acc: float, val_acc: float | None) -> None:
        if epoch % every == 0 or epoch == config.epochs:
            ui.info(f"  epoch {epoch:4}/{config.epochs}: loss {loss:.4f}, train accuracy {train_acc:.1%}"
                    + (f", validation accuracy {val_acc:.1%}" if val_acc is not None else ""))
        if writer is not None:
            writer(epoch, loss, train_acc, val_acc)

    ui.info(f"Training the last layer on {len(x_tr)} examples ({config.epochs} epochs)")
    return train(x_tr, y_tr, n_classes, config, x_va, y_va, on_epoch=on_epoch)


def _distorted_features(engine: Any, train: list[dataset.Sample], opts: RetrainOptions) -> tuple[np.ndarray, np.ndarray]:
    from imgtool import images

    d = opts.distortions
    n = len(train) * d.copies
    ui.info(f"Distortions on: {n} extra backbone passes ({d.copies} per training image), not cached "
            f"- this run costs about {d.copies + 1}x the extraction time of a plain run")
    rng = np.random.default_rng(opts.train.seed)
    xs, ys = [], []
    bar = ui.progress(n, "distortions", unit="img")
    for s in train:
        try:
            arr = images.decode(s.path, engine.input_size)
        except ImgtoolError:
            continue
        batch = np.stack([_distort(arr, d, rng) for _ in range(d.copies)])
        xs.append(engine.run(batch))
        ys.extend([s.label] * d.copies)
        bar.update(d.copies)
    bar.close()
    return np.concatenate(xs), np.array(ys)


def _summary_writer(path: Path | None) -> Any:
    if path is None:
        return None
    from imgtool import tfutil

    return tfutil.summary_writer(path)


def _write(opts: RetrainOptions, backbone: Any, size: tuple[int, int], head: Any, classes: list[str],
           result_metrics: dict[str, Any], misclassified: list[dict[str, Any]], ident: str,
           training_hashes: list[str] | None = None) -> Path:
    from imgtool import export, report, store

    output = opts.output or export.default_output(opts.image_dir)
    export.check_output(output, opts.image_dir)
    staging = output.with_name(f".{output.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    existed = output.exists()
    try:
        title = f"imgtool retrain: {Path(opts.image_dir).name}"
        html = report.render(result_metrics, misclassified, title)
        export.write_model_dir(staging, backbone, size, head, classes, result_metrics, html, Path(opts.image_dir),
                               backbone_ident=ident, tf_exports=opts.tf_exports, training_hashes=training_hashes)
        from imgtool import tflite_export

        result_metrics["exports"] = tflite_export.export_for_retrain(staging, opts.quantize)
        (staging / "report.html").write_text(report.render(result_metrics, misclassified, title), encoding="utf-8")
        if output.exists():
            ui.info(f"replacing the previous model in {output}")
        store.replace_dir(staging, output)
    except OSError as err:  # full disk, file-size limit, read-only, permission denied: one line, exit 4
        raise export.write_error(err, output, staging, existed) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output

