"""The two pipelines. Listing happens inside the pipeline (fileio.MatchFiles through Beam's
FileSystems: local paths, gs://, s3://, ...), then Reshuffle (so the photos of one big
listing bundle spread over every worker), then imgtool.beam.worker's steps: Decode (a bad
photo becomes its error record), Beam's RunInference with imgtool's LiteRT ModelHandler
over fixed-size batches (its dead-letter output: one error record per photo of a batch
the model failed on), and the records, flattened into one output."""

from __future__ import annotations

import json
import os
import posixpath
import time
from dataclasses import dataclass, field
from typing import Any

from imgtool.beam.worker import ModelSpec
from imgtool.core.errors import NoWorkers, Param, PipelineError, UsageError, first_line

INPUT = Param("input")  # the parameter most messages here are about
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")  # as imgtool.data.images
GLOB_CHARS = "*?["


@dataclass
class RunResult:
    """What a run did: counters from the workers, the shards written, times."""

    photos: int
    failed: int
    interpreters: int
    shards: list[str]
    seconds: float
    inference: dict[str, int] = field(default_factory=dict)  # Beam's RunInference counters (num_inferences, ...)


def is_image_name(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _is_glob(src: str) -> bool:
    return any(c in src for c in GLOB_CHARS)


def _local(src: str) -> bool:
    return "://" not in src


def input_pattern(src: str) -> tuple[str, str | None]:
    """(Beam file pattern, root folder or None). A folder (local, or any path ending in
    `/`) is searched recursively; a glob is used as it is; a single file is itself."""
    if _is_glob(src):
        return (os.path.abspath(src) if _local(src) else src), None
    if _local(src):
        if os.path.isdir(src):
            root = os.path.abspath(src)
            return os.path.join(root, "**"), root
        if os.path.isfile(src):
            return os.path.abspath(src), None
        raise UsageError(INPUT + f" {src}: no such file or folder")
    if src.endswith("/"):
        return src + "**", src.rstrip("/")
    from apache_beam.io.filesystems import FileSystems

    if FileSystems.exists(src):
        return src, None
    return src.rstrip("/") + "/**", src.rstrip("/")


def _hidden_below(path: str, root: str | None) -> bool:
    rel = path[len(root) :].lstrip("/" + os.sep) if root and path.startswith(root) else posixpath.basename(path)
    return any(part.startswith(".") for part in rel.replace(os.sep, "/").split("/"))


def check_input_not_empty(pattern: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    try:
        found = FileSystems.match([pattern], limits=[1])[0].metadata_list
    except Exception as err:  # noqa: BLE001 - BeamIOError wraps the filesystem's reason
        raise UsageError(INPUT + f": cannot list {pattern} ({first_line(err, 300)})") from None
    if not found:
        raise UsageError(INPUT + f": nothing matches {pattern}")


def _remove_writer_temp(prefix: str, since: float) -> None:
    """The writers keep unfinished shards in PREFIX's folder as beam-temp-<name>-<uuid>/
    until the run succeeds; a failed or interrupted local run leaves none behind."""
    if "://" in prefix:
        return  # a cluster's runner cleans its own temp_location
    import glob
    import shutil

    parent, name = os.path.split(os.path.abspath(prefix))
    for d in glob.glob(os.path.join(glob.escape(parent), f"beam-temp-{glob.escape(name)}-*")):
        try:
            if os.path.isdir(d) and os.stat(d).st_mtime >= since:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


class _MainThreadOnly:
    """stderr for the main thread only: what the runner's threads write is dropped."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        import threading

        if threading.current_thread() is threading.main_thread():
            return int(self._stream.write(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def silence_shutdown() -> None:
    """After an interrupt the runner's worker threads are torn down mid-bundle and print
    tracebacks (Beam's sdk_worker prints `KeyError: 'bundle_2'` straight to stderr, and
    logs it) on their way out: the interrupt is the one thing to say, so from here on
    their logs, thread tracebacks and stderr writes are dropped. Called from the signal
    handler, before the runner starts unwinding."""
    import logging
    import sys
    import threading

    logging.disable(logging.CRITICAL)
    threading.excepthook = lambda args: None
    if not isinstance(sys.stderr, _MainThreadOnly):
        sys.stderr = _MainThreadOnly(sys.stderr)


def _run(p: Any, prefix: str, options: Any, worker_timeout: float | None = None) -> Any:
    """Run to the end; a failure inside the pipeline (a worker that cannot load the
    model, storage that refuses a write) becomes one line, not Beam's traceback. An
    interrupt cancels a runner's job (imgtool.beam.running.Interrupted says what became of
    it); no worker connecting within `worker_timeout` s is a failure, not a hang."""
    from imgtool.beam import running
    from imgtool.beam.loopback import loopback_only

    since = time.time() - 1.0
    timeout = worker_timeout if worker_timeout is not None else running.DEFAULT_WORKER_TIMEOUT
    watch = running.WorkerWatch(timeout if running.waits_for_workers(options) else None)
    result = None
    try:
        with loopback_only(), watch.watching():
            result = p.run()
            result.wait_until_finish()
    except KeyboardInterrupt:
        silence_shutdown()
        _remove_writer_temp(prefix, since)
        if watch.timed_out:
            running.stop(result, options)  # cancel what was submitted; the error is the news
            raise NoWorkers(
                f"no Beam worker connected within {timeout:g} s (is the worker pool running, and "
                "can its workers reach this machine?); the run was stopped"
            ) from None
        raise running.Interrupted(running.stop(result, options)) from None
    except Exception as err:  # noqa: BLE001 - runners raise anything: RuntimeError, grpc errors, IOError
        _remove_writer_temp(prefix, since)
        raise PipelineError(
            f"the Beam pipeline failed: {first_line(err, 300)} (the runner's log has the details)"
        ) from None
    return result


def _pipeline(options: Any) -> Any:
    """beam.Pipeline, with the runner's option validation as one usage line (Dataflow's
    "Missing required option: project", ...) rather than a ValueError traceback."""
    import apache_beam as beam

    try:
        return beam.Pipeline(options=options)
    except ValueError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise UsageError("the runner refused the options: " + "; ".join(lines[1:] or lines)) from None


def _list_images(p: Any, pattern: str, root: str | None) -> Any:
    import apache_beam as beam
    from apache_beam.io import fileio

    return (
        p
        | "List" >> fileio.MatchFiles(pattern)
        | "Paths" >> beam.Map(lambda m: m.path)
        | "Images" >> beam.Filter(lambda path: is_image_name(path) and not _hidden_below(path, root))
    )


def _infer(items: Any, decode: Any, handler: Any, record: Any, failed: Any) -> Any:
    """Reshuffle -> Decode -> RunInference (dead letters kept) -> records, one per photo."""
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference

    from imgtool.beam.worker import ERRORS

    decoded = items | "Spread" >> beam.Reshuffle() | "Decode" >> beam.ParDo(decode).with_outputs(ERRORS, main="ok")
    results, dead = decoded.ok | "Infer" >> RunInference(handler).with_exception_handling()
    return (
        results | "Records" >> beam.ParDo(record),
        dead.failed_inferences | "FailedBatches" >> beam.ParDo(failed),
        decoded[ERRORS],
    ) | "All" >> beam.Flatten()


def _result(result: Any, started: float, prefix: str) -> RunResult:
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.metrics.metric import MetricsFilter

    from imgtool.beam.worker import INFERENCE_METRICS_NAMESPACE, METRICS_NAMESPACE

    counters: dict[str, int] = {}
    inference: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter())["counters"]:
        value = int(c.committed if c.committed is not None else c.attempted)
        into = {METRICS_NAMESPACE: counters, INFERENCE_METRICS_NAMESPACE: inference}.get(c.key.metric.namespace)
        if into is not None:
            into[c.key.metric.name] = into.get(c.key.metric.name, 0) + value
    shards = sorted(m.path for r in FileSystems.match([prefix + "-*"]) for m in r.metadata_list)
    return RunResult(
        counters.get("photos", 0),
        counters.get("failed", 0),
        counters.get("interpreters", 0),
        shards,
        time.perf_counter() - started,
        inference,
    )


def _remove_stale(old: list[str], prefix: str, since: float) -> None:
    """--overwrite: after a successful run, delete the old shards the run did not rewrite
    (e.g. PREFIX-00003-of-00004 when the new run wrote 2 shards). Nothing is deleted
    before the run, so a failed run leaves the previous output whole."""
    if not old:
        return
    from apache_beam.io.filesystems import FileSystems

    now = {m.path: m.last_updated_in_seconds for r in FileSystems.match([prefix + "-*"]) for m in r.metadata_list}
    stale = [p for p in old if p in now and now[p] < since]
    if stale:
        FileSystems.delete(stale)


def classify_pipeline(options: Any, spec: ModelSpec, src: str, prefix: str, top_k: int = 5, batch_size: int = 8) -> Any:
    """The classify pipeline, built but not run."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    from imgtool.beam.worker import ClassifyFailed, ClassifyRecord, DecodeForClassify, LiteRTModelHandler

    FileSystems.set_options(options)  # before listing: a cloud filesystem's client takes its options
    pattern, root = input_pattern(src)
    check_input_not_empty(pattern)
    p = _pipeline(options)
    records = _infer(
        _list_images(p, pattern, root),
        DecodeForClassify(spec),
        LiteRTModelHandler(spec, batch_size),
        ClassifyRecord(spec, top_k),
        ClassifyFailed(),
    )
    _ = (
        records
        | "Json" >> beam.Map(lambda r: json.dumps(r, ensure_ascii=False))
        | "Write" >> beam.io.WriteToText(prefix, file_name_suffix=".jsonl")
    )
    return p


