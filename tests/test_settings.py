"""Environment settings: parsed and checked once, in imgtool/core/settings.py; a bad value is
exit 2 naming the variable and what it takes, before any work."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from imgtool.core import settings
from imgtool.core.errors import SettingError
from imgtool.core.settings import parse
from tests.conftest import invoke, run


def test_defaults_from_an_empty_environment() -> None:
    s = parse({})
    assert s == settings.Settings(
        home=None,
        offline=False,
        model=None,
        backbone=None,
        catalog=None,
        timeout=30.0,
        retries=2,
        lock_timeout=3600.0,
        threads=None,
        no_progress=False,
        kaggle_auth=None,
    )


def test_values_are_parsed_to_their_types() -> None:
    s = parse(
        {
            "IMGTOOL_HOME": "~/x",
            "IMGTOOL_OFFLINE": " Yes ",
            "IMGTOOL_MODEL": "mobilenet_v2",
            "IMGTOOL_BACKBONE": "./bb.tflite",
            "IMGTOOL_CATALOG": "/c.json",
            "IMGTOOL_TIMEOUT": "2.5",
            "IMGTOOL_RETRIES": "5",
            "IMGTOOL_THREADS": "3",
            "IMGTOOL_NO_PROGRESS": "off",
            "IMGTOOL_LOCK_TIMEOUT": "0.5",
            "KAGGLE_USERNAME": "ann",
            "KAGGLE_KEY": "k3y",
        }
    )
    assert s.home == Path("~/x").expanduser()
    assert s.offline is True and s.no_progress is False
    assert (s.model, s.backbone, s.catalog) == ("mobilenet_v2", "./bb.tflite", "/c.json")
    assert s.timeout == 2.5 and s.retries == 5 and s.threads == 3 and s.lock_timeout == 0.5
    assert s.kaggle_auth == ("ann", "k3y")


@pytest.mark.parametrize(
    "value,expected",
    [
        ("1", True),
        ("true", True),
        ("ON", True),
        ("yes", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("", False),
    ],
)
def test_booleans(value: str, expected: bool) -> None:
    assert parse({"IMGTOOL_OFFLINE": value}).offline is expected
    assert parse({"IMGTOOL_NO_PROGRESS": value}).no_progress is expected


def test_empty_numbers_mean_the_default() -> None:
    s = parse({"IMGTOOL_TIMEOUT": "", "IMGTOOL_RETRIES": " ", "IMGTOOL_THREADS": ""})
    assert (s.timeout, s.retries, s.threads) == (30.0, 2, None)


def test_one_kaggle_half_is_no_credentials() -> None:
    assert parse({"KAGGLE_USERNAME": "ann"}).kaggle_auth is None
    assert parse({"KAGGLE_KEY": "k"}).kaggle_auth is None


@pytest.mark.parametrize(
    "name,value,takes",
    [
        ("IMGTOOL_RETRIES", "x", "a whole number of attempts, 1 or more"),
        ("IMGTOOL_RETRIES", "0", "a whole number of attempts, 1 or more"),
        ("IMGTOOL_RETRIES", "-1", "a whole number of attempts, 1 or more"),
        ("IMGTOOL_RETRIES", "1.5", "a whole number of attempts, 1 or more"),
        ("IMGTOOL_TIMEOUT", "abc", "a number of seconds greater than 0"),
        ("IMGTOOL_TIMEOUT", "0", "a number of seconds greater than 0"),
        ("IMGTOOL_TIMEOUT", "-3", "a number of seconds greater than 0"),
        ("IMGTOOL_TIMEOUT", "nan", "a number of seconds greater than 0"),
        ("IMGTOOL_TIMEOUT", "inf", "a number of seconds greater than 0"),
        ("IMGTOOL_LOCK_TIMEOUT", "0", "a number of seconds greater than 0"),
        ("IMGTOOL_LOCK_TIMEOUT", "soon", "a number of seconds greater than 0"),
        ("IMGTOOL_THREADS", "two", "a whole number of threads, 1 or more"),
        ("IMGTOOL_THREADS", "0", "a whole number of threads, 1 or more"),
        ("IMGTOOL_OFFLINE", "maybe", "a boolean (1/true/yes/on or 0/false/no/off)"),
        ("IMGTOOL_NO_PROGRESS", "2", "a boolean (1/true/yes/on or 0/false/no/off)"),
    ],
)
def test_bad_values_name_the_variable_and_what_it_takes(name: str, value: str, takes: str) -> None:
    with pytest.raises(SettingError) as err:
        parse({name: value})
    assert str(err.value) == f"{name}={value!r} is not valid: it takes {takes}; fix or unset it"
    assert err.value.exit_code == 2 and err.value.name == name


def test_smallest_valid_numbers() -> None:
    s = parse({"IMGTOOL_TIMEOUT": "0.001", "IMGTOOL_RETRIES": "1", "IMGTOOL_THREADS": "1"})
    assert (s.timeout, s.retries, s.threads) == (0.001, 1, 1)
    assert not math.isnan(s.timeout)


def test_current_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGTOOL_RETRIES", "4")
    assert settings.current().retries == 4
    monkeypatch.setenv("IMGTOOL_RETRIES", "7")
    assert settings.current().retries == 7


def test_the_library_reads_its_settings_from_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from imgtool.core import store, ui
    from imgtool.models import download
    from imgtool.runtime import engine

    monkeypatch.setenv("IMGTOOL_TIMEOUT", "42")
    monkeypatch.setenv("IMGTOOL_RETRIES", "3")
    monkeypatch.setenv("IMGTOOL_THREADS", "5")
    monkeypatch.setenv("IMGTOOL_OFFLINE", "on")
    monkeypatch.setenv("IMGTOOL_HOME", str(tmp_path))
    assert download._timeout() == (10.0, 42.0) and download._attempts() == 3
    assert engine.default_threads() == 5
    assert store.offline() is True and store.home() == tmp_path
    monkeypatch.setenv("IMGTOOL_NO_PROGRESS", "0")
    ui.set_quiet(False)
    assert ui.progress_enabled() is False  # stderr is not a terminal under pytest; the setting allows it
    monkeypatch.setenv("IMGTOOL_NO_PROGRESS", "1")
    assert ui.progress_enabled() is False


@pytest.mark.parametrize(
    "name,value",
    [
        ("IMGTOOL_RETRIES", "x"),
        ("IMGTOOL_TIMEOUT", "abc"),
        ("IMGTOOL_THREADS", "two"),
        ("IMGTOOL_THREADS", "-2"),
        ("IMGTOOL_OFFLINE", "perhaps"),
    ],
)
@pytest.mark.parametrize(
    "command", [["classify", "photo.jpg"], ["labels"], ["models", "list"], ["retrain", "no-such-folder"]]
)
def test_cli_checks_the_environment_before_any_work(
    name: str, value: str, command: list[str], monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    monkeypatch.setenv(name, value)
    res = invoke(*command)
    assert res.exit_code == 2
    assert res.stderr == f"Error: {name}={value!r} is not valid: it takes {settings.VARIABLES[name]}; fix or unset it\n"
    assert not (isolated_home / "models").exists() and not (isolated_home / "tmp").exists()


def test_bad_setting_in_a_real_process_is_one_line_not_a_traceback(fixtures: Path) -> None:
    model = str(fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite")
    photo = str(fixtures / "imagenet" / "images" / "parrot.jpg")
    for name, value in (("IMGTOOL_THREADS", "two"), ("IMGTOOL_TIMEOUT", "abc"), ("IMGTOOL_RETRIES", "x")):
        res = run("classify", "-m", model, photo, env={name: value})
        assert res.returncode == 2
        assert res.stderr.splitlines() == [
            f"Error: {name}={value!r} is not valid: it takes {settings.VARIABLES[name]}; fix or unset it"
        ]
        assert res.stdout == ""


def test_backbone_variable_is_retrains_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fixtures: Path) -> None:
    import json
    import shutil

    embedder = fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
    for c in ("daisy", "roses"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for f in sorted((fixtures / "flowers-mini" / c).iterdir())[:4]:
            shutil.copy(f, tmp_path / "data" / c / f.name)
    monkeypatch.setenv("IMGTOOL_BACKBONE", str(embedder))
    res = invoke(
        "retrain",
        "-q",
        str(tmp_path / "data"),
        "-o",
        str(tmp_path / "out"),
        "--epochs",
        "2",
        "-f",
        "json",
        "--no-export",
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["backbone"] == str(embedder)
    meta = json.loads((tmp_path / "out" / "imgtool-model.json").read_text())
    assert meta["backbone"]["ref"] == str(embedder)


def test_every_command_checks_the_environment_and_help_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    from imgtool.cli.command import Command
    from imgtool.cli.main import cli
    from tests.support import clidoc

    commands = [c for _, c, _ in clidoc.walk(cli) if not isinstance(c, click.Group)]  # beam's, loaded lazily, too
    assert len(commands) >= 9 and all(isinstance(c, Command) for c in commands)
    monkeypatch.setenv("IMGTOOL_TIMEOUT", "abc")
    for args in (["--help"], ["classify", "--help"], ["models", "remove", "--help"]):
        res = invoke(*args)
        assert res.exit_code == 0 and "Usage:" in res.stdout
    res = invoke("models", "path")
    assert res.exit_code == 2 and "IMGTOOL_TIMEOUT='abc'" in res.stderr


@pytest.mark.parametrize("value", ["100000", "2147483648"])
def test_imgtool_threads_is_bounded(value: str) -> None:
    from imgtool.core.settings import max_threads

    with pytest.raises(SettingError, match=rf"IMGTOOL_THREADS='{value}' is not valid: .*at most {max_threads()}"):
        parse({"IMGTOOL_THREADS": value})
    assert parse({"IMGTOOL_THREADS": str(max_threads())}).threads == max_threads()
    res = run("labels", env={"IMGTOOL_THREADS": value})
    assert res.returncode == 2 and res.stderr.startswith("Error: IMGTOOL_THREADS=") and res.stderr.count("\n") == 1
    assert f"at most {max_threads()}" in res.stderr
