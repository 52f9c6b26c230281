"""Classifying many inputs: decode ahead on worker threads, run batches, top-k per input.

Memory stays flat with the number of inputs: inputs are listed lazily and at most
`window` decoded images are held at once."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from imgtool.core import ui
from imgtool.core.errors import Advice, Call, Text, UsageError
from imgtool.data import images
from imgtool.data import labels as labels_mod
from imgtool.data.images import decode_ahead
from imgtool.models.recipe import Recipe
from imgtool.numbers.scores import Decision, decide_output_kind, to_scores
from imgtool.runtime.engine import Engine


@dataclass(frozen=True)
class Prediction:
    """One of an input's top-k: the label, its score (a probability, rounded to 6
    places) and its index in the model's outputs."""

    label: str
    score: float
    index: int


@dataclass(frozen=True)
class Result:
    """One input's outcome: its predictions (best first), or why it could not be
    classified (`error`). `path` is None for an image given in memory."""

    path: str | None
    predictions: list[Prediction] | None = None
    error: str | None = None
    unknown: bool | None = None  # with a minimum score: the top score is below it (None: no minimum given)

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        out: dict[str, Any] = {
            "path": self.path,
            "predictions": [{"label": p.label, "score": p.score, "index": p.index} for p in self.predictions or []],
        }
        if self.unknown is not None:
            out["unknown"] = self.unknown
        return out

    def with_min_score(self, min_score: float) -> Result:
        """This result judged against a minimum top score: `unknown` when below it."""
        if self.error is not None or not self.predictions:
            return self
        return replace(self, unknown=self.predictions[0].score < min_score)


class Classifier:
    """A model's engine, its output kind and its labels — all decided here, at load, from
    the model — ready to classify arrays or paths. `scores` is "auto", "probabilities"
    or "logits" (the --scores override)."""

    def __init__(self, model: Recipe, engine: Engine | None = None, scores: str = "auto"):
        self.model = model
        for note in model.notes:
            ui.info(note)
        self.engine = engine or model.engine()
        facts = self.engine.output_facts()
        self.output_width = facts.width
        self.decision: Decision = decide_output_kind(
            model.config.output, facts, scores, has_labels=model.labels is not None
        )
        if self.decision.kind == "features":
            raise UsageError(feature_extractor_message(model.ref, facts.width), model=model.ref)
        self.input_size = self.engine.input_size
        if model.labels is None:
            ui.warn(f"{model.ref} has no labels; showing class numbers (" + Advice.GIVE_LABELS + " to name them)")
            self._labels = [f"class {i}" for i in range(facts.width)]
        else:
            self._labels = labels_mod.fit(model.labels, facts.width, ref=model.ref, labels_file=model.labels_file)

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """Scores [N, K] of a batch of images: each row from its own image only."""
        return to_scores(self.engine.run(batch), self.decision.kind)

    @property
    def labels(self) -> list[str]:
        return self._labels

    def top_k(self, scores: np.ndarray, k: int) -> list[Prediction]:
        """The k best of one image's scores: best first, equal scores in index order
        (one stable sort of the whole vector: argpartition would pick arbitrary members
        of a tie, in an order that can change with numpy's version)."""
        k = max(1, min(k, scores.shape[0]))
        idx = np.argsort(-scores, kind="stable")[:k]
        return [Prediction(self.labels[i], round(float(scores[i]), 6), int(i)) for i in idx]

    def classify(self, paths: Iterable[Any], top_k: int = 5, batch_size: int = 8, workers: int = 2) -> Iterator[Result]:
        """Results in input order. Each item: a path (a file, or a folder walked for
        images) or an image in memory (a PIL image, a uint8 array; its Result's path is
        None). Nothing given is changed."""
        inputs = _expand(paths)
        buffered: list[tuple[str | None, np.ndarray | None, str | None]] = []
        n_arrays = 0
        for item in decode_ahead(inputs, self.input_size, workers, window=batch_size * 2 + workers):
            buffered.append(item)
            if item[1] is not None:
                n_arrays += 1
            if n_arrays >= batch_size:
                yield from self._flush(buffered, top_k)
                buffered, n_arrays = [], 0
        yield from self._flush(buffered, top_k)

    def _flush(self, buffered: list[tuple[str | None, np.ndarray | None, str | None]], top_k: int) -> Iterator[Result]:
        arrays = [a for _, a, _ in buffered if a is not None]
        scores = self.scores(np.stack(arrays)) if arrays else None
        j = 0
        for path, arr, err in buffered:
            if arr is None:
                yield Result(path, error=err)
            else:
                assert scores is not None
                yield Result(path, predictions=self.top_k(scores[j], top_k))
                j += 1


def feature_extractor_message(ref: str, width: int) -> Text:
    """What classify and labels say of a feature extractor (it has neither scores nor labels)."""
    return (
        f"{ref} is a feature extractor ({width}-wide feature vectors), not a classifier; train a classifier "
        "on it " + Advice.RETRAIN_IT + ", or " + Advice.PICK_CLASSIFIER
    )


def is_feature_extractor(model: Recipe) -> int | None:
    """The feature width if `model` (resolved, labels or not) is a feature extractor, by the
    rule classify uses; None if it is a classifier or cannot be told without TensorFlow."""
    if model.labels is not None:
        return None
    if model.config.output is not None and model.config.output != "features":
        return None
    if model.tflite is None and model.head is None:
        return None  # telling would need the TF model loaded (or converted): not for a labels list
    facts = model.engine().output_facts()
    decision = decide_output_kind(model.config.output, facts, "auto", has_labels=False)
    return facts.width if decision.kind == "features" else None


def model_given_as_input(path: str | os.PathLike[str]) -> Text | None:
    """The error for an input to classify that is a model (a folder written by retrain, a
    SavedModel folder, a .tflite file) - the arguments swapped; None for anything else."""
    from imgtool.models.retrained import RETRAINED_FILE

    p = Path(path)
    is_model = (p.is_dir() and ((p / RETRAINED_FILE).is_file() or (p / "saved_model.pb").is_file())) or (
        p.suffix.lower() == ".tflite" and p.is_file()
    )
    if not is_model:
        return None
    shown = os.fspath(path)
    return f"{shown}: that is a model, not an image; did you mean " + Call("load_model", shown) + "?"


def check_inputs(items: Iterable[Any]) -> None:
    """UsageError if a path among `items` is a model (see `model_given_as_input`): said
    before any model is loaded, so swapped arguments never start a download."""
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            problem = model_given_as_input(item)
            if problem is not None:
                raise UsageError(problem, path=item)


def _expand(items: Iterable[Any]) -> Iterator[images.Input]:
    for item in items:
        if images.is_in_memory(item):
            yield images.Input(None, image=item)
        elif isinstance(item, (str, os.PathLike)):
            check_inputs([item])
            yield from images.expand_inputs([os.fspath(item)])
        else:
            raise UsageError(
                f"cannot classify a {type(item).__name__}: give a path (file or folder), a PIL image or a uint8 array"
            )
