"""A model made portable: everything a worker on another machine needs to run it as
`imgtool classify` does, decided once where the model is resolved (a Spark driver).

The worker then needs the files and this value only: no resolver, no catalog, no
network, no TensorFlow. It opens the .tflite with LiteRT (plus the numpy head of a
retrained folder), feeds it what imgtool.data.images decodes, and reads the outputs as the
decision recorded here says (probabilities as they are, logits through softmax).

Layer: above classifier, resolve, engine, bottlenecks; below spark."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgtool.core import store
from imgtool.core.errors import ModelError

if TYPE_CHECKING:
    import numpy as np

    from imgtool.inference.classifier import Classifier, Prediction
    from imgtool.models.recipe import Recipe
    from imgtool.numbers.scores import OutputKind
    from imgtool.runtime.engine import Engine


@dataclass(frozen=True)
class PortableModel:
    """What a remote worker runs. `tflite` (and `head`, a retrained last layer: npz with
    weights [F, C] and bias [C]) are files on the machine that prepared it; their sha256
    names and checks the copies a worker gets."""

    ref: str
    tflite: Path
    tflite_sha256: str
    input_size: tuple[int, int]  # (height, width)
    value_range: tuple[float, float] | None
    output: OutputKind  # probabilities | logits | features
    width: int  # outputs per photo: scores (one per label) or the feature vector's length
    labels: tuple[str, ...] = ()  # classifiers: one per output index
    head: Path | None = None
    head_sha256: str | None = None
    backbone_id: str = ""  # features: imgtool.runtime.bottlenecks.backbone_id


def runnable_parts(model: Recipe) -> tuple[Recipe, Path | None]:
    """The model a worker runs and the head applied after it (retrained folders); one rule
    for Spark executors and Beam workers, which run LiteRT only."""
    runnable, head = model, None
    if model.head is not None:
        assert model.backbone is not None
        runnable, head = model.backbone, model.head
    if runnable.tflite is None:
        raise ModelError(
            f"{model.ref} runs only in TensorFlow here (it could not be converted to .tflite); "
            "workers run LiteRT only - pick a model with a .tflite"
        )
    return runnable, head


def from_classifier(classifier: Classifier) -> PortableModel:
    """A loaded classifier's model, output decision and labels (`imgtool classify`'s,
    made at load from the model, never from photos)."""
    model = classifier.model
    runnable, head = runnable_parts(model)
    assert runnable.tflite is not None
    return PortableModel(
        ref=model.ref,
        tflite=runnable.tflite,
        tflite_sha256=store.sha256_file(runnable.tflite),
        input_size=classifier.input_size,
        value_range=runnable.config.value_range,
        output=classifier.decision.kind,
        width=classifier.output_width,
        labels=tuple(classifier.labels),
        head=head,
        head_sha256=store.sha256_file(head) if head is not None else None,
    )


def for_features(model: Recipe) -> PortableModel:
    """A feature extractor (resolved with purpose "features"), with the bottleneck
    identity `imgtool retrain` gives its features."""
    from imgtool.numbers.scores import decide_output_kind
    from imgtool.runtime import bottlenecks
    from imgtool.runtime.engine import LiteRTEngine

    runnable, head = runnable_parts(model)
    assert runnable.tflite is not None
    engine = LiteRTEngine(runnable.tflite, runnable.config.value_range, threads=1)  # loads it: exit 3 if broken
    # a softmax is never a feature vector: the decision `imgtool classify` makes, from the model
    kind = decide_output_kind(model.config.output, engine.output_facts(), has_labels=model.labels is not None).kind
    if head is not None or model.config.output not in (None, "features") or kind == "probabilities":
        raise ModelError(
            f"{model.ref} is a classifier without a feature-vector twin; "
            "give a feature extractor (e.g. a *_feature_vector catalog model or an embedding .tflite)"
        )
    value_range = runnable.config.value_range
    ident = bottlenecks.backbone_id(
        runnable.tflite, engine.input_size, value_range, extra=str(runnable.graph_tensors or "")
    )
    return PortableModel(
        ref=model.ref,
        tflite=runnable.tflite,
        tflite_sha256=store.sha256_file(runnable.tflite),
        input_size=engine.input_size,
        value_range=value_range,
        output="features",
        width=engine.output_width,
        backbone_id=ident,
    )


def open_engine(model: PortableModel, tflite: str, head: str | None, threads: int) -> Engine:
    """The engine a worker runs, from its local copies of the files (checked against the
    sha256 recorded at preparation: a changed or partial copy is a ModelError)."""
    import numpy as np

    from imgtool.runtime.engine import HeadEngine, LiteRTEngine

    check_copy(tflite, model.tflite_sha256, model.tflite)
    engine: Engine = LiteRTEngine(tflite, model.value_range, threads=threads)
    if model.head is not None:
        assert head is not None and model.head_sha256 is not None
        check_copy(head, model.head_sha256, model.head)
        with np.load(head, allow_pickle=False) as npz:
            engine = HeadEngine(engine, npz["weights"], npz["bias"])
    return engine


def check_copy(path: str, sha256: str, original: Path) -> None:
    try:
        got = store.sha256_file(path)
    except OSError as err:
        raise ModelError(
            f"{path}: cannot read the copy of {original} ({err.strerror or err}); "
            "every worker must be able to read the model file"
        ) from None
    if got != sha256:
        raise ModelError(
            f"{path}: not the model that was prepared ({original}: sha256 {sha256[:12]}..., "
            f"this copy {got[:12]}...); make the UDF again"
        )


def top_k(model: PortableModel, scores: np.ndarray, k: int) -> list[Prediction]:
    """The top k of one photo's scores, ranked by `Classifier.top_k` itself (the one rule
    for order and rounding: best first, ties by index) over this model's labels."""
    from types import SimpleNamespace
    from typing import cast

    from imgtool.inference.classifier import Classifier

    return Classifier.top_k(cast("Classifier", SimpleNamespace(labels=model.labels)), scores, k)
