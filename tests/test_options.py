"""Options declared once (imgtool/core/options.py): the click options are made from the fields,
the API checks the same choices and ranges, and the rules about combinations live in the
API, so `imgtool.retrain` refuses with the same error class (and exit code) the command
line exits with."""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

import click
import pytest

import imgtool
from imgtool.core import errors, option_fields
from imgtool.core.options import ClassifyOptions, EvaluateOptions, ModelOptions, RetrainOptions
from tests.conftest import invoke


def _params(command: click.Command) -> dict[str, click.Parameter]:
    return {p.name: p for p in command.params if p.name is not None}


@pytest.mark.parametrize(
    ("cls", "command"),
    [
        (RetrainOptions, "retrain"),
        (ClassifyOptions, "classify"),
        (EvaluateOptions, "evaluate"),
        (ModelOptions, "labels"),
    ],
)
def test_every_option_field_is_the_commands_click_option(cls: type, command: str) -> None:
    from imgtool.cli.main import cli

    params = _params(cli.get_command(click.Context(cli), command))
    for name, spec, default in option_fields.options_of(cls):
        p = params[name]
        assert isinstance(p, click.Option)
        assert tuple(p.opts + p.secondary_opts) == tuple(o for f in spec.flags for o in f.split("/")), name
        assert p.help == spec.help and p.hidden == spec.hidden, name
        if default is not None:
            assert p.default == default, name
        if spec.choices is not None:
            assert isinstance(p.type, click.Choice) and tuple(p.type.choices) == spec.choices
        if spec.range is not None:
            assert isinstance(p.type, (click.IntRange, click.FloatRange))
            assert (p.type.min, p.type.max, p.type.min_open, p.type.max_open) == (
                spec.range.low,
                spec.range.high,
                spec.range.low_open,
                spec.range.high_open,
            )


def test_deprecated_options_are_hidden_and_ignored_fields() -> None:
    deprecated = [n for n, s, _ in option_fields.options_of(RetrainOptions) if s.deprecated]
    assert deprecated == ["epochs", "steps", "learning_rate", "batch_size"]
    assert all(s.hidden for _, s, _ in option_fields.options_of(RetrainOptions) if s.deprecated)
    assert option_fields.deprecation(RetrainOptions()) is None
    assert option_fields.deprecation(RetrainOptions(steps=3)) == (
        "`steps` is deprecated and ignored: the last layer is fitted to convergence (full-batch L-BFGS), with L2 "
        "chosen by cross-validation (`l2` fixes it)"
    )


def test_check_refuses_by_the_fields_choices_and_ranges() -> None:
    cases = [
        (RetrainOptions(test_percent=60), "test_percent 60 is outside 0..50"),
        (RetrainOptions(validation_percent=-1), "validation_percent -1 is outside 0..50"),
        (RetrainOptions(l2=0.0), "l2 must be above 0 (got 0)"),
        (RetrainOptions(label_smoothing=1.0), "label_smoothing 1 is outside 0..1 (1 excluded)"),
        (RetrainOptions(random_crop=91), "random_crop 91 is outside 0..90"),
        (RetrainOptions(distorted_copies=0), "distorted_copies must be at least 1 (got 0)"),
        (RetrainOptions(quantize="int4"), "quantize 'int4': choose none, dynamic, float16 or int8"),
        (RetrainOptions(class_weight="equal"), "class_weight 'equal': choose balanced or none"),
        (RetrainOptions(min_accuracy="high"), "min_accuracy 'high': give a number"),
        (ClassifyOptions(top_k=0), "top_k must be at least 1 (got 0)"),
        (EvaluateOptions(min_accuracy=1.5), "min_accuracy 1.5 is outside 0..1"),
    ]
    for opts, message in cases:
        with pytest.raises(errors.UsageError) as info:
            option_fields.check(opts)
        assert str(info.value) == message
    option_fields.check(RetrainOptions(l2=1e-9, label_smoothing=0.99, random_crop=90, min_accuracy=1))


def test_the_cli_names_each_parameter_by_its_flag() -> None:
    from imgtool.cli.command import option_of_parameter

    for cls in (RetrainOptions, ClassifyOptions, EvaluateOptions):
        for name, spec, _ in option_fields.options_of(cls):
            assert option_of_parameter()[name] in spec.flags[-1].split("/"), name


