"""The command line: parses, calls the library, prints. No work lives here.

Heavy modules (numpy, LiteRT, TensorFlow) are imported inside commands, so `--help` is instant.
The options of classify, evaluate and retrain are imgtool/core/options.py's fields (made into
click options by cli/options.py); retrain and export are in cli/retrain.py, evaluate and
audit in cli/judging.py."""

from __future__ import annotations

import sys
from typing import Any

import click

from imgtool.cli.command import Group, _stdout_closed
from imgtool.cli.options import (
    CACHE,
    MODEL,
    USAGE,
    collect,
    exit_codes,
    format_option,
    generated,
    load,
    model_kwargs,
    quiet_option,
    verbose_option,
)
from imgtool.core import ui
from imgtool.core.errors import EXIT_FAILED, ImgtoolError
from imgtool.core.options import ClassifyOptions, ModelOptions
from imgtool.core.version import __version__


# `imgtool beam` (scale-out) and the commands of cli/retrain.py and cli/judging.py are
# imported when one is run or listed (`imgtool classify` builds none of them):
# imgtool.beam.cli imports click only, and apache_beam is imported when a beam command runs.
@click.group(
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    lazy_commands={
        "beam": "imgtool.beam.cli:beam",
        "retrain": "imgtool.cli.retrain:retrain_last_layer",
        "retrain-last-layer": "imgtool.cli.retrain:retrain_last_layer",
        "export": "imgtool.cli.retrain:export_cmd",
        "evaluate": "imgtool.cli.judging:evaluate",
        "audit": "imgtool.cli.judging:audit",
    },
)
@click.version_option(__version__, prog_name="imgtool")
def cli() -> None:
    """Classify photos with pretrained networks; retrain the last layer on your own.

    \b
      imgtool classify photo.jpg            top-5 ImageNet labels (Inception v3)
      imgtool retrain flowers/              a classifier of your own, from folders
      imgtool labels --search cat           what a model can say
      imgtool models list                   the catalog and the cache

    Models are downloaded once into IMGTOOL_HOME (default: your user cache dir);
    IMGTOOL_OFFLINE=1 never touches the network. Environment variables are
    checked before any work (a bad value is exit 2); the README lists them all.
    """


# ---------------------------------------------------------------- classify


# ---------------------------------------------------------------- classify


@cli.command(
    epilog=exit_codes(
        (0, "every input classified (and every top-1 is --expect's LABEL)"),
        (
            1,
            "some input could not be read, or a top-1 is not --expect's LABEL or is unknown under --min-score "
            "(the other inputs were still classified and printed)",
        ),
        USAGE,
        MODEL,
        CACHE,
    )
)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@generated(
    ClassifyOptions,
    after={
        "top_k": [
            format_option("json", "jsonl", "csv", help_text="text for people; json/jsonl/csv for programs."),
            click.option(
                "--expect", metavar="LABEL", help="Exit 1 unless every input's top-1 is LABEL (or one of its synonyms)."
            ),
        ]
    },
)
@quiet_option
@verbose_option
def classify(inputs: tuple[str, ...], fmt: str, expect: str | None, quiet: bool, verbose: bool, **options: Any) -> None:
    """Classify images (files or folders, searched recursively).

    \b
    Examples:
      imgtool classify photo.jpg
      imgtool classify --format jsonl -k 3 photos/
      imgtool classify --expect "hot dog" lunch.jpg   # CI check
      imgtool classify -m ./my-flowers-model garden/

    jsonl prints one object per input: {"path", "predictions": [{"label", "score", "index"}]}
    or {"path", "error"}; json an array of those; csv one row per prediction.
    """
    from imgtool.data.labels import check_expected
    from imgtool.inference.classifier import check_inputs

    ui.set_quiet(quiet)
    opts = collect(ClassifyOptions, options)
    check_inputs(inputs)  # a model among the inputs (arguments swapped): exit 2 before any download
    model = load(opts, verbose)
    if expect is not None:
        check_expected(expect, model.labels, model.ref)
    threshold = model.resolve_min_score(opts.min_score)
    if opts.min_score == "auto":
        ui.info(f"--min-score auto: {threshold:g} (suggested by retrain)")
    _classify(model, list(inputs), opts, fmt, expect, threshold)


