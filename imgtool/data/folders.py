"""Labelled image folders: one sub-folder per class, or the splits given as folders;
the photos found, before `splits.py` draws each one's split by a stable hash.

Given splits: a root whose sub-folders are `train/` and `val/`, `valid/` (Roboflow's
name) or `validation/` (and optionally `test/`), each holding the same class folders, is
used as it is (no hashing); so are `--validation-dir` / `--test-dir` folders. Folders
named like splits are never silently classes: beside real class folders they are used as
classes with a warning; alone (say `train/` only) they are an error."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from imgtool.core import ui
from imgtool.core.errors import DatasetError, ImageError, Param, UsageError
from imgtool.data import images


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
