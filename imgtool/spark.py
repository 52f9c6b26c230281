"""imgtool on Spark (and Databricks): `pyspark.ml.functions.predict_batch_udf` functions
over imgtool's LiteRT engine.

    from pyspark.sql import functions as F
    from imgtool.spark import classify_udf

    classify = classify_udf("mobilenet_v2_1.0_224_quant.tflite", top_k=5)
    df = spark.read.format("binaryFile").option("pathGlobFilter", "*.jpg").load("/data/photos")
    out = df.select("path", classify("content").alias("pred"))
    out.where(F.col("pred.error").isNull()).select("path", F.col("pred.labels")[0]).show()

The column given to the UDF holds, per row, a photo's path (a string: a file every
executor can read) or its bytes (binary: the `content` column of
`spark.read.format("binaryFile")`, which reads any filesystem Spark has).

Records are `imgtool classify`'s: the same decoding and resizing (imgtool.data.images), the
same engine, output decision, labels, scores, rounding and top-k order
(Classifier.top_k), and a photo that cannot be read or decoded gets its error in its
row, never a failed job. One row in, one row out:

* `classify_udf` -> struct `labels array<string>, scores array<double>,
  indexes array<int>, error string`: the top k best first (scores are the model's
  probabilities rounded to 6 places, exactly the numbers of `imgtool classify --format
  jsonl`) and `error` null; or, for a photo that failed, the error and arrays of k nulls.
* `features_udf` -> struct `features array<float>, error string`: the backbone's
  feature vector (float32, as `imgtool retrain` caches it) and `error` null; or the
  error and an array of nulls.

(Every array of a UDF has the same length: predict_batch_udf takes array fields as 2-D
numpy arrays, so a failed photo's row is filled with nulls rather than left empty.)

The model is resolved on the driver (catalog name, file, URL, retrained folder: what
`imgtool classify -m` takes) into one .tflite (+ the head of a retrained folder), and
shipped to the executors with `SparkContext.addFile` (`ship="sparkfiles"`, the
default) or read there at the same path (`ship="path"`: shared storage such as a
Databricks volume, or any path every executor sees). Each Python worker loads it once
(predict_batch_udf's model cache), checks its sha256, and runs it with as many LiteRT
threads as the task has CPUs (`spark.task.cpus`). Executors need numpy, Pillow,
ai-edge-litert, pandas, pyarrow and imgtool itself; never TensorFlow.

Needs pyspark (`pip install 'imgtool-ml[spark]'`; `make install-spark` here).
`import imgtool` never imports this module or Spark."""

from __future__ import annotations

import io
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from imgtool.core.errors import ImgtoolError, UsageError
from imgtool.data import images
from imgtool.inference.portable import PortableModel

if TYPE_CHECKING:
    from collections.abc import Callable

    from imgtool.api import Model as LoadedModel
    from imgtool.api import PathLike
    from imgtool.core.options import Scores
    from imgtool.runtime.engine import Engine

log = logging.getLogger("imgtool.spark")

Ship = Literal["sparkfiles", "path"]
SHIP_MODES: tuple[str, ...] = ("sparkfiles", "path")
CLASSIFY_SCHEMA = "labels array<string>, scores array<double>, indexes array<int>, error string"
FEATURES_SCHEMA = "features array<float>, error string"
STAGING = "spark-files"  # under imgtool's tmp folder: the driver's copies named by sha256, for addFile
NO_PHOTO = "no photo (the row's path or content is null)"
FOLDER = (
    "is a folder, not a photo; give one photo per row (spark.read.format('binaryFile') "
    "with recursiveFileLookup lists a folder's photos)"
)


def classify_schema() -> Any:
    """The StructType `classify_udf` returns (CLASSIFY_SCHEMA)."""
    from pyspark.sql.types import ArrayType, DoubleType, IntegerType, StringType, StructField, StructType

    return StructType(
        [
            StructField("labels", ArrayType(StringType())),
            StructField("scores", ArrayType(DoubleType())),
            StructField("indexes", ArrayType(IntegerType())),
            StructField("error", StringType()),
        ]
    )


def features_schema() -> Any:
    """The StructType `features_udf` returns (FEATURES_SCHEMA)."""
    from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

    return StructType([StructField("features", ArrayType(FloatType())), StructField("error", StringType())])


@dataclass(frozen=True)
class Shipped:
    """How executors find the model's files: SparkFiles names or paths, as `ship` said."""

    model: PortableModel
    via: Ship
    tflite: str  # a SparkFiles name (via "sparkfiles") or an absolute path (via "path")
    head: str | None = None

    def local(self, name: str) -> str:
        if self.via == "path":
            return name
        from pyspark import SparkFiles

        return SparkFiles.get(name)

    def engine(self, threads: int) -> Engine:
        from imgtool.inference.portable import open_engine

        return open_engine(
            self.model, self.local(self.tflite), None if self.head is None else self.local(self.head), threads
        )


