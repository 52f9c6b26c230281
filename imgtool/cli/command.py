"""The click command class every imgtool command uses (the main CLI's and `imgtool beam`'s):
environment settings are checked once the arguments are parsed and before any work, so
`--help` still works with a bad variable; and the Group both CLIs use, which turns library
errors into one `Error: ...` line and the exit code. Imports click, ui, output and errors
(settings when a command runs: `--help` does not read the environment).

Layer: above settings and errors; below cli and beam.cli (which both import it)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import click

from imgtool.core import ui
from imgtool.core.errors import Advice, Call, ImgtoolError, Param, Part, Text
from imgtool.core.output import terminal_text

# The flags of TensorFlow's retrain.py, label_image.py and classify_image.py, each with what
# does its job in imgtool: given to any imgtool command, exit 2 with this one line.
_MEAN_STD = (
    "--value-range LO,HI with LO = -mean/std and HI = (255 - mean)/std (mean 127.5, std 127.5: "
    "--value-range -1,1; mean 0, std 255: 0,1)"
)
_CONVERGED = "not needed: the last layer is fitted to convergence (full-batch L-BFGS; --l2 fixes its L2 strength)"
TF_FLAGS: dict[str, tuple[str, str]] = {
    "--image_dir": ("retrain.py", "the IMAGE_DIR argument: imgtool retrain IMAGE_DIR"),
    "--tfhub_module": ("retrain.py", "-m/--model (a catalog name, hub: handle, URL or feature-vector .tflite)"),
    "--how_many_training_steps": ("retrain.py", _CONVERGED),
    "--learning_rate": ("retrain.py", _CONVERGED),
    "--train_batch_size": ("retrain.py", _CONVERGED),
    "--eval_step_interval": ("retrain.py", _CONVERGED),
    "--validation_batch_size": ("retrain.py", "not needed: every validation photo is scored"),
    "--test_batch_size": ("retrain.py", "not needed: every test photo is scored"),
    "--output_graph": ("retrain.py", "-o/--output (a model folder; `imgtool export` writes one .tflite)"),
    "--output_labels": ("retrain.py", "-o/--output (the model folder holds labels.txt)"),
    "--saved_model_dir": ("retrain.py", "-o/--output (the model folder holds saved_model/ for TF backbones)"),
    "--intermediate_output_graphs_dir": ("retrain.py", "not needed: there is one fit, no intermediate graphs"),
    "--intermediate_store_frequency": ("retrain.py", "not needed: there is one fit, no intermediate graphs"),
    "--final_tensor_name": ("retrain.py", "not needed: the model folder's labels and serving signature say it"),
    "--testing_percentage": ("retrain.py", "--test-percent"),
    "--validation_percentage": ("retrain.py", "--validation-percent"),
    "--print_misclassified_test_images": ("retrain.py", "--print-misclassified"),
    "--bottleneck_dir": ("retrain.py", "--bottleneck-dir"),
    "--summaries_dir": ("retrain.py", "--summaries-dir"),
    "--flip_left_right": ("retrain.py", "--flip-left-right"),
    "--random_crop": ("retrain.py", "--random-crop"),
    "--random_scale": ("retrain.py", "--random-scale"),
    "--random_brightness": ("retrain.py", "--random-brightness"),
    "--logging_verbosity": ("retrain.py", "-q/--quiet for less (classify and evaluate also take -v/--verbose)"),
    "--architecture": ("retrain.py", "-m/--model (a catalog name, e.g. mobilenet_v2)"),
    "--image": ("label_image.py", "the INPUT arguments: imgtool classify PHOTO... (files or folders)"),
    "--graph": ("label_image.py", "-m/--model (a .pb graph, .tflite, SavedModel, model folder or catalog name)"),
    "--input_layer": ("label_image.py", "--input-tensor NAME (frozen .pb graphs)"),
    "--output_layer": ("label_image.py", "--output-tensor NAME (frozen .pb graphs)"),
    "--input_height": ("label_image.py", "--input-size H,W"),
    "--input_width": ("label_image.py", "--input-size H,W"),
    "--input_mean": ("label_image.py", _MEAN_STD),
    "--input_std": ("label_image.py", _MEAN_STD),
    "--model_dir": ("classify_image.py", "-m/--model (models are downloaded once into IMGTOOL_HOME)"),
    "--image_file": ("classify_image.py", "the INPUT arguments: imgtool classify PHOTO..."),
    "--num_top_predictions": ("classify_image.py", "-k/--top-k"),
}


def tf_flag_error(args: list[str], known: set[str]) -> str | None:
    """The line for the first TensorFlow-script flag among `args` (up to a bare `--`) that
    is not one of the command's own options (`known`), or None."""
    for arg in args:
        if arg == "--":
            return None
        flag = arg.split("=", 1)[0]
        if flag in TF_FLAGS and flag not in known:
            script, instead = TF_FLAGS[flag]
            return f"{flag} is a flag of TensorFlow's {script}; in imgtool: {instead}"
    return None


class Command(click.Command):
    """Checks the IMGTOOL_* settings before the command runs (exit 2 naming a bad one);
    a flag of TensorFlow's scripts is exit 2 naming what replaces it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        known = {o for p in self.get_params(ctx) if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
        problem = None if ctx.resilient_parsing else tf_flag_error(args, known)
        if problem is not None:
            raise click.UsageError(problem, ctx)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        from imgtool.core import settings

        settings.current()
        return super().invoke(ctx)


def _stdout_closed() -> None:
    """The reader of our stdout went away (`imgtool ... | head -1`): that is how a pipeline
    says "enough", not a failure. Point fd 1 at /dev/null so the interpreter's final flush
    of the buffered rest cannot fail again ("Exception ignored ... BrokenPipeError"), and
    exit 0 without a word."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real fd 1 (e.g. under CliRunner)
        pass
    sys.exit(0)


