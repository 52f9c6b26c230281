"""What only the CLI does with the library's messages and progress: stderr lines in the
CLI's words (options, not parameters), --quiet, tqdm bars, and nothing left behind."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from imgtool import ui
from tests.conftest import invoke


def test_cli_phrase_names_options_not_parameters() -> None:
    from imgtool.command import cli_phrase

    assert cli_phrase("`min_accuracy` needs test photos (`test_percent` is 0); give `test_dir`") == \
        "--min-accuracy needs test photos (--test-percent is 0); give --test-dir"
    assert cli_phrase("x has no labels; showing class numbers (give a labels file to name them)") == \
        "x has no labels; showing class numbers (pass --labels FILE to name them)"
    assert cli_phrase("see `imgtool models list` and `not_a_parameter`") == \
        "see `imgtool models list` and `not_a_parameter`"
    # the library names parameters and says what to do; the CLI names its options and commands
    assert cli_phrase("m.pb: no such tensor; name the tensors with `input_tensor`/`output_tensor`") == \
        "m.pb: no such tensor; name the tensors with --input-tensor/--output-tensor"
    assert cli_phrase("`input` x: no such file or folder; pass `overwrite` or `bottleneck_dir`; `expect` 'a'") == \
        "--input x: no such file or folder; pass --overwrite or --bottleneck-dir; --expect 'a'"
    assert cli_phrase("unknown catalog model 'x'; the catalog lists the models") == \
        "unknown catalog model 'x'; `imgtool models list` shows the catalog"
    assert cli_phrase("m: the cached model no longer loads; remove it from the cache") == \
        "m: the cached model no longer loads; `imgtool models remove` it"
    assert cli_phrase("d: not a model folder written by retrain (no file)") == \
        "d: not a model folder written by `imgtool retrain` (no file)"
    # a hint naming the API call names the command that makes it (the argument as the library repr'd it)
    assert cli_phrase("x is not cached; run `download_model('inception_v3')` where the network is reachable") == \
        "x is not cached; run `imgtool models download inception_v3` where the network is reachable"
    assert cli_phrase("""failed (bad); `remove_models(["/m/it's here.pb"])` retries it""") == \
        "failed (bad); `imgtool models remove /m/it's here.pb` retries it"
    assert cli_phrase(r"no such label in m; `load_model('C:\\m').labels` lists what it can say") == \
        r"no such label in m; `imgtool labels -m C:\m --search TEXT` lists what it can say"
    assert cli_phrase("`download_model` and `remove_models(x)`") == "`download_model` and `remove_models(x)`"


def test_stderr_output_prints_todays_lines_and_honours_quiet(capsys: pytest.CaptureFixture) -> None:
    log = logging.getLogger("imgtool")
    before = (list(log.handlers), log.level, log.propagate)
    try:
        with ui.stderr_output(lambda text: text.replace("`l2`", "--l2")):
            ui.info("Fitting with `l2`")
            ui.warn("skipping a.jpg: corrupt")
            log.warning("native line", extra={"imgtool_raw": True})
            ui.set_quiet(True)
            ui.info("hidden")
            ui.warn("hidden too")
            log.warning("native still shown", extra={"imgtool_raw": True})
    finally:
        ui.set_quiet(False)
    assert capsys.readouterr().err == ("Fitting with --l2\nwarning: skipping a.jpg: corrupt\nnative line\n"
                                       "native still shown\n")
    assert (list(log.handlers), log.level, log.propagate) == before
    ui.warn("after the command: the library is silent again")
    assert capsys.readouterr() == ("", "")


def test_progress_goes_to_one_bar_per_task(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[Any, ...]] = []

    class FakeBar:
        def __init__(self, total: int | None, desc: str, unit: str) -> None:
            made.append(("new", total, desc, unit))

        def update(self, n: int) -> None:
            made.append(("update", n))

        def close(self) -> None:
            made.append(("close",))

    monkeypatch.setattr(ui, "bar", FakeBar)
    with ui.stderr_output():
        t = ui.progress(5, "bottlenecks", unit="img")
        t.update(2)
        t.update(3)
        t.close()  # ended as announced: nothing more to say
        d = ui.progress(None, "download", unit="B")
        d.update(100)
        d.close()  # the end of a task of unknown size closes its bar
        d2 = ui.progress(None, "left open", unit="B")
        d2.update(1)
    assert made == [("new", 5, "bottlenecks", "img"), ("update", 2), ("update", 3), ("close",),
                    ("new", None, "download", "B"), ("update", 100), ("close",),
                    ("new", None, "left open", "B"), ("update", 1), ("close",)]  # closed with the command
    assert ui.current_callback() is None


def test_a_cli_run_leaves_the_library_logger_as_it_was(fixtures: Path) -> None:
    log = logging.getLogger("imgtool")
    before = (list(log.handlers), log.level, log.propagate)
    model = str(fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite")
    res = invoke("classify", "-m", model, "-v", str(fixtures / "imagenet" / "images" / "cat.bmp"))
    assert res.exit_code == 0
    assert res.stderr.startswith(f"{model}: 1001 outputs, read as probabilities (")
    assert (list(log.handlers), log.level, log.propagate) == before
