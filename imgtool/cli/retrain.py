"""The commands that train: retrain (retrain-last-layer) and export. Each parses (retrain's
options come from imgtool/core/options.py), calls the API and prints; evaluate and audit
are in cli/judging.py.

Layer: front ends (cli/main.py adds these commands to its group, lazily)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from imgtool.cli.command import Command, cli_text
from imgtool.cli.options import (
    MODEL,
    echo_misclassified,
    exit_codes,
    format_option,
    generated,
    misclassified_option,
    quiet_option,
)
from imgtool.core import ui
from imgtool.core.errors import EXIT_FAILED
from imgtool.core.options import QUANTIZE_MODES, RetrainOptions
from imgtool.core.output import terminal_lines

if TYPE_CHECKING:
    from imgtool.training.retraining import RetrainResult


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
    RetrainOptions, after={"summaries_dir": [misclassified_option("List misclassified test photos (text format).")]}
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
        echo_misclassified(result.misclassified)
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
