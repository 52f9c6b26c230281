"""The two pipelines. Listing happens inside the pipeline (fileio.MatchFiles through Beam's
FileSystems: local paths, gs://, s3://, ...), then Reshuffle (so the photos of one big
listing bundle spread over every worker), fixed-size batches, and one DoFn that reads,
decodes and runs the model (imgtool.beam.worker)."""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from imgtool.beam.worker import ModelSpec
from imgtool.errors import ImgtoolError, UsageError


class PipelineError(ImgtoolError):
    """The pipeline failed while running (exit 1)."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")  # as imgtool.images
GLOB_CHARS = "*?["


@dataclass
class RunResult:
    """What a run did: counters from the workers, the shards written, times."""

    photos: int
    failed: int
    interpreters: int
    shards: list[str]
    seconds: float
    engines: dict[str, int] = field(default_factory=dict)  # "<thread>:<engine id>" -> batches


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
        raise UsageError(f"`input` {src}: no such file or folder")
    if src.endswith("/"):
        return src + "**", src.rstrip("/")
    from apache_beam.io.filesystems import FileSystems

    if FileSystems.exists(src):
        return src, None
    return src.rstrip("/") + "/**", src.rstrip("/")


def _hidden_below(path: str, root: str | None) -> bool:
    rel = path[len(root):].lstrip("/" + os.sep) if root and path.startswith(root) else posixpath.basename(path)
    return any(part.startswith(".") for part in rel.replace(os.sep, "/").split("/"))


def check_input_not_empty(pattern: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    try:
        found = FileSystems.match([pattern], limits=[1])[0].metadata_list
    except Exception as err:  # noqa: BLE001 - BeamIOError wraps the filesystem's reason
        raise UsageError(f"`input`: cannot list {pattern} ({_first_line(err)})") from None
    if not found:
        raise UsageError(f"`input`: nothing matches {pattern}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


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


LOOPBACK = "127.0.0.1"


class _LoopbackServer:
    """A grpc.Server whose wildcard ports ([::]:0, 0.0.0.0:0) bind 127.0.0.1 instead."""

    def __init__(self, server: Any):
        self._server = server

    def add_insecure_port(self, address: str) -> int:
        host, _, port = address.rpartition(":")
        if host in ("[::]", "0.0.0.0", "", "[::0]"):
            address = f"{LOOPBACK}:{port}"
        return int(self._server.add_insecure_port(address))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class _LoopbackGrpc:
    """The grpc module as the local runner's worker handlers see it: servers on loopback."""

    def __init__(self, grpc: Any):
        self._grpc = grpc

    def server(self, *args: Any, **kwargs: Any) -> _LoopbackServer:
        return _LoopbackServer(self._grpc.server(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grpc, name)


# the modules of Beam's local runners that open gRPC servers on `[::]`: the FnApiRunner's
# worker handlers (control, data, state, logging), a local worker process's logging
# server, and the embedded job service's artifact staging (PortableRunner without a job
# endpoint)
WILDCARD_BINDERS = ("apache_beam.runners.portability.fn_api_runner.worker_handlers",
                    "apache_beam.runners.portability.local_job_service",
                    "apache_beam.runners.portability.abstract_job_service")


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Beam 2.77's local runners bind their gRPC servers to `[::]:0`, every interface of
    the machine, unauthenticated: for this run they bind 127.0.0.1. Their workers
    (threads, local processes, an EXTERNAL pool on this machine) connect to
    `localhost:PORT`, which reaches them. Only those modules' view of grpc changes."""
    import importlib

    patched = []
    for name in WILDCARD_BINDERS:
        module = importlib.import_module(name)
        real = getattr(module, "grpc", None)
        if real is not None and not isinstance(real, _LoopbackGrpc):
            module.grpc = _LoopbackGrpc(real)  # type: ignore[attr-defined]
            patched.append((module, real))
    try:
        yield
    finally:
        for module, real in patched:
            module.grpc = real  # type: ignore[attr-defined]


def _run(p: Any, prefix: str) -> Any:
    """Run to the end; a failure inside the pipeline (a worker that cannot load the
    model, storage that refuses a write) becomes one line, not Beam's traceback."""
    since = time.time() - 1.0
    try:
        with loopback_only():
            result = p.run()
            result.wait_until_finish()
    except KeyboardInterrupt:
        silence_shutdown()
        _remove_writer_temp(prefix, since)
        raise
    except Exception as err:  # noqa: BLE001 - runners raise anything: RuntimeError, grpc errors, IOError
        _remove_writer_temp(prefix, since)
        raise PipelineError(f"the Beam pipeline failed: {_first_line(err)} (the runner's log has the details)"
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

    return (p
            | "List" >> fileio.MatchFiles(pattern)
            | "Paths" >> beam.Map(lambda m: m.path)
            | "Images" >> beam.Filter(lambda path: is_image_name(path) and not _hidden_below(path, root)))


def _batched(pcoll: Any, batch_size: int) -> Any:
    import apache_beam as beam

    return (pcoll
            | "Spread" >> beam.Reshuffle()
            | "Batch" >> beam.BatchElements(min_batch_size=batch_size, max_batch_size=batch_size))


def _result(result: Any, started: float, prefix: str) -> RunResult:
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.metrics.metric import MetricsFilter

    from imgtool.beam.worker import ENGINE_METRICS_NAMESPACE, METRICS_NAMESPACE

    counters: dict[str, int] = {}
    engines: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter())["counters"]:
        value = int(c.committed if c.committed is not None else c.attempted)
        if c.key.metric.namespace == METRICS_NAMESPACE:
            counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + value
        elif c.key.metric.namespace == ENGINE_METRICS_NAMESPACE:
            engines[c.key.metric.name] = engines.get(c.key.metric.name, 0) + value
    shards = sorted(m.path for r in FileSystems.match([prefix + "-*"]) for m in r.metadata_list)
    return RunResult(counters.get("photos", 0), counters.get("failed", 0), counters.get("interpreters", 0),
                     shards, time.perf_counter() - started, engines)


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


def classify_pipeline(options: Any, spec: ModelSpec, src: str, prefix: str, top_k: int = 5,
                      batch_size: int = 8) -> Any:
    """The classify pipeline, built but not run."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    from imgtool.beam.worker import ClassifyBatch

    FileSystems.set_options(options)  # before listing: a cloud filesystem's client takes its options
    pattern, root = input_pattern(src)
    check_input_not_empty(pattern)
    p = _pipeline(options)
    records = _batched(_list_images(p, pattern, root), batch_size) | "Classify" >> beam.ParDo(ClassifyBatch(spec,
                                                                                                            top_k))
    _ = (records
         | "Json" >> beam.Map(lambda r: json.dumps(r, ensure_ascii=False))
         | "Write" >> beam.io.WriteToText(prefix, file_name_suffix=".jsonl"))
    return p


def run_classify(options: Any, spec: ModelSpec, src: str, prefix: str, top_k: int = 5, batch_size: int = 8,
                 replace: list[str] | None = None) -> RunResult:
    """Classify every photo under SRC into `PREFIX-SSSSS-of-NNNNN.jsonl` (classify's jsonl)."""
    started = time.perf_counter()
    p = classify_pipeline(options, spec, src, prefix, top_k, batch_size)
    since = time.time() - 1.0
    result = _run(p, prefix)
    _remove_stale(replace or [], prefix, since)
    return _result(result, started, prefix)


FEATURES_SCHEMA_FIELDS = ("path", "class", "sha256", "features", "backbone", "source", "error")


def features_schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("path", pa.string()),  # relative to ROOT, '/'-separated: the split key
        ("class", pa.string()),  # the first folder below ROOT
        ("sha256", pa.string()),  # of the file's content: the bottleneck cache key
        ("features", pa.list_(pa.float32())),  # null when the photo failed
        ("backbone", pa.string()),  # imgtool.bottlenecks.backbone_id of the model
        ("source", pa.string()),  # where the photo was read
        ("error", pa.string()),  # why the photo failed, else null
    ])


