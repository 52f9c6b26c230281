"""The stable hash split of a labelled folder's photos, and the checks of what it gives.

The split rule (`split_of`): a photo's key is its class name + "/" + its path inside the
class folder; u = the first 64 bits of sha256(key) / 2**64, uniform in [0, 1). The photo
is validation if u < v, test if v <= u < v + t, else train (v, t the percentages / 100).
So a photo's split depends on nothing but its own key and the two percentages: adding,
removing or changing other photos, or moving/renaming the dataset folder, never changes
it. Each photo lands in validation/test independently with probability v/t, so a class
of n photos has Binomial(n, v) validation photos - a small class can have none (the
held-out sets then simply lack it; the head is chosen by cross-validation, which needs
only 2 photos of each class outside the test split).

Copies: photos with byte-identical content (the same sha256 of their bytes) always land
in the same split, so a copy under another name can never be tested on while its twin is
trained on. The copies take the split of the copy whose key sorts first (or, when one of
them has a given split, the given split that sorts first by key). A photo without a copy
keeps exactly the split of its own key; adding a copy of a photo can move only the
copies, and the photo itself only when the new copy's key sorts before its own.

Given splits (train/ val/ test/ folders, --validation-dir, --test-dir: see folders.py)
are kept as given."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from imgtool.core.errors import DatasetError
from imgtool.core.options import DEFAULT_PERCENT
from imgtool.core.records import Record
from imgtool.data import images
from imgtool.data.folders import Photo

SPLITS = ("train", "validation", "test")
SHOWN_CLASSES = 3  # a message naming classes names this many, then says how many more


@dataclass
class StoredSplit(Record):
    """How a retrain split its photos, as metrics.json's "options" records it (the other
    options are kept in `extra`): read back to find the same test photos again."""

    validation_percent: float = DEFAULT_PERCENT
    test_percent: float = DEFAULT_PERCENT
    validation_dir: str | None = None
    test_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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


def split_key(class_name: str, path_in_class: str) -> str:
    return f"{class_name}/{path_in_class}"


def split_unit(key: str) -> float:
    """The key's place in [0, 1): the first 64 bits of its sha256, / 2**64."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(key: str, validation_percent: float, test_percent: float) -> str:
    u = split_unit(key)
    v = validation_percent / 100.0
    if u < v:
        return "validation"
    if u < v + test_percent / 100.0:
        return "test"
    return "train"


def assign_splits(
    files: list[Photo],
    n_classes: int,
    validation_percent: float,
    test_percent: float,
    content: dict[str, str] | None = None,
) -> list[Sample]:
    """Samples with their split: a given split (`Photo.given`) as given, else
    `split_of(rel)` - for a photo found in a class folder, rel (its path relative to the
    dataset folder) is exactly the split key, class name + "/" + path inside the class.
    `content` ({path: sha256 of its bytes}): byte-identical copies share one split (the
    rule is in the module docstring)."""

    def own(f: Photo) -> str:
        return f.given if f.given is not None else split_of(f.rel, validation_percent, test_percent)

    group_split: dict[str, str] = {}
    if content:
        groups: dict[str, list[Photo]] = {}
        for f in files:
            if f.path in content:
                groups.setdefault(content[f.path], []).append(f)
        for sha, members in groups.items():
            if len(members) > 1:
                fixed = sorted((f for f in members if f.given is not None), key=lambda f: f.rel)
                group_split[sha] = own(fixed[0] if fixed else min(members, key=lambda f: f.rel))
    samples = []
    for f in files:
        mine = content.get(f.path) if content else None
        split = group_split[mine] if mine in group_split and f.given is None else own(f)
        samples.append(Sample(f.path, f.rel, f.label, split))
    return samples


def content_hashes(files: list[Photo]) -> dict[str, str]:
    """{path: sha256 of its bytes} of the photos that can be read: the
    content `assign_splits` groups copies by (a file that cannot be read is left out)."""
    from imgtool.core.store import sha256_file

    out = {}
    for f in files:
        if images.not_a_regular_file(f.path) is not None:  # never open a FIFO
            continue
        try:
            out[f.path] = sha256_file(f.path)
        except OSError:
            continue
    return out


def check_sizes(classes: list[str], samples: list[Sample]) -> None:
    """At least 2 classes, and 2 photos of each outside the test split (cross-validation
    needs 2 of each class)."""
    if len(classes) < 2:
        found = f"found {len(classes)}" + (f" ({classes[0]})" if classes else "")
        raise DatasetError(f"need at least 2 classes (sub-folders with images), {found}")
    counts = split_counts(classes, samples)
    small = [(c, n) for c, n in counts.items() if n["train"] + n["validation"] < 2]
    if small:

        def one(c: str, n: dict[str, int]) -> str:
            fit = n["train"] + n["validation"]
            extra = f" (and {n['test']} in the test split)" if n["test"] else ""
            return f"class {c!r} has {fit} usable photo{'' if fit == 1 else 's'} for training{extra}"

        said = "; ".join(one(c, n) for c, n in small[:SHOWN_CLASSES])
        if len(small) > SHOWN_CLASSES:  # one line, however many classes (1,000 of them made 14 KB)
            said = (
                f"{len(small)} of the {len(classes)} classes have fewer than 2 usable photos for training, "
                f"e.g. {said}; and {len(small) - SHOWN_CLASSES} more"
            )
        raise DatasetError(
            said + "; each class needs at least 2 outside the test split (cross-validation needs "
            "2 of each); add photos or remove the folder"
        )


def imbalance(classes: list[str], samples: list[Sample], ratio: float = 5.0) -> str | None:
    """A warning when the largest class has `ratio` times the photos of the smallest
    (counting the photos the head is fitted on: train + validation)."""
    counts = split_counts(classes, samples)
    fit = {c: n["train"] + n["validation"] for c, n in counts.items()}
    big = max(fit, key=lambda c: fit[c])
    small = min(fit, key=lambda c: fit[c])
    if fit[small] and fit[big] >= ratio * fit[small]:
        return (
            f"classes are imbalanced: {big!r} has {fit[big]} photos, {small!r} {fit[small]} "
            f"({fit[big] / fit[small]:.1f}x); accuracy then flatters the big classes - look at per-class "
            "recall and the majority baseline"
        )
    return None
