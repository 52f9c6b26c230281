"""What Beam workers run: read and decode photos, run LiteRT under Beam's RunInference, emit records.

Needs numpy, Pillow, ai-edge-litert and apache_beam, nothing else: never TensorFlow and
never imgtool's resolver (the launcher decided everything and put it in a ModelSpec).
The launcher registers this module and the three small imgtool modules it uses
(images, engine, errors, and ui which engine uses) for cloudpickle's pickling by value,
so a worker needs no imgtool install at all (requirements-worker.lock).

The steps: `Decode` (read through Beam's FileSystems, decode with imgtool's decoder; a
photo that cannot be read or decoded becomes its error record right there), then
`RunInference(LiteRTModelHandler)` over fixed-size batches, whose dead-letter output
(`with_exception_handling`) turns a batch that failed in the model into one error
record per photo, then the records.

Threading: each bundle has its own DoFn instance (Beam's sdk_worker builds one bundle
processor per bundle), but RunInference loads the model once per process through
`shared.Shared` and hands that one object to every bundle, on every worker thread; a
LiteRT interpreter is not thread-safe (apache/beam#23853 is about exactly that shared
model: one interpreter used from several threads gave wrong rows and a RuntimeError).
So the shared "model" is an InterpreterPool: one per process, and inside it one
interpreter per thread. The model file is copied to local disk once per machine (named
by its sha256, verified before it is renamed into place)."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler

from imgtool.core.errors import ImgtoolError, first_line
from imgtool.data import images
from imgtool.numbers.scores import OUTPUT_KINDS, softmax
from imgtool.runtime.engine import HeadEngine, LiteRTEngine

METRICS_NAMESPACE = "imgtool"  # photos, failed, interpreters
INFERENCE_METRICS_NAMESPACE = "imgtool.RunInference"  # Beam's own: num_inferences, inference_batch_latency...
ERRORS = "errors"  # the Decode step's second output: error records


@dataclass(frozen=True)
class ModelSpec:
    """Everything a worker needs to run the model, decided by the launcher."""

    model_uri: str  # the staged .tflite (any Beam filesystem)
    model_sha256: str
    input_size: tuple[int, int]  # (height, width)
    value_range: tuple[float, float] | None
    output: str  # logits -> softmax; probabilities -> as they are; features -> the vector
    labels: tuple[str, ...] = ()  # one per output index (classifiers)
    head_uri: str | None = None  # a retrained last layer: npz with weights [F, C], bias [C]
    head_sha256: str | None = None
    backbone_id: str = ""  # features: imgtool.runtime.bottlenecks.backbone_id of the model

    def __post_init__(self) -> None:
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}, not {self.output!r}")


# ---------------------------------------------------------------- the model on this machine


def local_copy(uri: str, sha256: str, suffix: str) -> str:
    """A local file with the staged content: copied once per machine and verified.

    The copy is named by its sha256 and renamed into place only after its hash was
    checked, so a file of that name is complete; concurrent copies (threads, processes)
    each write their own temporary name and the last rename wins with the same bytes."""
    if os.path.isfile(uri):  # the local runner: the staged file is already on this disk
        return uri
    root = os.path.join(tempfile.gettempdir(), "imgtool-beam-models")
    os.makedirs(root, exist_ok=True)
    final = os.path.join(root, sha256 + suffix)
    if os.path.isfile(final):
        return final
    tmp = f"{final}.{os.getpid()}.{threading.get_ident()}.part"
    h = hashlib.sha256()
    try:
        with FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as src, open(tmp, "wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                h.update(chunk)
                dst.write(chunk)
        if h.hexdigest() != sha256:
            raise RuntimeError(
                f"{uri}: staged model changed (sha256 {h.hexdigest()}, expected {sha256}); run the launcher again"
            )
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return final


def _build_lock() -> Any:
    """One lock per process, whichever copy of this module asks. LiteRTEngine filters the
    interpreter's native chatter by swapping fds 1 and 2 for a moment (process-global); two
    threads doing that at once restore each other's swapped fds and lose stdout. This
    module is unpickled by value once per DoFn, so a module global would not be shared:
    the lock lives on the installed LiteRT module instead."""
    import ai_edge_litert.interpreter as litert

    return litert.__dict__.setdefault("_imgtool_build_lock", threading.Lock())


def build_engine(spec: ModelSpec) -> Any:
    """One engine (one LiteRT interpreter, one thread of its own) for the calling thread."""
    path = local_copy(spec.model_uri, spec.model_sha256, ".tflite")
    with _build_lock():
        engine: Any = LiteRTEngine(path, spec.value_range, threads=1)  # Beam's threads are the parallelism
    if spec.head_uri is not None:
        assert spec.head_sha256 is not None
        with np.load(local_copy(spec.head_uri, spec.head_sha256, ".npz"), allow_pickle=False) as npz:
            engine = HeadEngine(engine, npz["weights"], npz["bias"])
    return engine


# ---------------------------------------------------------------- reading photos


def read_and_decode(path: str, size: tuple[int, int]) -> tuple[bytes | None, np.ndarray | None, str | None]:
    """(content, pixels, None) or (content or None, None, reason): reading through Beam's
    FileSystems (local, gs://, s3://, ...), decoding with imgtool's own decoder."""
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            data = fh.read()
    except Exception as err:  # noqa: BLE001 - BeamIOError, OSError, cloud client errors: one record each
        return None, None, f"cannot read ({first_line(err)})"
    try:
        return data, images.decode(io.BytesIO(data), size), None
    except ImgtoolError as err:
        return data, None, str(err)


def top_k(scores: np.ndarray, k: int, labels: tuple[str, ...]) -> list[dict[str, Any]]:
    """The `imgtool classify` jsonl predictions: best first, ties by the lower index (a
    stable sort of -scores over the whole vector, as Classifier.top_k)."""
    k = max(1, min(k, scores.shape[0]))
    idx = np.argsort(-scores, kind="stable")[:k]  # ties to the lower index (one stable sort, no argpartition)
    return [{"label": labels[i], "score": round(float(scores[i]), 6), "index": int(i)} for i in idx]


# ---------------------------------------------------------------- RunInference


class InterpreterPool:
    """The model RunInference loads once per process (shared.Shared) and gives to every
    bundle on every thread: one LiteRT interpreter per thread, built on first use."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self._local = threading.local()
        self._lock = threading.Lock()
        self.built = 0

    def engine(self) -> Any:
        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = self._local.engine = build_engine(self.spec)
            with self._lock:
                self.built += 1
            Metrics.counter(METRICS_NAMESPACE, "interpreters").inc()
        return engine

    def run(self, arrays: np.ndarray) -> np.ndarray:
        out = self.engine().run(arrays)
        return softmax(out) if self.spec.output == "logits" else out


class LiteRTModelHandler(ModelHandler):
    """Beam's ModelHandler for a staged imgtool model. Examples are (key, pixels) pairs:
    the key travels with its photo (a path, or a features row's fields) and comes back
    with its row of scores or features, so no KeyedModelHandler is needed (it would
    serialize every batch's keys to count bytes). Fixed-size batches (`--batch-size`)."""

    def __init__(self, spec: ModelSpec, batch_size: int = 8):
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self.spec = spec

    def load_model(self) -> InterpreterPool:
        local_copy(self.spec.model_uri, self.spec.model_sha256, ".tflite")  # fails here, not per batch
        return InterpreterPool(self.spec)

    def run_inference(
        self, batch: Any, model: InterpreterPool, inference_args: dict[str, Any] | None = None
    ) -> Iterator[tuple[Any, np.ndarray]]:
        items = list(batch)
        out = model.run(np.stack([arr for _, arr in items]))
        for (key, _), row in zip(items, out):
            yield key, row

    def get_num_bytes(self, batch: Any) -> int:
        """The pixels' bytes (Beam's default serializes each batch to measure it)."""
        return int(sum(arr.nbytes for _, arr in batch))

    def get_metrics_namespace(self) -> str:
        return INFERENCE_METRICS_NAMESPACE

    def share_model_across_processes(self) -> bool:
        return False  # an interpreter cannot be proxied to another process; each process has its pool


def _count(record: dict[str, Any]) -> dict[str, Any]:
    Metrics.counter(METRICS_NAMESPACE, "photos").inc()
    if record.get("error") is not None:
        Metrics.counter(METRICS_NAMESPACE, "failed").inc()
    return record


def failed_batch_reason(failure: Any) -> str:
    """The dead-letter output's (type, repr, traceback) as one line for a record."""
    kind, text = (failure[0], failure[1]) if isinstance(failure, tuple) and len(failure) >= 2 else (None, failure)
    name = getattr(kind, "__name__", "error")
    return f"the model failed on this photo's batch ({first_line(str(text), 300) or name})"


# classify: a path -> (path, pixels) | error record -> {"path", "predictions"} | {"path", "error"}


class DecodeForClassify(beam.DoFn):
    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def process(self, path: str) -> Iterator[Any]:
        _, arr, err = read_and_decode(path, self.spec.input_size)
        if arr is None:
            yield beam.pvalue.TaggedOutput(ERRORS, _count({"path": path, "error": err}))
        else:
            yield path, arr


class ClassifyRecord(beam.DoFn):
    def __init__(self, spec: ModelSpec, k: int):
        if spec.output == "features":
            raise ValueError("a feature extractor cannot classify")
        self.spec = spec
        self.k = k

    def process(self, result: tuple[str, np.ndarray]) -> Iterator[dict[str, Any]]:
        path, scores = result
        yield _count({"path": path, "predictions": top_k(scores, self.k, self.spec.labels)})


class ClassifyFailed(beam.DoFn):
    """A batch in RunInference's dead-letter output: one error record per photo."""

    def process(self, failed: tuple[Any, Any]) -> Iterator[dict[str, Any]]:
        batch, failure = failed
        for path, _ in batch:
            yield _count({"path": path, "error": failed_batch_reason(failure)})


# features: (source, rel, class) -> ((source, rel, class, sha256), pixels) | error row -> row


def _row(
    key: tuple[str, str, str, str | None], spec: ModelSpec, features: Any = None, error: str | None = None
) -> dict[str, Any]:
    source, rel, cls, sha = key
    return {
        "path": rel,
        "class": cls,
        "sha256": sha,
        "features": features,
        "backbone": spec.backbone_id,
        "source": source,
        "error": error,
    }


class DecodeForFeatures(beam.DoFn):
    def __init__(self, spec: ModelSpec):
        if spec.output != "features":
            raise ValueError("features need a feature extractor")
        self.spec = spec

    def process(self, item: tuple[str, str, str]) -> Iterator[Any]:
        source, rel, cls = item
        data, arr, err = read_and_decode(source, self.spec.input_size)
        key = (source, rel, cls, hashlib.sha256(data).hexdigest() if data is not None else None)
        if arr is None:
            yield beam.pvalue.TaggedOutput(ERRORS, _count(_row(key, self.spec, error=err)))
        else:
            yield key, arr


class FeaturesRecord(beam.DoFn):
    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def process(self, result: tuple[Any, np.ndarray]) -> Iterator[dict[str, Any]]:
        key, feats = result
        yield _count(_row(key, self.spec, features=np.asarray(feats, dtype=np.float32).tolist()))


class FeaturesFailed(beam.DoFn):
    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def process(self, failed: tuple[Any, Any]) -> Iterator[dict[str, Any]]:
        batch, failure = failed
        for key, _ in batch:
            yield _count(_row(key, self.spec, error=failed_batch_reason(failure)))
