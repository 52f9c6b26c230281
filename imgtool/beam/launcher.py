"""The client side of `imgtool beam`: options, the model, the outputs, before anything runs.

* Beam options: everything after `--`, parsed by Beam's own parser; an option Beam does
  not know is a usage error (Beam itself only logs a warning and drops it).
* The model: resolved with imgtool's own resolver (catalog, hub, local file, retrained
  folder) into ONE .tflite (+ head.npz for a retrained folder), its labels, input size,
  value range and output kind; staged under --temp_location (else beside the output)
  named by its sha256, where every worker can read it.
* The output: existing `PREFIX-*` shards are refused unless --overwrite.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgtool.beam.worker import ModelSpec
from imgtool.core.errors import ModelError, Param, UsageError
from imgtool.runtime.bottlenecks import file_sha256

if TYPE_CHECKING:
    from imgtool.models.recipe import Purpose

LOCAL_RUNNER = "FnApiRunner"
STAGING_DIR = ".imgtool-beam-staging"
# the worker module and the imgtool modules it imports, pickled by value: workers need no imgtool
BY_VALUE_MODULES = (
    "imgtool",
    "imgtool.core.errors",
    "imgtool.core.ui",
    "imgtool.data.images",
    "imgtool.runtime.engine",
    "imgtool.beam",
    "imgtool.beam.worker",
    "imgtool.beam.pipelines",
)


# ---------------------------------------------------------------- Beam options


def _beam_parser(flags: list[str]) -> Any:
    """Beam's own argument parser, with every PipelineOptions class's options on it (the
    one get_all_options() builds; taken through its add_extra_args_fn hook)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    captured: list[Any] = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=captured.append)
    return captured[0]


def pipeline_options(flags: list[str], cores: int | None = None) -> Any:
    """PipelineOptions from the flags after `--`, refusing what Beam does not know, with
    the offline local default: the FnApiRunner, multi-threaded, one thread per core.
    (DirectRunner in Beam 2.77 first tries to download and start the Prism runner.)"""
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

    parser = _beam_parser(flags)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            _, unknown = parser.parse_known_args(flags)
    except SystemExit:
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        raise UsageError(f"bad Beam option: {lines[-1] if lines else ' '.join(flags)}") from None
    unknown = [u for u in unknown if u != "--"]
    if unknown:
        import difflib

        known = sorted({o for a in parser._actions for o in a.option_strings})  # noqa: SLF001
        name = unknown[0].split("=", 1)[0]
        near = difflib.get_close_matches(name, known, n=1) if name.startswith("--") else []
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise UsageError(
            f"unknown Beam option {unknown[0]!r}{hint}; everything after `--` goes to Beam's "
            "PipelineOptions, and Beam would silently ignore it"
        )
    options = PipelineOptions(flags)
    std = options.view_as(StandardOptions)
    if std.runner is None:
        std.runner = LOCAL_RUNNER
    if std.runner.rsplit(".", 1)[-1] in (
        LOCAL_RUNNER,
        "BundleBasedDirectRunner",
        "DirectRunner",
        "SwitchingDirectRunner",
    ):
        direct = options.view_as(DirectOptions)
        given = {f.split("=", 1)[0] for f in flags}
        if "--direct_running_mode" not in given:
            direct.direct_running_mode = "multi_threading"
        if "--direct_num_workers" not in given:
            direct.direct_num_workers = cores or os.cpu_count() or 1
    return options


def register_by_value() -> None:
    """Ship the worker code inside the pipeline (cloudpickle by value: Beam's default), so
    workers need numpy, Pillow and ai-edge-litert but not imgtool itself."""
    import importlib

    from apache_beam.internal import cloudpickle

    for name in BY_VALUE_MODULES:
        cloudpickle.register_pickle_by_value(importlib.import_module(name))


def pickles_by_value(options: Any) -> bool:
    from apache_beam.options.pipeline_options import SetupOptions

    return (options.view_as(SetupOptions).pickle_library or "default") in ("default", "cloudpickle")


# ---------------------------------------------------------------- runners and filesystems

