"""The commands that judge: evaluate (a classifier on a labelled folder) and audit (a
labelled folder, before training). Each parses (evaluate's options come from
imgtool/core/options.py), calls the API and prints.

Layer: front ends (cli/main.py adds these commands to its group, lazily)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from imgtool.cli.command import Command, cli_text
from imgtool.cli.options import (
    CACHE,
    MODEL,
    USAGE,
    collect,
    echo_misclassified,
    exit_codes,
    format_option,
    generated,
    load,
    misclassified_option,
    parse_pair,
    quiet_option,
    verbose_option,
)
from imgtool.core import ui
from imgtool.core.errors import EXIT_FAILED
from imgtool.core.options import EvaluateOptions
from imgtool.core.output import terminal_lines


@click.command(
    cls=Command,
    epilog=exit_codes(
        (0, "every photo evaluated (and accuracy reaches --min-accuracy)"),
        (1, "some photo could not be read, or accuracy is below --min-accuracy"),
        USAGE,
        MODEL,
        CACHE,
    ),
)
@click.argument("image_dir", type=click.Path(file_okay=False, path_type=Path))
@generated(
    EvaluateOptions,
    after={"output_tensor": [format_option("json"), misclassified_option("List misclassified photos (text format).")]},
)
@quiet_option
@verbose_option
def evaluate(image_dir: Path, fmt: str, print_misclassified: bool, quiet: bool, verbose: bool, **options: Any) -> None:
    """Accuracy, per-class precision/recall and confusion matrix of any classifier on a
    labelled folder (one sub-folder per class, named after the model's labels).

    \b
    Examples:
      imgtool evaluate -m flowers-model more-flowers/
      imgtool evaluate -m flowers-model more-flowers/ --format json --min-accuracy 0.8
    """
    import json

    from imgtool import api_training
    from imgtool.numbers import metrics as metrics_mod

    ui.set_quiet(quiet)
    opts = collect(EvaluateOptions, options)
    ev = api_training.evaluate(load(opts, verbose), image_dir, min_accuracy=opts.min_accuracy)
    m = ev.metrics
    if ev.seen_in_training:
        ui.warn(
            f"{ev.seen_in_training} of the {m['count']} photos evaluated "
            f"{'was' if ev.seen_in_training == 1 else 'were'} used to train this model "
            "(its train/validation photos, by content); accuracy on them is optimistic - evaluate on photos "
            "it has not seen"
        )
    if fmt == "json":
        click.echo(json.dumps(ev.to_dict(), indent=2))
    else:
        click.echo(terminal_lines(metrics_mod.format_text(m, str(image_dir))))
        if ev.ece is not None:
            click.echo(f"  calibration: expected calibration error {ev.ece:.3f} (top-1 scores, 10 bins)")
        if print_misclassified:
            echo_misclassified(ev.misclassified)
    if ev.below_minimum:
        click.echo(f"Error: {cli_text(ev.below_minimum)}", err=True)
        sys.exit(EXIT_FAILED)
    if ev.failures:
        sys.exit(EXIT_FAILED)


def _check_page(path: Path) -> None:
    """An HTML page to write: not a folder, and its folder (or the nearest one that
    exists: the missing ones are made) writable - said before any work, as the write
    itself would say it (exit 4)."""
    import errno
    import os

    from imgtool.core import store
    from imgtool.core.errors import UsageError

    if path.is_dir():
        raise UsageError(f"-o {path} is a folder; give the path of the .html file to write")
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        code = errno.ENOTDIR if not parent.is_dir() else errno.EACCES
        raise store.storage_error(
            OSError(code, os.strerror(code), str(parent)), f"the report {path}", "choose another -o"
        )


@click.command(
    cls=Command,
    epilog=exit_codes(
        (0, "nothing found: no suspect, duplicate, outlier or problem"),
        (1, "something was found (listed on stdout)"),
        USAGE,
        MODEL,
        (4, "could not write the -o page or the bottleneck cache (disk full, read-only, permission denied)"),
        interrupted="interrupted (Ctrl-C): a half-written -o page is never left",
    ),
)
@click.argument("image_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-m",
    "--model",
    "model",
    metavar="MODEL",
    help="Backbone, as for retrain (its features and cache are shared with retrain). "
    "Default: $IMGTOOL_BACKBONE, else inception_v3.",
)
@format_option("json", help_text="json: one object with suspects, duplicates, outliers, problems and summary.")
@click.option(
    "-o",
    "--output",
    "report",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="REPORT.html",
    help="Also write an HTML page with thumbnails of every finding.",
)
@click.option(
    "--validation-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Given validation photos (one sub-folder per class), as for retrain.",
)
@click.option(
    "--test-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Given test photos (one sub-folder per class), as for retrain.",
)
@click.option(
    "--validation-percent",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0, 50),
    help="As for retrain: the splits the duplicates are checked against.",
)
@click.option(
    "--test-percent",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0, 50),
    help="As for retrain: the splits the duplicates are checked against.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Draws the cross-validation folds.")
@click.option(
    "--bottleneck-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Bottleneck cache (default: IMGTOOL_HOME/bottlenecks, shared with retrain).",
)
@click.option(
    "--input-size",
    callback=parse_pair(int, "HEIGHT,WIDTH"),
    metavar="H,W",
    help="Input size for backbones that do not say.",
)
@click.option(
    "--value-range",
    callback=parse_pair(float, "LO,HI"),
    metavar="LO,HI",
    help="Pixel values 0..255 map linearly to LO..HI, for backbones that do not say.",
)
@quiet_option
def audit(
    image_dir: Path,
    model: str | None,
    fmt: str,
    report: Path | None,
    validation_dir: Path | None,
    test_dir: Path | None,
    validation_percent: float,
    test_percent: float,
    seed: int,
    bottleneck_dir: Path | None,
    input_size: Any,
    value_range: Any,
    quiet: bool,
) -> None:
    """What is wrong with a labelled folder (the layouts retrain reads), before training:
    suspect labels, duplicates, outliers, unreadable files, tiny classes, imbalance.

    \b
    Examples:
      imgtool audit flowers/
      imgtool audit flowers/ -m embedding.tflite -f json > audit.json
      imgtool audit flowers/ -o audit.html
    """
    import json

    from imgtool import api_training
    from imgtool.core import store
    from imgtool.training import audit_page
    from imgtool.training.auditing import format_text

    ui.set_quiet(quiet)
    if report is not None:
        _check_page(report)  # before the work, not after it
    result = api_training.audit(
        image_dir,
        model=model,
        seed=seed,
        validation_percent=validation_percent,
        test_percent=test_percent,
        validation_dir=validation_dir,
        test_dir=test_dir,
        input_size=input_size,
        value_range=value_range,
        bottleneck_dir=bottleneck_dir,
    )
    if report is not None:
        html = audit_page.render_audit(result.to_dict(), f"imgtool audit: {Path(image_dir).name}")
        try:
            store.atomic_write_text(report, html)
        except OSError as err:
            raise store.storage_error(err, f"the report {report}", "choose another -o") from None
        ui.info(f"report written to {report}")
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(format_text(result))
    if result.found:
        sys.exit(EXIT_FAILED)
