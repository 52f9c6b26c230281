"""`imgtool audit`: what is wrong with a labelled folder, before or without training; the
numbers and records are findings.py's (its docstring says how each is decided)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgtool.data.splits import Sample
from imgtool.numbers.findings import (
    NEAR_DUPLICATE,
    AuditResult,
    Outlier,
    Problem,
    groups_of,
    outlier_order,
    robust_z,
    suspects_of,
)


def run(
    folder: Path,
    model: str | None = None,
    *,
    validation_dir: Path | None = None,
    test_dir: Path | None = None,
    validation_percent: float = 10.0,
    test_percent: float = 10.0,
    seed: int = 0,
    bottleneck_dir: Path | None = None,
    input_size: tuple[int, int] | None = None,
    value_range: tuple[float, float] | None = None,
) -> AuditResult:
    """The audit of `folder` (see the module docstring); `imgtool.audit` is this."""
    from imgtool.data import folders, splits
    from imgtool.training.featurize import feature_backbone, features_of, readable_files

    found = folders.find_layout(folder, validation_dir, test_dir)
    classes, files, layout = found.classes, found.photos, found.description
    v, t = found.percentages(validation_percent, test_percent)
    backbone, engine, _, cache = feature_backbone(model, input_size, value_range, bottleneck_dir)
    good, shas, bad = readable_files(files, cache)
    samples = splits.assign_splits(good, len(classes), v, t, content=shas)
    samples, x, failed = features_of(engine, samples, shas, cache)
    bad += failed
    result = AuditResult()
    result.problems += [Problem("unreadable", f"{p}: {why}", path=p) for p, why in bad]
    counts = splits.split_counts(classes, samples)
    total = {c: sum(n.values()) for c, n in counts.items()}
    result.problems += _size_problems(folder, classes, counts, samples)
    cv_accuracy = _suspects_by_cross_validation(
        result, samples, classes, x, shas, seed, usable=[c for c in classes if total[c] >= 2]
    )
    sha_list = [shas[s.path] for s in samples]
    result.duplicates = groups_of(samples, classes, x, sha_list)
    result.outliers = _outliers(samples, classes, x)
    result.summary = {
        "folder": str(folder),
        "layout": layout,
        "backbone": backbone.ref,
        "classes": classes,
        "photos": len(samples),
        "counts": {c: total[c] for c in classes},
        "cv_accuracy": cv_accuracy,
        "suspects": len(result.suspects),
        "duplicate_groups": len(result.duplicates),
        "label_conflicts": sum(g.label_conflict for g in result.duplicates),
        "leakage_groups": sum(g.leakage for g in result.duplicates),
        "outliers": len(result.outliers),
        "problems": len(result.problems),
        "near_duplicate_threshold": NEAR_DUPLICATE,
        "options": {"seed": seed, "validation_percent": v, "test_percent": t},
    }
    return result


def _outliers(samples: list[Sample], classes: list[str], x: np.ndarray) -> list[Outlier]:
    """The photos least like their class, most unlike first (robust z of the similarity)."""
    out_idx, sim = outlier_order(x)
    zs = robust_z(sim) if len(x) >= 3 else np.zeros(len(x))
    return [
        Outlier(
            samples[i].path, samples[i].rel, classes[samples[i].label], round(float(sim[i]), 4), round(float(zs[i]), 2)
        )
        for i in out_idx
    ]


def _size_problems(
    folder: Path, classes: list[str], counts: dict[str, dict[str, int]], samples: list[Sample]
) -> list[Problem]:
    """Classes too small to train on, too few classes, and a large imbalance."""
    from imgtool.data import splits

    out = []
    for c in classes:
        fit = counts[c]["train"] + counts[c]["validation"]
        if fit < 2:
            out.append(
                Problem(
                    "tiny_class",
                    f"class {c!r} has {fit} photo{'' if fit == 1 else 's'} "
                    "outside the test split; retrain needs at least 2",
                    label=c,
                )
            )
    if len(classes) < 2:
        out.append(
            Problem("too_few_classes", f"{folder} has {len(classes)} class folder(s); a classifier needs at least 2")
        )
    if samples and len(classes) >= 2:
        warning = splits.imbalance(classes, samples)
        if warning:
            out.append(Problem("imbalance", warning))
    return out


def _suspects_by_cross_validation(
    result: AuditResult,
    samples: list[Sample],
    classes: list[str],
    x: np.ndarray,
    shas: dict[str, str],
    seed: int,
    usable: list[str],
) -> float | None:
    """Cross-validate the photos of the `usable` classes (2 photos or more): sets
    `result.suspects` from the out-of-fold predictions; the CV accuracy (None: too few)."""
    from imgtool.core import ui
    from imgtool.training.fitting import TrainConfig
    from imgtool.training.l2_search import cv_fold_count, select_and_fit

    if len(usable) < 2:
        return None
    keep = [i for i, s in enumerate(samples) if classes[s.label] in usable]
    local = {classes.index(c): j for j, c in enumerate(usable)}
    y = np.array([local[samples[i].label] for i in keep])
    if cv_fold_count(y) < 2:
        return None
    ui.info(f"Cross-validating {len(keep)} photos of {len(usable)} classes")
    _, sel = select_and_fit(
        x[keep], y, len(usable), TrainConfig(seed=seed), groups=[shas[samples[i].path] for i in keep]
    )
    assert sel.oof_probs is not None
    result.suspects = suspects_of([samples[i] for i in keep], usable, sel.oof_probs, y)
    return sel.cv_accuracy


def format_text(result: AuditResult, limit: int = 20) -> str:
    """The audit for people: each finding on its own line, the longest lists cut at `limit`."""
    from imgtool.core.output import display_path

    s = result.summary
    lines = [
        f"{s.get('photos', 0)} photos in {len(s.get('classes') or [])} classes"
        + (f"; cross-validated accuracy {s['cv_accuracy']:.1%}" if s.get("cv_accuracy") is not None else "")
    ]
    lines.append(
        f"suspects: {len(result.suspects)} photos whose label the out-of-fold prediction rejects"
        + (f" (the {limit} most suspicious shown)" if len(result.suspects) > limit else "")
    )
    for x in result.suspects[:limit]:
        lines.append(
            f"  {display_path(x.rel)}: labelled {x.label} ({x.score:.2f}), looks like {x.suggested} "
            f"({x.suggested_score:.2f})"
        )
    lines.append(f"duplicates: {len(result.duplicates)} groups")
    for g in result.duplicates:
        flags = [w for w, on in (("label conflict", g.label_conflict), ("leakage", g.leakage)) if on]
        lines.append(
            f"  {g.kind} ({g.similarity:.2f})"
            + (f" [{', '.join(flags)}]" if flags else "")
            + ": "
            + ", ".join(f"{display_path(m.rel)} ({m.split})" for m in g.members)
        )
    lines.append(f"outliers: {len(result.outliers)}")
    for o in result.outliers:
        lines.append(f"  {display_path(o.rel)}: mean similarity to its nearest photos {o.score:.3f} (z {o.z:.1f})")
    lines.append(f"problems: {len(result.problems)}")
    for p in result.problems:
        lines.append(f"  {p.kind}: {display_path(p.message)}")
    return "\n".join(lines)
