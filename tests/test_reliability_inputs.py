"""Reliability, part 8 (issue 15, inputs, records, output and signals): what an outside
attack broke, one mechanism per kind of fault.

* one safe-open (imgtool/core/files.py) for every file read: FIFOs never opened, sizes capped
  (a zip bomb in a .tflite's metadata, a FIFO as -m, --labels or a folder's backbone);
* one typed reader of imgtool-model.json (retrained.read / retrained.parts): paths stay
  inside the folder, every field typed, labels fit the head, classify and export agree;
* one text sanitiser (output.terminal_text) for text/csv output and stderr, and a stdout
  that escapes what it cannot encode;
* one signal handling (command.interrupts_unwind) for every command;
* labels split on "\\n" only; 16-bit PNGs without float64; IMGTOOL_THREADS bounded; dataset
  names checked before any work; input_size/value_range checked; odd .tflite files exit 3.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import imgtool
from imgtool.core import files, output
from imgtool.core.errors import DatasetError, ImageError, ModelError, UsageError
from imgtool.data import labels
from imgtool.models import retrained
from tests.conftest import IMGTOOL, invoke, run

FIFO_TIMEOUT = 60  # seconds: a run that opens a FIFO never ends; a correct one takes a few


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, flowers: Path, embedder: str) -> Path:
    """A real retrained folder (3 flower classes x 8 photos on the real embedder), made once."""
    import imgtool

    root = tmp_path_factory.mktemp("inputs")
    data = root / "photos"
    for cls in ("daisy", "roses", "tulips"):
        (data / cls).mkdir(parents=True)
        for p in sorted((flowers / cls).iterdir())[:8]:
            shutil.copy(p, data / cls / p.name)
    os.environ.setdefault("IMGTOOL_HOME", str(root / "home"))
    result = imgtool.retrain(data, model=embedder, output=root / "model", test_percent=25, validation_percent=0)
    assert result.output is not None
    return result.output


@pytest.fixture
def folder_copy(model_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(model_dir, out)
    return out


def _edit_record(folder: Path, **changes: object) -> None:
    path = folder / retrained.RETRAINED_FILE
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if key.startswith("backbone_"):
            data["backbone"][key.removeprefix("backbone_")] = value
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in stderr, stderr
    return lines[0]


# ---------------------------------------------------------------- item 6: labels split on "\n" only
# (files: tests/test_label_fit.py::test_labels_split_on_newline_only)


def test_embedded_labels_split_on_newline_only(mobilenet: str, tmp_path: Path) -> None:
    from imgtool.tflite.reading import flatbuffer_part

    src = Path(mobilenet).read_bytes()
    with zipfile.ZipFile(mobilenet) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".txt")]
        original = zf.read(name).decode()
    text = original.replace("tench, Tinca tinca", "tench,\u2028Tinca tinca")
    out = tmp_path / "m.tflite"
    out.write_bytes(flatbuffer_part(src))
    with zipfile.ZipFile(out, "a") as zf:
        zf.writestr(name, text)
    got = labels.embedded_tflite_labels(out)
    assert got is not None and len(got) == 1001 and got[1] == "tench,\u2028Tinca tinca"
    assert got[286] == labels.embedded_tflite_labels(Path(mobilenet))[286] == "Egyptian cat"  # type: ignore[index]


# ---------------------------------------------------------------- items 9, 15, 26: one safe-open


def _bomb(mobilenet: str, out: Path, megabytes: int) -> Path:
    """MobileNet with its labels member replaced by `megabytes` MB of one repeated line."""
    from imgtool.tflite.reading import flatbuffer_part

    with zipfile.ZipFile(mobilenet) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".txt")]
    out.write_bytes(flatbuffer_part(Path(mobilenet).read_bytes()))
    line = b"x" * 1023 + b"\n"
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_DEFLATED) as zf, zf.open(name, "w") as member:
        for _ in range(megabytes * 1024):
            member.write(line)
    return out


def test_a_zip_bomb_in_the_metadata_is_not_read(mobilenet: str, tmp_path: Path, caplog) -> None:
    bomb = _bomb(mobilenet, tmp_path / "bomb.tflite", 64)
    assert bomb.stat().st_size < 5 << 20
    tracemalloc.start()
    try:
        got = labels.embedded_tflite_labels(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got is None and peak < 4 << 20  # the old reader held all 64 MB (and 2 GB for a 2 GB member)
    assert "more than a labels file may" in caplog.text


def test_labels_in_the_model_are_not_read_when_a_labels_file_is_given(
    mobilenet: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgtool.models import resolve

    given = tmp_path / "labels.txt"
    given.write_text("".join(f"l{i}\n" for i in range(1001)))

    def never(path: Path) -> None:
        raise AssertionError("embedded labels read although a labels file was given")

    monkeypatch.setattr(resolve.labels_mod, "embedded_tflite_labels", never)
    model = resolve.resolve(mobilenet, labels_file=str(given))
    assert model.labels is not None and model.labels[5] == "l5"


def test_safe_open_refuses_a_fifo_at_once_and_caps_sizes(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path / "p")
    start = time.monotonic()
    with pytest.raises(files.FileProblem, match="not a regular file"):
        files.open_regular(fifo)
    with pytest.raises(files.FileProblem, match="not a regular file"):
        files.read_text(fifo, 10)
    assert time.monotonic() - start < 5
    assert files.problem(fifo) == files.NOT_REGULAR and files.problem(tmp_path) == "is a directory, not a file"
    big = tmp_path / "big"
    big.write_bytes(b"a" * 11)
    with pytest.raises(files.FileProblem, match="more than the 10"):
        files.read_bytes(big, 10)
    assert files.read_bytes(big, 11) == b"a" * 11
    with pytest.raises(UsageError, match=r"cannot read labels file .*not a regular file"):
        labels.read_lines(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        from imgtool.data import images

        images.decode(str(fifo), (8, 8))


def test_a_fifo_as_model_labels_or_backbone_is_one_line(
    mobilenet: str, photos: Path, folder_copy: Path, tmp_path: Path
) -> None:
    cat = str(photos / "cat.bmp")
    fifo_model = _fifo(tmp_path / "x.tflite")
    res = run("classify", "-m", str(fifo_model), cat, timeout=FIFO_TIMEOUT)
    assert res.returncode == 3 and "not a regular file" in _one_error_line(res.stderr)
    res = run("classify", "-m", mobilenet, "--labels", str(_fifo(tmp_path / "labels.txt")), cat, timeout=FIFO_TIMEOUT)
    assert res.returncode == 2 and "not a regular file" in _one_error_line(res.stderr)
    (folder_copy / "backbone.tflite").unlink()
    _fifo(folder_copy / "backbone.tflite")
    res = run("classify", "-m", str(folder_copy), cat, timeout=FIFO_TIMEOUT)
    assert res.returncode == 3 and "not a regular file" in _one_error_line(res.stderr)


def test_a_zip_written_by_writestr_is_a_valid_archive(tmp_path: Path) -> None:
    from imgtool.models.archives import extract_archive

    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model/labels.txt", "a\nb\n")  # external_attr 0o600 << 16: permissions, no file type
        zf.writestr("model/", "")
    assert zipfile.ZipFile(archive).getinfo("model/labels.txt").external_attr >> 16 == 0o600
    extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "model" / "labels.txt").read_text() == "a\nb\n"
    fifo_member = tmp_path / "f.zip"
    with zipfile.ZipFile(fifo_member, "w") as zf:
        info = zipfile.ZipInfo("pipe")
        info.external_attr = (0o010644) << 16  # S_IFIFO: still refused
        zf.writestr(info, "")
    with pytest.raises(ModelError, match="is not a regular file"):
        extract_archive(fifo_member, tmp_path / "out2")


def test_a_fifo_as_catalog_or_training_photos_list_is_one_line(folder_copy: Path, tmp_path: Path) -> None:
    res = run("models", "list", env={"IMGTOOL_CATALOG": str(_fifo(tmp_path / "catalog.json"))}, timeout=FIFO_TIMEOUT)
    assert res.returncode == 3 and "IMGTOOL_CATALOG=" in _one_error_line(res.stderr)
    assert "not a regular file" in res.stderr
    (folder_copy / retrained.TRAINING_PHOTOS).unlink()
    _fifo(folder_copy / retrained.TRAINING_PHOTOS)
    assert retrained.read_training_photos(folder_copy) is None  # evaluate then says nothing about seen photos


def test_a_fifo_among_the_photos_cannot_hang_an_export(folder_copy: Path, tmp_path: Path) -> None:
    from imgtool.data import folders

    meta = json.loads((folder_copy / retrained.RETRAINED_FILE).read_text())
    photos = tmp_path / "photos"
    shutil.copytree(meta["image_dir"], photos)
    name = next(f"p{i}.jpg" for i in range(1000) if folders.split_of(f"daisy/p{i}.jpg", 0, 25) == "test")
    _fifo(photos / "daisy" / name)
    _edit_record(folder_copy, image_dir=str(photos))
    res = run("export", str(folder_copy), timeout=FIFO_TIMEOUT)
    assert res.returncode == 0 and "exported model.tflite" in res.stdout, res.stderr


# ---------------------------------------------------------------- item 10: 16-bit PNG


def test_sixteen_bit_png_decodes_without_float64_copies(tmp_path: Path) -> None:
    from imgtool.data import images

    rng = np.random.default_rng(0)
    a = rng.integers(0, 65536, (2000, 2000), dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    tracemalloc.start()
    try:
        small = images.decode(str(tmp_path / "g16.png"), (224, 224))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # one byte a pixel (the 8-bit gray) and a strip; the float64 path allocated 8 bytes a pixel, 3 times
    assert small.shape == (224, 224, 3) and peak < 1.5 * a.size, peak
    out = images.decode(str(tmp_path / "g16.png"), (2000, 2000))
    assert np.array_equal(out[..., 0], (a.astype(np.int64) * 255 // 65535).astype(np.uint8))
    assert np.array_equal(out[..., 0], out[..., 2])
    f = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 100.0], [255.0, 300.0]], np.float32)).save(f)  # mode F, above 255: /65535
    assert images.decode(str(f), (2, 2))[..., 0].tolist() == [[0, 0], [0, 1]]


# ---------------------------------------------------------------- item 11, 24: one sanitiser


def test_terminal_text_escapes_every_control() -> None:
    raw = "cat\x1b]0;owned\x07\x1b[2J\nforged  0.9999  dog\r\x9b\u2028\u202e caf\udce9 é"
    safe = output.terminal_text(raw)
    assert safe == "cat\\x1b]0;owned\\x07\\x1b[2J\\x0aforged  0.9999  dog\\x0d\\x9b\\u2028\\u202e caf\\xe9 é"
    assert output.terminal_lines("a\x1b\tb\nc\n") == "a\\x1b\tb\nc\n"


def test_labels_and_file_names_reach_the_terminal_escaped(mobilenet: str, photos: Path, tmp_path: Path) -> None:
    evil = tmp_path / "a\x1b]8;;http:x\x07b\nforged  1.0000  fake.bmp"
    shutil.copy(photos / "cat.bmp", evil)
    lab = tmp_path / "labels.txt"
    names = [f"l{i}" for i in range(1001)]
    names[286] = "kitty\x1b[2J\x1b]0;title\x07"  # the cat's top-1 (index 286 with background)
    lab.write_text("\n".join(names) + "\n")
    for fmt in ("text", "csv"):
        res = invoke("classify", "-m", mobilenet, "--labels", str(lab), "-k", "1", "-f", fmt, str(evil))
        assert res.exit_code == 0, res.output
        assert "\x1b" not in res.output and "\x07" not in res.output
        lines = res.output.splitlines()
        assert len(lines) == 2, lines  # text: path + one prediction; csv: header + one row
        assert "kitty\\x1b[2J" in res.output and "\\x0aforged" in res.output
    res = invoke("labels", "-m", mobilenet, "--labels", str(lab), "--search", "kitty")
    assert res.output == "286\tkitty\\x1b[2J\\x1b]0;title\\x07\n"
    res = invoke("classify", "-m", mobilenet, "--labels", str(lab), "-f", "jsonl", "-k", "1", str(evil))
    assert json.loads(res.output)["predictions"][0]["label"] == names[286]  # json keeps the data, escaped by JSON
    missing = tmp_path / "gone\x1b[2J.jpg"
    res = invoke("classify", "-m", mobilenet, str(missing))
    assert res.exit_code == 1 and "\x1b" not in res.output + res.stderr and "gone\\x1b[2J.jpg" in res.stderr


def test_a_file_name_cannot_forge_a_line_on_stderr(embedder: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for cls, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        for i in range(4):
            _photo(data / cls / f"{i}.png", colour)
    (data / "red" / "x\nwarning: all good\x1b[2J.jpg").write_bytes(b"not an image")
    res = run("retrain", str(data), "-m", embedder, "-o", str(tmp_path / "out"), "--test-percent", "0")
    assert res.returncode == 0, res.stderr
    skipped = [ln for ln in res.stderr.splitlines() if "skipping" in ln]
    assert len(skipped) == 1 and "x\\x0awarning: all good\\x1b[2J.jpg" in skipped[0]
    assert "\x1b" not in res.stderr and not any(ln.startswith("warning: all good") for ln in res.stderr.splitlines())


def test_a_stdout_that_cannot_encode_labels_escapes_them(mobilenet: str, photos: Path, tmp_path: Path) -> None:
    lab = tmp_path / "labels.txt"
    lab.write_text("".join(("café, Ürün\n" if i == 286 else f"l{i}\n") for i in range(1001)), encoding="utf-8")
    args = ["classify", "-m", mobilenet, "--labels", str(lab), "-k", "1", str(photos / "cat.bmp")]
    from imgtool.cli.main import cli

    res = CliRunner(charset="ascii").invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0 and "caf\\xe9, \\xdcr\\xfcn" in res.output
    env = {"PYTHONIOENCODING": "ascii", "LC_ALL": "C", "PYTHONUTF8": "0"}
    done = run(*args, env=env)
    assert done.returncode == 0 and "caf\\xe9, \\xdcr\\xfcn" in done.stdout and "Traceback" not in done.stderr


# ---------------------------------------------------------------- items 12, 21: one typed record reader


@pytest.mark.parametrize(
    "change,why",
    [
        ({"head": "/elsewhere/evil.npz"}, "head '/elsewhere/evil.npz' points outside the model folder"),
        ({"head": "../evil.npz"}, "points outside the model folder"),
        ({"labels": "/etc/passwd"}, "points outside the model folder"),
        ({"backbone_file": "/elsewhere/backbone.tflite"}, "backbone.file '/elsewhere/backbone.tflite' points outside"),
        ({"backbone_file": ["backbone.tflite"]}, "backbone.file is ['backbone.tflite'], not a file name"),
        ({"backbone_input_size": [-5, 3]}, "backbone.input_size is [-5, 3], not [height, width]"),
        ({"backbone_input_size": "big"}, "backbone.input_size is 'big'"),
        ({"backbone_value_range": [float("nan"), 1]}, "backbone.value_range"),
        ({"classes": 5}, "classes is 5, not a list of class names"),
        ({"exports": []}, "exports is [], of the wrong type"),
    ],
)
def test_a_damaged_record_is_damaged_for_classify_and_export(
    folder_copy: Path, change: dict, why: str, photos: Path
) -> None:
    _edit_record(folder_copy, **change)
    with pytest.raises(retrained.DamagedRecord, match=why.replace("[", r"\[").replace("]", r"\]")):
        retrained.read(folder_copy)
    with pytest.raises(ModelError, match="damaged retrained model"):
        retrained.parts(str(folder_copy), folder_copy)
    for args in (("classify", "-m", str(folder_copy), str(photos / "cat.bmp")), ("export", str(folder_copy))):
        res = invoke(*args)
        assert res.exit_code == 3, (args, res.output)
        line = _one_error_line(res.stderr)
        assert "damaged retrained model" in line


def test_a_symlink_in_the_folder_may_not_lead_out(folder_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "evil.npz"
    shutil.copy(folder_copy / "head.npz", outside)
    (folder_copy / "head.npz").unlink()
    (folder_copy / "head.npz").symlink_to(outside)
    with pytest.raises(retrained.DamagedRecord, match=r"head 'head\.npz' leads outside the model folder"):
        retrained.read(folder_copy)


def test_labels_that_do_not_fit_the_head_are_refused(folder_copy: Path, photos: Path) -> None:
    (folder_copy / "model.tflite").unlink()
    (folder_copy / "labels.txt").write_text("a\nb\n")  # 2 labels, 3 outputs
    with pytest.raises(ModelError, match=r"labels.txt has 2 labels for the 3 outputs of head.npz"):
        retrained.parts("m", folder_copy)
    for args in (("classify", "-m", str(folder_copy), str(photos / "cat.bmp")), ("export", str(folder_copy))):
        res = invoke(*args)
        assert res.exit_code == 3 and "damaged retrained model" in _one_error_line(res.stderr)
    assert not (folder_copy / "model.tflite").exists()


@pytest.mark.parametrize("content", [b"garbage", b"PK\x03\x04garbage", b""])
def test_a_corrupt_head_is_damaged(folder_copy: Path, content: bytes) -> None:
    (folder_copy / "head.npz").write_bytes(content)
    with pytest.raises(ModelError, match=r"damaged retrained model \(head\.npz or labels\.txt: "):
        retrained.parts("m", folder_copy)


def test_classes_that_do_not_fit_the_head_are_refused(folder_copy: Path) -> None:
    _edit_record(folder_copy, classes=["a", "b", "c", "d", "e"])
    with pytest.raises(ModelError, match=r"lists 5 classes for the 3 outputs"):
        retrained.parts("m", folder_copy)
    res = invoke("export", str(folder_copy))
    assert res.exit_code == 3 and "damaged retrained model" in _one_error_line(res.stderr)


# ---------------------------------------------------------------- items 17, 18, 33: dataset names


def _photo(path: Path, colour: tuple[int, int, int] = (200, 10, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)


@pytest.mark.parametrize(
    "bad,why",
    [
        (os.fsdecode(b"caf\xe9"), "its name is not UTF-8"),
        ("two\nlines", "holds a line break"),
        ("tab\there", "a control character"),
        (" padded", "a space at an end"),
        ("sep\u2028x", "line break"),
    ],
)
def test_class_names_that_would_not_survive_labels_txt_are_refused(
    tmp_path: Path, bad: str, why: str, embedder: str
) -> None:
    from imgtool.data import folders

    for cls in ("ok", bad):
        for i in range(3):
            _photo(tmp_path / "data" / cls / f"{i}.png")
    with pytest.raises(DatasetError, match=why):
        folders.find_layout(tmp_path / "data")
    with pytest.raises(DatasetError, match=why):
        folders.scan(tmp_path / "data")
    with pytest.raises(DatasetError, match=why):
        imgtool.retrain(tmp_path / "data", model=embedder, output=tmp_path / "out")
    res = invoke("retrain", str(tmp_path / "data"), "-m", embedder, "-o", str(tmp_path / "out"))  # the CLI: one line
    assert res.exit_code == 2 and why in _one_error_line(res.stderr) and not (tmp_path / "out").exists()


def test_symlinked_class_folders_are_warned(tmp_path: Path, caplog) -> None:
    from imgtool.data import folders

    data = tmp_path / "data"
    for cls in ("a", "b"):
        for i in range(3):
            _photo(data / cls / f"{i}.png")
    (data / "everything").symlink_to(".")
    (data / "again").symlink_to("b")
    folders.find_layout(data)
    assert "class folder " + str(data / "everything") + " is a link to" in caplog.text
    assert "holds the dataset itself" in caplog.text
    assert f"class folder {data / 'again'} is a link into class 'b'" in caplog.text
    caplog.clear()
    (data / "everything").unlink()
    (data / "again").unlink()
    folders.find_layout(data)
    assert "link" not in caplog.text


# ---------------------------------------------------------------- items 19, 35: options


@pytest.mark.parametrize("size", [(0, 0), (100000, 100000), (-1, 224), (224.5, 224)])
def test_input_size_is_checked_before_anything(size: tuple, mobilenet: str, photos: Path) -> None:
    from imgtool.models import resolve

    with pytest.raises(UsageError, match=r"`input_size` .*from 1 to 4096"):
        resolve.resolve(mobilenet, input_size=size)
    if all(isinstance(v, int) for v in size):
        res = invoke("classify", "-m", mobilenet, "--input-size", f"{size[0]},{size[1]}", str(photos / "cat.bmp"))
        assert res.exit_code == 2 and "--input-size" in _one_error_line(res.stderr)


def test_a_failed_conversion_at_a_given_size_never_changes_the_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgtool.models import convert
    from imgtool.models.catalog import ModelConfig
    from imgtool.models.entries import Conversion, EntryRecord, read_record, write_record
    from imgtool.models.recipe import Recipe

    entry = tmp_path / "entry"
    (entry / "source").mkdir(parents=True)
    write_record(entry, EntryRecord(format="savedmodel"))
    before = (entry / "entry.json").read_bytes()
    monkeypatch.setattr(convert, "convert", lambda model, target: Conversion(ok=False, error="at 7x7: no"))

    def model() -> Recipe:
        return Recipe(
            ref="m", config=ModelConfig(name="m", format="savedmodel", input_size=(7, 7)), tf_source=entry / "source"
        )

    tried = convert.ensure_tflite(model(), entry, record_failure=False)
    assert tried.tflite is None and (entry / "entry.json").read_bytes() == before
    convert.ensure_tflite(model(), entry)  # a run without the option: its failure is recorded
    assert read_record(entry).conversions["model"].error == "at 7x7: no"  # type: ignore[union-attr]


@pytest.mark.parametrize("vr", ["nan,1", "0,inf", "-inf,1", "1,1"])
def test_a_non_finite_value_range_is_a_usage_error(vr: str, mobilenet: str, photos: Path) -> None:
    from imgtool.models import resolve

    lo, hi = (float(v) for v in vr.split(","))
    with pytest.raises(UsageError, match=r"`value_range` .*two finite numbers that differ"):
        resolve.resolve(mobilenet, value_range=(lo, hi))
    res = run("classify", "-m", mobilenet, "--value-range", vr, str(photos / "cat.bmp"))
    assert res.returncode == 2 and "--value-range" in _one_error_line(res.stderr)
    assert "RuntimeWarning" not in res.stderr


# ---------------------------------------------------------------- item 20: odd .tflite files


def _repacked(mobilenet: str, out: Path, edit) -> Path:  # noqa: ANN001
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(Path(mobilenet).read_bytes(), 0))
    edit(m.subgraphs[0])
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    out.write_bytes(bytes(b.Output()))
    return out


def test_odd_tflite_files_are_exit_3(mobilenet: str, photos: Path, tmp_path: Path, folder_copy: Path) -> None:
    def no_data(sg) -> None:  # noqa: ANN001 - a weight's buffer index zeroed: "Input tensor 3 lacks data"
        sg.tensors[3].buffer = 0

    def no_outputs(sg) -> None:  # noqa: ANN001
        sg.outputs = []

    cat = str(photos / "cat.bmp")
    names = tmp_path / "labels.txt"
    names.write_text("".join(f"l{i}\n" for i in range(1001)))
    for name, edit, why in (("nodata", no_data, "does not run"), ("noout", no_outputs, "it has no outputs")):
        path = _repacked(mobilenet, tmp_path / f"{name}.tflite", edit)
        from imgtool import api

        with pytest.raises(ModelError, match=why):
            api.load_model(str(path), labels=[str(i) for i in range(1001)]).classify([cat])
        res = invoke("classify", "-m", str(path), "--labels", str(names), cat)
        assert res.exit_code == 3 and why in _one_error_line(res.stderr), res.output
    shutil.copy(mobilenet, folder_copy / "backbone.tflite")  # 1001 wide; the head takes 1024 features
    res = invoke("classify", "-m", str(folder_copy), cat)
    assert res.exit_code == 3 and "the backbone gives 1001 features" in _one_error_line(res.stderr)


# ---------------------------------------------------------------- item 34: casefold


def test_expect_matches_in_any_case_and_any_form() -> None:
    assert labels.matches("İstanbul", "istanbul") and labels.matches("istanbul", "İSTANBUL")
    assert labels.matches("Straße, street", "STRASSE") and labels.matches("ﬁsh", "fish")  # NFKC ligature
    assert not labels.matches("İstanbul", "ankara")
    labels.check_expected("istanbul", ["İstanbul", "Ankara"], "m")


# ---------------------------------------------------------------- item 28: one signal handling


@pytest.mark.parametrize(
    "command,target",
    [
        (["classify", "x.jpg"], "load_model"),
        (["labels"], "model_labels"),
        (["export", "DIR"], "export_model"),
        (["models", "download", "x"], "api_store.download_model"),
        (["models", "list"], "api_store.list_models"),
        (["retrain", "DIR", "-o", "OUT"], "retrain"),
    ],
)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_every_command_exits_130_on_sigterm_and_sigint(
    command: list[str], target: str, sig: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgtool import api, api_store

    def interrupted(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), sig)
        time.sleep(5)
        raise AssertionError("the signal did not interrupt")

    module, _, name = target.rpartition(".")
    monkeypatch.setattr(api_store if module == "api_store" else api, name, interrupted)
    args = [a.replace("DIR", str(tmp_path)).replace("OUT", str(tmp_path / "o")) for a in command]
    before = signal.getsignal(signal.SIGTERM)
    res = invoke(*args)
    assert res.exit_code == 130 and res.stderr == "Interrupted; nothing half-written was kept.\n"
    assert signal.getsignal(signal.SIGTERM) is before  # put back: library use in this process is unchanged


def test_an_interrupted_export_lists_what_it_wrote(folder_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imgtool.training import export_checks, tflite_model

    def interrupted(self, data, path):  # noqa: ANN001, ANN202 - after the file is in place, during its check
        assert path.is_file()
        raise KeyboardInterrupt

    (folder_copy / "model.tflite").unlink(missing_ok=True)
    monkeypatch.setattr(export_checks.Checks, "of", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tflite_model.export_model_dir(folder_copy)
    assert (folder_copy / "model.tflite").is_file()
    metrics = json.loads((folder_copy / "metrics.json").read_text())
    (rec,) = [r for r in metrics["exports"] if r["file"] == "model.tflite"]
    assert rec["bytes"] == (folder_copy / "model.tflite").stat().st_size and rec["test_accuracy"] is None
    assert "interrupted" in rec["note"]
    assert not list(folder_copy.glob(".*.tmp"))


def test_sigterm_during_a_real_export_and_classify(
    folder_copy: Path, photos: Path, tmp_path: Path, mobilenet: str
) -> None:
    (folder_copy / "model.tflite").unlink(missing_ok=True)
    interrupted = 0
    for _ in range(6):  # SIGTERM as soon as model.tflite is in place: during its check or the dynamic build
        for p in folder_copy.glob("model*.tflite"):
            p.unlink()
        proc = subprocess.Popen(
            [IMGTOOL, "export", str(folder_copy), "--quantize", "dynamic"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while proc.poll() is None and not (folder_copy / "model.tflite").exists():
            time.sleep(0.002)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 130:
            interrupted += 1
            assert err.strip().splitlines()[-1] == "Interrupted; nothing half-written was kept.", err
        else:  # it had finished (a SIGTERM while the interpreter exits is the default action: -15)
            assert proc.returncode in (0, -signal.SIGTERM) and "exported model-dynamic.tflite" in out, (out, err)
        assert not list(folder_copy.glob(".*.tmp")), list(folder_copy.iterdir())
        listed = {
            r["file"] for r in json.loads((folder_copy / "metrics.json").read_text()).get("exports", []) if "bytes" in r
        }
        assert {p.name for p in folder_copy.glob("model*.tflite")} <= listed  # what is there is recorded
    assert interrupted
    many = tmp_path / "many"
    many.mkdir()
    for i in range(400):
        os.link(photos / "cat.bmp", many / f"{i}.bmp")
    proc = subprocess.Popen(
        [IMGTOOL, "classify", "-m", mobilenet, "-f", "jsonl", str(many)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # it is classifying
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "Interrupted; nothing half-written was kept."
