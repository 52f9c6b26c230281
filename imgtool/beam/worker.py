"""What Beam workers run: read a batch of photos, decode them, run LiteRT, emit records.

Needs numpy, Pillow, ai-edge-litert and apache_beam, nothing else: never TensorFlow and
never imgtool's resolver (the launcher decided everything and put it in a ModelSpec).
The launcher registers this module and the three small imgtool modules it uses
(images, engine, errors, and ui which engine uses) for cloudpickle's pickling by value,
so a worker needs no imgtool install at all (requirements-worker.txt).

Threading (apache/beam#23853): a runner may call one DoFn instance from several threads,
and a LiteRT interpreter is not thread-safe (a shared one gave wrong rows and a
RuntimeError). Each thread therefore builds its own interpreter, kept in a
threading.local created in setup(); the model file is copied to local disk once per
machine (named by its sha256, verified before it is renamed into place)."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from imgtool import images
from imgtool.engine import HeadEngine, LiteRTEngine, softmax
from imgtool.errors import ImgtoolError

METRICS_NAMESPACE = "imgtool"
ENGINE_METRICS_NAMESPACE = "imgtool.engines"  # counter names "<thread id>:<engine id>", +1 per batch
OUTPUT_KINDS = ("logits", "probabilities", "features")


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
    backbone_id: str = ""  # features: imgtool.bottlenecks.backbone_id of the model

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
            raise RuntimeError(f"{uri}: staged model changed (sha256 {h.hexdigest()}, expected {sha256}); "
                               "run the launcher again")
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
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        return None, None, f"cannot read ({first})"
    try:
        return data, images.decode(io.BytesIO(data), size), None
    except ImgtoolError as err:
        return data, None, str(err)


def top_k(scores: np.ndarray, k: int, labels: tuple[str, ...]) -> list[dict[str, Any]]:
    """The `imgtool classify` jsonl predictions: best first, ties by index (as Classifier.top_k)."""
    k = max(1, min(k, scores.shape[0]))
    idx = np.argsort(-scores, kind="stable")[:k]  # ties to the lower index (one stable sort, no argpartition)
    return [{"label": labels[i], "score": round(float(scores[i]), 6), "index": int(i)} for i in idx]


# ---------------------------------------------------------------- the DoFns

class _ModelFn(beam.DoFn):
    """A DoFn with one engine per thread. Decoding is fused with inference: a batch of
    paths comes in, records go out, and decoded pixels never cross a transform."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self._local: threading.local | None = None

    def setup(self) -> None:
        self._local = threading.local()
        self._photos = Metrics.counter(METRICS_NAMESPACE, "photos")
        self._failed = Metrics.counter(METRICS_NAMESPACE, "failed")

    def engine(self) -> Any:
        if self._local is None:  # a runner that skipped setup()
            self.setup()
        assert self._local is not None
        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = self._local.engine = build_engine(self.spec)
            Metrics.counter(METRICS_NAMESPACE, "interpreters").inc()
        Metrics.counter(ENGINE_METRICS_NAMESPACE, f"{threading.get_ident()}:{id(engine)}").inc()
        return engine

    def run(self, arrays: list[np.ndarray]) -> np.ndarray:
        out = self.engine().run(np.stack(arrays))
        if self.spec.output == "logits":
            out = softmax(out)
        return out


class ClassifyBatch(_ModelFn):
    """paths -> `imgtool classify` jsonl records ({"path", "predictions"} or {"path", "error"})."""

    def __init__(self, spec: ModelSpec, k: int):
        super().__init__(spec)
        if spec.output == "features":
            raise ValueError("a feature extractor cannot classify")
        self.k = k

    def process(self, batch: Iterable[str]) -> Iterator[dict[str, Any]]:
        paths = list(batch)
        decoded = [read_and_decode(p, self.spec.input_size) for p in paths]
        ok = [i for i, (_, arr, _) in enumerate(decoded) if arr is not None]
        scores = self.run([decoded[i][1] for i in ok]) if ok else None  # type: ignore[misc]
        row = {i: j for j, i in enumerate(ok)}
        for i, path in enumerate(paths):
            self._photos.inc()
            if i in row:
                assert scores is not None
                yield {"path": path, "predictions": top_k(scores[row[i]], self.k, self.spec.labels)}
            else:
                self._failed.inc()
                yield {"path": path, "error": decoded[i][2]}


class FeaturesBatch(_ModelFn):
    """(path, rel, class) -> one feature row: rel path, class, content sha256 (the
    bottleneck cache key), the vector (float32), the backbone identity; or the error."""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        if spec.output != "features":
            raise ValueError("features need a feature extractor")

    def process(self, batch: Iterable[tuple[str, str, str]]) -> Iterator[dict[str, Any]]:
        items = list(batch)
        decoded = [read_and_decode(source, self.spec.input_size) for source, _, _ in items]
        ok = [i for i, (_, arr, _) in enumerate(decoded) if arr is not None]
        feats = self.run([decoded[i][1] for i in ok]) if ok else None  # type: ignore[misc]
        row = {i: j for j, i in enumerate(ok)}
        for i, (source, rel, cls) in enumerate(items):
            self._photos.inc()
            data, _, err = decoded[i]
            record = {"path": rel, "class": cls,
                      "sha256": hashlib.sha256(data).hexdigest() if data is not None else None,
                      "features": None, "backbone": self.spec.backbone_id, "source": source, "error": err}
            if i in row:
                assert feats is not None
                record["features"] = np.asarray(feats[row[i]], dtype=np.float32).tolist()
            else:
                self._failed.inc()
            yield record
