"""The split rule (dataset.py): exact, stable under additions and moves, stratified."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from imgtool.core.errors import DatasetError, UsageError
from imgtool.data import folders, splits

P = folders.Photo


def _touch(root: Path, rel: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"\xff\xd8 not decoded here")


def _splits(root: Path, v: float = 10, t: float = 10) -> dict[str, str]:
    found = folders.find_layout(root)
    classes, files, _ = found.classes, found.photos, found.description
    return {s.rel: s.split for s in splits.assign_splits(files, len(classes), v, t)}


def test_split_unit_and_boundaries_exactly() -> None:
    assert splits.split_unit("daisy/a.jpg") == 0.3096660317074858
    assert splits.split_unit("roses/sub/b.png") == 0.881990256562099
    digest = hashlib.sha256(b"daisy/a.jpg").digest()
    assert splits.split_unit("daisy/a.jpg") == int.from_bytes(digest[:8], "big") / 2**64
    u = 30.96660317074858  # daisy/a.jpg, in percent
    assert splits.split_of("daisy/a.jpg", u + 1e-9, 0) == "validation"
    assert splits.split_of("daisy/a.jpg", u - 1e-9, 0) == "train"
    assert splits.split_of("daisy/a.jpg", u - 1e-9, 2e-9) == "test"
    assert splits.split_of("daisy/a.jpg", 10, u - 10 + 1e-9) == "test"
    assert splits.split_of("daisy/a.jpg", 10, u - 10 - 1e-9) == "train"
    assert splits.split_of("daisy/a.jpg", 0, 0) == "train"
    assert splits.split_key("daisy", "sub/a.jpg") == "daisy/sub/a.jpg"
    # a file name that is not valid UTF-8 (os.fsdecode gives lone surrogates) still has a place
    assert splits.split_unit("daisy/\udcff.jpg") == splits.split_unit("daisy/\udcff.jpg")
    assert (
        splits.split_unit("daisy/\udcff.jpg")
        == int.from_bytes(hashlib.sha256(b"daisy/\xff.jpg").digest()[:8], "big") / 2**64
    )


def test_a_photo_exactly_on_a_boundary_falls_above_it() -> None:
    """The percentages are inputs, so a boundary can land exactly on a photo's u: the rule is
    validation if u < v, test if u < v + t, and u == v is not below v. Planted change this
    catches: `u < v` made `u <= v` (or the same for the test boundary) - not an equivalent
    mutant, as docs/testing.md once said: `split_of(k, split_unit(k) * 100, 0)` tells them apart."""
    for key in ("daisy/a.jpg", "roses/sub/b.png", "daisy/d.jpg"):
        u = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64  # the rule, by hand
        pct = u * 100
        assert pct / 100 == u and 10 / 100 + (pct - 10) / 100 == u  # these boundaries are exactly u
        assert splits.split_of(key, pct, 0) == "train"  # u == v: not validation
        assert splits.split_of(key, 0, pct) == "train"  # u == v + t: not test
        assert splits.split_of(key, 10, pct - 10) == "train"
        assert splits.split_of(key, 10, pct - 10 + 1e-9) == "test"
        assert splits.split_of(key, pct + 1e-9, 0) == "validation"


def test_assign_splits_keeps_each_file_and_its_given_split() -> None:
    files = [
        P("/d/a/1.jpg", "a/1.jpg", 0),
        P("/d/b/2.jpg", "b/2.jpg", 1, None),
        P("/v/a/3.jpg", "v/a/3.jpg", 0, "test"),
    ]
    samples = splits.assign_splits(files, 2, 40, 40)
    assert [(s.path, s.rel, s.label) for s in samples] == [(f.path, f.rel, f.label) for f in files]
    assert [s.split for s in samples] == [
        splits.split_of("a/1.jpg", 40, 40),
        splits.split_of("b/2.jpg", 40, 40),
        "test",
    ]
    assert [s.split for s in splits.assign_splits(files, 2, 0, 0)] == ["train", "train", "test"]


def test_adding_photos_moves_no_old_photo_even_in_small_classes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for c in ("a", "b"):
        for i in range(3):
            _touch(root, f"{c}/{i}.jpg")
    before = _splits(root, 20, 20)
    for c in ("a", "b", "new"):
        for i in range(3, 60):
            _touch(root, f"{c}/{i}.jpg")
    after = _splits(root, 20, 20)
    assert all(after[k] == v for k, v in before.items())
    assert set(after.values()) == {"train", "validation", "test"}
    # and removing photos moves none either
    for i in range(3, 60):
        (root / "a" / f"{i}.jpg").unlink()
    again = _splits(root, 20, 20)
    assert all(again[k] == after[k] for k in again)


def test_moving_or_renaming_the_root_keeps_every_split(tmp_path: Path) -> None:
    root = tmp_path / "one" / "flowers"
    for c in ("daisy", "roses"):
        for i in range(40):
            _touch(root, f"{c}/sub{i % 3}/{i}.jpg")
    before = _splits(root)
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(str(root), moved)
    assert _splits(moved) == before
    # the key is the class + path inside the class folder: the same photo as part of a
    # train/ + val/ tree elsewhere would be keyed the same
    assert splits.split_key("daisy", "sub0/0.jpg") == "daisy/sub0/0.jpg"


def test_stratified_within_a_stated_bound_on_a_large_set() -> None:
    files = [
        P(f"/x/{c}/{i}.jpg", f"{c}/photo_{i:05d}.jpg", label)
        for label, c in enumerate(["cat", "dog", "a long class name"])
        for i in range(3000)
    ]
    samples = splits.assign_splits(files, 3, 10, 15)
    counts = splits.split_counts(["cat", "dog", "a long class name"], samples)
    for c, n in counts.items():
        # Binomial(3000, p): sd 0.55 points (10%) and 0.65 points (15%); bound: 2 points
        assert abs(n["validation"] / 3000 - 0.10) < 0.02, (c, n)
        assert abs(n["test"] / 3000 - 0.15) < 0.02, (c, n)


def test_check_sizes_messages() -> None:
    s = splits.Sample
    ok = [
        s("p", "a/1", 0, "train"),
        s("p", "a/2", 0, "validation"),
        s("p", "b/1", 1, "train"),
        s("p", "b/2", 1, "train"),
    ]
    splits.check_sizes(["a", "b"], ok)
    small = [*ok[:3], s("p", "b/2", 1, "test")]
    with pytest.raises(DatasetError) as err:
        splits.check_sizes(["a", "b"], small)
    assert str(err.value) == (
        "class 'b' has 1 usable photo for training (and 1 in the test split); each class needs "
        "at least 2 outside the test split (cross-validation needs 2 of each); add photos or "
        "remove the folder"
    )
    two = [
        s("p", "a/1", 0, "validation"),
        s("p", "b/1", 1, "test"),
        s("p", "c/1", 2, "train"),
        s("p", "c/2", 2, "train"),
    ]
    with pytest.raises(DatasetError) as err:
        splits.check_sizes(["a", "b", "c"], two)
    assert str(err.value) == (
        "class 'a' has 1 usable photo for training; class 'b' has 0 usable photos for training "
        "(and 1 in the test split); each class needs at least 2 outside the test split "
        "(cross-validation needs 2 of each); add photos or remove the folder"
    )
    with pytest.raises(DatasetError) as err:
        splits.check_sizes(["a"], ok[:2])
    assert str(err.value) == "need at least 2 classes (sub-folders with images), found 1 (a)"
    with pytest.raises(DatasetError) as err:
        splits.check_sizes([], [])
    assert str(err.value) == "need at least 2 classes (sub-folders with images), found 0"


def test_imbalance_warning_threshold() -> None:
    s = splits.Sample
    samples = [s("p", f"a/{i}", 0, "train") for i in range(10)] + [s("p", f"b/{i}", 1, "validation") for i in range(2)]
    samples += [s("p", f"b/t{i}", 1, "test") for i in range(20)]  # test photos do not count
    assert splits.imbalance(["a", "b"], samples) == (
        "classes are imbalanced: 'a' has 10 photos, 'b' 2 (5.0x); accuracy then flatters the big classes - "
        "look at per-class recall and the majority baseline"
    )
    assert splits.imbalance(["a", "b"], samples[1:]) is None  # 9 vs 2: 4.5x


def _layout(root: Path, splits: dict[str, list[str]], n: int = 3) -> Path:
    for split, classes in splits.items():
        for c in classes:
            for i in range(n):
                _touch(root, f"{split}/{c}/{i}.jpg")
    return root


def test_given_train_val_test_layout_is_used_as_given(tmp_path: Path) -> None:
    root = _layout(tmp_path / "d", {"train": ["a", "b"], "val": ["a", "b"], "test": ["a", "b"]})
    found = folders.find_layout(root)
    classes, files, desc = found.classes, found.photos, found.description
    assert classes == ["a", "b"] and desc == "given split: test/, train/, val/"
    samples = splits.assign_splits(files, 2, 10, 10)
    assert splits.split_counts(classes, samples) == {c: {"train": 3, "validation": 3, "test": 3} for c in classes}
    assert {s.rel.split("/")[0]: s.split for s in samples} == {"train": "train", "val": "validation", "test": "test"}
    _layout(tmp_path / "e", {"train": ["a", "b"], "validation": ["a", "b"]})
    found = folders.find_layout(tmp_path / "e")
    classes, files, _ = found.classes, found.photos, found.description
    assert {f.given for f in files} == {"train", "validation"}


def test_given_layout_with_mismatched_classes_names_them(tmp_path: Path) -> None:
    root = _layout(tmp_path / "d", {"train": ["a", "b", "c"], "val": ["a", "b", "d"]})
    with pytest.raises(DatasetError) as err:
        folders.find_layout(root)
    assert err.value.exit_code == 2
    assert str(err.value) == (
        f"{root}: the class folders of val/ differ from train/'s: val/ has d that train/ has "
        "not; val/ lacks c; every split needs the same classes"
    )
    wide = _layout(tmp_path / "w", {"train": ["a", "b", "c"], "val": ["a", "x", "y"]})
    with pytest.raises(DatasetError, match="val/ has x, y that train/ has not; val/ lacks b, c;"):
        folders.find_layout(wide)
    both = _layout(tmp_path / "e", {"train": ["a"], "val": ["a"], "validation": ["a"]})
    with pytest.raises(UsageError, match="both val/ and validation/"):
        folders.find_layout(both)
    extra = _layout(tmp_path / "f", {"train": ["a"], "val": ["a"], "misc": ["a"], "more": ["a"]})
    with pytest.raises(UsageError) as err:
        folders.find_layout(extra)
    assert str(err.value) == (
        f"{extra} holds train, val (a given split) beside other folders (misc, more); move "
        "those into the splits' class folders or remove them"
    )
    # files and hidden folders beside the class folders are not classes
    root = _layout(tmp_path / "h", {".": ["a", "b"]})
    (root / "notes.txt").write_text("x")
    (root / ".git").mkdir()
    assert folders.find_layout(root).classes == ["a", "b"]


def test_validation_and_test_dirs(tmp_path: Path) -> None:
    root = _layout(tmp_path / "d", {".": ["a", "b"]}, n=5)
    held = _layout(tmp_path / "held", {".": ["a"]}, n=2)
    found = folders.find_layout(root, test_dir=held)
    classes, files, desc = found.classes, found.photos, found.description
    assert classes == ["a", "b"]
    assert desc == "one folder per class; validation/test photos by hash; test photos from --test-dir"
    given = [f for f in files if f.given == "test"]
    assert [(f.rel, f.label, f.given) for f in given] == [("held/a/0.jpg", 0, "test"), ("held/a/1.jpg", 0, "test")]
    assert len([f for f in files if f.given is None]) == 10
    found = folders.find_layout(root, validation_dir=held)
    _, files, desc = found.classes, found.photos, found.description
    assert {f.given for f in files} == {None, "validation"} and desc.endswith(
        "; validation photos from --validation-dir"
    )
    bad = _layout(tmp_path / "bad", {".": ["a", "zebra", "yak"]})
    with pytest.raises(DatasetError) as err:
        folders.find_layout(root, validation_dir=bad)
    assert str(err.value) == (
        f"`validation_dir` {bad} has class folders that the training photos have not: yak, zebra; rename or remove them"
    )
    with pytest.raises(UsageError) as err:
        folders.find_layout(root, test_dir=tmp_path / "nope")
    assert (
        str(err.value) == f"`test_dir` {tmp_path / 'nope'}: no such folder; give a folder with one sub-folder per class"
    )
    with pytest.raises(UsageError) as err:
        folders.find_layout(root, validation_dir=root / "a" / "0.jpg")
    assert str(err.value) == (
        f"`validation_dir` {root / 'a' / '0.jpg'}: not a folder; give a folder with one sub-folder per class"
    )
    with pytest.raises(UsageError) as err:
        folders.find_layout(root / "a" / "0.jpg")
    assert str(err.value) == f"{root / 'a' / '0.jpg'}: not a folder; give a folder with one sub-folder per class"
    tree = _layout(tmp_path / "t", {"train": ["a"], "test": ["a"]})
    with pytest.raises(UsageError, match="already holds a test folder"):
        folders.find_layout(tree, test_dir=held)


# ---------------------------------------------------------------- copies (byte-identical photos)


def test_copies_never_straddle_a_split_and_take_the_first_keys_split() -> None:
    # 400 photos, every 4th one with 1-3 copies under other names (some in another class)
    files, content = [], {}
    for i in range(400):
        rel = f"{'ab'[i % 2]}/{i}.jpg"
        files.append(P(f"/d/{rel}", rel, i % 2))
        content[f"/d/{rel}"] = f"sha-{i}"
        for j in range(i % 4 if i % 4 == 3 or i % 8 == 1 else 0):
            crel = f"{'ba'[i % 2]}/copy-{j}-of-{i}.jpg"
            files.append(P(f"/d/{crel}", crel, 1 - i % 2))
            content[f"/d/{crel}"] = f"sha-{i}"
    samples = splits.assign_splits(files, 2, 20, 20, content=content)
    by_sha: dict[str, set[str]] = {}
    for s in samples:
        by_sha.setdefault(content[s.path], set()).add(s.split)
    assert all(len(splits) == 1 for splits in by_sha.values())  # copies never straddle
    groups: dict[str, list[str]] = {}
    for f in files:
        groups.setdefault(content[f.path], []).append(f.rel)
    straddled_before = 0
    for s in samples:
        keys = groups[content[s.path]]
        assert s.split == splits.split_of(min(keys), 20, 20)  # the first key's split
        straddled_before += len({splits.split_of(k, 20, 20) for k in keys}) > 1
    assert straddled_before > 20  # without the rule, copies would straddle
    single = [s for s in samples if len(groups[content[s.path]]) == 1]
    assert len(single) == 250 and all(s.split == splits.split_of(s.rel, 20, 20) for s in single)
    # without content, or with each photo's content its own, the old rule exactly
    plain = splits.assign_splits(files, 2, 20, 20)
    assert [s.split for s in plain] == [splits.split_of(f.rel, 20, 20) for f in files]
    own = splits.assign_splits(files, 2, 20, 20, content={f.path: f.path for f in files})
    assert own == plain


def test_a_copy_of_a_given_split_photo_follows_it() -> None:
    files = [
        P("/d/a/1.jpg", "a/1.jpg", 0, None),
        P("/t/a/x.jpg", "t/a/x.jpg", 0, "test"),
        P("/t/a/y.jpg", "t/a/y.jpg", 0, "validation"),
        P("/d/a/2.jpg", "a/2.jpg", 0, None),
    ]
    content = {"/d/a/1.jpg": "s", "/t/a/x.jpg": "s", "/t/a/y.jpg": "s", "/d/a/2.jpg": "s"}
    samples = splits.assign_splits(files, 1, 0, 0, content=content)
    # given splits stay as given; the hashed copies take the given split whose key sorts first
    assert [s.split for s in samples] == ["test", "test", "validation", "test"]


def test_content_hashes_of_a_real_folder_skip_what_cannot_be_read(tmp_path: Path) -> None:
    import os

    _touch(tmp_path, "a/1.jpg")
    shutil.copyfile(tmp_path / "a/1.jpg", tmp_path / "a/2.jpg")
    os.mkfifo(tmp_path / "a/3.jpg")
    files = [P(str(tmp_path / f"a/{i}.jpg"), f"a/{i}.jpg", 0) for i in (1, 2, 3, 4)]
    got = splits.content_hashes(files)
    want = hashlib.sha256(b"\xff\xd8 not decoded here").hexdigest()
    assert got == {files[0].path: want, files[1].path: want}


def test_too_many_small_classes_are_summarised_in_one_short_line() -> None:
    """1,000 classes x 2 photos with the default split: the message named every class (14 KB)."""
    classes = [f"class_{i:04d}" for i in range(1000)]
    files = [P(f"/p/{c}/{j}.jpg", f"{c}/{j}.jpg", i) for i, c in enumerate(classes) for j in range(2)]
    samples = splits.assign_splits(files, len(classes), 10.0, 10.0)
    counts = splits.split_counts(classes, samples)
    small = [c for c in classes if counts[c]["train"] + counts[c]["validation"] < 2]
    with pytest.raises(DatasetError) as err:
        splits.check_sizes(classes, samples)
    text = str(err.value)
    assert "\n" not in text and len(text) < 500, len(text)
    assert text.startswith(
        f"{len(small)} of the 1000 classes have fewer than 2 usable photos for training, e.g. class {small[0]!r} has "
    )
    assert f"; and {len(small) - splits.SHOWN_CLASSES} more; each class needs at least 2" in text
    assert small[splits.SHOWN_CLASSES] not in text


def test_roboflow_train_valid_test_is_a_given_split(tmp_path: Path) -> None:
    """Roboflow exports train/ valid/ test/: once exit 2, and train/ + valid/ alone silently
    trained a 2-class "train" vs "valid" model."""
    root = _layout(tmp_path / "rf", {"train": ["a", "b"], "valid": ["a", "b"], "test": ["a", "b"]})
    found = folders.find_layout(root)
    classes, files, desc = found.classes, found.photos, found.description
    assert classes == ["a", "b"] and desc == "given split: test/, train/, valid/"
    assert {f.rel.split("/")[0]: f.given for f in files} == {"train": "train", "valid": "validation", "test": "test"}
    two = _layout(tmp_path / "rf2", {"train": ["a", "b"], "valid": ["a", "b"]})
    found = folders.find_layout(two)
    classes, files, desc = found.classes, found.photos, found.description
    assert classes == ["a", "b"] and {f.given for f in files} == {"train", "validation"}
    both = _layout(tmp_path / "both", {"train": ["a"], "val": ["a"], "valid": ["a"]})
    with pytest.raises(UsageError, match="both val/ and valid/; keep one"):
        folders.find_layout(both)


def test_folders_named_like_splits_are_never_silently_classes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lone = _layout(tmp_path / "lone", {"train": ["a", "b"]})
    with pytest.raises(UsageError) as err:
        folders.find_layout(lone)
    assert err.value.exit_code == 2
    assert str(err.value).startswith(
        f"{lone} holds only train/, named like a split, not like classes; a given split "
        "is train/ with val/, valid/ or validation/"
    )
    held = _layout(tmp_path / "held", {"val": ["a"], "test": ["a"]})
    with pytest.raises(UsageError, match="holds only test/, val/, named like a split"):
        folders.find_layout(held)
    beside = _layout(tmp_path / "beside", {".": ["cats", "dogs", "test"]})
    with caplog.at_level("WARNING", logger="imgtool"):
        classes = folders.find_layout(beside).classes
    assert classes == ["cats", "dogs", "test"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{beside}: test/ is named like a split but used as a class beside 2 others; if held-out photos are in "
        "there, give them as `validation_dir` or `test_dir` instead"
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="imgtool"):
        folders.find_layout(_layout(tmp_path / "plain", {".": ["cats", "dogs"]}))
    assert caplog.records == []
