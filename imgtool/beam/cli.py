"""`imgtool beam classify|features`: the click commands. Parses and prints only; the work
is in launcher.py (before the run) and pipelines.py / worker.py (the run). Importing this
module imports click alone: apache_beam is loaded when a command runs."""

from __future__ import annotations

import sys
from typing import Any

import click

from imgtool.cli.command import Command
from imgtool.core.errors import EXIT_FAILED, UsageError

BEAM_EPILOG = """\b
Everything after `--` goes to Beam's PipelineOptions unchanged; an option Beam
does not know is an error (exit 2). Without --runner: the local FnApiRunner,
multi-threaded, one thread per core (needs no network; listens on 127.0.0.1
only). See docs/scale-out.md.

\b
Exit codes:
  0    every photo done
  1    some photos failed (each has an {"path", "error"} record), the pipeline
       failed, or no worker connected within --worker-timeout
  2    usage error (unknown Beam option or runner, a filesystem without its
       extra, existing output without --overwrite, ...)
  3    the model could not be obtained or loaded
  130  interrupted (Ctrl-C or SIGTERM): a local run stops and its unfinished
       shards are removed; a runner's job is cancelled, and the line says
       whether the runner confirmed it"""


class BeamCommand(Command):
    """Splits the arguments at the first `--`: before it, imgtool's options (a stray
    word there is an error); after it, Beam's, kept verbatim in ctx.meta."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            args, ctx.meta["beam_args"] = args[:i], args[i + 1 :]
        else:
            ctx.meta["beam_args"] = []
        return super().parse_args(ctx, args)


def _require_beam() -> None:
    from imgtool.beam import INSTALL_HINT, beam_installed

    if not beam_installed():
        raise UsageError(f"apache-beam is not installed in this Python ({sys.executable}); {INSTALL_HINT}")


def _quiet_beam_logs() -> None:
    """Beam logs start-up chatter through the root logger (\"apitools not found\", runner
    details); its failures reach us as exceptions, so only errors are shown."""
    import logging

    logging.basicConfig(level=logging.ERROR, format="beam: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.ERROR)


def _common(f: Any) -> Any:
    opts = [
        click.option(
            "-m",
            "--model",
            "model",
            metavar="MODEL",
            envvar="IMGTOOL_MODEL",
            help="As for `imgtool classify` (catalog name, .tflite, retrain output folder, ...); "
            "resolved here, then shipped to the workers as one .tflite.",
        ),
        click.option(
            "-i",
            "--input",
            "src",
            required=True,
            metavar="SRC",
            help="A folder (searched recursively) or a glob: photos/, 'gs://bucket/photos/**/*.jpg'.",
        ),
        click.option(
            "-o",
            "--output",
            "prefix",
            required=True,
            metavar="PREFIX",
            help="Output path prefix: shards PREFIX-00000-of-0000N.EXT (local, gs://, s3://, ...).",
        ),
        click.option("--overwrite", is_flag=True, help="Replace shards already at PREFIX-*."),
        click.option(
            "--batch-size",
            default=8,
            show_default=True,
            type=click.IntRange(min=1),
            help="Photos per model call on a worker (a fixed size).",
        ),
        click.option("-q", "--quiet", is_flag=True, help="No summary on stderr."),
        click.option(
            "--worker-timeout",
            default=120.0,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            metavar="SECONDS",
            help="With workers started elsewhere (--environment_type=EXTERNAL/PROCESS/DOCKER, "
            "multi_processing): fail when none has connected after this long.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _report(res: Any, quiet: bool, what: str) -> None:
    from imgtool.core import ui

    ui.set_quiet(quiet)
    ui.info(
        f"{res.photos} photos {what}, {res.failed} failed, in {res.seconds:.1f} s; "
        f"{len(res.shards)} shard(s): {res.shards[0] if res.shards else '-'}" + (" ..." if len(res.shards) > 1 else "")
    )
    if res.failed:
        sys.exit(EXIT_FAILED)


def _end_now(message: str, code: int) -> None:
    """Say what became of the run, then end now: the runner's own threads (a gRPC call to
    a worker that never answers, bundles being torn down) must not hold the exit up."""
    import os

    click.echo(message, err=True)
    for stream in (sys.stdout, sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from imgtool.core.errors import NoWorkers

    try:
        return fn(*args, **kwargs)
    except NoWorkers as err:
        _end_now(f"Error: {err}", err.exit_code)
    except KeyboardInterrupt as err:
        _end_now(getattr(err, "message", None) or "Interrupted; the run stopped and wrote no shards.", 130)


def _interrupts_end_quietly() -> None:
    """SIGINT and SIGTERM unwind as KeyboardInterrupt (unfinished shards are removed), and
    first silence the runner's threads, which print tracebacks while they are torn down."""
    import signal

    from imgtool.beam.pipelines import silence_shutdown

    def handler(signum: int, frame: object) -> None:
        silence_shutdown()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _prepare(beam_args: list[str], src: str, prefix: str, overwrite: bool) -> tuple[Any, list[str], str]:
    _require_beam()
    _quiet_beam_logs()
    _interrupts_end_quietly()  # a killed run removes its unfinished shards, as Ctrl-C does
    from imgtool.beam import launcher

    options = launcher.pipeline_options(beam_args)
    launcher.check_runner(options)
    launcher.check_paths(options, src, prefix)
    launcher.use_options(options)  # before any I/O of ours: listing, staging, the output check
    replace = launcher.check_output(prefix, overwrite)
    if launcher.pickles_by_value(options):
        launcher.register_by_value()
    return options, replace, launcher.staging_root(options, prefix)


