"""Labelled image folders: one sub-folder per class; splits by a stable hash.

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

Given splits: a root whose sub-folders are `train/` and `val/`, `valid/` (Roboflow's
name) or `validation/` (and optionally `test/`), each holding the same class folders, is
used as it is (no hashing); so are `--validation-dir` / `--test-dir` folders. Folders
named like splits are never silently classes: beside real class folders they are used as
classes with a warning; alone (say `train/` only) they are an error."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgtool.core import ui
from imgtool.core.errors import DatasetError, ImageError, Param, UsageError
from imgtool.core.options import DEFAULT_PERCENT
from imgtool.core.records import Record
from imgtool.data import images

SPLITS = ("train", "validation", "test")
SHOWN_CLASSES = 3  # a message naming classes names this many, then says how many more


@dataclass(frozen=True)
class Photo:
    """A photo found in a labelled folder, before its split is drawn."""

    path: str  # as found on disk
    rel: str  # relative to the dataset folder, '/'-separated: the split key
    label: int
    given: str | None = None  # its split, when the layout gives it (train/ val/ test/, --test-dir)


@dataclass(frozen=True)
class Layout:
    """What `find_layout` found: the classes, their photos, and how the splits are made."""

    classes: list[str]
    photos: list[Photo]
    description: str  # recorded in metrics.json as "layout"

    def percentages(self, validation_percent: float, test_percent: float) -> tuple[float, float]:
        """The percentages to draw by hash: 0 for a split the layout gives."""
        given = {p.given for p in self.photos if p.given is not None}
        return (0.0 if "validation" in given else validation_percent, 0.0 if "test" in given else test_percent)


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


def scan(root: str | Path) -> tuple[list[str], list[Photo]]:
    """(classes, photos) — classes are the sorted non-hidden sub-folders."""
    root = Path(root)
    if not root.exists():
        raise UsageError(f"{root}: no such folder; give a folder with one sub-folder per class")
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder; give a folder with one sub-folder per class")
    classes = _classes_in(root)
    files = []
    for label, name in enumerate(classes):
        for path in images.walk_images(str(root / name)):
            rel = Path(os.path.relpath(path, root)).as_posix()
            files.append(Photo(path, rel, label))
    return classes, files


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


SPLIT_DIRS = {"train": "train", "val": "validation", "valid": "validation", "validation": "validation", "test": "test"}


def _classes_in(folder: Path) -> list[str]:
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    check_class_names(folder, classes)
    return classes


def check_class_names(folder: Path, classes: list[str]) -> None:
    """Before any work: every class folder's name must survive labels.txt as it is (UTF-8,
    one line, no control character, no space at either end: otherwise the model would
    have more, fewer or other labels than outputs), else DatasetError naming it. A class
    folder that is a link to the dataset folder (or above it), or to another class, is
    warned about: its photos would be counted twice, under two labels."""
    from imgtool.core import ui
    from imgtool.core.output import display_path
    from imgtool.data import labels as labels_mod

    for name in classes:
        shown = display_path(name)
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise DatasetError(
                f"class folder {folder / shown}: its name is not UTF-8 (a class name becomes a "
                "label); rename the folder"
            ) from None
        if labels_mod.parse_lines(name + "\n") != [name] or shown != name:
            raise DatasetError(
                f"class folder {folder / shown}: its name holds a line break, a control character "
                "or a space at an end, and would not be the same label in labels.txt; rename the "
                "folder"
            )
    top = folder.resolve()
    real = {name: (folder / name).resolve() for name in classes}
    for name, target in real.items():
        path = folder / name
        if not path.is_symlink():
            continue
        if target == top or target in top.parents:
            ui.warn(
                f"class folder {path} is a link to {target}, which holds the dataset itself: its class would "
                "hold every photo; remove the link"
            )
            continue
        for other, theirs in real.items():
            if other != name and (target == theirs or theirs in target.parents or target in theirs.parents):
                ui.warn(
                    f"class folder {folder / name} is a link into class {other!r} ({target}): the same photos "
                    "would be in two classes; remove the link"
                )
                break


def _files_in(folder: Path, classes: list[str], label_of: dict[str, int], root: Path, split: str | None) -> list[Photo]:
    out = []
    for name in classes:
        for path in images.walk_images(str(folder / name)):
            rel = Path(os.path.relpath(path, root)).as_posix()
            out.append(Photo(path, rel, label_of[name], split))
    return out


def _mismatch(a_name: str, a: list[str], b_name: str, b: list[str]) -> str:
    parts = []
    if set(b) - set(a):
        parts.append(f"{b_name} has {', '.join(sorted(set(b) - set(a)))} that {a_name} has not")
    if set(a) - set(b):
        parts.append(f"{b_name} lacks {', '.join(sorted(set(a) - set(b)))}")
    return "; ".join(parts)


def _split_named_classes(root: Path, subdirs: list[str], split_dirs: list[str]) -> None:
    """Folders named like splits that are not a given split (no train/ with a held-out
    folder): alone, an error; beside real classes, a warning (they are used as classes)."""
    if not split_dirs:
        return
    named = ", ".join(d + "/" for d in split_dirs)
    if len(split_dirs) == len(subdirs):
        raise UsageError(
            f"{root} holds only {named}, named like a split, not like classes; a given split is train/ "
            "with val/, valid/ or validation/ (and test/ if you like), each holding the same class "
            "folders; otherwise give the folder that holds the class folders"
        )
    one = len(split_dirs) == 1
    ui.warn(
        f"{root}: {named} {'is' if one else 'are'} named like a split but used as {'a class' if one else 'classes'}"
        f" beside {len(subdirs) - len(split_dirs)} other{'' if len(subdirs) - len(split_dirs) == 1 else 's'}; "
        "if held-out photos are in there, give them as "
        + Param("validation_dir")
        + " or "
        + Param("test_dir")
        + " instead"
    )


def find_layout(
    root: str | Path, validation_dir: str | Path | None = None, test_dir: str | Path | None = None
) -> Layout:
    """The classes, their photos (each with its given split, if any) and a description. Either `root`
    holds the class folders (splits by hash), or it holds train/ + val|validation/ (+ test/)
    with the same class folders (splits as given). `validation_dir` / `test_dir` add given
    held-out folders (their classes must be among the training classes)."""
    root = Path(root)
    _check_folders(root, validation_dir, test_dir)
    subdirs = _classes_in(root)
    split_dirs = [d for d in subdirs if d in SPLIT_DIRS]
    if "train" in split_dirs and len(split_dirs) > 1:
        classes, files, description = _given_split(root, subdirs, split_dirs)
        given = {SPLIT_DIRS[d] for d in split_dirs}
    else:
        _split_named_classes(root, subdirs, split_dirs)
        classes = subdirs
        files = _files_in(root, classes, {c: i for i, c in enumerate(classes)}, root, None)
        description = "one folder per class; validation/test photos by hash"
        given = set()
    extra_files, extra_description = _held_out_folders(root, classes, given, validation_dir, test_dir)
    return Layout(classes, files + extra_files, description + extra_description)


def _check_folders(root: Path, validation_dir: str | Path | None, test_dir: str | Path | None) -> None:
    for what, folder in (
        ("", root),
        (Param("validation_dir") + " ", validation_dir),
        (Param("test_dir") + " ", test_dir),
    ):
        if folder is None:
            continue
        if not Path(folder).exists():
            raise UsageError(
                what + f"{folder}: no such folder; give a folder with one sub-folder per class", path=folder
            )
        if not Path(folder).is_dir():
            raise UsageError(what + f"{folder}: not a folder; give a folder with one sub-folder per class", path=folder)


def _given_split(root: Path, subdirs: list[str], split_dirs: list[str]) -> tuple[list[str], list[Photo], str]:
    """train/ + val|validation/ (+ test/), each with the same class folders."""
    others = [d for d in subdirs if d not in SPLIT_DIRS]
    if others:
        raise UsageError(
            f"{root} holds {', '.join(split_dirs)} (a given split) beside other folders "
            f"({', '.join(others)}); move those into the splits' class folders or remove them"
        )
    named_validation = [d for d in split_dirs if SPLIT_DIRS[d] == "validation"]
    if len(named_validation) > 1:
        raise UsageError(f"{root} holds both {' and '.join(d + '/' for d in named_validation)}; keep one")
    classes = _classes_in(root / "train")
    label_of = {c: i for i, c in enumerate(classes)}
    for d in split_dirs:
        mine = _classes_in(root / d)
        if d != "train" and mine != classes:
            raise DatasetError(
                f"{root}: the class folders of {d}/ differ from train/'s: "
                f"{_mismatch('train/', classes, d + '/', mine)}; every split needs the same classes"
            )
    files: list[Photo] = []
    for d in split_dirs:
        files += _files_in(root / d, classes, label_of, root, SPLIT_DIRS[d])
    return classes, files, f"given split: {', '.join(d + '/' for d in split_dirs)}"


def _held_out_folders(
    root: Path, classes: list[str], given: set[str], validation_dir: str | Path | None, test_dir: str | Path | None
) -> tuple[list[Photo], str]:
    """The photos of `validation_dir` / `test_dir`, and what the layout description adds for them."""
    label_of = {c: i for i, c in enumerate(classes)}
    files: list[Photo] = []
    description = ""
    # errors name the parameter (the CLI says it as its option); the layout description, recorded in
    # metrics.json, keeps the option's name it always had
    for flag, split, folder, shown in (
        (Param("validation_dir"), "validation", validation_dir, "--validation-dir"),
        (Param("test_dir"), "test", test_dir, "--test-dir"),
    ):
        if folder is None:
            continue
        if split in given:
            raise UsageError(
                flag + f" {folder}: {root} already holds a {split} folder; give one or the other", path=folder
            )
        folder = Path(folder)
        theirs = _classes_in(folder)
        extra = sorted(set(theirs) - set(classes))
        if extra:
            raise DatasetError(
                flag + f" {folder} has class folders that the training photos have not: "
                f"{', '.join(extra)}; rename or remove them",
                path=folder,
            )
        files += _files_in(folder, theirs, label_of, folder.parent, split)
        description += f"; {split} photos from {shown}"
    return files, description


def validate_files(
    files: list[Photo], known_good: set[str] | None = None, workers: int = 2
) -> tuple[list[Photo], list[tuple[str, str]]]:
    """Decode every file cheaply (JPEG draft mode, tiny size) to find the bad ones before
    any model work. Paths in `known_good` (e.g. with a cached bottleneck) are not decoded."""
    from concurrent.futures import ThreadPoolExecutor

    known_good = known_good or set()

    def check(item: Photo) -> str | None:
        if item.path in known_good:
            return None
        try:
            images.decode(item.path, (16, 16))
            return None
        except ImageError as err:
            return str(err)

    if all(f.path in known_good for f in files):
        verdicts: list[str | None] = [None] * len(files)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            verdicts = list(pool.map(check, files))
    good = [f for f, v in zip(files, verdicts) if v is None]
    bad = [(f.path, v) for f, v in zip(files, verdicts) if v is not None]
    return good, bad
