"""Errors as a library caller sees them: the class, the fields (parameter, hint, path,
model) and the one line in the library's words; the CLI's wording of the same errors is
tests/test_cli_output.py's and the CLI tests'."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

import imgtool
from imgtool.core.errors import (
    Advice,
    Call,
    DownloadError,
    ImgtoolError,
    Param,
    SettingError,
    StorageError,
    Text,
    UsageError,
    first_line,
)


def _two_classes(flowers: Path, dest: Path) -> Path:
    for c in ("daisy", "roses"):
        (dest / c).mkdir(parents=True)
        for f in sorted((flowers / c).iterdir())[:4]:
            shutil.copy(f, dest / c / f.name)
    return dest


def test_a_retrain_refusal_names_the_parameter(flowers: Path, tmp_path: Path) -> None:
    data = _two_classes(flowers, tmp_path / "data")
    with pytest.raises(UsageError) as info:
        imgtool.retrain(data, min_accuracy=0.9, test_percent=0)
    err = info.value
    assert str(err) == (
        "`min_accuracy` needs test photos, and there are none (`test_percent` is 0); raise "
        "`test_percent`, give `test_dir`, or drop `min_accuracy`"
    )
    assert (err.parameter, err.hint, err.path, err.model, err.exit_code) == ("min_accuracy", None, None, None, 2)
    with pytest.raises(UsageError) as info:
        imgtool.retrain(data, test_percent=80)
    assert (str(info.value), info.value.parameter) == ("test_percent 80 is outside 0..50", "test_percent")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(UsageError) as info:
        imgtool.retrain(data, output=mine)
    assert (info.value.parameter, info.value.path) == ("output", str(mine))
    assert str(info.value).endswith("choose another path, empty it, or pass `force` to replace it")


def test_a_model_error_names_the_model() -> None:
    with pytest.raises(imgtool.ModelNotFoundError) as info:
        imgtool.load_model("inception_v33")
    assert info.value.model == "inception_v33" and info.value.parameter is None
    assert str(info.value).endswith("(did you mean inception_v3?); the catalog lists the models")


def test_a_setting_error_gives_its_fix_as_the_hint() -> None:
    from imgtool.core.settings import parse

    with pytest.raises(SettingError) as info:
        parse({"IMGTOOL_THREADS": "many"})
    err = info.value
    assert err.name == "IMGTOOL_THREADS" and err.hint == "fix or unset it"
    assert str(err).startswith("IMGTOOL_THREADS='many' is not valid: it takes ") and str(err).endswith(
        "; fix or unset it"
    )
    assert isinstance(err, ValueError) and err.exit_code == 2


def test_a_message_is_a_str_that_keeps_what_it_names() -> None:
    text = Param("top_k") + " 0: give at least 1; " + Call("download_model", "x") + ", or " + Advice.LIST_CATALOG
    assert isinstance(text, Text) and isinstance(text, str)
    assert text == "`top_k` 0: give at least 1; `download_model('x')`, or the catalog lists the models"
    assert text.params() == ["top_k"]
    assert (
        text.say(lambda part: f"<{part!r}>")
        == "<Param('top_k')> 0: give at least 1; <Call('download_model', 'x')>, or <<Advice.LIST_CATALOG: "
        "'the catalog lists the models'>>"
    )
    assert ("(" + text + ")").parts[1:-1] == text.parts
    with pytest.raises(TypeError, match="join it with"):
        f"{Param('top_k')}"  # an f-string would flatten it to the library's words
    with pytest.raises(ValueError, match="no such call"):
        Call("fetch", "x")


def test_errors_keep_their_parts_and_fields_through_pickle() -> None:
    """Beam and multiprocessing carry exceptions between processes."""
    cases: list[ImgtoolError] = [
        UsageError(Param("quantize") + " x: choose one of none, int8", path="/m"),
        DownloadError("x is not cached; run " + Call("download_model", "x"), model="x"),
        StorageError("cannot write the model folder: disk full; choose another " + Param("output"), 28, "/out"),
        SettingError("IMGTOOL_HOME", "", "a directory"),
    ]
    for err in cases:
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
        assert back.text.parts == err.text.parts
        assert (back.parameter, back.hint, back.path, back.model) == (err.parameter, err.hint, err.path, err.model)
    storage = pickle.loads(pickle.dumps(cases[2]))
    assert isinstance(storage, StorageError) and storage.path == "/out" and storage.parameter == "output"


def test_the_builtin_bases_still_hold() -> None:
    err = StorageError("cannot write x: disk full", 28, "/x")
    assert isinstance(err, OSError) and (err.errno, err.filename, err.path) == (28, "/x", "/x")
    down = DownloadError("no network")
    assert isinstance(down, ConnectionError) and down.errno is None and down.message == "no network"


def test_first_line_quotes_one_line_of_any_error() -> None:
    assert first_line(ValueError("\n  one\ntwo")) == "one"
    assert first_line(ValueError("x" * 300)) == "x" * 200
    assert first_line(ValueError("x" * 300), None) == "x" * 300
    assert first_line(KeyError()) == "KeyError"
    assert first_line("") == ""
    ours = UsageError(Param("labels") + " f: 3 labels for 5 outputs")
    assert first_line(ours) is ours.text  # an imgtool error's line keeps what it names
