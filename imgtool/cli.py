"""The command line: parses, calls the library, prints. No work lives here.

Heavy modules (numpy, LiteRT, TensorFlow) are imported inside commands, so `--help` is instant."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import click

from imgtool import __version__, ui
from imgtool.errors import EXIT_FAILED, ImgtoolError

EXIT_CODES_HELP = """\b
Exit codes:
  0  all inputs done (and expectations met)
  1  some input failed, or --expect / --min-accuracy was not met
     (the other inputs were still processed and printed)
  2  usage error
  3  the model could not be obtained or loaded"""


class Group(click.Group):
    """Turns library errors into one `Error: ...` line and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImgtoolError as err:
            click.echo(f"Error: {err}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted; nothing half-written was kept.", err=True)
            ctx.exit(130)


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


def model_options(f: Callable) -> Callable:
    """--model and the options that describe a model the catalog does not know."""
    opts = [
        click.option("-m", "--model", "model", metavar="MODEL", envvar="IMGTOOL_MODEL",
                     help="Catalog name, .tflite, SavedModel dir, .pb graph, hub:/kaggle: handle, URL, "
                          "or a retrain output folder. Default: inception_v3 (or $IMGTOOL_MODEL)."),
        click.option("--labels", "labels_file", metavar="FILE", type=click.Path(dir_okay=False),
                     help="Labels file, one a line (always wins over the model's own)."),
        click.option("--input-size", callback=_parse_pair(int, "HEIGHT,WIDTH"), metavar="H,W",
                     help="Input size for models that do not say."),
        click.option("--value-range", callback=_parse_pair(float, "LO,HI"), metavar="LO,HI",
                     help="Pixel values 0..255 map linearly to LO..HI (default: as the catalog says, else 0,1)."),
        click.option("--input-tensor", metavar="NAME", help="Frozen graph (.pb) input tensor (default Mul:0)."),
        click.option("--output-tensor", metavar="NAME", help="Frozen graph (.pb) output tensor (default softmax:0)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _resolve(opts: dict[str, Any], purpose: str = "classify") -> Any:
    from imgtool.resolve import resolve

    return resolve(opts["model"], labels_file=opts["labels_file"], purpose=purpose,
                   input_size=opts["input_size"], value_range=opts["value_range"],
                   tensors=(opts["input_tensor"], opts["output_tensor"]))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="imgtool")
def cli() -> None:
    """Classify photos with pretrained networks; retrain the last layer on your own.

    \b
      imgtool classify photo.jpg            top-5 ImageNet labels (Inception v3)
      imgtool retrain flowers/              a classifier of your own, from folders
      imgtool labels --search cat           what a model can say
      imgtool models list                   the catalog and the cache

    Models are downloaded once into IMGTOOL_HOME (default: your user cache dir);
    IMGTOOL_OFFLINE=1 never touches the network.
    """


# ---------------------------------------------------------------- classify

@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@model_options
@click.option("-k", "--top-k", default=5, show_default=True, type=click.IntRange(min=1),
              help="Predictions per input (capped at the number of labels).")
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "json", "jsonl", "csv"]), default="text",
              show_default=True, help="text for people; json/jsonl/csv for programs.")
@click.option("--expect", metavar="LABEL", help="Exit 1 unless every input's top-1 is LABEL (or one of its synonyms).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), hidden=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr (errors still shown).")
def classify(inputs: tuple[str, ...], top_k: int, fmt: str, expect: str | None, batch_size: int,
             quiet: bool, **model_opts: Any) -> None:
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
    from imgtool.classify import Classifier
    from imgtool.labels import matches
    from imgtool.output import Writer, display_path

    ui.set_quiet(quiet)
    classifier = Classifier(_resolve(model_opts))
    n_ok = n_err = 0
    unmet: list[str] = []
    bar = ui.progress(None, "classifying", unit="img")
    with bar, Writer(fmt, csv_header=("path", "rank", "label", "score", "index")) as out:
        for res in classifier.classify(inputs, top_k=top_k, batch_size=batch_size):
            bar.update(1)
            shown = display_path(res.path)
            if res.error is not None:
                n_err += 1
                click.echo(f"error: {shown}: {res.error}", err=True)
                out.record(res.to_dict())
                continue
            n_ok += 1
            preds = res.predictions or []
            text = shown + "\n" + "".join(f"  {p.score:.4f}  {p.label}\n" for p in preds)
            out.record(res.to_dict(), text=text,
                       rows=[(res.path, r, p.label, f"{p.score:.6f}", p.index) for r, p in enumerate(preds, 1)])
            if expect is not None and not (preds and matches(preds[0].label, expect)):
                unmet.append(f"{shown}: top-1 is {preds[0].label!r}, expected {expect!r}")
    for line in unmet:
        click.echo(f"expectation failed: {line}", err=True)
    if n_ok + n_err > 1:
        ui.info(f"{n_ok} classified, {n_err} failed" + (f", {len(unmet)} not {expect!r}" if expect else ""))
    if n_err or unmet:
        sys.exit(EXIT_FAILED)


