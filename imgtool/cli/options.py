"""The command line's options, made from imgtool/core/options.py's fields: one click option per
field (its flags, help, choices, range, hidden when deprecated), and the few options that
are the CLI's own (how to print: -f/--format, -q/--quiet, -v/--verbose), shared by every
command. Imports click, imgtool.core.options and option_fields only: the CLI builds these at start-up.

Layer: front ends (below cli/main.py, cli/retrain.py and cli/judging.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from imgtool.core.option_fields import Range, Spec, options_of
from imgtool.core.options import ClassifyOptions, EvaluateOptions, ModelOptions

T = TypeVar("T")
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def exit_codes(*codes: tuple[int, str], interrupted: str = "interrupted (Ctrl-C): nothing half-written is kept") -> str:
    """A command's epilog: its own exit codes, each line `CODE  what`, 130 (`interrupted`)
    last. Every command says only what it can return (tests/test_help.py checks it)."""
    return "\b\nExit codes:\n" + "\n".join(_code_line(code, what) for code, what in (*codes, (130, interrupted)))


def _code_line(code: int, what: str) -> str:
    """`  CODE  what`, wrapped at 78 columns. A line that fits, single-spaced, is what
    textwrap.fill would make of it, without the wrapping work (every epilog is built at import)."""
    first = f"  {code:<3}  "
    if len(first) + len(what) <= 78 and what == " ".join(what.split()):
        return first + what
    import textwrap

    return textwrap.fill(what, 78, initial_indent=first, subsequent_indent=" " * 7)


USAGE = (2, "usage error (a bad option, argument or IMGTOOL_* variable)")
MODEL = (3, "the model could not be obtained or loaded")
CACHE = (4, "could not write the model cache (disk full, read-only, permission denied)")


def parse_pair(kind: type, name: str) -> Callable[[click.Context, click.Parameter, str | None], Any]:
    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            a, b = (kind(v) for v in value.replace("x", ",").split(","))
            return (a, b)
        except ValueError:
            raise click.BadParameter(f"expected {name}, e.g. {'299,299' if kind is int else '-1,1'}") from None

    return parse


def _parse_min_score(ctx: click.Context, param: click.Parameter, value: str | None) -> float | str | None:
    if value is None or value == "auto":
        return value
    try:
        score = float(value)
    except ValueError:
        score = -1.0
    if not 0 <= score <= 1:
        raise click.BadParameter(f"{value!r}: give a score between 0 and 1, or auto")
    return score


def _number(kind: type, r: Range | None) -> Any:
    if r is None:
        return kind
    if kind is int:
        return click.IntRange(
            None if r.low is None else int(r.low),
            None if r.high is None else int(r.high),
            min_open=r.low_open,
            max_open=r.high_open,
        )
    return click.FloatRange(r.low, r.high, min_open=r.low_open, max_open=r.high_open)


def _click_kwargs(spec: Spec, default: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {"help": spec.help, "hidden": spec.hidden}
    if spec.metavar is not None:
        kw["metavar"] = spec.metavar
    if spec.show_default:
        kw["show_default"] = True
    if default is not None:
        kw["default"] = default
    kind = spec.kind
    if kind == "bool" and "/" not in spec.flags[0]:
        kw["is_flag"] = True
    elif kind in ("int", "float"):
        kw["type"] = _number(int if kind == "int" else float, spec.range)
    elif kind == "str" and spec.choices is not None:
        kw["type"] = click.Choice(spec.choices)
    elif kind == "folder":
        kw["type"] = click.Path(file_okay=False, path_type=Path)
    elif kind == "file":
        kw["type"] = click.Path(dir_okay=False)
    elif kind == "size":
        kw["callback"] = parse_pair(int, "HEIGHT,WIDTH")
    elif kind == "pair":
        kw["callback"] = parse_pair(float, "LO,HI")
    elif kind == "score":
        kw["callback"] = _parse_min_score
    return kw


def click_option(name: str, spec: Spec, default: Any) -> Decorator:
    """The click option of one field: its flags, the field's name as the parameter."""
    return click.option(*spec.flags, name, **_click_kwargs(spec, default))


def generated(cls: type, after: Mapping[str, Sequence[Decorator]] | None = None) -> Decorator:
    """Every option of the dataclass `cls`, in its order; `after` puts the CLI's own
    options (e.g. -f/--format) after the named field's, where --help lists them."""
    decorators: list[Decorator] = []
    for name, spec, default in options_of(cls):
        decorators.append(click_option(name, spec, default))
        decorators.extend((after or {}).get(name, ()))

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for d in reversed(decorators):
            f = d(f)
        return f

    return decorate


def collect(cls: type[T], values: dict[str, Any], **given: Any) -> T:
    """The `cls` options out of a command's keyword arguments (taken out of `values`)."""
    return cls(**given, **{name: values.pop(name) for name, _, _ in options_of(cls)})


def model_kwargs(opts: ModelOptions) -> dict[str, Any]:
    """The model options but the model itself, as `imgtool.load_model` keywords."""
    return {name: getattr(opts, name) for name, _, _ in options_of(ModelOptions) if name != "model"}


def _runtime(model: Any) -> str:
    """Which Pillow decoded and resized, and which runtime ran the model (LiteRT, or
    TensorFlow for a model that could not be converted): they decide the scores too."""
    from imgtool.core.version import made_with

    v = made_with()
    if type(model.classifier.engine).__name__ == "TFEngine":
        from importlib.metadata import version

        return f"Pillow {v['pillow']} and TensorFlow {version('tensorflow')}"
    return f"Pillow {v['pillow']} and LiteRT {v['litert']}"


def load(opts: ClassifyOptions | EvaluateOptions, verbose: bool) -> Any:
    """The model classify and evaluate run (`imgtool.load_model`); -v says how its outputs are read."""
    from imgtool import api
    from imgtool.core import ui

    model = api.load_model(opts.model, scores=opts.scores, **model_kwargs(opts))
    if verbose:
        ui.info(
            f"{model.ref}: {model.classifier.output_width} outputs, read as {model.scores} ("
            + model.scores_reason
            + ")"
        )
        ui.info(f"scores made with {_runtime(model)}")
    return model


def format_option(*formats: str, help_text: str | None = None) -> Decorator:
    """-f/--format, the same for every command: `text` for people (the default), the
    others for programs; the value arrives as `fmt` (see `imgtool.core.output.Writer`)."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        text = help_text or f"text for people; {'/'.join(formats)} for programs."
        return click.option(
            "-f", "--format", "fmt", type=click.Choice(["text", *formats]), default="text", show_default=True, help=text
        )(f)

    return decorate


def misclassified_option(help_text: str) -> Decorator:
    """--print-misclassified (retrain's test photos, evaluate's photos): the lines
    `echo_misclassified` prints."""
    return click.option("--print-misclassified", is_flag=True, help=help_text)


def echo_misclassified(misclassified: list[dict[str, Any]]) -> None:
    """One line on stdout per misclassified photo: its path, true label, prediction, score."""
    from imgtool.core.output import terminal_text

    for w in misclassified:
        click.echo(
            terminal_text(f"misclassified: {w['path']}: {w['true']} predicted as {w['predicted']} ({w['score']:.0%})")
        )


quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="No progress or summary on stderr (errors still shown)."
)
verbose_option = click.option(
    "-v", "--verbose", is_flag=True, help="Also say how the model's outputs are read, and why."
)