def run_classify(
    options: Any,
    spec: ModelSpec,
    src: str,
    prefix: str,
    top_k: int = 5,
    batch_size: int = 8,
    replace: list[str] | None = None,
    worker_timeout: float | None = None,
) -> RunResult:
    """Classify every photo under SRC into `PREFIX-SSSSS-of-NNNNN.jsonl` (classify's jsonl)."""
    started = time.perf_counter()
    p = classify_pipeline(options, spec, src, prefix, top_k, batch_size)
    since = time.time() - 1.0
    result = _run(p, prefix, options, worker_timeout)
    _remove_stale(replace or [], prefix, since)
    return _result(result, started, prefix)


FEATURES_SCHEMA_FIELDS = ("path", "class", "sha256", "features", "backbone", "source", "error")


def features_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("path", pa.string()),  # relative to ROOT, '/'-separated: the split key
            ("class", pa.string()),  # the first folder below ROOT
            ("sha256", pa.string()),  # of the file's content: the bottleneck cache key
            ("features", pa.list_(pa.float32())),  # null when the photo failed
            ("backbone", pa.string()),  # imgtool.runtime.bottlenecks.backbone_id of the model
            ("source", pa.string()),  # where the photo was read
            ("error", pa.string()),  # why the photo failed, else null
        ]
    )


