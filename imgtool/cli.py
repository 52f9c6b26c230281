"""The command line: parses, calls the library, prints. No work lives here.

Heavy modules (numpy, LiteRT, TensorFlow) are imported inside commands, so `--help` is instant."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

from imgtool import ui
from imgtool.command import (  # noqa: F401 - older imports of these names
    Command,
    Group,
    _sigterm_as_interrupt,
    _stdout_closed,
    cli_text,
)
from imgtool.errors import EXIT_FAILED, ImgtoolError
from imgtool.output import terminal_lines, terminal_text
from imgtool.version import __version__

if TYPE_CHECKING:
    from imgtool.api import QuantizeMode, Scores

INTERRUPTED = "interrupted (Ctrl-C): nothing half-written is kept"


def exit_codes(*codes: tuple[int, str], interrupted: str = INTERRUPTED) -> str:
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


QUANTIZE_CHOICES = ("none", "dynamic", "float16", "int8")  # imgtool.tflite.head.QUANTIZE_MODES


def _parse_pair(kind: type, name: str) -> Callable[[click.Context, click.Parameter, str | None], Any]:
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


def model_options(f: Callable) -> Callable:
    """--model and the options that describe a model the catalog does not know."""
    opts = [
        click.option("-m", "--model", "model", metavar="MODEL",
                     help="Catalog name, .tflite, SavedModel dir, .pb graph, hub:/kaggle: handle, URL, "
                          "or a retrain output folder. Default: inception_v3 (or $IMGTOOL_MODEL)."),
        click.option("--labels", "labels_file", metavar="FILE", type=click.Path(dir_okay=False),
                     help="Labels file, one a line (always wins over the model's own)."),
        click.option("--input-size", callback=_parse_pair(int, "HEIGHT,WIDTH"), metavar="H,W",
                     help="Input size for models that do not say (a .tflite says: a different size is exit 2)."),
        click.option("--value-range", callback=_parse_pair(float, "LO,HI"), metavar="LO,HI",
                     help="Pixel values 0..255 map linearly to LO..HI (default: as the model or the catalog says, "
                          "else 0,1; a quantized .tflite says: a different range is exit 2)."),
        click.option("--input-tensor", metavar="NAME", help="Frozen graph (.pb) input tensor (default Mul:0)."),
        click.option("--output-tensor", metavar="NAME", help="Frozen graph (.pb) output tensor (default softmax:0)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def format_option(*formats: str, help_text: str | None = None) -> Callable[[Callable], Callable]:
    """-f/--format, the same for every command: `text` for people (the default), the
    others for programs; the value arrives as `fmt` (see `imgtool.output.Writer`)."""
    def decorate(f: Callable) -> Callable:
        text = help_text or f"text for people; {'/'.join(formats)} for programs."
        return click.option("-f", "--format", "fmt", type=click.Choice(["text", *formats]), default="text",
                            show_default=True, help=text)(f)
    return decorate


def scores_option(f: Callable) -> Callable:
    """--scores: how to read the model's outputs, for models that say the wrong thing."""
    return click.option(
        "--scores", "scores", type=click.Choice(["auto", "probabilities", "logits"]), default="auto",
        show_default=True,
        help="What the model outputs. auto: decided once from the model (catalog record, TFLite metadata, "
             "a last softmax op); logits get a softmax, probabilities are reported as they are.")(f)


def _model_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    """The `model_options` values as `imgtool.load_model` keywords."""
    return {"labels": opts["labels_file"], "input_size": opts["input_size"], "value_range": opts["value_range"],
            "input_tensor": opts["input_tensor"], "output_tensor": opts["output_tensor"]}


def _runtime(model: Any) -> str:
    """Which Pillow decoded and resized, and which runtime ran the model (LiteRT, or
    TensorFlow for a model that could not be converted): they decide the scores too."""
    from imgtool.version import made_with

    v = made_with()
    if type(model.classifier.engine).__name__ == "TFEngine":
        from importlib.metadata import version

        return f"Pillow {v['pillow']} and TensorFlow {version('tensorflow')}"
    return f"Pillow {v['pillow']} and LiteRT {v['litert']}"