# ---------------------------------------------------------------- the UDFs


def classify_udf(
    model: PathLike | LoadedModel | None = None,
    top_k: int = 5,
    *,
    labels: PathLike | list[str] | None = None,
    scores: Scores = "auto",
    batch_size: int = 8,
    ship: Ship = "sparkfiles",
    spark: Any = None,
) -> Any:
    """A predict_batch_udf classifying each row's photo (a path or binary content) as
    `imgtool classify` does, into CLASSIFY_SCHEMA. `model`: a reference as for
    `imgtool.load_model` (then `labels` and `scores` as there) or a loaded
    `imgtool.Model`. `batch_size`: photos per model call. `ship`: "sparkfiles" (the
    model goes to the executors with SparkContext.addFile; needs the active
    SparkSession, or `spark`) or "path" (executors read the model where the driver
    resolved it: put it, or IMGTOOL_HOME, on storage they all see)."""
    from imgtool import api
    from imgtool.inference.portable import from_classifier

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise UsageError(f"top_k {top_k!r}: give a whole number of 1 or more")
    _check_batch_size(batch_size)
    if isinstance(model, api.Model):
        if scores != "auto" or labels is not None:
            raise UsageError("scores and labels belong to load_model; a loaded model already has them")
        loaded = model
    else:
        loaded = api.load_model(model, labels=labels, scores=scores)
    portable = from_classifier(loaded.classifier)
    shipped = _ship(portable, ship, spark)
    k = min(top_k, portable.width)
    log.info(
        "classify_udf: %s (%s), top %d, batches of %d, shipped by %s",
        portable.ref,
        portable.output,
        k,
        batch_size,
        ship,
    )

    def make_predict_fn() -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        engine = shipped.engine(_task_cpus())
        return lambda items: _classify_batch(shipped.model, engine, items, k)

    return _predict_batch_udf(make_predict_fn, classify_schema(), batch_size)


def features_udf(
    model: PathLike | None = None, *, batch_size: int = 8, ship: Ship = "sparkfiles", spark: Any = None
) -> Any:
    """A predict_batch_udf giving each row's photo (a path or binary content) its
    backbone feature vector, into FEATURES_SCHEMA: the vector `imgtool retrain` computes
    for that photo with the same model. `model`: a feature extractor (a
    *_feature_vector catalog model, an embedding .tflite); `batch_size`, `ship` and
    `spark` as for `classify_udf`."""
    from imgtool import api
    from imgtool.inference.portable import for_features

    _check_batch_size(batch_size)
    resolved = api._resolve(
        model,
        labels=None,
        purpose="features",
        input_size=None,  # noqa: SLF001
        value_range=None,
        tensors=(None, None),
        progress=None,
    )
    portable = for_features(resolved)
    shipped = _ship(portable, ship, spark)
    log.info("features_udf: %s, batches of %d, shipped by %s", portable.ref, batch_size, ship)

    def make_predict_fn() -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        engine = shipped.engine(_task_cpus())
        return lambda items: _features_batch(shipped.model, engine, items)

    return _predict_batch_udf(make_predict_fn, features_schema(), batch_size)


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size {batch_size!r}: give a whole number of 1 or more")


def _predict_batch_udf(make_predict_fn: Callable[[], Any], schema: Any, batch_size: int) -> Any:
    from pyspark.ml.functions import predict_batch_udf

    return predict_batch_udf(make_predict_fn, return_type=schema, batch_size=batch_size)


