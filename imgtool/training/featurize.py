"""The features retrain and audit share: a backbone that is a feature extractor (a catalog
classifier or a classifier file is refused, saying what to give instead), the photos that
can be read, and their bottlenecks (cached by content); and the features of retrain's
distorted copies (never cached).

Layer: the work (resolves the backbone; reads through bottlenecks and dataset)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from imgtool.core import ui
from imgtool.core.errors import ImgtoolError, Param, UsageError
from imgtool.data import folders, splits
from imgtool.data.distortions import Distortions
from imgtool.data.images import not_a_regular_file
from imgtool.runtime import bottlenecks


def _check_catalog_backbone(ref: str) -> None:
    """Before resolving (which may download): a catalog classifier with no feature twin."""
    from imgtool.models.catalog import load_catalog

    name = ref.removeprefix("catalog:")
    if os.path.lexists(ref) and not ref.startswith("catalog:"):
        return
    cfg = load_catalog().get(name)
    if cfg is not None and cfg.output in ("logits", "probabilities") and not cfg.features:
        raise UsageError(
            Param("model") + f" {name} is a classifier, not a feature extractor (the catalog records "
            f"its output as {cfg.output} and names no feature-vector twin); " + _give_features(),
            model=name,
        )


def _check_backbone(backbone: Any, ref: str) -> None:
    from imgtool.models.catalog import load_catalog
    from imgtool.training.backbone_kind import classifier_reason

    name = ref.removeprefix("catalog:")
    catalog = load_catalog() if ref.startswith("catalog:") or not os.path.lexists(ref) else {}
    if name in catalog and backbone.config.name != name:
        ui.info(f"{name} is a classifier; retraining on its feature-vector twin {backbone.config.name}")
    why = classifier_reason(backbone)
    if why is not None:
        raise UsageError(
            Param("model") + f" {backbone.ref} is a classifier, not a feature extractor ({why}); " + _give_features(),
            model=backbone.ref,
        )


def _give_features() -> str:
    """What to give instead of a classifier: the extractor that ships first, when there is one."""
    from imgtool.models.catalog import embedded_names, load_catalog

    shipped = [f"{n}, which ships with imgtool" for n in embedded_names(load_catalog(), "features")[:1]]
    examples = [*shipped, "a *_feature_vector catalog model", "an embedding extractor .tflite"]
    return f"give a feature-vector model (e.g. {', '.join(examples[:-1])}, or {examples[-1]})"


def feature_backbone(
    model: str | None,
    input_size: tuple[int, int] | None,
    value_range: tuple[float, float] | None,
    bottleneck_dir: Path | None,
) -> tuple[Any, Any, str, bottlenecks.BottleneckCache]:
    """(backbone, its engine, its identity, its bottleneck cache): retrain's and audit's one
    way to a feature extractor, so both share the cache."""
    from imgtool.models.catalog import model_or_default
    from imgtool.models.resolve import resolve

    ref = model_or_default(model)  # the caller tried $IMGTOOL_BACKBONE; the checks see what resolve uses
    _check_catalog_backbone(ref)
    backbone = resolve(ref, purpose="features", input_size=input_size, value_range=value_range)
    for note in backbone.notes:
        ui.info(note)
    _check_backbone(backbone, ref)
    engine = backbone.engine()
    ident_file = backbone.tflite or backbone.tf_source
    assert ident_file is not None
    ident = bottlenecks.backbone_id(
        ident_file if ident_file.is_file() else ident_file / "saved_model.pb",
        engine.input_size,
        backbone.config.value_range,
        extra=str(backbone.graph_tensors or ""),
    )
    return backbone, engine, ident, bottlenecks.BottleneckCache(ident, bottleneck_dir)


def readable_files(
    files: list[folders.Photo], cache: bottlenecks.BottleneckCache
) -> tuple[list[folders.Photo], dict[str, str], list[tuple[str, str]]]:
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
    good, undecodable = folders.validate_files(readable, known_good=known, workers=bottlenecks.default_workers())
    return good, shas, bad + undecodable


def features_of(
    engine: Any, samples: list[splits.Sample], shas: dict[str, str], cache: bottlenecks.BottleneckCache
) -> tuple[list[splits.Sample], np.ndarray, list[tuple[str, str]]]:
    """Bottlenecks of the samples (cache first): (the samples that have one, their
    features, [(path, why)] of those that failed here)."""
    paths = [s.path for s in samples]
    feats: list[np.ndarray | None] = [None] * len(samples)
    failed = []
    for i, vec, err in bottlenecks.extract(
        engine, paths, [shas[p] for p in paths], cache, workers=bottlenecks.default_workers()
    ):
        if vec is None:
            failed.append((paths[i], str(err)))
        else:
            feats[i] = vec
    kept = [i for i, f in enumerate(feats) if f is not None]
    x = np.stack([f for f in feats if f is not None]).astype(np.float32) if kept else np.zeros((0, 0), np.float32)
    return [samples[i] for i in kept], x, failed


def distorted_features(
    engine: Any, fit_samples: list[splits.Sample], d: Distortions, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of distorted copies of each photo the head is fitted on: (x, y, index of
    the source photo in fit_samples) - cross-validation keeps a copy in its photo's fold."""
    from imgtool.data import distortions, images

    n = len(fit_samples) * d.copies
    ui.info(
        f"Distortions on: {n} extra backbone passes ({d.copies} per training image), not cached "
        f"- this run costs about {d.copies + 1}x the extraction time of a plain run"
    )
    rng = np.random.default_rng(seed)
    xs, ys, src = [], [], []
    bar = ui.progress(n, "distortions", unit="img")
    for i, s in enumerate(fit_samples):
        try:
            batch = np.stack(
                [
                    images.decode_distorted(s.path, engine.input_size, distortions.sample_plan(d, rng))
                    for _ in range(d.copies)
                ]
            )
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
