"""Reliability, part 1: the bad-input corpus (tests/support/corpus.py) through `classify` and `retrain`.

Every case must give its documented outcome: classified (with the right colour, when the
case has one) or one error line naming the file; never a traceback, never a hang, and
the other inputs are still processed.

The model is the small generated classifier of tests/modelgen: 1001 outputs whose top-1
is 1 for red, 2 for green and 3 for blue images, so "classified correctly" is checked
against ``Case.colour``.

Two cases here found real bugs, since fixed (docs/reliability.md, "Bugs found"):
`png_corrupt_idat` was classified from half-decoded pixels, and a `fifo` met in a folder
walk blocked `classify` and `retrain` forever.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgtool.core.output import display_path
from tests.conftest import invoke, run
from tests.support import modelgen
from tests.support.corpus import Case, build_corpus

pytestmark = [
    pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning"),
    pytest.mark.filterwarnings("ignore:Metadata Warning:UserWarning"),
]

LABELS = ["background"] + [f"label {i}" for i in range(1, 1001)]
IDS = modelgen.CLASSIFIER_IDS  # red 1, green 2, blue 3

#: How long a whole-corpus run may take (it takes well under a second; a hang hits this).
HANG_TIMEOUT = 10.0


def _case_names() -> list[str]:
    with tempfile.TemporaryDirectory() as d:
        return [c.name for c in build_corpus(Path(d) / "c")]


CASE_NAMES = _case_names()


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def cls_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return modelgen.make_tflite_classifier(tmp_path_factory.mktemp("cls") / "cls.tflite", size=32, labels=LABELS)


@pytest.fixture(scope="module")
def feature_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same network without labels: 1001 plain outputs (no SOFTMAX, no labels) is
    accepted as a retrain backbone; the labelled classifier is refused (exit 2)."""
    return modelgen.make_tflite_classifier(tmp_path_factory.mktemp("feat") / "feat.tflite", size=32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    return {c.name: c for c in build_corpus(tmp_path_factory.mktemp("corpus") / "c")}


def _good_images(folder: Path, colour: str, n: int, seed: int = 0) -> list[Path]:
    rgb = {"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}[colour]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        arr = np.clip(np.array(rgb) + rng.normal(0, 20, size=(40, 40, 3)), 0, 255).astype("uint8")
        p = folder / f"good_{colour}_{i}.png"
        Image.fromarray(arr).save(p)
        out.append(p)
    return out


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("good")
    return {c: _good_images(d, c, 1)[0] for c in ("red", "blue")}


def _records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _top1(record: dict) -> int:
    return record["predictions"][0]["index"]


def _shown(path: Path | str) -> str:
    return display_path(str(path))


def _walk_visible(case: Case) -> bool:
    """Whether a folder walk yields anything for the case (files and the symlink loop do;
    an empty directory named .jpg is just a folder to descend into; skips are skipped)."""
    return case.outcome != "skip" and case.name != "directory_named_jpg"


# ------------------------------------------------------------------ classify, one case at a time


@pytest.mark.parametrize("name", CASE_NAMES)
def test_classify_each_case_between_two_good_images(
    name: str, corpus: dict[str, Case], cls_model: Path, good: dict[str, Path], tmp_path: Path
) -> None:
    """`classify good_red CASE good_blue`: the case's documented outcome, and both good
    images still classified. Skip cases are walked: a folder holding the case and a good image."""
    case = corpus[name]
    if case.outcome == "skip":
        folder = tmp_path / "walk"
        folder.mkdir()
        (folder / case.path.name).write_bytes(case.path.read_bytes())
        (folder / "good.png").write_bytes(good["red"].read_bytes())
        res = invoke("classify", "-m", str(cls_model), "-f", "jsonl", str(folder))
        assert res.exit_code == 0, res.output
        recs = _records(res.stdout)
        assert [r["path"] for r in recs] == [str(folder / "good.png")]
        assert "error" not in res.stderr.lower() and case.path.name not in res.output
        return

    res = invoke("classify", "-m", str(cls_model), "-f", "jsonl", str(good["red"]), str(case.path), str(good["blue"]))
    assert "Traceback" not in res.output
    recs = _records(res.stdout)
    assert recs[0]["path"] == str(good["red"]) and _top1(recs[0]) == IDS["red"], recs[0]
    assert recs[-1]["path"] == str(good["blue"]) and _top1(recs[-1]) == IDS["blue"], recs[-1]
    middle = recs[1:-1]
    error_lines = [ln for ln in res.stderr.splitlines() if ln.startswith(("error:", "Error:"))]

    if case.outcome == "ok":
        assert res.exit_code == 0, res.output
        assert error_lines == []
        if case.path.is_dir() and not case.path.is_symlink():  # the symlink loop: one image inside
            assert [r["path"] for r in middle] == [str(case.path / "red.jpg")], middle
        else:
            assert [r["path"] for r in middle] == [_shown(case.path)], middle
        assert "predictions" in middle[0], middle[0]
        if case.colour is not None:
            assert _top1(middle[0]) == IDS[case.colour], (case.note, middle[0])
    else:
        assert res.exit_code == 1, res.output
        assert len(middle) == 1 and middle[0]["path"] == _shown(case.path), middle
        assert set(middle[0]) == {"path", "error"} and middle[0]["error"], middle[0]
        assert "\n" not in middle[0]["error"]
        assert len(error_lines) == 1, res.stderr
        assert error_lines[0].startswith(f"error: {_shown(case.path)}: "), error_lines


# ------------------------------------------------------------------ classify, the whole corpus as a folder


def _expected_walk(cases: list[Case]) -> tuple[dict[str, Case], dict[str, Case]]:
    """(ok records by shown path, error records by shown path) for a walk of the corpus root."""
    ok, err = {}, {}
    for c in cases:
        if not _walk_visible(c):
            continue
        if c.name == "symlink_loop":
            ok[str(c.path / "red.jpg")] = c
        elif c.outcome == "ok":
            ok[_shown(c.path)] = c
        else:
            err[_shown(c.path)] = c
    return ok, err


def _classify_whole_corpus(root: Path, cases: list[Case], cls_model: Path, good: dict[str, Path]) -> None:
    try:
        res = run(
            "classify",
            "-m",
            str(cls_model),
            "-f",
            "jsonl",
            str(good["red"]),
            str(root),
            str(good["blue"]),
            timeout=HANG_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"classify hung on the corpus folder (killed after {HANG_TIMEOUT:.0f} s); "
            f"stdout so far ends with: {str(exc.stdout or '')[-300:]!r}"
        ) from None
    assert "Traceback" not in res.stderr, res.stderr
    recs = _records(res.stdout)
    assert recs[0]["path"] == str(good["red"]) and _top1(recs[0]) == IDS["red"]
    assert recs[-1]["path"] == str(good["blue"]) and _top1(recs[-1]) == IDS["blue"]
    ok, err = _expected_walk(cases)
    got = {r["path"]: r for r in recs[1:-1]}
    assert len(got) == len(recs) - 2, "a path was reported twice"
    assert set(got) == set(ok) | set(err), {
        "missing": set(ok) | set(err) - set(got),
        "unexpected": set(got) - set(ok) - set(err),
    }
    wrong = {}
    for path, case in ok.items():
        r = got[path]
        if "predictions" not in r:
            wrong[case.name] = r
        elif case.colour is not None and _top1(r) != IDS[case.colour]:
            wrong[case.name] = (case.colour, _top1(r))
    for path, case in err.items():
        if "error" not in got[path]:
            wrong[case.name] = got[path]
    assert wrong == {}
    lines = res.stderr.splitlines()
    error_lines = [ln for ln in lines if ln.startswith("error: ")]
    assert sorted(error_lines) == sorted(f"error: {p}: {got[p]['error']}" for p in err)
    assert lines[-1] == f"{len(ok) + 2} classified, {len(err)} failed"
    assert len(lines) == len(err) + 1, lines  # nothing else on stderr
    assert res.returncode == 1


@pytest.mark.slow
def test_classify_whole_corpus_folder_in_one_process(tmp_path: Path, cls_model: Path, good: dict[str, Path]) -> None:
    """ONE real process over good_red + the whole corpus folder + good_blue."""
    root = tmp_path / "corpus"
    cases = build_corpus(root)
    _classify_whole_corpus(root, cases, cls_model, good)


def test_fifo_given_directly_is_one_error_line(corpus: dict[str, Case], cls_model: Path) -> None:
    if "fifo" not in corpus:
        pytest.skip("no mkfifo here")
    res = invoke("classify", "-m", str(cls_model), str(corpus["fifo"].path))
    assert res.exit_code == 1
    assert (
        res.stderr.strip() == f"error: {corpus['fifo'].path}: not a regular file (a FIFO, socket or device); "
        "give an image file"
    )


# ------------------------------------------------------------------ retrain on a folder with the corpus inside


def _retrain_with_corpus(tmp_path: Path, cls_model: Path, drop: set[str]) -> None:
    """Class `red` = the corpus (built into it) + 4 good red images; class `blue` = 4 good
    blue images. One retrain run with the generated network (no labels: a feature model) as backbone."""
    data = tmp_path / "data"
    cases = []
    for c in build_corpus(data / "red"):
        if c.name in drop:
            c.path.unlink()
        else:
            cases.append(c)
    _good_images(data / "red", "red", 4, seed=1)
    _good_images(data / "blue", "blue", 4, seed=2)
    out = tmp_path / "model"
    try:
        res = run("retrain", str(data), "-m", str(cls_model), "-o", str(out), "-f", "json", timeout=HANG_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"retrain hung on the corpus folder (killed after {HANG_TIMEOUT:.0f} s)") from None
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    ok, err = _expected_walk(cases)
    skipping = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: skipping")]
    for path in err:  # every error case named in exactly one `warning: skipping` line
        assert sum(ln.startswith(f"warning: skipping {path}: ") for ln in skipping) == 1, (path, skipping)
    assert len(skipping) == len(err), skipping
    m = json.loads(res.stdout)
    assert {_shown(s["path"]) for s in m["skipped"]} == set(err)
    assert sum(m["counts"]["red"].values()) == 4 + len(ok)  # every ok case counted, once
    assert sum(m["counts"]["blue"].values()) == 4
    cls = invoke("classify", "-m", str(out), "-f", "jsonl", str(data / "blue"))
    assert cls.exit_code == 0, cls.output
    assert {p["label"] for r in _records(cls.stdout) for p in r["predictions"]} == {"blue", "red"}


@pytest.mark.slow
def test_retrain_with_the_corpus_in_a_class_folder(tmp_path: Path, feature_model: Path) -> None:
    _retrain_with_corpus(tmp_path, feature_model, drop=set())