def _task_cpus() -> int:
    """LiteRT threads for this Python worker: the task's CPUs (`spark.task.cpus`)."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    return max(1, int(ctx.cpus())) if ctx is not None else 1


# ---------------------------------------------------------------- the driver: shipping the model


def _ship(model: PortableModel, ship: str, spark: Any) -> Shipped:
    if ship not in SHIP_MODES:
        raise UsageError(f"ship {ship!r}: choose sparkfiles or path")
    if ship == "path":
        return Shipped(
            model, "path", str(model.tflite.resolve()), None if model.head is None else str(model.head.resolve())
        )
    sc = _spark_context(spark)
    names: list[str | None] = []
    for path, sha, suffix in ((model.tflite, model.tflite_sha256, ".tflite"), (model.head, model.head_sha256, ".npz")):
        if path is None or sha is None:
            names.append(None)
            continue
        staged = _stage(path, sha, suffix)
        if staged.name not in _added(sc):
            sc.addFile(str(staged))
            log.info("shipping %s to the executors as %s (SparkContext.addFile)", path, staged.name)
        names.append(staged.name)
    assert names[0] is not None
    return Shipped(model, "sparkfiles", names[0], names[1])


def _spark_context(spark: Any) -> Any:
    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
    if spark is None:
        raise UsageError(
            "no active SparkSession: start one (SparkSession.builder.getOrCreate()) before making "
            "the UDF, or pass spark=, or ship='path' with the model on storage every executor reads"
        )
    try:
        return spark.sparkContext
    except Exception:  # noqa: BLE001 - Spark Connect: PySparkNotImplementedError, no SparkContext
        raise UsageError(
            "this SparkSession has no SparkContext (Spark Connect), so the model cannot be shipped "
            "with addFile; use ship='path' with the model on storage every executor reads "
            "(e.g. a Databricks volume)"
        ) from None


def _added(sc: Any) -> set[str]:
    """The file names this SparkContext already ships (addFile refuses a second path
    under the same name; a staged name is its content's sha256, so same name, same file)."""
    return {os.path.basename(str(uri)) for uri in sc.listFiles} if hasattr(sc, "listFiles") else set()


def _stage(path: Path, sha256: str, suffix: str) -> Path:
    """The driver's copy of `path` named by its sha256 (hard link, else copy), made under a
    temporary name and renamed into place: one stable path per content for addFile."""
    from imgtool.core import store

    final = store.tmp_dir() / STAGING / f"{sha256}{suffix}"
    if final.is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        try:
            os.link(path, tmp)
        except OSError:  # another filesystem, or links not allowed
            shutil.copyfile(path, tmp)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return final


# ---------------------------------------------------------------- the executors: one batch


def pixels(item: Any, size: tuple[int, int]) -> tuple[np.ndarray | None, str | None]:
    """One row's photo decoded by imgtool.data.images (`imgtool classify`'s decoder), or why
    not: a path is checked as classify checks what it lists (missing, broken link, not a
    regular file), content (bytes) is decoded as a file of those bytes."""
    if item is None or (isinstance(item, float) and np.isnan(item)):
        return None, NO_PHOTO
    try:
        if isinstance(item, (bytes, bytearray, memoryview)):
            return images.decode(io.BytesIO(bytes(item)), size), None
        path = os.fspath(item)
        if os.path.isdir(path):
            return None, FOLDER
        problem = images.not_a_regular_file(path)
        if problem is not None:
            return None, problem
        return images.decode(path, size), None
    except ImgtoolError as err:
        return None, str(err)


def _decoded(model: PortableModel, items: np.ndarray) -> tuple[list[np.ndarray | None], list[str | None]]:
    decoded = [pixels(item, model.input_size) for item in items]
    return [a for a, _ in decoded], [e for _, e in decoded]


def _run(engine: Engine, arrays: list[np.ndarray | None]) -> tuple[np.ndarray | None, dict[int, int]]:
    ok = [i for i, a in enumerate(arrays) if a is not None]
    if not ok:
        return None, {}
    batch = [a for a in arrays if a is not None]
    return engine.run(np.stack(batch)), {i: j for j, i in enumerate(ok)}


def _classify_batch(model: PortableModel, engine: Engine, items: np.ndarray, k: int) -> dict[str, np.ndarray]:
    from imgtool.inference.portable import top_k
    from imgtool.numbers.scores import to_scores

    arrays, errors = _decoded(model, items)
    outputs, row = _run(engine, arrays)
    scores = to_scores(outputs, model.output) if outputs is not None else None
    n = len(errors)
    # object arrays [n, k]: a failed photo's row stays None (null elements; see the module doc)
    labels, values, indexes = (np.full((n, k), None, dtype=object) for _ in range(3))
    for i in row:
        assert scores is not None
        best = top_k(model, scores[row[i]], k)
        labels[i] = [p.label for p in best]
        values[i] = [p.score for p in best]
        indexes[i] = [p.index for p in best]
    return {"labels": labels, "scores": values, "indexes": indexes, "error": np.array(errors, dtype=object)}


def _features_batch(model: PortableModel, engine: Engine, items: np.ndarray) -> dict[str, np.ndarray]:
    arrays, errors = _decoded(model, items)
    outputs, row = _run(engine, arrays)
    n = len(errors)
    if outputs is not None and len(row) == n:
        features: np.ndarray = np.asarray(outputs, dtype=np.float32)
    else:  # some photos failed: their rows are None
        features = np.full((n, model.width), None, dtype=object)
        for i, j in row.items():
            assert outputs is not None
            features[i] = np.asarray(outputs[j], dtype=np.float32)
    return {"features": features, "error": np.array(errors, dtype=object)}


# ---------------------------------------------------------------- reading rows back


def classify_record(path: str | None, pred: Any) -> dict[str, Any]:
    """A `classify_udf` row as the `imgtool classify --format jsonl` record: {"path",
    "predictions": [{"label", "score", "index"}]} or {"path", "error"}. `pred` is the
    struct (a Row or a dict)."""
    get = pred.asDict() if hasattr(pred, "asDict") else dict(pred)
    if get["error"] is not None:
        return {"path": path, "error": get["error"]}
    return {
        "path": path,
        "predictions": [
            {"label": label, "score": score, "index": index}
            for label, score, index in zip(get["labels"], get["scores"], get["indexes"])
        ],
    }