def labelled(path: str, root: str) -> tuple[str, str, str] | None:
    """(source, rel, class) for a photo inside a class folder below ROOT, else None
    (a photo directly in ROOT belongs to no class; hidden entries are skipped)."""
    rel = path[len(root):].lstrip("/" + os.sep).replace(os.sep, "/")
    parts = rel.split("/")
    if len(parts) < 2 or any(x.startswith(".") for x in parts):
        return None
    return path, rel, parts[0]


def run_features(options: Any, spec: ModelSpec, root_src: str, prefix: str, batch_size: int = 8,
                 replace: list[str] | None = None) -> RunResult:
    """Backbone features of a folder-per-class dataset into `PREFIX-SSSSS-of-NNNNN.parquet`."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    from imgtool.beam.worker import FeaturesBatch

    FileSystems.set_options(options)  # before listing: a cloud filesystem's client takes its options
    if _is_glob(root_src):
        raise UsageError(f"`input` {root_src}: give the dataset folder (one sub-folder per class), not a glob")
    if _local(root_src) and not os.path.isdir(root_src):
        raise UsageError(f"`input` {root_src}: not a folder; give a folder with one sub-folder per class")
    pattern, root = input_pattern(root_src if not _local(root_src) else root_src.rstrip("/") or "/")
    if root is None:
        raise UsageError(f"`input` {root_src}: give the dataset folder (one sub-folder per class)")
    check_input_not_empty(pattern)
    started = time.perf_counter()
    p = _pipeline(options)
    items = (_list_images(p, pattern, root)
             | "Label" >> beam.Map(labelled, root)
             | "InClass" >> beam.Filter(lambda x: x is not None))
    rows = _batched(items, batch_size) | "Features" >> beam.ParDo(FeaturesBatch(spec))
    _ = rows | "Write" >> beam.io.WriteToParquet(prefix, features_schema(), file_name_suffix=".parquet")
    since = time.time() - 1.0
    result = _run(p, prefix)
    _remove_stale(replace or [], prefix, since)
    return _result(result, started, prefix)