def _classify(
    model: Any, inputs: list[str], opts: ClassifyOptions, fmt: str, expect: str | None, threshold: float | None
) -> None:
    """Classify and print each input as it comes; exit 1 for a failure or an unmet --expect."""
    from imgtool.core.output import Writer, display_path, terminal_text
    from imgtool.data.labels import matches

    n_ok = n_err = n_unknown = 0
    unmet: list[str] = []
    header = ("path", "rank", "label", "score", "index") + (("unknown",) if threshold is not None else ())
    with Writer(fmt, csv_header=header) as out:
        for res in model.classify_iter(inputs, opts.top_k, batch_size=opts.batch_size, min_score=threshold):
            shown = display_path(res.path or "")  # the CLI classifies paths only
            if res.error is not None:
                n_err += 1
                click.echo(f"error: {shown}: {terminal_text(res.error)}", err=True)
                out.record(res.to_dict())
                continue
            n_ok += 1
            preds = res.predictions or []
            n_unknown += bool(res.unknown)
            mark = f"  unknown (top score below --min-score {threshold:g})\n" if res.unknown else ""
            text = shown + "\n" + mark + "".join(f"  {p.score:.4f}  {terminal_text(p.label)}\n" for p in preds)
            extra = () if res.unknown is None else (str(res.unknown).lower(),)
            out.record(
                res.to_dict(),
                text=text,
                rows=[(res.path, r, p.label, f"{p.score:.6f}", p.index, *extra) for r, p in enumerate(preds, 1)],
            )
            if expect is not None and res.unknown:
                unmet.append(
                    terminal_text(
                        f"{shown}: unknown (top score {preds[0].score:.4f} < --min-score "
                        f"{threshold:g}), expected {expect!r}"
                    )
                )
            elif expect is not None and not (preds and matches(preds[0].label, expect)):
                unmet.append(terminal_text(f"{shown}: top-1 is {preds[0].label!r}, expected {expect!r}"))
    for line in unmet:
        click.echo(f"expectation failed: {line}", err=True)
    if n_ok + n_err > 1:
        ui.info(
            f"{n_ok} classified, {n_err} failed"
            + (f", {n_unknown} unknown" if threshold is not None else "")
            + (f", {len(unmet)} not {expect!r}" if expect else "")
        )
    if n_err or unmet:
        sys.exit(EXIT_FAILED)


# ---------------------------------------------------------------- labels


@cli.command(
    epilog=exit_codes(
        (0, "labels listed"),
        (1, "--search matched no label (said on stderr)"),
        (2, "usage error (a bad option, a feature extractor: it has no labels, or a bad IMGTOOL_* variable)"),
        (3, "the model could not be obtained or loaded, or it carries no labels (pass --labels)"),
        CACHE,
    )
)
@generated(ModelOptions)
@click.option("-s", "--search", metavar="TEXT", help="Only labels containing TEXT (case-insensitive).")
@format_option("json")
def labels(search: str | None, fmt: str, **options: Any) -> None:
    """List the labels a model can give: index<TAB>label (json: [{"index", "label"}]).

    \b
    Examples:
      imgtool labels
      imgtool labels --search retriever
      imgtool labels -m ./my-flowers-model --format json
    """
    from imgtool import api
    from imgtool.core.output import Writer, terminal_text

    opts = collect(ModelOptions, options)
    names = api.model_labels(opts.model, **model_kwargs(opts))
    if names is None:
        from imgtool.models.catalog import model_or_default

        ref = model_or_default(opts.model)
        raise _model_error(f"{ref} carries no labels; pass --labels FILE")
    from imgtool.data.labels import fold

    needle = fold(search or "")
    found = 0
    with Writer(fmt) as out:
        for i, label in enumerate(names):
            if needle in fold(label):
                found += 1
                out.record({"index": i, "label": label}, text=f"{i}\t{terminal_text(label)}\n")
    if search is not None and not found:
        from imgtool.core.output import display_path
        from imgtool.models.catalog import model_or_default

        ref = model_or_default(opts.model)
        click.echo(
            terminal_text(
                f"no label contains {search!r} (of the {len(names)} labels of {display_path(ref)}; try a shorter TEXT)"
            ),
            err=True,
        )
        sys.exit(EXIT_FAILED)


def _model_error(msg: str) -> ImgtoolError:
    from imgtool.core.errors import ModelError

    return ModelError(msg)


# ---------------------------------------------------------------- models (the store)


@cli.group(cls=Group)
def models() -> None:
    """Catalog and caches in IMGTOOL_HOME: models, bottlenecks, exports, results."""