# The library names what the caller passed (`test_percent`, a call to make, a piece of advice)
# as parts of its messages (errors.Param, Call, Advice); the CLI says each part as the option,
# command or words that do the same. Applied to error messages and to the log lines on stderr.
_OPTION_OF_PARAMETER: dict[str, str] = {}


def option_of_parameter() -> dict[str, str]:
    """{parameter: the option (or argument) that passes it}: every option of options.py's
    commands by its flag, and the few parameters of others; made when first needed (an
    error or a log line), not at start-up."""
    if not _OPTION_OF_PARAMETER:
        from imgtool.core import option_fields, options

        _OPTION_OF_PARAMETER.update(
            option_fields.flag_of_parameter(options.RetrainOptions, options.ClassifyOptions, options.EvaluateOptions),
            folder="IMAGE_DIR",
            expect="--expect",
            input="--input",
            overwrite="--overwrite",
        )
    return _OPTION_OF_PARAMETER


# each errors.API_CALLS entry: the command that does the same, `{}` its argument as given
COMMAND_OF_CALL = {
    "download_model": "`imgtool models download {}`",
    "remove_models": "`imgtool models remove {}`",
    "load_model": "`-m {}`",
    "load_model.labels": "`imgtool labels -m {} --search TEXT`",
    "model=": "-m {}",
}
CLI_ADVICE = {
    Advice.GIVE_LABELS: "pass --labels FILE",
    Advice.RETRAIN_IT: "with `imgtool retrain FOLDER -m MODEL`",
    Advice.PICK_CLASSIFIER: "pick a classifier (`imgtool models list`)",
    Advice.LIST_CATALOG: "`imgtool models list` shows the catalog",
    Advice.REMOVE_CACHED: "`imgtool models remove` it",
    Advice.NOT_RETRAINED: "not a model folder written by `imgtool retrain`",
    Advice.FEATURES_NEED_OUTPUT: "--features needs -o/--output",
}


def cli_part(part: Part) -> str:
    """One part of a library message in the CLI's words: Param("min_accuracy") ->
    --min-accuracy, Call("download_model", "x") -> `imgtool models download x`."""
    if isinstance(part, Param):
        return option_of_parameter().get(part.name, str(part))
    if isinstance(part, Call):
        return COMMAND_OF_CALL[part.function].format(part.arg)
    if isinstance(part, Advice):
        return CLI_ADVICE[part]
    return str(part)


def cli_text(message: object) -> str:
    """A library message (an error's text, a log record's message) in the CLI's words; a
    plain str is said as it is."""
    return message.say(cli_part) if isinstance(message, Text) else str(message)


class Group(click.Group):
    """Turns library errors into one `Error: ...` line and the documented exit code; a
    closed stdout into a quiet exit 0 (for every command, here once).

    `lazy_commands` ({name: "module:attribute"}) are subcommands whose module is imported
    only when one is looked up (run, or listed by `--help`), as click's LazyGroup pattern
    does: `imgtool classify` never imports `imgtool beam`'s commands."""

    command_class = Command

    def __init__(self, *args: Any, lazy_commands: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy_commands.get(cmd_name)
        if target is not None and cmd_name not in self.commands:
            import importlib

            module, _, attribute = target.partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.parent is None:  # the top group: log records and progress -> stderr, signals, for this run
            from imgtool.core.output import tolerant

            tolerant(sys.stdout)  # a stdout that cannot encode a label escapes it (errors="backslashreplace")
            was_quiet = ui.quiet()
            try:
                with ui.stderr_output(cli_text), interrupts_unwind():
                    return self._invoke(ctx)
            finally:
                ui.set_quiet(was_quiet)  # a command's --quiet ends with it (in-process runs: tests, CliRunner)
        return self._invoke(ctx)

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _stdout_closed()
        except ImgtoolError as err:
            click.echo(f"Error: {terminal_text(cli_text(err.text))}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo(INTERRUPTED, err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except OSError as err:  # a write failure no library code named more precisely
            from imgtool.core import store
            from imgtool.core.errors import EXIT_STORAGE

            if not store.is_storage_error(err):
                raise
            click.echo(
                f"Error: {err.filename or 'a file'}: {store.write_cause(err)}; free some space, fix the "
                "permissions or write elsewhere",
                err=True,
            )
            ctx.exit(EXIT_STORAGE)


INTERRUPTED = "Interrupted; nothing half-written was kept."
EXIT_INTERRUPTED = 130


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_unwind() -> Iterator[None]:
    """The one signal handling of every command: SIGTERM (and SIGINT, as Python does
    already) unwinds as KeyboardInterrupt, so every temporary output is removed by the
    code that made it and the previous state stays; `Group` then prints INTERRUPTED
    and exits 130. The previous handlers are put back afterwards (library use in the
    same process is left as it was). Off the main thread, signals cannot be handled:
    nothing is changed."""
    import signal

    saved: list[tuple[int, Any]] = []
    try:
        for wanted in (signal.SIGTERM, signal.SIGINT):
            saved.append((wanted, signal.signal(wanted, _raise_interrupt)))
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for signum, handler in saved:
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _sigterm_as_interrupt() -> None:
    """For older imports: SIGTERM unwinds like Ctrl-C, for good (`interrupts_unwind`
    does it for the length of every command)."""
    import signal

    signal.signal(signal.SIGTERM, _raise_interrupt)