def _load(opts: dict[str, Any], scores: Scores, verbose: bool) -> Any:
    from imgtool import api

    model = api.load_model(opts["model"], scores=scores, **_model_kwargs(opts))
    if verbose:
        ui.info(f"{model.ref}: {model.classifier.output_width} outputs, read as {model.scores} ("
                + model.scores_reason + ")")
        ui.info(f"scores made with {_runtime(model)}")
    return model


# `imgtool beam` (scale-out) is imported when it is run or listed: imgtool.beam.cli imports click
# only, and apache_beam is imported when a beam command runs.
@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             lazy_commands={"beam": "imgtool.beam.cli:beam"})
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

@cli.command(epilog=exit_codes(
    (0, "every input classified (and every top-1 is --expect's LABEL)"),
    (1, "some input could not be read, or a top-1 is not --expect's LABEL or is unknown under --min-score "
        "(the other inputs were still classified and printed)"),
    USAGE, MODEL, CACHE))
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@model_options
@click.option("-k", "--top-k", default=5, show_default=True, type=click.IntRange(min=1),
              help="Predictions per input (capped at the number of labels).")
@format_option("json", "jsonl", "csv", help_text="text for people; json/jsonl/csv for programs.")
@click.option("--expect", metavar="LABEL", help="Exit 1 unless every input's top-1 is LABEL (or one of its synonyms).")
@click.option("--min-score", "min_score", metavar="S|auto", callback=_parse_min_score,
              help="Report an input whose top score is below S (0..1) as unknown (\"none of these\"); with --expect, "
                   "unknown is a mismatch. auto: the threshold retrain suggested for the model (metrics.json).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), hidden=True)
@scores_option
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr (errors still shown).")
@click.option("-v", "--verbose", is_flag=True, help="Also say how the model's outputs are read, and why.")
def classify(inputs: tuple[str, ...], top_k: int, fmt: str, expect: str | None, min_score: float | str | None,
             batch_size: int, scores: Scores, quiet: bool, verbose: bool, **model_opts: Any) -> None:
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
    from imgtool.classifier import check_inputs
    from imgtool.labels import check_expected, matches
    from imgtool.output import Writer, display_path, terminal_text

    ui.set_quiet(quiet)
    check_inputs(inputs)  # a model among the inputs (arguments swapped): exit 2 before any download
    model = _load(model_opts, scores, verbose)
    if expect is not None:
        check_expected(expect, model.labels, model.ref)
    threshold = model.resolve_min_score(min_score)
    if min_score == "auto":
        ui.info(f"--min-score auto: {threshold:g} (suggested by retrain)")
    n_ok = n_err = n_unknown = 0
    unmet: list[str] = []
    header = ("path", "rank", "label", "score", "index") + (("unknown",) if threshold is not None else ())
    with Writer(fmt, csv_header=header) as out:
        for res in model.classify_iter(list(inputs), top_k, batch_size=batch_size, min_score=threshold):
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
            out.record(res.to_dict(), text=text,
                       rows=[(res.path, r, p.label, f"{p.score:.6f}", p.index, *extra) for r, p in enumerate(preds, 1)])
            if expect is not None and res.unknown:
                unmet.append(terminal_text(f"{shown}: unknown (top score {preds[0].score:.4f} < --min-score "
                                           f"{threshold:g}), expected {expect!r}"))
            elif expect is not None and not (preds and matches(preds[0].label, expect)):
                unmet.append(terminal_text(f"{shown}: top-1 is {preds[0].label!r}, expected {expect!r}"))
    for line in unmet:
        click.echo(f"expectation failed: {line}", err=True)
    if n_ok + n_err > 1:
        ui.info(f"{n_ok} classified, {n_err} failed" + (f", {n_unknown} unknown" if threshold is not None else "")
                + (f", {len(unmet)} not {expect!r}" if expect else ""))
    if n_err or unmet:
        sys.exit(EXIT_FAILED)


# ---------------------------------------------------------------- labels

@cli.command(epilog=exit_codes(
    (0, "labels listed"), (1, "--search matched no label (said on stderr)"),
    (2, "usage error (a bad option, a feature extractor: it has no labels, or a bad IMGTOOL_* variable)"),
    (3, "the model could not be obtained or loaded, or it carries no labels (pass --labels)"), CACHE))
@model_options
@click.option("-s", "--search", metavar="TEXT", help="Only labels containing TEXT (case-insensitive).")
@format_option("json")
def labels(search: str | None, fmt: str, **model_opts: Any) -> None:
    """List the labels a model can give: index<TAB>label (json: [{"index", "label"}]).

    \b
    Examples:
      imgtool labels
      imgtool labels --search retriever
      imgtool labels -m ./my-flowers-model --format json
    """
    from imgtool import api
    from imgtool.output import Writer, terminal_text

    names = api.model_labels(model_opts["model"], **_model_kwargs(model_opts))
    if names is None:
        from imgtool.catalog import model_or_default

        ref = model_or_default(model_opts["model"])
        raise _model_error(f"{ref} carries no labels; pass --labels FILE")
    from imgtool.labels import fold

    needle = fold(search or "")
    found = 0
    with Writer(fmt) as out:
        for i, label in enumerate(names):
            if needle in fold(label):
                found += 1
                out.record({"index": i, "label": label}, text=f"{i}\t{terminal_text(label)}\n")
    if search is not None and not found:
        from imgtool.catalog import model_or_default
        from imgtool.output import display_path

        ref = model_or_default(model_opts["model"])
        click.echo(terminal_text(f"no label contains {search!r} (of the {len(names)} labels of {display_path(ref)}; "
                                 "try a shorter TEXT)"), err=True)
        sys.exit(EXIT_FAILED)


def _model_error(msg: str) -> ImgtoolError:
    from imgtool.errors import ModelError

    return ModelError(msg)


# ---------------------------------------------------------------- retrain / evaluate

@cli.command("retrain-last-layer", epilog=exit_codes(
    (0, "the model folder was written (its path and report.html's are the last lines on stderr)"),
    (1, "test accuracy is below --min-accuracy: no model was written"),
    (2, "usage error (folder layout, class sizes, --output, a classifier as --model, an option the model "
        "contradicts, a bad IMGTOOL_* variable)"),
    MODEL,
    (4, "could not write (disk full, file too large, read-only, permission denied): nothing half-written is "
        "left, a previous model in --output is unchanged"),
    interrupted="interrupted (Ctrl-C or SIGTERM): nothing half-written is left, a previous model is unchanged"))
@click.argument("image_dir", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Model folder to write (default: ./IMAGE_DIR-model; never inside IMAGE_DIR).")
@click.option("--features", "features", metavar="'PREFIX-*.parquet'",
              help="Train from the shards of `imgtool beam features` instead of IMAGE_DIR (no photos read; "
                   "same splits and training; pass its --model; needs pyarrow).")
@click.option("-m", "--model", "model", metavar="MODEL",
              help="Backbone: catalog name (its feature-vector twin is used), .tflite feature extractor, "
                   "SavedModel, hub handle or URL. Default: $IMGTOOL_BACKBONE, else inception_v3.")
@click.option("--input-size", callback=_parse_pair(int, "HEIGHT,WIDTH"), metavar="H,W",
              help="Input size for a backbone that does not say (a .tflite says: a different size is exit 2).")
@click.option("--value-range", callback=_parse_pair(float, "LO,HI"), metavar="LO,HI",
              help="Pixel values 0..255 map linearly to LO..HI, for a backbone that does not say (a quantized "
                   ".tflite says: a different range is exit 2).")
@click.option("--validation-percent", default=10.0, show_default=True, type=click.FloatRange(0, 50),
              help="Photos put in the validation split by hash (scored out-of-fold; also fitted on).")
@click.option("--test-percent", default=10.0, show_default=True, type=click.FloatRange(0, 50),
              help="Photos put in the test split by hash (never fitted on; the reported accuracy).")
@click.option("--validation-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Given validation photos (one sub-folder per class) instead of a hashed share.")
@click.option("--test-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Given test photos (one sub-folder per class) instead of a hashed share.")
@click.option("--l2", type=click.FloatRange(min=0, min_open=True), metavar="X",
              help="Fix the L2 strength (default: chosen by 5-fold cross-validation from 10 .. 0.001).")
@click.option("--label-smoothing", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Fit to smoothed targets: (1 - X) one-hot + X / classes (0: hard labels).")
@click.option("--class-weight", type=click.Choice(["balanced", "none"]), default="balanced", show_default=True,
              help="balanced: every class weighs the same in the fit, however many photos it has.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Draws the cross-validation folds (and distortions). Same seed, same data: same model.")
@click.option("--epochs", type=click.IntRange(min=1), hidden=True)
@click.option("--steps", type=click.IntRange(min=1), hidden=True)
@click.option("--learning-rate", type=float, hidden=True)
@click.option("--batch-size", type=click.IntRange(min=1), hidden=True)
@click.option("--bottleneck-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Bottleneck cache (default: IMGTOOL_HOME/bottlenecks).")
@click.option("--flip-left-right", is_flag=True, help="Distortion: random horizontal flips.")
@click.option("--random-crop", default=0.0, type=click.FloatRange(0, 90), metavar="PCT",
              help="Distortion: crop up to PCT%.")
@click.option("--random-scale", default=0.0, type=click.FloatRange(0, 100), metavar="PCT",
              help="Distortion: zoom up to PCT%.")
@click.option("--random-brightness", default=0.0, type=click.FloatRange(0, 100), metavar="PCT",
              help="Distortion: brightness +-PCT%.")
@click.option("--distorted-copies", default=4, show_default=True, type=click.IntRange(min=1),
              help="Distorted copies per training image (each costs a backbone pass; not cached).")
@click.option("--summaries-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write TensorBoard summaries (loss, accuracy) here. Needs TensorBoard: "
                   "pip install 'imgtool-ml[summaries]'.")
@click.option("--print-misclassified", is_flag=True, help="List misclassified test photos (text format).")
@click.option("--min-accuracy", type=click.FloatRange(0, 1), metavar="X",
              help="Exit 1 (and write no model) if test accuracy is below X (0..1).")
@click.option("--force", is_flag=True,
              help="Replace the output folder even if it is not a model of these photos.")
@click.option("--export/--no-export", "tf_exports", default=True, show_default=True,
              help="For TF backbones, also write saved_model/ and model.tflite (~15 s of TensorFlow on "
                   "Inception v3; an identical earlier run's export is reused).")
@click.option("--quantize", type=click.Choice(QUANTIZE_CHOICES), default="none", show_default=True,
              help="Besides model.tflite (float), also write model-MODE.tflite quantized: dynamic (int8 weights), "
                   "float16 (half-size weights) or int8 (full-integer, calibrated on the training photos).")
@format_option("json", help_text="json: the metrics as one object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr (errors still shown).")
def retrain_last_layer(image_dir: Any, output: Any, features: str | None, model: str | None, input_size: Any,
                       value_range: Any, validation_percent: float, test_percent: float, validation_dir: Any,
                       test_dir: Any,
                       l2: float | None, label_smoothing: float, class_weight: Literal["balanced", "none"], seed: int,
                       epochs: int | None, steps: int | None, learning_rate: float | None, batch_size: int | None,
                       bottleneck_dir: Any, flip_left_right: bool,
                       random_crop: float, random_scale: float, random_brightness: float, distorted_copies: int,
                       summaries_dir: Any, print_misclassified: bool, min_accuracy: float | None, force: bool,
                       tf_exports: bool, quantize: QuantizeMode, fmt: str, quiet: bool) -> None:
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
    import json

    from imgtool import api
    from imgtool import metrics as metrics_mod

    ui.set_quiet(quiet)
    ignored = [name for name, value in (("--epochs", epochs), ("--steps", steps), ("--learning-rate", learning_rate),
                                        ("--batch-size", batch_size)) if value is not None]
    if ignored:
        ui.warn(f"{', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} deprecated and ignored: the last layer "
                "is fitted to convergence (full-batch L-BFGS), with L2 chosen by cross-validation (--l2 fixes it)")
    image_dir = _retrain_source(image_dir, features, output, flip_left_right or bool(random_crop or random_scale
                                                                                      or random_brightness))
    result = api.retrain(
        image_dir, model=model, output=output, seed=seed, validation_percent=validation_percent,
        test_percent=test_percent, validation_dir=validation_dir, test_dir=test_dir, l2=l2,
        label_smoothing=label_smoothing, class_weight=class_weight, input_size=input_size, value_range=value_range,
        bottleneck_dir=bottleneck_dir, summaries_dir=summaries_dir, flip_left_right=flip_left_right,
        random_crop=random_crop, random_scale=random_scale, random_brightness=random_brightness,
        distorted_copies=distorted_copies, min_accuracy=min_accuracy, force=force, tf_exports=tf_exports,
        quantize=quantize, features=features)
    m = result.metrics
    if fmt == "json":
        click.echo(json.dumps({**{k: v for k, v in m.items() if k != "history"},
                               "output": str(result.output) if result.output else None,
                               "report": str(result.report) if result.report else None,
                               "misclassified": result.misclassified}, indent=2))
    else:
        h = m["head"]
        ui.info("head: " + h["method"] + f"; L2 {h['l2']:g}, cross-validated accuracy {h['cv_accuracy']:.1%} "
                f"+- {h['cv_accuracy_std']:.1%} over {h['cv_folds']} folds, log-loss {h['cv_loss']:.3f}")
        cal, opens = m.get("calibration"), m.get("open_set") or {}
        if cal:
            s_text = (f"; suggested --min-score {opens['min_score']:g} (accepts {opens['accepted']:.0%} of photos, "
                      f"{opens['precision']:.0%} of them right)" if opens.get("min_score") is not None else "")
            ui.info(f"calibration: temperature {cal['temperature']:.3g}, out-of-fold ECE {cal['ece_before']:.3f} -> "
                    f"{cal['ece_after']:.3f}{s_text}")
        if m["validation"]["accuracy"] is not None:
            base = m["validation"]["baseline"]
            ui.info(f"validation accuracy (out-of-fold): {m['validation']['accuracy']:.1%}; "
                    f"majority-class baseline {base['accuracy']:.1%}")
        click.echo(terminal_lines(metrics_mod.format_text(m["test"], "test")))
    if print_misclassified and fmt == "text":
        for w in result.misclassified:
            click.echo(terminal_text(f"misclassified: {w['path']}: {w['true']} predicted as {w['predicted']} "
                                      f"({w['score']:.0%})"))
    if result.below_minimum:
        click.echo(f"Error: {cli_text(result.below_minimum)}", err=True)
        sys.exit(EXIT_FAILED)
    for line in _export_lines(m.get("exports") or []):
        ui.info(line)
    ui.info(f"model written to {result.output}  (try: imgtool classify -m {result.output} PHOTO)")
    ui.info(f"report: {result.report}")


cli.add_command(retrain_last_layer, name="retrain")


def _retrain_source(image_dir: Path | None, features: str | None, output: Path | None, distort: bool) -> Path:
    """IMAGE_DIR, or with --features the folder the shards were made from (recorded as
    the model's source; the output may not be inside it, as for a folder run)."""
    from imgtool.errors import UsageError

    if features is None:
        if image_dir is None:
            raise UsageError("give IMAGE_DIR (one sub-folder per class), or --features 'PREFIX-*.parquet'")
        return image_dir
    if image_dir is not None:
        raise UsageError("give IMAGE_DIR or --features, not both")
    if output is None:
        raise UsageError("--features needs -o/--output (the model folder to write)")
    if distort:
        raise UsageError("distortions need the photos; --features trains on precomputed features only")
    from imgtool.features import dataset_root

    root = dataset_root(features)  # no shards there: say so before any model is fetched
    ui.info("Training from feature shards: no photo is read; report thumbnails show only photos still "
            "readable at the path recorded in the shards")
    return Path(root)


def _export_lines(records: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in records:
        if "bytes" not in r:  # a failed export: warned about when it happened
            continue
        acc = "unknown" if r.get("test_accuracy") is None else f"{r['test_accuracy']:.1%}"
        ref = "" if r.get("float_test_accuracy") is None or r.get("quantize") == "none" else \
            f" (float: {r['float_test_accuracy']:.1%})"
        out.append(f"exported {r['file']}: {r['bytes'] / 1e6:.2f} MB, {r['quantize']}, test accuracy {acc}{ref}"
                   + (f"; {r['note']}" if r.get("note") else ""))
    return out


@cli.command("export", epilog=exit_codes(
    (0, "the .tflite was written, and recorded in MODEL_DIR's metrics.json and report.html"),
    (2, "usage error (MODEL_DIR is not a model folder written by retrain, a bad option)"),
    (3, "MODEL_DIR's model could not be loaded or converted"),
    (4, "could not write (disk full, file too large, read-only, permission denied)")))
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--quantize", type=click.Choice(QUANTIZE_CHOICES), default="none", show_default=True,
              help="none: float model.tflite; dynamic, float16, int8: model-MODE.tflite (int8 is calibrated "
                   "on the training photos: uint8 input and output, for Edge TPU compilers and microcontrollers).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (default: MODEL_DIR/model.tflite or MODEL_DIR/model-MODE.tflite).")
@click.option("--force", is_flag=True,
              help="Replace an existing --output file that is not an export of imgtool (never a device, FIFO, "
                   "folder or symbolic link).")
@format_option("json")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr (errors still shown).")
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

    from imgtool import api

    ui.set_quiet(quiet)
    results = api.export_model(model_dir, quantize, output, force=force)  # type: ignore[arg-type]  # Choice checked it
    records = [r.record(model_dir) for r in results]
    if fmt == "json":
        click.echo(json.dumps(records, indent=2))
    else:
        for line in _export_lines(records):
            click.echo(line)
    if (model_dir / "report.html").is_file():
        ui.info(f"report: {model_dir / 'report.html'} (its exports table lists the new file)")


@cli.command(epilog=exit_codes(
    (0, "every photo evaluated (and accuracy reaches --min-accuracy)"),
    (1, "some photo could not be read, or accuracy is below --min-accuracy"),
    USAGE, MODEL, CACHE))
@click.argument("image_dir", type=click.Path(file_okay=False, path_type=Path))
@model_options
@format_option("json")
@click.option("--print-misclassified", is_flag=True, help="List misclassified photos (text format).")
@click.option("--min-accuracy", type=click.FloatRange(0, 1), metavar="X", help="Exit 1 if accuracy is below X.")
@scores_option
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr (errors still shown).")
@click.option("-v", "--verbose", is_flag=True, help="Also say how the model's outputs are read, and why.")
def evaluate(image_dir: Any, fmt: str, print_misclassified: bool, min_accuracy: float | None, scores: Scores,
             quiet: bool, verbose: bool, **model_opts: Any) -> None:
    """Accuracy, per-class precision/recall and confusion matrix of any classifier on a
    labelled folder (one sub-folder per class, named after the model's labels).

    \b
    Examples:
      imgtool evaluate -m flowers-model more-flowers/
      imgtool evaluate -m flowers-model more-flowers/ --format json --min-accuracy 0.8
    """
    import json

    from imgtool import api
    from imgtool import metrics as metrics_mod

    ui.set_quiet(quiet)
    ev = api.evaluate(_load(model_opts, scores, verbose), image_dir)
    m, wrong = ev.metrics, ev.misclassified
    if ev.seen_in_training:
        ui.warn(f"{ev.seen_in_training} of the {m['count']} photos evaluated "
                f"{'was' if ev.seen_in_training == 1 else 'were'} used to train this model "
                "(its train/validation photos, by content); accuracy on them is optimistic - evaluate on photos "
                "it has not seen")
    if fmt == "json":
        click.echo(json.dumps(ev.to_dict(), indent=2))
    else:
        click.echo(terminal_lines(metrics_mod.format_text(m, str(image_dir))))
        if ev.ece is not None:
            click.echo(f"  calibration: expected calibration error {ev.ece:.3f} (top-1 scores, 10 bins)")
        if print_misclassified:
            for w in wrong:
                click.echo(terminal_text(f"misclassified: {w['path']}: {w['true']} predicted as {w['predicted']} "
                                      f"({w['score']:.0%})"))
    acc = m["accuracy"]
    if min_accuracy is not None and (acc is None or acc < min_accuracy):
        gap = "" if acc is None else f" by {min_accuracy - acc:.1%}"
        click.echo(f"Error: accuracy {'n/a' if acc is None else f'{acc:.1%}'} is below --min-accuracy "
                   f"{min_accuracy:.1%}{gap}", err=True)
        sys.exit(EXIT_FAILED)
    if ev.failures:
        sys.exit(EXIT_FAILED)


def _check_page(path: Path) -> None:
    """An HTML page to write: not a folder, and its folder (or the nearest one that
    exists: the missing ones are made) writable - said before any work, as the write
    itself would say it (exit 4)."""
    import errno
    import os

    from imgtool import store
    from imgtool.errors import UsageError

    if path.is_dir():
        raise UsageError(f"-o {path} is a folder; give the path of the .html file to write")
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        code = errno.ENOTDIR if not parent.is_dir() else errno.EACCES
        raise store.storage_error(OSError(code, os.strerror(code), str(parent)), f"the report {path}",
                                  "choose another -o")


@cli.command(epilog=exit_codes(
    (0, "nothing found: no suspect, duplicate, outlier or problem"),
    (1, "something was found (listed on stdout)"),
    USAGE, MODEL, (4, "could not write the -o page or the bottleneck cache (disk full, read-only, permission denied)"),
    interrupted="interrupted (Ctrl-C): a half-written -o page is never left"))
@click.argument("image_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-m", "--model", "model", metavar="MODEL",
              help="Backbone, as for retrain (its features and cache are shared with retrain). "
                   "Default: $IMGTOOL_BACKBONE, else inception_v3.")
@format_option("json", help_text="json: one object with suspects, duplicates, outliers, problems and summary.")
@click.option("-o", "--output", "report", type=click.Path(dir_okay=False, path_type=Path), metavar="REPORT.html",
              help="Also write an HTML page with thumbnails of every finding.")
@click.option("--validation-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Given validation photos (one sub-folder per class), as for retrain.")
@click.option("--test-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Given test photos (one sub-folder per class), as for retrain.")
@click.option("--validation-percent", default=10.0, show_default=True, type=click.FloatRange(0, 50),
              help="As for retrain: the splits the duplicates are checked against.")
@click.option("--test-percent", default=10.0, show_default=True, type=click.FloatRange(0, 50),
              help="As for retrain: the splits the duplicates are checked against.")
@click.option("--seed", default=0, show_default=True, type=int, help="Draws the cross-validation folds.")
@click.option("--bottleneck-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Bottleneck cache (default: IMGTOOL_HOME/bottlenecks, shared with retrain).")
@click.option("--input-size", callback=_parse_pair(int, "HEIGHT,WIDTH"), metavar="H,W",
              help="Input size for backbones that do not say.")
@click.option("--value-range", callback=_parse_pair(float, "LO,HI"), metavar="LO,HI",
              help="Pixel values 0..255 map linearly to LO..HI, for backbones that do not say.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr (errors still shown).")
def audit(image_dir: Path, model: str | None, fmt: str, report: Path | None, validation_dir: Path | None,
          test_dir: Path | None, validation_percent: float, test_percent: float, seed: int,
          bottleneck_dir: Path | None, input_size: Any, value_range: Any, quiet: bool) -> None:
    """What is wrong with a labelled folder (the layouts retrain reads), before training:
    suspect labels, duplicates, outliers, unreadable files, tiny classes, imbalance.

    \b
    Examples:
      imgtool audit flowers/
      imgtool audit flowers/ -m embedding.tflite -f json > audit.json
      imgtool audit flowers/ -o audit.html
    """
    import json

    from imgtool import api, store
    from imgtool import report as report_mod
    from imgtool.auditing import format_text

    ui.set_quiet(quiet)
    if report is not None:
        _check_page(report)  # before the work, not after it
    result = api.audit(image_dir, model=model, seed=seed, validation_percent=validation_percent,
                       test_percent=test_percent, validation_dir=validation_dir, test_dir=test_dir,
                       input_size=input_size, value_range=value_range, bottleneck_dir=bottleneck_dir)
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
    from imgtool import api, caches
    from imgtool.output import Writer

    with Writer(fmt) as out:
        for info in api.list_models():
            state = ("embedded" if info.embedded else "cached" if info.cached else "not cached" if info.key is None
                     else f"damaged: {info.problem}")
            if info.kind == "catalog":
                text = f"{info.name:30} {state:12} {info.description}\n"
            else:
                text = f"{info.key:30} {state:12} {info.name}\n"
            out.record(info.to_dict(), text=text)
        for c in api.list_caches():
            name = c.name
            out.record({"name": name, "kind": "cache", "cached": c.entries > 0, "path": str(c.path),
                        "bytes": c.bytes, "entries": c.entries},
                       text=f"{name:30} {caches.human_size(c.bytes):12} {c.description} ({c.entries} entries; "
                            f"`imgtool models remove {name}`)\n")


@models.command("path", epilog=exit_codes(
    (0, "the path was printed"), USAGE, (3, "MODEL is not in the cache (`imgtool models list` shows what is)"),
    interrupted="interrupted (Ctrl-C)"))
@click.argument("model", required=False)
def models_path(model: str | None) -> None:
    """Where the cache is (or where MODEL's entry is)."""
    from imgtool import api

    click.echo(str(api.model_path(model)))  # not cached: the error says whether and how it can be fetched


@models.command("download", epilog=exit_codes(
    (0, "every MODEL is in the cache, ready"), USAGE, (3, "a MODEL could not be downloaded, converted or loaded"),
    CACHE, interrupted="interrupted (Ctrl-C): nothing half-downloaded is kept in the cache"))
@click.argument("refs", nargs=-1, metavar="[MODEL]...")
@click.option("--features", is_flag=True, help="Also fetch the feature-vector twin used by retrain.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr (errors still shown).")
def models_download(refs: tuple[str, ...], features: bool, quiet: bool) -> None:
    """Download (and convert) models now, e.g. while building a CI image. Default: inception_v3."""
    from imgtool import api

    ui.set_quiet(quiet)
    for ref in refs or (None,):
        info = api.download_model(ref, features=features)
        ui.info(f"{info.name}: " + ("ships with imgtool, nothing to download" if info.embedded else "ready")
                + (" (runs in TensorFlow)" if info.runtime == "tensorflow" else ""))


@models.command("remove", epilog=exit_codes(
    (0, "removed (or nothing was cached)"), USAGE,
    (3, "a NAME matches nothing cached (the others were still removed)"),
    (4, "could not remove (read-only, permission denied)")))
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
    from imgtool import api

    ui.set_quiet(quiet)
    if not api.remove_models(names):  # each removal is logged (stderr) as it happens
        ui.info("nothing cached")


def main() -> None:
    import signal

    # a file-size limit (ulimit -f) must fail the write with EFBIG (exit 4, staging removed), not kill
    # the process. CPython ignores SIGXFSZ at startup already; this keeps it so whatever started us.
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # SIGTERM unwinds as Ctrl-C does for the whole process, also before and after the command
    # (`Group` handles it inside; here a signal while starting or exiting is still exit 130)
    from imgtool.command import _raise_interrupt

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