@models.command("list", epilog=exit_codes((0, "listed"), USAGE, interrupted="interrupted (Ctrl-C)"))
@format_option("json")
def models_list(fmt: str) -> None:
    """Catalog models, what is in the cache, and retrain's caches (sizes).

    json: one object per model {"name", "description", "cached", "kind": "catalog"|"other",
    "bytes"} (catalog models also "embedded": true for the models that ship with imgtool,
    and "purpose": "classifier"|"features") and per cache {"name": "bottlenecks"|"exports"|"results",
    "kind": "cache", "cached", "path", "bytes", "entries"}.
    """
    from imgtool import api_store
    from imgtool.core.output import Writer
    from imgtool.models import caches

    with Writer(fmt) as out:
        for info in api_store.list_models():
            state = (
                "embedded"
                if info.embedded
                else "cached"
                if info.cached
                else "not cached"
                if info.key is None
                else f"damaged: {info.problem}"
            )
            if info.kind == "catalog":
                text = f"{info.name:30} {state:12} {info.description}\n"
            else:
                text = f"{info.key:30} {state:12} {info.name}\n"
            out.record(info.to_dict(), text=text)
        for c in api_store.list_caches():
            name = c.name
            out.record(
                {
                    "name": name,
                    "kind": "cache",
                    "cached": c.entries > 0,
                    "path": str(c.path),
                    "bytes": c.bytes,
                    "entries": c.entries,
                },
                text=f"{name:30} {caches.human_size(c.bytes):12} {c.description} ({c.entries} entries; "
                f"`imgtool models remove {name}`)\n",
            )


@models.command(
    "path",
    epilog=exit_codes(
        (0, "the path was printed"),
        USAGE,
        (3, "MODEL is not in the cache (`imgtool models list` shows what is)"),
        interrupted="interrupted (Ctrl-C)",
    ),
)
@click.argument("model", required=False)
def models_path(model: str | None) -> None:
    """Where the cache is (or where MODEL's entry is)."""
    from imgtool import api_store

    click.echo(str(api_store.model_path(model)))  # not cached: the error says whether and how it can be fetched


@models.command(
    "download",
    epilog=exit_codes(
        (0, "every MODEL is in the cache, ready"),
        USAGE,
        (3, "a MODEL could not be downloaded, converted or loaded"),
        CACHE,
        interrupted="interrupted (Ctrl-C): nothing half-downloaded is kept in the cache",
    ),
)
@click.argument("refs", nargs=-1, metavar="[MODEL]...")
@click.option("--features", is_flag=True, help="Also fetch the feature-vector twin used by retrain.")
@quiet_option
def models_download(refs: tuple[str, ...], features: bool, quiet: bool) -> None:
    """Download (and convert) models now, e.g. while building a CI image. Default: inception_v3."""
    from imgtool import api_store

    ui.set_quiet(quiet)
    for ref in refs or (None,):
        info = api_store.download_model(ref, features=features)
        ui.info(
            f"{info.name}: "
            + ("ships with imgtool, nothing to download" if info.embedded else "ready")
            + (" (runs in TensorFlow)" if info.runtime == "tensorflow" else "")
        )


@models.command(
    "remove",
    epilog=exit_codes(
        (0, "removed (or nothing was cached)"),
        USAGE,
        (3, "a NAME matches nothing cached (the others were still removed)"),
        (4, "could not remove (read-only, permission denied)"),
    ),
)
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("-q", "--quiet", is_flag=True, help="Say nothing (errors still shown).")
def models_remove(names: tuple[str, ...], quiet: bool) -> None:
    """Remove models from the cache; `bottlenecks`, `exports` and `results` remove retrain's caches,
    `all` removes everything cached (an empty cache is fine: exit 0).

    \b
    Examples:
      imgtool models remove inception_v3
      imgtool models remove bottlenecks exports
      imgtool models remove results
      imgtool models remove all
    """
    from imgtool import api_store

    ui.set_quiet(quiet)
    if not api_store.remove_models(names):  # each removal is logged (stderr) as it happens
        ui.info("nothing cached")


def main() -> None:
    import signal

    # a file-size limit (ulimit -f) must fail the write with EFBIG (exit 4, staging removed), not kill
    # the process. CPython ignores SIGXFSZ at startup already; this keeps it so whatever started us.
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # SIGTERM unwinds as Ctrl-C does for the whole process, also before and after the command
    # (`Group` handles it inside; here a signal while starting or exiting is still exit 130)
    from imgtool.cli.command import _raise_interrupt

    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        try:
            cli(prog_name="imgtool")
        finally:
            sys.stdout.flush()  # here, not at interpreter shutdown, where a closed pipe is noise
    except BrokenPipeError:
        _stdout_closed()
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
