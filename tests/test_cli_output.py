"""What only the CLI does with the library's messages and progress: stderr lines in the
CLI's words (options, not parameters), --quiet, tqdm bars, and nothing left behind."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from imgtool.core import ui
from tests.conftest import invoke


def test_cli_text_names_options_not_parameters() -> None:
    from imgtool.cli.command import cli_text
    from imgtool.core.errors import Advice, Call, Param

    def both(message: str) -> tuple[str, str]:  # (the library's words, the CLI's)
        return str(message), cli_text(message)

    assert both(
        Param("min_accuracy") + " needs test photos (" + Param("test_percent") + " is 0); give " + Param("test_dir")
    ) == (
        "`min_accuracy` needs test photos (`test_percent` is 0); give `test_dir`",
        "--min-accuracy needs test photos (--test-percent is 0); give --test-dir",
    )
    assert both("x has no labels; showing class numbers (" + Advice.GIVE_LABELS + " to name them)") == (
        "x has no labels; showing class numbers (give a labels file to name them)",
        "x has no labels; showing class numbers (pass --labels FILE to name them)",
    )
    # a plain str is said as it is: no word of free text is rewritten
    assert (
        cli_text("see `imgtool models list`, `min_accuracy` and the catalog lists the models")
        == "see `imgtool models list`, `min_accuracy` and the catalog lists the models"
    )
    assert cli_text(Param("not_a_parameter") + " x") == "`not_a_parameter` x"
    assert (
        cli_text("m.pb: no such tensor; name the tensors with " + Param("input_tensor") + "/" + Param("output_tensor"))
        == "m.pb: no such tensor; name the tensors with --input-tensor/--output-tensor"
    )
    assert (
        cli_text(
            Param("input")
            + " x: no such file; pass "
            + Param("overwrite")
            + " or "
            + Param("bottleneck_dir")
            + "; "
            + Param("expect")
            + " 'a'"
        )
        == "--input x: no such file; pass --overwrite or --bottleneck-dir; --expect 'a'"
    )
    assert both("unknown catalog model 'x'; " + Advice.LIST_CATALOG) == (
        "unknown catalog model 'x'; the catalog lists the models",
        "unknown catalog model 'x'; `imgtool models list` shows the catalog",
    )
    assert (
        cli_text("m: the cached model no longer loads; " + Advice.REMOVE_CACHED)
        == "m: the cached model no longer loads; `imgtool models remove` it"
    )
    assert (
        cli_text("d: " + Advice.NOT_RETRAINED + " (no file)")
        == "d: not a model folder written by `imgtool retrain` (no file)"
    )
    # a call the library names (its argument repr'd) is the command that makes it (the argument as given)
    assert both("x is not cached; run " + Call("download_model", "inception_v3") + " where the network is up") == (
        "x is not cached; run `download_model('inception_v3')` where the network is up",
        "x is not cached; run `imgtool models download inception_v3` where the network is up",
    )
    assert both("failed (bad); " + Call("remove_models", "/m/it's here.pb") + " retries it") == (
        """failed (bad); `remove_models(["/m/it's here.pb"])` retries it""",
        "failed (bad); `imgtool models remove /m/it's here.pb` retries it",
    )
    assert both("no such label in m; " + Call("load_model.labels", "C:\\m") + " lists what it can say") == (
        r"no such label in m; `load_model('C:\\m').labels` lists what it can say",
        r"no such label in m; `imgtool labels -m C:\m --search TEXT` lists what it can say",
    )
    assert both("or use " + Call("model=", "mobilenet_v2")) == (
        "or use `model='mobilenet_v2'`",
        "or use -m mobilenet_v2",
    )


def test_every_part_the_library_names_has_cli_words() -> None:
    """Each parameter the CLI renders is an option (or argument) some command declares; each call and
    piece of advice has the CLI's words (a new one without them fails here, not in a run)."""
    import click

    from imgtool.cli.command import CLI_ADVICE, COMMAND_OF_CALL, option_of_parameter
    from imgtool.cli.main import cli
    from imgtool.core.errors import API_CALLS, Advice

    declared: set[str] = set()

    def walk(cmd: click.Command) -> None:
        declared.update(o for p in cmd.params if isinstance(p, click.Option) for o in p.opts)
        declared.update(p.human_readable_name for p in cmd.params if isinstance(p, click.Argument))
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                walk(sub)

    walk(cli)  # `imgtool beam` among its commands
    assert set(option_of_parameter().values()) <= declared
    assert set(COMMAND_OF_CALL) == set(API_CALLS)
    assert set(CLI_ADVICE) == set(Advice)


def test_stderr_output_prints_todays_lines_and_honours_quiet(capsys: pytest.CaptureFixture) -> None:
    from imgtool.cli.command import cli_text
    from imgtool.core.errors import Param

    log = logging.getLogger("imgtool")
    before = (list(log.handlers), log.level, log.propagate)
    try:
        with ui.stderr_output(cli_text):
            ui.info("Fitting with " + Param("l2"))
            ui.warn("skipping a.jpg: corrupt")
            log.warning("native line", extra={"imgtool_raw": True})
            ui.set_quiet(True)
            ui.info("hidden")
            ui.warn("hidden too")
            log.warning("native still shown", extra={"imgtool_raw": True})
    finally:
        ui.set_quiet(False)
    assert capsys.readouterr().err == (
        "Fitting with --l2\nwarning: skipping a.jpg: corrupt\nnative line\nnative still shown\n"
    )
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
    assert made == [
        ("new", 5, "bottlenecks", "img"),
        ("update", 2),
        ("update", 3),
        ("close",),
        ("new", None, "download", "B"),
        ("update", 100),
        ("close",),
        ("new", None, "left open", "B"),
        ("update", 1),
        ("close",),
    ]  # closed with the command
    assert ui.current_callback() is None


def test_a_cli_run_leaves_the_library_logger_as_it_was(fixtures: Path) -> None:
    log = logging.getLogger("imgtool")
    before = (list(log.handlers), log.level, log.propagate)
    model = str(fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite")
    res = invoke("classify", "-m", model, "-v", str(fixtures / "imagenet" / "images" / "cat.bmp"))
    assert res.exit_code == 0
    assert res.stderr.startswith(f"{model}: 1001 outputs, read as probabilities (")
    assert (list(log.handlers), log.level, log.propagate) == before
