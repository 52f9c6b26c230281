"""The public Python API: `imgtool.classify` (one shot), `imgtool.load_model`,
`Model.classify`; training and checking (`imgtool.retrain`, `imgtool.evaluate`,
`imgtool.audit`, `imgtool.export_model`) are api_training.py, the store
(`imgtool.list_models`, `download_model`, `model_path`, `remove_models`) api_store.py.
The CLI is this plus printing.

Nothing here prints: messages go to the `imgtool` logger, progress to the optional
`progress` callback (`ui.ProgressCallback`: called as `progress(done, total, desc, unit)`).
Errors are `imgtool.core.errors.ImgtoolError` subclasses (each also a fitting built-in
exception). Inputs are never changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgtool.core import ui
from imgtool.core.errors import Advice, UsageError
from imgtool.core.options import Scores

if TYPE_CHECKING:
    from imgtool.inference.classifier import Classifier, Result
    from imgtool.models.recipe import Purpose, Recipe

PathLike = str | os.PathLike[str]


def _single(inputs: Any) -> bool:
    from imgtool.data.images import is_in_memory

    return isinstance(inputs, (str, os.PathLike)) or is_in_memory(inputs)


class Model:
    """A loaded classifier: its labels, input size and how its outputs are read are all
    known here, at load. Make one with `load_model`."""

    def __init__(self, classifier: Classifier):
        self._classifier = classifier

    @property
    def ref(self) -> str:
        """The reference it was loaded from (as given)."""
        return self._classifier.model.ref

    @property
    def labels(self) -> list[str]:
        """One label per output (`class N` when the model carries none)."""
        return list(self._classifier.labels)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) every image is resized to."""
        return self._classifier.input_size

    @property
    def scores(self) -> str:
        """How the outputs are read: "probabilities" or "logits" (softmaxed)."""
        return self._classifier.decision.kind

    @property
    def scores_reason(self) -> str:
        """Why the outputs are read that way (catalog record, metadata, last op, ...)."""
        return self._classifier.decision.reason

    @property
    def classifier(self) -> Classifier:
        """The underlying `imgtool.inference.classifier.Classifier` (engine, output width)."""
        return self._classifier

    def __repr__(self) -> str:
        return f"<imgtool.Model {self.ref!r}: {len(self._classifier.labels)} labels, input {self.input_size}>"

    @property
    def suggested_min_score(self) -> float | None:
        """The minimum score `retrain` suggests for this model (metrics.json open_set:
        the lowest at which 95% of the photos it accepts were right, out of fold), or None
        (not a retrained model, trained before scores were calibrated, or no threshold
        got there)."""
        from imgtool.core import store

        head = self._classifier.model.head
        if head is None:
            return None
        metrics = store.read_json(Path(head).parent / "metrics.json")
        value = ((metrics or {}).get("open_set") or {}).get("min_score") if isinstance(metrics, dict) else None
        return float(value) if isinstance(value, (int, float)) and 0 <= value <= 1 else None

    def resolve_min_score(self, value: float | str | None) -> float | None:
        """A `min_score` argument as a number: "auto" is `suggested_min_score`."""
        if value is None:
            return None
        if value == "auto":
            found = self.suggested_min_score
            if found is None:
                raise UsageError(
                    f"min_score auto: {self.ref} records no suggested minimum score (only models "
                    "retrained by this imgtool do, when a threshold reached 95% precision); give a number "
                    "or retrain the model",
                    parameter="min_score",
                    model=self.ref,
                )
            return found
        if isinstance(value, str) or not 0 <= value <= 1:
            raise UsageError(f"min_score {value!r}: give a score between 0 and 1, or auto", parameter="min_score")
        return float(value)

    def classify_iter(
        self,
        inputs: Any,
        top_k: int = 5,
        *,
        batch_size: int = 8,
        min_score: float | str | None = None,
        progress: ui.ProgressCallback | None = None,
    ) -> Iterator[Result]:
        """Like `classify`, one Result at a time (memory stays flat over big folders)."""
        from imgtool.core.option_fields import check_value
        from imgtool.core.options import ClassifyOptions

        check_value(ClassifyOptions, "top_k", top_k)
        check_value(ClassifyOptions, "batch_size", batch_size)
        threshold = self.resolve_min_score(min_score)
        items: Sequence[Any] | Iterable[Any] = [inputs] if _single(inputs) else inputs
        with ui.Tracker(None, "classifying", "img", progress or ui.current_callback()) as tracker:
            for res in self._classifier.classify(items, top_k=top_k, batch_size=batch_size):
                tracker.update(1)
                yield res if threshold is None else res.with_min_score(threshold)

    def classify(
        self,
        inputs: Any,
        top_k: int = 5,
        *,
        batch_size: int = 8,
        min_score: float | str | None = None,
        progress: ui.ProgressCallback | None = None,
    ) -> list[Result]:
        """Classify `inputs`: a path (an image file, or a folder searched recursively), a
        PIL image, a uint8 array (HxWx3 RGB, HxWx4 RGBA or HxW gray), or a list of these.

        One `Result` per image, in order: `.predictions` (top_k `Prediction(label,
        score, index)`, best first) or `.error` (why that input failed; the others are
        still classified). `.path` is None for in-memory images. `min_score` (0..1, or
        "auto": the model's `suggested_min_score`): a result whose top score is below it
        has `.unknown` True ("none of these"); without it `.unknown` is None."""
        return list(self.classify_iter(inputs, top_k, batch_size=batch_size, min_score=min_score, progress=progress))