@click.group()
def beam() -> None:
    """Classify photos or extract retraining features on Apache Beam (local, Dataflow,
    Flink, Spark). Needs the beam extra: `make install-beam` (.venv-beam).

    \b
    Examples:
      imgtool beam classify -m mobilenet.tflite -i photos/ -o out/labels
      imgtool beam features -m embedding.tflite -i flowers/ -o out/flowers
      imgtool retrain --features 'out/flowers-*.parquet' -m embedding.tflite -o flowers-model
    """


@beam.command("classify", cls=BeamCommand, epilog=BEAM_EPILOG)
@_common
@click.option(
    "--labels",
    "labels_file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Labels file, one a line (always wins over the model's own).",
)
@click.option("-k", "--top-k", default=5, show_default=True, type=click.IntRange(min=1), help="Predictions per photo.")
def beam_classify(
    model: str | None,
    src: str,
    prefix: str,
    overwrite: bool,
    batch_size: int,
    quiet: bool,
    worker_timeout: float,
    labels_file: str | None,
    top_k: int,
) -> None:
    """Classify every photo under SRC into JSONL shards PREFIX-*.jsonl, one record per photo
    in `imgtool classify --format jsonl`'s schema ({"path", "predictions"} or {"path", "error"}).

    \b
    Examples:
      imgtool beam classify -m mobilenet_v2.tflite -i photos/ -o out/labels
      imgtool beam classify -m flowers-model -i 'gs://b/photos/**/*.jpg' -o gs://b/out/labels -- \\
          --runner=DataflowRunner --project=P --region=europe-west1 --temp_location=gs://b/tmp \\
          --sdk_container_image=europe-docker.pkg.dev/P/images/imgtool-worker:2.77.0
    """
    options, replace, root = _prepare(click.get_current_context().meta["beam_args"], src, prefix, overwrite)
    from imgtool.beam import launcher, pipelines

    spec = launcher.prepare_model(model, "classify", root, labels_file=labels_file)
    res = _run(
        pipelines.run_classify,
        options,
        spec,
        src,
        prefix,
        top_k=top_k,
        batch_size=batch_size,
        replace=replace,
        worker_timeout=worker_timeout,
    )
    _report(res, quiet, "classified")


@beam.command("features", cls=BeamCommand, epilog=BEAM_EPILOG)
@_common
def beam_features(
    model: str | None, src: str, prefix: str, overwrite: bool, batch_size: int, quiet: bool, worker_timeout: float
) -> None:
    """Backbone features of a folder-per-class dataset (SRC = ROOT) into Parquet shards
    PREFIX-*.parquet: path relative to ROOT, class (first folder), content sha256 (the
    bottleneck cache key), the feature vector and the backbone identity; a photo that
    fails has its error instead. Train on them with `imgtool retrain --features`.

    \b
    Examples:
      imgtool beam features -m embedding.tflite -i flowers/ -o out/flowers
      imgtool retrain --features 'out/flowers-*.parquet' -m embedding.tflite -o flowers-model
    """
    options, replace, root = _prepare(click.get_current_context().meta["beam_args"], src, prefix, overwrite)
    from imgtool.beam import launcher, pipelines

    spec = launcher.prepare_model(model, "features", root)
    res = _run(
        pipelines.run_features,
        options,
        spec,
        src,
        prefix,
        batch_size=batch_size,
        replace=replace,
        worker_timeout=worker_timeout,
    )
    _report(res, quiet, "read")


def main(argv: list[str] | None = None) -> None:
    """`python -m imgtool.beam ...` (what Dataflow templates run): the same commands."""
    from imgtool.cli.command import Group

    @click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
    def root() -> None:
        """imgtool's Beam pipelines."""

    for name, cmd in beam.commands.items():
        root.add_command(cmd, name)
    try:
        root(args=argv, prog_name="python -m imgtool.beam")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
