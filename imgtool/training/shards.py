"""Feature shards: the Parquet files `imgtool beam features` writes, read back for
`imgtool retrain --features 'PREFIX-*.parquet'` (training without the photos).

One row per photo: path (relative to the dataset root, '/'-separated: the split key),
class (first folder), sha256 (of the content: the bottleneck cache key), features
(float32 list, null when the photo failed), backbone (imgtool.runtime.bottlenecks.backbone_id),
source (where the photo was read) and error (null unless it failed).

Rows are put back in the order a folder run lists the same photos (classes sorted, each
class walked as imgtool.data.images.walk_images does), so a features run and a folder run of
the same data, backbone and seed train on identical arrays and give the same head.
Reading needs pyarrow (the `parquet` extra; `make install` has it)."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np

from imgtool.core.errors import DatasetError, Param, UsageError, first_line
from imgtool.data import folders, splits

FEATURES = Param("features")  # what every message here is about
PARQUET_HINT = "pip install 'imgtool-ml[parquet]' (pyarrow; `make install` includes it)"
COLUMNS = ("path", "class", "sha256", "features", "backbone", "source", "error")


@dataclass
class FeatureShards:
    classes: list[str]  # sorted
    files: list[folders.Photo]  # the usable photos (path: their source), in folder-walk order
    shas: list[str]  # content sha256 per file
    matrix: np.ndarray  # float32 [len(files), features]
    backbone: str  # the backbone identity every row carries
    failed: list[tuple[str, str]]  # (source, error) of the photos that failed in the pipeline
    shards: list[str]


def walk_order(rel: str) -> tuple[tuple[int, str], ...]:
    """Sort key giving os.walk's top-down order with sorted names: in each folder its
    files first, then its sub-folders (imgtool.data.images.walk_images)."""
    parts = rel.split("/")
    return (*((1, p) for p in parts[:-1]), (0, parts[-1]))


def shard_paths(pattern: str) -> list[str]:
    if "://" in pattern:
        raise UsageError(
            FEATURES + f" {pattern}: only local shards can be read here; copy them first "
            "(e.g. gsutil -m cp 'gs://.../PREFIX-*.parquet' shards/)"
        )
    paths = sorted(glob.glob(os.path.expanduser(pattern))) if any(c in pattern for c in "*?[") else [pattern]
    paths = [p for p in paths if os.path.isfile(p)]
    if not paths:
        raise UsageError(
            FEATURES + f" {pattern}: no such shard files; give the shards of `imgtool beam features`, "
            "e.g. 'out/flowers-*.parquet' (quoted)"
        )
    return paths


def dataset_root(pattern: str) -> str:
    """The folder `imgtool beam features` read (a row's source minus its relative path),
    from the first row of the first shard: the retrained model's recorded source."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(FEATURES + f" reads Parquet with pyarrow, which is not installed; {PARQUET_HINT}") from None
    first = shard_paths(pattern)[0]
    try:
        rows = pq.ParquetFile(first).read_row_group(0, columns=["path", "source"]).slice(0, 1).to_pylist()
    except Exception as err:  # noqa: BLE001 - ArrowInvalid, OSError, KeyError: not one of our shards
        raise UsageError(
            FEATURES + f": {first} is not an `imgtool beam features` shard ({first_line(err)})", path=first
        ) from None
    if not rows or not rows[0]["source"] or not rows[0]["source"].endswith(rows[0]["path"]):
        raise UsageError(FEATURES + f": {first} holds no photo rows")
    return rows[0]["source"][: -len(rows[0]["path"])].rstrip("/") or "/"


def read_shards(pattern: str) -> FeatureShards:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(FEATURES + f" reads Parquet with pyarrow, which is not installed; {PARQUET_HINT}") from None

    paths = shard_paths(pattern)
    rows: dict[str, dict] = {}
    for p in paths:
        try:
            table = pq.read_table(p)
        except Exception as err:  # noqa: BLE001 - ArrowInvalid, OSError: a damaged or foreign file
            raise UsageError(FEATURES + f": {p} is not a readable Parquet file ({first_line(err)})", path=p) from None
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise UsageError(FEATURES + f": {p} is not an `imgtool beam features` shard (no column {missing[0]!r})")
        for row in table.select(list(COLUMNS)).to_pylist():
            if row["path"] in rows:
                raise DatasetError(
                    FEATURES + f": {row['path']} appears twice (in {p} too); "
                    "give the shards of one `imgtool beam features` run"
                )
            rows[row["path"]] = row
    if not rows:
        raise DatasetError(FEATURES + f" {pattern}: the shards hold no photos")
    backbones = sorted({r["backbone"] for r in rows.values()})
    if len(backbones) != 1:
        raise DatasetError(
            FEATURES + f": the shards mix {len(backbones)} backbones ({', '.join(backbones)}); "
            "give the shards of one run"
        )
    classes = sorted({r["class"] for r in rows.values()})
    label = {c: i for i, c in enumerate(classes)}
    ordered = sorted(rows.values(), key=lambda r: walk_order(r["path"]))
    good = [r for r in ordered if r["error"] is None and r["features"] is not None]
    failed = [
        (r["source"] or r["path"], r["error"] or "no features")
        for r in ordered
        if r["error"] is not None or r["features"] is None
    ]
    widths = {len(r["features"]) for r in good}
    if len(widths) > 1:
        raise DatasetError(FEATURES + f": feature vectors of different widths ({sorted(widths)}) in one run")
    matrix = np.array([r["features"] for r in good], dtype=np.float32) if good else np.zeros((0, 0), dtype=np.float32)
    return FeatureShards(
        classes,
        [folders.Photo(r["source"] or r["path"], r["path"], label[r["class"]]) for r in good],
        [r["sha256"] for r in good],
        matrix,
        backbones[0],
        failed,
        paths,
    )


def training_set(
    pattern: str, backbone_ident: str, validation_percent: float, test_percent: float
) -> tuple[list[str], list[splits.Sample], np.ndarray, dict[str, str], list[tuple[str, str]]]:
    """(classes, samples, features [len(samples), F], {path: content sha256}, failed) for
    retrain: the same split rule and size checks as a folder run; the shards must come
    from the same backbone."""
    shards = read_shards(pattern)
    if shards.backbone != backbone_ident:
        raise UsageError(
            FEATURES
            + f": the shards were made with another backbone ({shards.backbone}) than "
            + Param("model")
            + f" gives ({backbone_ident}); pass the "
            + Param("model")
            + " used for `imgtool beam features`",
            path=pattern,
        )
    shas = {f.path: sha for f, sha in zip(shards.files, shards.shas)}
    samples = splits.assign_splits(shards.files, len(shards.classes), validation_percent, test_percent, content=shas)
    splits.check_sizes(shards.classes, samples)
    return shards.classes, samples, shards.matrix, shas, shards.failed