# Beam's filesystem schemes, the module each one's client library provides, and the extra
# that installs it; checked before anything is listed or staged
SCHEMES = {
    "gs": ("google.cloud.storage", "gcp"),
    "s3": ("boto3", "aws"),
    "azfs": ("azure.storage.blob", "azure"),
    "hdfs": ("hdfs", "hadoop"),
}
NEAR_SCHEMES = {
    "az": "azfs",
    "abfs": "azfs",
    "abfss": "azfs",
    "wasb": "azfs",
    "wasbs": "azfs",
    "gcs": "gs",
    "s3a": "s3",
    "s3n": "s3",
    "webhdfs": "hdfs",
}
# runners that need an extra on the launcher
RUNNER_EXTRAS = {"dataflowrunner": ("google.cloud.storage", "gcp")}


def install_hint(extra: str) -> str:
    return f"pip install 'imgtool-ml[{extra}]'"


def check_runner(options: Any) -> None:
    """An unknown --runner is a usage error naming the runners (Beam would raise a
    ValueError only when the pipeline runs, after the model was staged)."""
    import importlib.util

    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.runners import runner as beam_runner

    name = options.view_as(StandardOptions).runner
    if not isinstance(name, str):
        return  # a runner object (the library API): Beam's own
    known = beam_runner._RUNNER_MAP  # noqa: SLF001 - the names create_runner accepts
    key = name.lower()
    path = known.get(key) or known.get(key + "runner")
    if path is None and "." in name:
        module = name.rsplit(".", 1)[0]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            return  # a runner class of your own, by its module path
    if path is None:
        import difflib

        names = sorted(
            {
                p.rsplit(".", 1)[-1]
                for p in StandardOptions.ALL_KNOWN_RUNNERS
                if ".test." not in p and "interactive" not in p
            }
        )
        near = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise UsageError(f"unknown Beam runner {name!r}{hint}; runners: {', '.join(names)}")
    need = RUNNER_EXTRAS.get(path.rsplit(".", 1)[-1].lower())
    if need and not _has_module(need[0]):
        raise UsageError(
            f"--runner={name} needs Beam's {need[1]} extra, not installed in this Python; {install_hint(need[1])}"
        )


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_scheme(path: str, what: str | Param) -> None:
    """A path on a filesystem this Python cannot reach is one usage line naming the
    extra to install (or the scheme meant), before anything is listed or staged."""
    from apache_beam.io.filesystems import FileSystems

    scheme = FileSystems.get_scheme(path)
    if scheme is None or len(scheme) == 1:  # a local path (a Windows drive letter too)
        return
    if scheme in SCHEMES:
        module, extra = SCHEMES[scheme]
        if not _has_module(module):
            raise UsageError(
                what + f" {path}: {scheme}:// needs Beam's {extra} extra ({module} is not installed "
                f"in this Python); {install_hint(extra)}"
            )
        return
    from apache_beam.io.filesystem import FileSystem

    if any(fs.scheme() == scheme for fs in FileSystem.get_all_subclasses()):
        return  # another filesystem Beam has registered
    near = NEAR_SCHEMES.get(scheme)
    hint = f" (did you mean {near}://?)" if near else ""
    raise UsageError(
        what + f" {path}: Beam has no filesystem for {scheme}://{hint} "
        f"(schemes: {', '.join(s + '://' for s in SCHEMES)}, or a local path)"
    )


