"""Every option of retrain, classify and evaluate, declared once: one dataclass per
command, one field per option, with what the command line and the API both need to know
about it (its flag, help, choices, range, deprecation) in the field's metadata.

    @options_class
    class RetrainOptions(OptionsBase):
        seed: int = option(0, flag="--seed", kind="int", show_default=True, help="...")

The machinery (`option`, `Range`, the checks, the deprecations) is imgtool/core/option_fields.py.
The CLI turns the fields into its click options (imgtool/cli/options.py: same flags, same
help); the API checks values against the same choices and ranges (`check`), and every rule
about combinations of options lives here too (`check_retrain`), so the command line and
Python refuse the same things. Imports nothing heavy: the CLI reads it at start-up.

Layer: foundations (stdlib, errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from imgtool.core.errors import Advice, Param, UsageError
from imgtool.core.option_fields import OptionsBase, Range, check, option, options_class

# ---------------------------------------------------------------- the choices, once each

Quantize = Literal["none", "dynamic", "float16", "int8"]
QUANTIZE_MODES: tuple[Quantize, ...] = get_args(Quantize)
Scores = Literal["auto", "probabilities", "logits"]
SCORE_READINGS: tuple[Scores, ...] = get_args(Scores)
ClassWeight = Literal["balanced", "none"]
CLASS_WEIGHTS: tuple[ClassWeight, ...] = get_args(ClassWeight)
PERCENT_RANGE = (0, 50)  # of the photos in the validation split, and in the test split
DEFAULT_PERCENT = 10.0  # of the photos drawn by hash into validation, and into test


# ---------------------------------------------------------------- the commands' options

_GIVE_FOLDER = (
    "give " + Param("folder") + " (one sub-folder per class), or " + Param("features") + " 'PREFIX-*.parquet'"
)


@options_class
class ModelOptions(OptionsBase):
    """The model to load and what describes a model the catalog does not know (classify,
    labels, evaluate: `imgtool.load_model`'s keywords)."""

    model: str | None = option(
        flag=("-m", "--model"),
        kind="str",
        metavar="MODEL",
        help="Catalog name, .tflite, SavedModel dir, .pb graph, hub:/kaggle: handle, URL, "
        "or a retrain output folder. Default: inception_v3 (or $IMGTOOL_MODEL).",
    )
    labels: str | None = option(
        flag="--labels", kind="file", metavar="FILE", help="Labels file, one a line (always wins over the model's own)."
    )
    input_size: tuple[int, int] | None = option(
        flag="--input-size",
        kind="size",
        metavar="H,W",
        help="Input size for models that do not say (a .tflite says: a different size is exit 2).",
    )
    value_range: tuple[float, float] | None = option(
        flag="--value-range",
        kind="pair",
        metavar="LO,HI",
        help="Pixel values 0..255 map linearly to LO..HI (default: as the model or the catalog says, "
        "else 0,1; a quantized .tflite says: a different range is exit 2).",
    )
    input_tensor: str | None = option(
        flag="--input-tensor", kind="str", metavar="NAME", help="Frozen graph (.pb) input tensor (default Mul:0)."
    )
    output_tensor: str | None = option(
        flag="--output-tensor", kind="str", metavar="NAME", help="Frozen graph (.pb) output tensor (default softmax:0)."
    )


_SCORES_HELP = (
    "What the model outputs. auto: decided once from the model (catalog record, TFLite metadata, "
    "a last softmax op); logits get a softmax, probabilities are reported as they are."
)


@options_class
class ClassifyOptions(ModelOptions):
    top_k: int = option(
        5,
        flag=("-k", "--top-k"),
        kind="int",
        range=Range(1),
        show_default=True,
        help="Predictions per input (capped at the number of labels).",
    )
    min_score: float | str | None = option(
        flag="--min-score",
        kind="score",
        metavar="S|auto",
        help='Report an input whose top score is below S (0..1) as unknown ("none of these"); with --expect, '
        "unknown is a mismatch. auto: the threshold retrain suggested for the model (metrics.json).",
    )
    batch_size: int = option(8, flag="--batch-size", kind="int", range=Range(1), show_default=True, hidden=True)
    scores: Scores = option(
        "auto", flag="--scores", kind="str", choices=SCORE_READINGS, show_default=True, help=_SCORES_HELP
    )


@options_class
class EvaluateOptions(ModelOptions):
    min_accuracy: float | None = option(
        flag="--min-accuracy", kind="float", range=Range(0, 1), metavar="X", help="Exit 1 if accuracy is below X."
    )
    scores: Scores = option(
        "auto", flag="--scores", kind="str", choices=SCORE_READINGS, show_default=True, help=_SCORES_HELP
    )


@options_class
class RetrainOptions(OptionsBase):
    """`imgtool.retrain`'s keywords and `imgtool retrain`'s options (`image_dir` is the
    folder argument, `folder` in the API)."""

    image_dir: Path | None = None
    output: Path | None = option(
        flag=("-o", "--output"),
        kind="folder",
        help="Model folder to write (default: ./IMAGE_DIR-model; never inside IMAGE_DIR).",
    )
    features: str | None = option(
        flag="--features",
        kind="str",
        metavar="'PREFIX-*.parquet'",
        help="Train from the shards of `imgtool beam features` instead of IMAGE_DIR (no photos read; "
        "same splits and training; pass its --model; needs pyarrow).",
    )
    model: str | None = option(
        flag=("-m", "--model"),
        kind="str",
        metavar="MODEL",
        help="Backbone: catalog name (its feature-vector twin is used), .tflite feature "
        "extractor, SavedModel, hub handle or URL. Default: $IMGTOOL_BACKBONE, else "
        "inception_v3.",
    )
    input_size: tuple[int, int] | None = option(
        flag="--input-size",
        kind="size",
        metavar="H,W",
        help="Input size for a backbone that does not say (a .tflite says: a different size is exit 2).",
    )
    value_range: tuple[float, float] | None = option(
        flag="--value-range",
        kind="pair",
        metavar="LO,HI",
        help="Pixel values 0..255 map linearly to LO..HI, for a backbone that does not say (a quantized "
        ".tflite says: a different range is exit 2).",
    )
    validation_percent: float = option(
        DEFAULT_PERCENT,
        flag="--validation-percent",
        kind="float",
        range=Range(*PERCENT_RANGE),
        show_default=True,
        help="Photos put in the validation split by hash (scored out-of-fold; also fitted on).",
    )
    test_percent: float = option(
        DEFAULT_PERCENT,
        flag="--test-percent",
        kind="float",
        range=Range(*PERCENT_RANGE),
        show_default=True,
        help="Photos put in the test split by hash (never fitted on; the reported accuracy).",
    )
    validation_dir: Path | None = option(
        flag="--validation-dir",
        kind="folder",
        help="Given validation photos (one sub-folder per class) instead of a hashed share.",
    )
    test_dir: Path | None = option(
        flag="--test-dir", kind="folder", help="Given test photos (one sub-folder per class) instead of a hashed share."
    )
    l2: float | None = option(
        flag="--l2",
        kind="float",
        range=Range(0, low_open=True),
        metavar="X",
        help="Fix the L2 strength (default: chosen by 5-fold cross-validation from 10 .. 0.001).",
    )
    label_smoothing: float = option(
        0.1,
        flag="--label-smoothing",
        kind="float",
        range=Range(0, 1, high_open=True),
        show_default=True,
        help="Fit to smoothed targets: (1 - X) one-hot + X / classes (0: hard labels).",
    )
    class_weight: ClassWeight = option(
        "balanced",
        flag="--class-weight",
        kind="str",
        choices=CLASS_WEIGHTS,
        show_default=True,
        help="balanced: every class weighs the same in the fit, however many photos it has.",
    )
    seed: int = option(
        0,
        flag="--seed",
        kind="int",
        show_default=True,
        help="Draws the cross-validation folds (and distortions). Same seed, same data: same model.",
    )
    epochs: int | None = option(flag="--epochs", kind="int", range=Range(1), deprecated="converged")
    steps: int | None = option(flag="--steps", kind="int", range=Range(1), deprecated="converged")
    learning_rate: float | None = option(flag="--learning-rate", kind="float", deprecated="converged")
    batch_size: int | None = option(flag="--batch-size", kind="int", range=Range(1), deprecated="converged")
    bottleneck_dir: Path | None = option(
        flag="--bottleneck-dir", kind="folder", help="Bottleneck cache (default: IMGTOOL_HOME/bottlenecks)."
    )
    flip_left_right: bool = option(
        False, flag="--flip-left-right", kind="bool", help="Distortion: random horizontal flips."
    )
    random_crop: float = option(
        0.0, flag="--random-crop", kind="float", range=Range(0, 90), metavar="PCT", help="Distortion: crop up to PCT%."
    )
    random_scale: float = option(
        0.0,
        flag="--random-scale",
        kind="float",
        range=Range(0, 100),
        metavar="PCT",
        help="Distortion: zoom up to PCT%.",
    )
    random_brightness: float = option(
        0.0,
        flag="--random-brightness",
        kind="float",
        range=Range(0, 100),
        metavar="PCT",
        help="Distortion: brightness +-PCT%.",
    )
    distorted_copies: int = option(
        4,
        flag="--distorted-copies",
        kind="int",
        range=Range(1),
        show_default=True,
        help="Distorted copies per training image (each costs a backbone pass; not cached).",
    )
    summaries_dir: Path | None = option(
        flag="--summaries-dir",
        kind="folder",
        help="Write TensorBoard summaries (loss, accuracy) here. Needs TensorBoard: "
        "pip install 'imgtool-ml[summaries]'.",
    )
    min_accuracy: float | None = option(
        flag="--min-accuracy",
        kind="float",
        range=Range(0, 1),
        metavar="X",
        help="Exit 1 (and write no model) if test accuracy is below X (0..1).",
    )
    force: bool = option(
        False, flag="--force", kind="bool", help="Replace the output folder even if it is not a model of these photos."
    )
    tf_exports: bool = option(
        True,
        flag="--export/--no-export",
        kind="bool",
        show_default=True,
        help="For TF backbones, also write saved_model/ and model.tflite (~15 s of TensorFlow on "
        "Inception v3; an identical earlier run's export is reused).",
    )
    quantize: Quantize = option(
        "none",
        flag="--quantize",
        kind="str",
        choices=QUANTIZE_MODES,
        show_default=True,
        help="Besides model.tflite (float), also write model-MODE.tflite quantized: dynamic (int8 weights), "
        "float16 (half-size weights) or int8 (full-integer, calibrated on the training photos).",
    )

    @property
    def folder(self) -> Path:
        """The photos' folder (with `features`: the one the shards were made from, which
        `imgtool.retrain` fills in)."""
        if self.image_dir is None:
            raise UsageError(_GIVE_FOLDER, parameter="folder")
        return self.image_dir

    def distorted(self) -> bool:
        """Any distortion asked for (each needs the photos)."""
        return self.flip_left_right or bool(self.random_crop or self.random_scale or self.random_brightness)


def check_retrain(opts: RetrainOptions) -> None:
    """The rules about retrain's options together, before any work (UsageError): the CLI
    and the API refuse the same combinations. Each value is checked by `check` first."""
    check(opts)
    if opts.features is None:
        if opts.image_dir is None:
            raise UsageError(_GIVE_FOLDER, parameter="folder")
        return
    if opts.image_dir is not None:
        raise UsageError("give " + Param("folder") + " or " + Param("features") + ", not both", parameter="features")
    if opts.output is None:
        raise UsageError(Advice.FEATURES_NEED_OUTPUT + " (the model folder to write)", parameter="output")
    if opts.distorted():
        raise UsageError(
            "distortions need the photos; " + Param("features") + " trains on precomputed features only",
            parameter="features",
        )