# ---------------------------------------------------------------- labels

@cli.command()
@model_options
@click.option("-s", "--search", metavar="TEXT", help="Only labels containing TEXT (case-insensitive).")
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def labels(search: str | None, fmt: str, **model_opts: Any) -> None:
    """List the labels a model can give: index<TAB>label (json: [{"index", "label"}]).

    \b
    Examples:
      imgtool labels
      imgtool labels --search retriever
      imgtool labels -m ./my-flowers-model --format json
    """
    from imgtool.output import Writer

    model = _resolve(model_opts, purpose="labels")
    if model.labels is None:
        raise _model_error(f"{model.ref} carries no labels; pass --labels FILE")
    needle = (search or "").casefold()
    with Writer(fmt) as out:
        for i, label in enumerate(model.labels):
            if needle in label.casefold():
                out.record({"index": i, "label": label}, text=f"{i}\t{label}\n")


def _model_error(msg: str) -> ImgtoolError:
    from imgtool.errors import ModelError

    return ModelError(msg)


# ---------------------------------------------------------------- retrain / evaluate

def _sigterm_as_interrupt() -> None:
    """SIGTERM unwinds like Ctrl-C, so temporary outputs are removed and the previous
    model stays in place."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@cli.command("retrain-last-layer", epilog=EXIT_CODES_HELP)
@click.argument("image_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Model folder to write (default: ./IMAGE_DIR-model; never inside IMAGE_DIR).")
@click.option("-m", "--model", "model", metavar="MODEL", envvar="IMGTOOL_BACKBONE",
              help="Backbone: catalog name (its feature-vector twin is used), .tflite feature extractor, "
                   "SavedModel, hub handle or URL. Default: inception_v3.")
@click.option("--input-size", callback=_parse_pair(int, "HEIGHT,WIDTH"), metavar="H,W")
@click.option("--value-range", callback=_parse_pair(float, "LO,HI"), metavar="LO,HI")
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
@click.option("--label-smoothing", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True))
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
@click.option("--random-crop", default=0.0, type=click.FloatRange(0, 90), metavar="PCT", help="Distortion: crop up to PCT%.")
@click.option("--random-scale", default=0.0, type=click.FloatRange(0, 100), metavar="PCT", help="Distortion: zoom up to PCT%.")
@click.option("--random-brightness", default=0.0, type=click.FloatRange(0, 100), metavar="PCT",
              help="Distortion: brightness +-PCT%.")
@click.option("--distorted-copies", default=4, show_default=True, type=click.IntRange(min=1),
              help="Distorted copies per training image (each costs a backbone pass; not cached).")
@click.option("--summaries-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write TensorBoard summaries (loss, accuracy) here.")
@click.option("--print-misclassified", is_flag=True, help="List misclassified test images.")
@click.option("--min-accuracy", type=click.FloatRange(0, 1), metavar="X",
              help="Exit 1 (and write no model) if test accuracy is below X (0..1).")
@click.option("--force", is_flag=True,
              help="Replace the output folder even if it is not a model of these photos.")
@click.option("--export/--no-export", "tf_exports", default=True, show_default=True,
              help="For TF backbones, also write saved_model/ and model.tflite (~15 s of TensorFlow on "
                   "Inception v3; an identical earlier run's export is reused).")
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: the metrics as one object on stdout.")
@click.option("-q", "--quiet", is_flag=True)
def retrain_last_layer(image_dir: Any, output: Any, model: str | None, input_size: Any, value_range: Any,
                       validation_percent: float, test_percent: float, validation_dir: Any, test_dir: Any,
                       l2: float | None, label_smoothing: float, class_weight: str, seed: int,
                       epochs: int | None, steps: int | None, learning_rate: float | None, batch_size: int | None,
                       bottleneck_dir: Any, flip_left_right: bool,
                       random_crop: float, random_scale: float, random_brightness: float, distorted_copies: int,
                       summaries_dir: Any, print_misclassified: bool, min_accuracy: float | None, force: bool,
                       tf_exports: bool, fmt: str, quiet: bool) -> None:
    """Train a new last layer on IMAGE_DIR (one sub-folder per class, or train/ + val/
    [+ test/] each with the class sub-folders); alias: retrain.

    The backbone stays frozen; its features ("bottlenecks") are computed once and cached,
    so a second run over the same photos does no backbone work. The last layer is an
    L2-regularised logistic regression fitted to convergence; L2 is chosen by 5-fold
    cross-validation on train+validation, then the layer is refitted on them; the test
    split is never fitted on.

    \b
    Examples:
      imgtool retrain flowers/
      imgtool retrain flowers/ -o flowers-model --min-accuracy 0.8
      imgtool retrain photos/ --test-dir holdout/ --class-weight none
      imgtool classify -m flowers-model garden.jpg
    """
    import json

    from imgtool import metrics as metrics_mod
    from imgtool.retrain import Distortions, RetrainOptions, retrain
    from imgtool.train import TrainConfig

    ui.set_quiet(quiet)
    _sigterm_as_interrupt()
    ignored = [name for name, value in (("--epochs", epochs), ("--steps", steps), ("--learning-rate", learning_rate),
                                        ("--batch-size", batch_size)) if value is not None]
    if ignored:
        ui.warn(f"{', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} deprecated and ignored: the last layer "
                "is fitted to convergence (full-batch L-BFGS), with L2 chosen by cross-validation (--l2 fixes it)")
    opts = RetrainOptions(
        image_dir=image_dir, output=output, model=model, validation_percent=validation_percent,
        test_percent=test_percent, bottleneck_dir=bottleneck_dir, summaries_dir=summaries_dir,
        min_accuracy=min_accuracy, input_size=input_size, value_range=value_range,
        train=TrainConfig(l2=l2, seed=seed, label_smoothing=label_smoothing, class_weight=class_weight),
        tf_exports=tf_exports, validation_dir=validation_dir, test_dir=test_dir, force=force,
        distortions=Distortions(flip_left_right, random_crop, random_scale, random_brightness, distorted_copies))
    result = retrain(opts)
    m = result.metrics
    if fmt == "json":
        click.echo(json.dumps({**{k: v for k, v in m.items() if k != "history"},
                               "output": str(result.output) if result.output else None,
                               "misclassified": result.misclassified}, indent=2))
    else:
        h = m["head"]
        ui.info(f"head: {h['method']}; L2 {h['l2']:g}, cross-validated accuracy {h['cv_accuracy']:.1%} "
                f"+- {h['cv_accuracy_std']:.1%} over {h['cv_folds']} folds, log-loss {h['cv_loss']:.3f}")
        if m["validation"]["accuracy"] is not None:
            base = m["validation"]["baseline"]
            ui.info(f"validation accuracy (out-of-fold): {m['validation']['accuracy']:.1%}; "
                    f"majority-class baseline {base['accuracy']:.1%}")
        click.echo(metrics_mod.format_text(m["test"], "test"))
    if print_misclassified and fmt == "text":
        for w in result.misclassified:
            click.echo(f"misclassified: {w['path']}: {w['true']} predicted as {w['predicted']} ({w['score']:.0%})")
    if result.below_minimum:
        click.echo(f"Error: {result.below_minimum}", err=True)
        sys.exit(EXIT_FAILED)
    ui.info(f"model written to {result.output}  (try: imgtool classify -m {result.output} PHOTO)")


cli.add_command(retrain_last_layer, name="retrain")


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("image_dir", type=click.Path(file_okay=False, path_type=Path))
@model_options
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--print-misclassified", is_flag=True)
@click.option("--min-accuracy", type=click.FloatRange(0, 1), metavar="X", help="Exit 1 if accuracy is below X.")
@click.option("-q", "--quiet", is_flag=True)
def evaluate(image_dir: Any, fmt: str, print_misclassified: bool, min_accuracy: float | None, quiet: bool,
             **model_opts: Any) -> None:
    """Accuracy, per-class precision/recall and confusion matrix of any classifier on a
    labelled folder (one sub-folder per class, named after the model's labels).

    \b
    Examples:
      imgtool evaluate -m flowers-model more-flowers/
      imgtool evaluate -m flowers-model more-flowers/ --format json --min-accuracy 0.8
    """
    import json

    from imgtool import metrics as metrics_mod
    from imgtool.classify import Classifier
    from imgtool.evaluate import evaluate_folder

    ui.set_quiet(quiet)
    m, wrong, failed = evaluate_folder(Classifier(_resolve(model_opts)), image_dir)
    if fmt == "json":
        click.echo(json.dumps({**m, "failed_inputs": failed, "misclassified": wrong}, indent=2))
    else:
        click.echo(metrics_mod.format_text(m, str(image_dir)))
        if print_misclassified:
            for w in wrong:
                click.echo(f"misclassified: {w['path']}: {w['true']} predicted as {w['predicted']} ({w['score']:.0%})")
    acc = m["accuracy"]
    if min_accuracy is not None and (acc is None or acc < min_accuracy):
        gap = "" if acc is None else f" by {min_accuracy - acc:.1%}"
        click.echo(f"Error: accuracy {'n/a' if acc is None else f'{acc:.1%}'} is below --min-accuracy "
                   f"{min_accuracy:.1%}{gap}", err=True)
        sys.exit(EXIT_FAILED)
    if failed:
        sys.exit(EXIT_FAILED)


# ---------------------------------------------------------------- models (the store)

@cli.group(cls=Group)
def models() -> None:
    """The catalog and the model cache (IMGTOOL_HOME)."""


@models.command("list")
@click.option("-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def models_list(fmt: str) -> None:
    """Catalog models, and what is in the cache."""
    from imgtool.catalog import load_catalog
    from imgtool.output import Writer
    from imgtool.resolve import cached_entries

    cached = {e["key"]: e for e in cached_entries()}
    catalog = load_catalog()
    with Writer(fmt) as out:
        for name, cfg in catalog.items():
            entry = cached.get(name)
            state = "not cached" if entry is None else ("cached" if entry["ok"] else f"damaged: {entry['problem']}")
            out.record({"name": name, "description": cfg.description, "cached": bool(entry and entry["ok"]),
                        "kind": "catalog"}, text=f"{name:30} {state:12} {cfg.description}\n")
        for key, e in cached.items():
            if key in catalog:
                continue
            state = "cached" if e["ok"] else f"damaged: {e['problem']}"
            out.record({"name": e["name"], "key": key, "cached": e["ok"], "kind": "other"},
                       text=f"{key:30} {state:12} {e['name']}\n")


@models.command("path")
@click.argument("model", required=False)
def models_path(model: str | None) -> None:
    """Where the cache is (or where MODEL's entry is)."""
    from imgtool import store

    if model is None:
        click.echo(str(store.home()))
        return
    from imgtool.resolve import cached_entries

    for e in cached_entries():
        if model in (e["key"], e["name"]):
            click.echo(e["path"])
            return
    raise _model_error(f"{model} is not in the cache ({store.models_dir()}); `imgtool models download {model}` fetches it")


@models.command("download")
@click.argument("refs", nargs=-1, metavar="MODEL...")
@click.option("--features", is_flag=True, help="Also fetch the feature-vector twin used by retrain.")
@click.option("-q", "--quiet", is_flag=True)
def models_download(refs: tuple[str, ...], features: bool, quiet: bool) -> None:
    """Download (and convert) models now, e.g. while building a CI image. Default: inception_v3."""
    from imgtool.resolve import resolve

    ui.set_quiet(quiet)
    for ref in refs or (None,):
        model = resolve(ref)
        if features:
            resolve(ref, purpose="features")
        ui.info(f"{model.ref}: ready" + (" (runs in TensorFlow)" if model.tflite is None else ""))


@models.command("remove")
@click.argument("names", nargs=-1, required=True, metavar="MODEL...")
def models_remove(names: tuple[str, ...]) -> None:
    """Remove models from the cache ('all' removes every one)."""
    from imgtool.resolve import remove

    missing = []
    for name in names:
        removed = remove(name)
        if removed:
            ui.info(f"removed {', '.join(removed)}")
        else:
            missing.append(name)
    if missing:
        raise _model_error(f"not in the cache: {', '.join(missing)}")


def main() -> None:
    try:
        cli(prog_name="imgtool")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)