def load_model(
    ref: PathLike | None = None,
    *,
    labels: PathLike | Sequence[str] | None = None,
    scores: Scores = "auto",
    input_size: tuple[int, int] | None = None,
    value_range: tuple[float, float] | None = None,
    input_tensor: str | None = None,
    output_tensor: str | None = None,
    progress: ui.ProgressCallback | None = None,
) -> Model:
    """Load a classifier, downloading (and converting) it once if needed.

    `ref`: a catalog name (`list_models()`), a .tflite file, a SavedModel folder, a .pb
    graph, a .tar.gz, a URL, a `hub:`/`kaggle:` handle or a folder written by `retrain`
    (default: $IMGTOOL_MODEL, else inception_v3). `labels`: a labels file (one a line)
    or a list of labels; always wins over the model's own. `scores`: what the model
    outputs ("auto": decided from the model). `input_size` (height, width),
    `value_range` (pixel 0..255 mapped linearly to lo..hi), `input_tensor` and
    `output_tensor` (frozen graphs) describe models that do not say."""
    model = _resolve(
        ref,
        labels=labels,
        purpose="classify",
        input_size=input_size,
        value_range=value_range,
        tensors=(input_tensor, output_tensor),
        progress=progress,
    )
    return Model(_classifier(model, scores))


def classify(
    inputs: Any,
    model: PathLike | Model | None = None,
    top_k: int = 5,
    *,
    labels: PathLike | Sequence[str] | None = None,
    scores: Scores = "auto",
    batch_size: int = 8,
    progress: ui.ProgressCallback | None = None,
) -> list[Result]:
    """One call: load `model` (any `load_model` reference, or a loaded `Model`; default
    $IMGTOOL_MODEL, else inception_v3) and classify `inputs` with it, as `Model.classify`
    does: one `Result` per image, in order. To classify again, keep the model:
    `load_model` once, then `Model.classify`."""
    if isinstance(model, Model):
        if scores != "auto" or labels is not None:
            raise UsageError("scores and labels belong to load_model; a loaded model already has them")
        loaded = model
    else:
        loaded = load_model(model, labels=labels, scores=scores, progress=progress)
    return loaded.classify(inputs, top_k, batch_size=batch_size, progress=progress)


def _resolve(
    ref: PathLike | None,
    *,
    labels: PathLike | Sequence[str] | None,
    purpose: Purpose,
    input_size: tuple[int, int] | None,
    value_range: tuple[float, float] | None,
    tensors: tuple[str | None, str | None],
    progress: ui.ProgressCallback | None,
) -> Recipe:
    from imgtool.models.resolve import resolve

    given: list[str] | None = None
    labels_file: str | None = None
    if isinstance(labels, (str, os.PathLike)):
        labels_file = os.fspath(labels)
    elif labels is not None:
        given = list(labels)
        if not given or not all(isinstance(x, str) for x in given):
            raise UsageError("labels: " + Advice.GIVE_LABELS + ", or a non-empty list of strings", parameter="labels")
    with ui.reporting(progress):
        model = resolve(
            None if ref is None else os.fspath(ref),
            labels_file=labels_file,
            purpose=purpose,
            input_size=input_size,
            value_range=value_range,
            tensors=tensors,
        )
    if given is not None:
        model.labels = given
    return model


def _classifier(model: Recipe, scores: str) -> Classifier:
    from imgtool.core.option_fields import check_value
    from imgtool.core.options import ClassifyOptions
    from imgtool.inference.classifier import Classifier

    check_value(ClassifyOptions, "scores", scores)
    return Classifier(model, scores=scores)


def model_labels(ref: PathLike | None = None, **kwargs: Any) -> list[str] | None:
    """The labels a model carries (None if it carries none), without loading it for
    classification (no conversion, so no TensorFlow). Keywords as for `load_model`.
    A feature extractor is a UsageError, in classify's words (it has no labels to give)."""
    from imgtool.inference.classifier import feature_extractor_message, is_feature_extractor

    model = _resolve(
        ref,
        labels=kwargs.get("labels"),
        purpose="labels",
        input_size=kwargs.get("input_size"),
        value_range=kwargs.get("value_range"),
        tensors=(kwargs.get("input_tensor"), kwargs.get("output_tensor")),
        progress=kwargs.get("progress"),
    )
    width = is_feature_extractor(model)
    if width is not None:  # no labels because it has none to give: the same words as classify
        raise UsageError(feature_extractor_message(model.ref, width), model=model.ref)
    return None if model.labels is None else list(model.labels)
