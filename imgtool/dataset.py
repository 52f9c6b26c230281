"""Labelled image folders: one sub-folder per class; splits by a stable hash.

The split of an image depends only on its path relative to the dataset folder, so
moving or renaming the folder changes nothing and adding images moves no old ones."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from imgtool import images
from imgtool.errors import DatasetError, ImageError, UsageError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Sample:
    path: str  # as found on disk
    rel: str  # relative to the dataset folder, '/'-separated: the split key
    label: int
    split: str = "train"


def split_counts(classes: list[str], samples: list[Sample]) -> dict[str, dict[str, int]]:
    """{class: {"train": n, "validation": n, "test": n}}"""
    out = {c: {s: 0 for s in SPLITS} for c in classes}
    for s in samples:
        out[classes[s.label]][s.split] += 1
    return out


def _hash_percent(rel: str) -> float:
    h = int(hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest(), 16)
    return (h % 1_000_000) / 10_000.0


def scan(root: str | Path) -> tuple[list[str], list[tuple[str, str, int]]]:
    """(classes, [(path, rel, label)]) — classes are the sorted non-hidden sub-folders."""
    root = Path(root)
    if not root.exists():
        raise UsageError(f"{root}: no such folder; give a folder with one sub-folder per class")
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder; give a folder with one sub-folder per class")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = []
    for label, name in enumerate(classes):
        for path in images.walk_images(str(root / name)):
            rel = Path(os.path.relpath(path, root)).as_posix()
            files.append((path, rel, label))
    return classes, files


def assign_splits(files: list[tuple[str, str, int]], n_classes: int, validation_percent: float,
                  test_percent: float) -> list[Sample]:
    """Hash each relative path to a percentage: [0, val) validation, [val, val+test) test,
    the rest train. A class of 3 or more images always gets one validation and one test
    image (taken from train by a second stable hash) when those splits are asked for."""
    samples = []
    for path, rel, label in files:
        p = _hash_percent(rel)
        split = "validation" if p < validation_percent else "test" if p < validation_percent + test_percent else "train"
        samples.append(Sample(path, rel, label, split))
    for label in range(n_classes):
        for want, percent in (("validation", validation_percent), ("test", test_percent)):
            mine = [s for s in samples if s.label == label]
            if percent <= 0 or len(mine) < 3 or any(s.split == want for s in mine):
                continue
            train = [s for s in mine if s.split == "train"]
            if len(train) < 2:
                continue
            pick = min(train, key=lambda s: hashlib.sha1(("move:" + s.rel).encode("utf-8", "surrogateescape")).hexdigest())
            i = samples.index(pick)
            samples[i] = Sample(pick.path, pick.rel, pick.label, want)
    return samples


def check_sizes(classes: list[str], samples: list[Sample], validation_percent: float, test_percent: float) -> None:
    if len(classes) < 2:
        found = f"found {len(classes)}" + (f" ({classes[0]})" if classes else "")
        raise DatasetError(f"need at least 2 classes (sub-folders with images), {found}")
    need = 1 + (validation_percent > 0) + (test_percent > 0)
    counts = {c: 0 for c in classes}
    for s in samples:
        counts[classes[s.label]] += 1
    small = [(c, n) for c, n in counts.items() if n < need]
    if small:
        listing = ", ".join(f"{c!r} has {n}" for c, n in small)
        raise DatasetError(f"class {listing} usable image{'s' if small[0][1] != 1 else ''}; each class needs at least "
                           f"{need} (one each for train" + (", validation" if validation_percent > 0 else "")
                           + (", test" if test_percent > 0 else "") + "); add photos or remove the folder")


def validate_files(files: list[tuple[str, str, int]], known_good: set[str] | None = None,
                   workers: int = 2) -> tuple[list[tuple[str, str, int]], list[tuple[str, str]]]:
    """Decode every file cheaply (JPEG draft mode, tiny size) to find the bad ones before
    any model work. Paths in `known_good` (e.g. with a cached bottleneck) are not decoded."""
    from concurrent.futures import ThreadPoolExecutor

    known_good = known_good or set()

    def check(item: tuple[str, str, int]) -> str | None:
        if item[0] in known_good:
            return None
        try:
            images.decode(item[0], (16, 16))
            return None
        except ImageError as err:
            return str(err)

    if all(f[0] in known_good for f in files):
        verdicts: list[str | None] = [None] * len(files)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            verdicts = list(pool.map(check, files))
    good = [f for f, v in zip(files, verdicts) if v is None]
    bad = [(f[0], v) for f, v in zip(files, verdicts) if v is not None]
    return good, bad