def check_paths(options: Any, src: str, prefix: str) -> None:
    """Every path the run will touch: input, output, --temp_location, --staging_location."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    gcp = options.view_as(GoogleCloudOptions)
    check_scheme(src, Param("input"))
    check_scheme(prefix, Param("output"))
    for flag, value in (("--temp_location", gcp.temp_location), ("--staging_location", gcp.staging_location)):
        if value:
            check_scheme(value, flag)


def use_options(options: Any) -> None:
    """Hand the options to Beam's FileSystems before the launcher's own I/O (listing,
    staging, the existing-output check): without it an s3:// client has no options
    ("Must provide one of client or options") and --s3_endpoint_url and friends are lost."""
    from apache_beam.io.filesystems import FileSystems

    FileSystems.set_options(options)


# ---------------------------------------------------------------- outputs and staging


def check_output(prefix: str, overwrite: bool) -> list[str]:
    """The shards already at `PREFIX-*`: refused unless overwrite (then returned, to be
    replaced). A prefix naming a folder is refused too: shards go beside it, not in it."""
    from apache_beam.io.filesystems import FileSystems

    if prefix.endswith(("/", os.sep)) or os.path.isdir(prefix):
        raise UsageError(
            Param("output") + f" {prefix} is a folder; give a path prefix such as "
            f"{prefix.rstrip('/')}/results "
            "(shards are written as PREFIX-00000-of-00004...)"
        )
    parent = FileSystems.split(prefix)[0]
    if "://" not in prefix and parent and not os.path.isdir(parent):
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as err:
            raise UsageError(
                Param("output") + f" {prefix}: cannot create folder {parent} ({err.strerror}); choose a writable place"
            ) from None
    found = [m.path for r in FileSystems.match([prefix + "-*"]) for m in r.metadata_list]
    if found and not overwrite:
        raise UsageError(
            Param("output") + f" {prefix}: {len(found)} file(s) already match {prefix}-* "
            f"(e.g. {sorted(found)[0]}); pass " + Param("overwrite") + " to replace them or choose another prefix"
        )
    return sorted(found)


def staging_root(options: Any, prefix: str) -> str:
    """--temp_location when given (Dataflow needs one anyway), else beside the output."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    temp = options.view_as(GoogleCloudOptions).temp_location
    if temp:
        return FileSystems.join(temp, "imgtool-models")
    parent = FileSystems.split(prefix)[0] or "."
    return FileSystems.join(os.path.abspath(parent) if "://" not in prefix else parent, STAGING_DIR)


def stage(path: Path, root: str, suffix: str) -> tuple[str, str]:
    """Copy `path` to ROOT/<sha256><suffix> unless it is there already: (uri, sha256)."""
    from apache_beam.io.filesystems import FileSystems

    digest = file_sha256(str(path))
    uri = FileSystems.join(root, digest + suffix)
    if FileSystems.exists(uri):
        return uri, digest
    if "://" not in uri:
        os.makedirs(root, exist_ok=True)
    tmp = f"{uri}.{os.getpid()}.part"
    with open(path, "rb") as src, FileSystems.create(tmp) as dst:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            dst.write(chunk)
    FileSystems.rename([tmp], [uri])
    return uri, digest


# ---------------------------------------------------------------- the model


def prepare_model(ref: str | None, purpose: Purpose, root: str, labels_file: str | None = None) -> ModelSpec:
    """Resolve `ref` with imgtool's resolver and stage what workers run.

    purpose "classify": a classifier (.tflite, or a retrained folder whose backbone is a
    .tflite: backbone + head.npz, the head applied in numpy on the worker; a single
    combined model.tflite export will simply take the first path). purpose "features":
    the backbone / feature-vector twin, with its bottleneck identity."""
    from imgtool.inference.portable import runnable_parts
    from imgtool.models.resolve import resolve
    from imgtool.runtime import bottlenecks
    from imgtool.runtime.engine import LiteRTEngine

    model = resolve(ref, labels_file=labels_file, purpose=purpose)
    runnable, head = runnable_parts(model)
    assert runnable.tflite is not None  # runnable_parts refuses a model without one
    engine = LiteRTEngine(runnable.tflite, runnable.config.value_range, threads=1)  # loads it: exit 3 if broken
    input_size = engine.input_size
    value_range = runnable.config.value_range
    model_uri, model_sha = stage(runnable.tflite, root, ".tflite")
    head_uri = head_sha = None
    if purpose == "features":
        if model.config.output not in (None, "features"):
            raise ModelError(
                f"{model.ref} is a classifier without a feature-vector twin; "
                "give a feature extractor (e.g. a *_feature_vector catalog model or an embedding .tflite)"
            )
        ident = bottlenecks.backbone_id(
            runnable.tflite, input_size, value_range, extra=str(runnable.graph_tensors or "")
        )
        return ModelSpec(model_uri, model_sha, input_size, value_range, "features", backbone_id=ident)
    # the output kind and the labels: the same decision `imgtool classify` makes, from the
    # model (record, TFLite metadata, graph), once - never from the photos of a run
    from imgtool.inference.classifier import Classifier

    classifier = Classifier(model, engine=engine if head is None else None)
    output = classifier.decision.kind
    labels = tuple(classifier.labels)
    if head is not None:
        head_uri, head_sha = stage(head, root, ".npz")
    return ModelSpec(model_uri, model_sha, input_size, value_range, output, labels, head_uri, head_sha)