def labelled(path: str, root: str) -> tuple[str, str, str] | None:
    """(source, rel, class) for a photo inside a class folder below ROOT, else None
    (a photo directly in ROOT belongs to no class; hidden entries are skipped)."""
    rel = path[len(root) :].lstrip("/" + os.sep).replace(os.sep, "/")
    parts = rel.split("/")
    if len(parts) < 2 or any(x.startswith(".") for x in parts):
        return None
    return path, rel, parts[0]


def run_features(
    options: Any,
    spec: ModelSpec,
    root_src: str,
    prefix: str,
    batch_size: int = 8,
    replace: list[str] | None = None,
    worker_timeout: float | None = None,
) -> RunResult:
    """Backbone features of a folder-per-class dataset into `PREFIX-SSSSS-of-NNNNN.parquet`."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    from imgtool.beam.worker import DecodeForFeatures, FeaturesFailed, FeaturesRecord, LiteRTModelHandler

    FileSystems.set_options(options)  # before listing: a cloud filesystem's client takes its options
    if _is_glob(root_src):
        raise UsageError(INPUT + f" {root_src}: give the dataset folder (one sub-folder per class), not a glob")
    if _local(root_src) and not os.path.isdir(root_src):
        raise UsageError(INPUT + f" {root_src}: not a folder; give a folder with one sub-folder per class")
    pattern, root = input_pattern(root_src if not _local(root_src) else root_src.rstrip("/") or "/")
    if root is None:
        raise UsageError(INPUT + f" {root_src}: give the dataset folder (one sub-folder per class)")
    check_input_not_empty(pattern)
    started = time.perf_counter()
    p = _pipeline(options)
    items = (
        _list_images(p, pattern, root)
        | "Label" >> beam.Map(labelled, root)
        | "InClass" >> beam.Filter(lambda x: x is not None)
    )
    rows = _infer(
        items, DecodeForFeatures(spec), LiteRTModelHandler(spec, batch_size), FeaturesRecord(spec), FeaturesFailed(spec)
    )
    _ = rows | "Write" >> beam.io.WriteToParquet(prefix, features_schema(), file_name_suffix=".parquet")
    since = time.time() - 1.0
    result = _run(p, prefix, options, worker_timeout)
    _remove_stale(replace or [], prefix, since)
    return _result(result, started, prefix)