# ---------------------------------------------------------------- the rules live in the API


def test_retrain_refuses_the_combinations_the_cli_refuses(tmp_path: Path) -> None:
    """Each of these is exit 2 on the command line (tests/test_features.py) and the same
    UsageError from Python, before any shard or model is looked at."""
    shards = str(tmp_path / "x-*.parquet")
    cases = [
        ((None,), {}, "give `folder` (one sub-folder per class), or `features`"),
        ((tmp_path,), {"features": shards, "output": tmp_path / "o"}, "give `folder` or `features`, not both"),
        ((None,), {"features": shards}, "`features` needs `output` (the model folder to write)"),
        (
            (None,),
            {"features": shards, "output": tmp_path / "o", "random_brightness": 10},
            "distortions need the photos; `features` trains on precomputed features only",
        ),
        (
            (None,),
            {"features": shards, "output": tmp_path / "o", "flip_left_right": True},
            "distortions need the photos",
        ),
        ((tmp_path,), {"random_scale": 101}, "random_scale 101 is outside 0..100"),
    ]
    for args, kw, message in cases:
        with pytest.raises(errors.UsageError) as info:
            imgtool.retrain(*args, **kw)
        assert str(info.value).startswith(message), (kw, str(info.value))
        assert info.value.exit_code == errors.EXIT_USAGE
    with pytest.raises(TypeError, match="retrain\\(\\) got an unexpected keyword argument 'epoch'"):
        imgtool.retrain(tmp_path, epoch=3)


def test_retrain_warns_once_for_the_deprecated_options(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="imgtool"), pytest.raises(errors.UsageError):
        imgtool.retrain(None, epochs=3, learning_rate=0.1)
    assert [r.getMessage() for r in caplog.records] == [
        "`epochs`, `learning_rate` are deprecated and ignored: the last layer is fitted to convergence (full-batch "
        "L-BFGS), with L2 chosen by cross-validation (`l2` fixes it)"
    ]


def test_cli_retrain_says_the_api_refusals_in_its_words(tmp_path: Path) -> None:
    res = invoke("retrain", "--features", "x-*.parquet", "--steps", "3")
    assert res.exit_code == 2
    assert res.stderr.splitlines() == [
        "warning: --steps is deprecated and ignored: the last layer is fitted to convergence (full-batch L-BFGS), "
        "with L2 chosen by cross-validation (--l2 fixes it)",
        "Error: --features needs -o/--output (the model folder to write)",
    ]


def test_evaluate_gate_and_range_live_in_the_api(mobilenet: str, photos: Path, tmp_path: Path) -> None:
    import shutil

    for cls, names in {"daisy": ["sunflower.bmp", "grace_hopper.bmp"], "macaw": ["parrot.jpg"]}.items():
        (tmp_path / "set" / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(photos / n, tmp_path / "set" / cls / n)
    model = imgtool.load_model(mobilenet)
    with pytest.raises(errors.UsageError, match=r"min_accuracy 2 is outside 0\.\.1"):
        imgtool.evaluate(model, tmp_path / "set", min_accuracy=2)
    ev = imgtool.evaluate(model, tmp_path / "set", min_accuracy=0.9)
    assert ev.accuracy == 0.6667  # rounded to 4 places, as metrics.json says it
    assert ev.below_minimum == "accuracy 66.7% is below `min_accuracy` 90.0% by 23.3%"
    assert imgtool.evaluate(model, tmp_path / "set", min_accuracy=0.6667).below_minimum is None
    assert imgtool.evaluate(model, tmp_path / "set").below_minimum is None
    assert "below_minimum" not in ev.to_dict()


def test_every_retrain_field_reaches_the_library() -> None:
    """api.retrain takes exactly RetrainOptions' fields (and `progress`): a new field is a
    new keyword, with nothing else to edit."""
    names = {f.name for f in fields(option_fields.made(RetrainOptions))} - {"image_dir"}
    opts = option_fields.typed(
        RetrainOptions,
        "retrain",
        image_dir="photos",
        output="out",
        model=Path("m.tflite"),
        **{n: getattr(RetrainOptions(), n) for n in names - {"output", "model"}},
    )
    assert opts.image_dir == Path("photos") and opts.output == Path("out") and opts.model == "m.tflite"
