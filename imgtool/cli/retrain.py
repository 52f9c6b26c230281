"""The commands that train and judge: retrain (retrain-last-layer), export, evaluate and
audit. Each parses (its options come from imgtool/core/options.py), calls the API and prints.

Layer: front ends (cli.py adds these commands to its group)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from imgtool.cli.command import Command, cli_text
from imgtool.cli.options import (
    CACHE,
    MODEL,
    USAGE,
    collect,
    exit_codes,
    format_option,
    generated,
    load,
    parse_pair,
    quiet_option,
    verbose_option,
)
from imgtool.core import ui
from imgtool.core.errors import EXIT_FAILED
from imgtool.core.options import QUANTIZE_MODES, EvaluateOptions, RetrainOptions
from imgtool.core.output import terminal_lines, terminal_text

if TYPE_CHECKING:
    from imgtool.training.retraining import RetrainResult


def _print_misclassified(help_text: str) -> Any:
    return click.option("--print-misclassified", is_flag=True, help=help_text)


@click.command(
    "retrain-last-layer",
    cls=Command,
    epilog=exit_codes(
        (0, "the model folder was written (its path and report.html's are the last lines on stderr)"),
        (1, "test accuracy is below --min-accuracy: no model was written"),
        (
            2,
            "usage error (folder layout, class sizes, --output, a classifier as --model, an option the model "
            "contradicts, a bad IMGTOOL_* variable)",
        ),
        MODEL,
        (
            4,
            "could not write (disk full, file too large, read-only, permission denied): nothing half-written is "
            "left, a previous model in --output is unchanged",
        ),
        interrupted="interrupted (Ctrl-C or SIGTERM): nothing half-written is left, a previous model is unchanged",
    ),
)
@click.argument("image_dir", type=click.Path(file_okay=False, path_type=Path), required=False)
@generated(
    RetrainOptions, after={"summaries_dir": [_print_misclassified("List misclassified test photos (text format).")]}
)
@format_option("json", help_text="json: the metrics as one object on stdout.")
@quiet_option
def retrain_last_layer(
    image_dir: Path | None, print_misclassified: bool, fmt: str, quiet: bool, **options: Any
) -> None:
    """Train a new last layer on IMAGE_DIR (one sub-folder per class, or train/ + val/
    [+ test/] each with the class sub-folders). `imgtool retrain` and `imgtool
    retrain-last-layer` are the same command.

    The backbone stays frozen; its features ("bottlenecks") are computed once and cached,
    so a second run over the same photos does no backbone work. The last layer is an
    L2-regularised logistic regression fitted to convergence; L2 is chosen by 5-fold
    cross-validation on train+validation, then the layer is refitted on them; the test
    split is never fitted on. A rerun of identical inputs (photos, backbone, options,
    versions) into the same --output reuses that folder: nothing is fitted or written,
    the same output is printed.

    \b
    Examples:
      imgtool retrain flowers/
      imgtool retrain flowers/ -o flowers-model --min-accuracy 0.8
      imgtool retrain photos/ --test-dir holdout/ --class-weight none
      imgtool classify -m flowers-model garden.jpg
      imgtool retrain --features 'out/flowers-*.parquet' -m embedding.tflite -o flowers-model
    """
    from imgtool import api_training

    ui.set_quiet(quiet)
    result = api_training.retrain(image_dir, **options)
    if fmt == "json":
        _print_json(result)
    else:
        _print_summary(result.metrics)
    if print_misclassified and fmt == "text":
        _print_wrong(result.misclassified)
    if result.below_minimum:
        click.echo(f"Error: {cli_text(result.below_minimum)}", err=True)
        sys.exit(EXIT_FAILED)
    for line in _export_lines(result.metrics.get("exports") or []):
        ui.info(line)
    ui.info(f"model written to {result.output}  (try: imgtool classify -m {result.output} PHOTO)")
    ui.info(f"report: {result.report}")


def _print_json(result: RetrainResult) -> None:
    import json

    click.echo(
        json.dumps(
            {
                **{k: v for k, v in result.metrics.items() if k != "history"},
                "output": str(result.output) if result.output else None,
                "report": str(result.report) if result.report else None,
                "misclassified": result.misclassified,
            },
            indent=2,
        )
    )


def _print_summary(m: dict[str, Any]) -> None:
    """The head, calibration and validation lines (stderr), then the test metrics (stdout)."""
    from imgtool.numbers import metrics as metrics_mod

    h = m["head"]
    ui.info(
        "head: " + h["method"] + f"; L2 {h['l2']:g}, cross-validated accuracy {h['cv_accuracy']:.1%} "
        f"+- {h['cv_accuracy_std']:.1%} over {h['cv_folds']} folds, log-loss {h['cv_loss']:.3f}"
    )
    cal, opens = m.get("calibration"), m.get("open_set") or {}
    if cal:
        s_text = (
            f"; suggested --min-score {opens['min_score']:g} (accepts {opens['accepted']:.0%} of photos, "
            f"{opens['precision']:.0%} of them right)"
            if opens.get("min_score") is not None
            else ""
        )
        ui.info(
            f"calibration: temperature {cal['temperature']:.3g}, out-of-fold ECE {cal['ece_before']:.3f} -> "
            f"{cal['ece_after']:.3f}{s_text}"
        )
    if m["validation"]["accuracy"] is not None:
        base = m["validation"]["baseline"]
        ui.info(
            f"validation accuracy (out-of-fold): {m['validation']['accuracy']:.1%}; "
            f"majority-class baseline {base['accuracy']:.1%}"
        )
    click.echo(terminal_lines(metrics_mod.format_text(m["test"], "test")))


def _print_wrong(misclassified: list[dict[str, Any]]) -> None:
    for w in misclassified:
        click.echo(
            terminal_text(f"misclassified: {w['path']}: {w['true']} predicted as {w['predicted']} ({w['score']:.0%})")
        )


def _export_lines(records: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in records:
        if "bytes" not in r:  # a failed export: warned about when it happened
            continue
        acc = "unknown" if r.get("test_accuracy") is None else f"{r['test_accuracy']:.1%}"
        ref = (
            ""
            if r.get("float_test_accuracy") is None or r.get("quantize") == "none"
            else f" (float: {r['float_test_accuracy']:.1%})"
        )
        out.append(
            f"exported {r['file']}: {r['bytes'] / 1e6:.2f} MB, {r['quantize']}, test accuracy {acc}{ref}"
            + (f"; {r['note']}" if r.get("note") else "")
        )
    return out


@click.command(
    "export",
    cls=Command,
    epilog=exit_codes(
        (0, "the .tflite was written, and recorded in MODEL_DIR's metrics.json and report.html"),
        (2, "usage error (MODEL_DIR is not a model folder written by retrain, a bad option)"),
        (3, "MODEL_DIR's model could not be loaded or converted"),
        (4, "could not write (disk full, file too large, read-only, permission denied)"),
    ),
)
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--quantize",
    type=click.Choice(QUANTIZE_MODES),
    default="none",
    show_default=True,
    help="none: float model.tflite; dynamic, float16, int8: model-MODE.tflite (int8 is calibrated "
    "on the training photos: uint8 input and output, for Edge TPU compilers and microcontrollers).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: MODEL_DIR/model.tflite or MODEL_DIR/model-MODE.tflite).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing --output file that is not an export of imgtool (never a device, FIFO, "
    "folder or symbolic link).",
)
@format_option("json")
@quiet_option
def export_cmd(model_dir: Path, quantize: str, output: Path | None, force: bool, fmt: str, quiet: bool) -> None:
    """Write a single .tflite (with TFLite metadata and labels) for a retrained MODEL_DIR.

    Its size and accuracy on the test split (next to the float model's) are printed and
    recorded in MODEL_DIR/metrics.json; if the training photos are gone, the file is still
    written and the accuracy is reported as unknown.

    \b
    Examples:
      imgtool export flowers-model
      imgtool export flowers-model --quantize int8 -o flowers-int8.tflite
    """
    import json

    from imgtool import api_training

    ui.set_quiet(quiet)
    results = api_training.export_model(model_dir, quantize, output, force=force)  # type: ignore[arg-type]  # Choice checked it
    records = [r.record(model_dir) for r in results]
    if fmt == "json":
        click.echo(json.dumps(records, indent=2))
    else:
        for line in _export_lines(records):
            click.echo(line)
    if (model_dir / "report.html").is_file():
        ui.info(f"report: {model_dir / 'report.html'} (its exports table lists the new file)")


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
    after={"output_tensor": [format_option("json"), _print_misclassified("List misclassified photos (text format).")]},
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
            _print_wrong(ev.misclassified)
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
    from imgtool.training import report as report_mod
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
        html = report_mod.render_audit(result.to_dict(), f"imgtool audit: {Path(image_dir).name}")
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
