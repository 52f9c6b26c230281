"""One shippable `model.tflite` for a retrained model folder: backbone + new last layer in
one graph ending in softmax, with TFLite metadata, optionally quantized.

Two ways to build the graph:

* TF backbones (the folder has `saved_model/`, the combined classifier TensorFlow built):
  its probabilities function is wrapped to take the backbone's own value range and
  converted with TFLiteConverter (tflite_conversion.py) - the only way to quantize a
  float backbone (dynamic-range, float16, or full-integer int8 calibrated on the
  training photos).
* `.tflite` backbones (and TF backbones without `saved_model/`): the head is appended to
  the backbone's flatbuffer by imgtool.tflite.head (float, or uint8 for `int8` on a
  uint8-quantized backbone); `dynamic` and `float16` only change the head there, since
  the backbone is already quantized.

`export_model_dir` writes the file (atomically), checks it on the test split
(export_checks.py), and records {file, quantize, bytes, test_accuracy,
float_test_accuracy, ...} in metrics.json.

Layer: the work (reads through retrained.py; the formats through imgtool.tflite).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgtool.core import files, store
from imgtool.core.errors import Advice, ImgtoolError, ModelError, Param, StorageError, Text, UsageError, first_line
from imgtool.core.options import QUANTIZE_MODES, Quantize
from imgtool.core.version import __version__
from imgtool.models import retrained
from imgtool.models.retrained import RetrainedRecord
from imgtool.numbers import metrics as metrics_file
from imgtool.tflite import reading, schema, writing
from imgtool.tflite.head import append_head
from imgtool.training import export_checks, tflite_conversion

CALIBRATION_PHOTOS = 100  # training photos used to calibrate int8 (first by relative path)


def _write(path: Path, data: bytes, what: str = "", elsewhere: str = "") -> None:
    """Atomic (readable like any file the user writes: store honours the umask); a write
    failure the user must fix is one line naming the file (exit 4)."""
    with _named(path, what, elsewhere):
        store.atomic_write_bytes(path, data)


@contextlib.contextmanager
def _named(path: Path, what: str = "", elsewhere: str = "choose another `output`") -> Iterator[None]:
    """A write of `path` whose failure the user must fix: one line naming the file (exit 4)."""
    try:
        yield
    except OSError as err:
        if isinstance(err, StorageError) or not store.is_storage_error(err, path.parent):
            raise
        named = store.storage_error(
            err, what or f"the export {path}", elsewhere or "choose another " + Param("output"), shown=""
        )
        named.filename = str(path)
        raise named from None


def is_imgtool_export(path: Path) -> bool:
    """A .tflite this tool exported (its TFLite metadata names `imgtool retrain`): the
    only existing file `export` replaces without `force`."""
    try:
        if not path.is_file() or path.stat().st_size > (1 << 31):
            return False
        with open(path, "rb") as fh:
            if fh.read(8)[4:8] != schema.MODEL_IDENTIFIER:
                return False
        meta = reading.metadata(path.read_bytes())
    except (OSError, ValueError):
        return False
    return meta is not None and meta.name.endswith("(imgtool retrain)")


def quantize_mode(text: str) -> Quantize:
    """The quantization mode `text` names (UsageError listing the choices)."""
    for mode in QUANTIZE_MODES:
        if text == mode:
            return mode
    raise UsageError(Param("quantize") + f" {text}: choose one of {', '.join(QUANTIZE_MODES)}")


def default_file(quantize: str) -> str:
    return "model.tflite" if quantize == "none" else f"model-{quantize}.tflite"


# ------------------------------------------------------------------ the model folder


@dataclass
class ExportResult:
    path: Path
    quantize: Quantize
    bytes: int
    method: str  # "tensorflow" or "flatbuffer"
    test_accuracy: float | None
    float_test_accuracy: float | None
    test_count: int
    note: str | None = None
    # against imgtool's own two-step run (backbone engine, then the head) on the test photos
    max_prob_diff: float | None = None
    top1_agreement: float | None = None

    def record(self, folder: Path) -> dict[str, Any]:
        try:
            name = str(self.path.resolve().relative_to(folder.resolve()))
        except ValueError:
            name = str(self.path.resolve())
        return {
            "file": name,
            "quantize": self.quantize,
            "bytes": self.bytes,
            "method": self.method,
            "test_accuracy": self.test_accuracy,
            "float_test_accuracy": self.float_test_accuracy,
            "test_count": self.test_count,
            "max_prob_diff_vs_imgtool": self.max_prob_diff,
            "top1_agreement_vs_imgtool": self.top1_agreement,
            **({"note": self.note} if self.note else {}),
        }


def _graph(
    folder: Path, checked: retrained.Parts, quantize: Quantize, calibration_paths: list[str] | None
) -> tuple[bytes, str, str | None]:
    """The classifier's graph, without metadata: (bytes, method, note)."""
    meta = checked.record
    size, vr = meta.input_size, meta.value_range or (0.0, 1.0)
    saved = folder / "saved_model"
    backbone_file = folder / meta.backbone.file
    if saved.is_dir():
        calib_paths = calibration_paths[:CALIBRATION_PHOTOS] if quantize == "int8" and calibration_paths else []

        def convert() -> bytes:
            calib = (a[None] for a in export_checks.decode_all(calib_paths, size)[0]) if calib_paths else None
            return tflite_conversion.convert_saved_classifier(saved, size, vr, quantize, calib)

        return (
            tflite_conversion.cached_conversion(saved, f"{size}|{vr}|{quantize}|{__version__}", calib_paths, convert),
            "tensorflow",
            None,
        )
    if backbone_file.suffix == ".tflite" and backbone_file.is_file():
        backbone = backbone_file.read_bytes()
        calib_feats = None
        if quantize == "int8" and calibration_paths:
            from imgtool.runtime.engine import LiteRTEngine

            photos, _ = export_checks.decode_all(calibration_paths[:CALIBRATION_PHOTOS], size)
            calib_feats = LiteRTEngine(backbone_file, meta.value_range).run(photos)
        note = None
        if quantize in ("dynamic", "float16"):
            note = "only the appended layer is quantized (the backbone .tflite is kept as it is)"
        return append_head(backbone, checked.weights, checked.bias, quantize, calib_feats), "flatbuffer", note
    raise ModelError(f"{folder}: neither saved_model/ nor a .tflite backbone to export from; retrain it again")


def _classifier_info(folder: Path, meta: RetrainedRecord, quantize: Quantize, data: bytes) -> writing.ClassifierInfo:
    """The metadata of the graph `data`: a uint8 input takes raw pixels, a float one is normalised."""
    uint8_input = reading.graph_input(data).dtype in ("UINT8", "INT8")
    classes = meta.classes
    # named for the photos it learnt (the folder may still have its temporary name)
    trained_on = Path(meta.image_dir or folder.name).name
    return writing.ClassifierInfo(
        name=f"{trained_on} classifier (imgtool retrain)",
        version=__version__,
        description=(
            f"Classifies an RGB image into {len(classes)} classes: {', '.join(classes[:10])}"
            f"{', ...' if len(classes) > 10 else ''}. Backbone {meta.backbone.ref or None} with a "
            f"last layer retrained by imgtool {__version__}; quantization: {quantize}."
        ),
        labels=classes,
        input_size=meta.input_size,
        normalization=None if uint8_input else schema.normalization_for(meta.value_range or (0.0, 1.0)),
    )


def build(
    folder: Path, quantize: Quantize, calibration_paths: list[str] | None = None
) -> tuple[bytes, str, str | None]:
    """The .tflite bytes (metadata included) for a model folder: (bytes, method, note)."""
    checked = retrained.parts(str(folder), folder)
    data, method, note = _graph(folder, checked, quantize, calibration_paths)
    return writing.attach(data, _classifier_info(folder, checked.record, quantize, data)), method, note


def _has_metadata(path: Path) -> bool:
    return reading.metadata(path) is not None


def export_model_dir(
    folder: Path, quantize: str = "none", output: Path | None = None, force: bool = False
) -> list[ExportResult]:
    """Write the float `model.tflite` (always: the reference for accuracy) and, unless
    quantize is none, the quantized file; record both in metrics.json. Returns the
    results, float first. An `output` that exists is replaced only when it is an export of
    this tool, or with `force`; one that is not a regular file (a device, a FIFO, a
    symbolic link) never."""
    quantize = quantize_mode(quantize)
    folder = Path(folder)
    meta = _checked_targets(folder, quantize, output, force)
    metrics = store.read_json(folder / "metrics.json") or {}
    test, train_paths, why = export_checks.split_photos(folder, meta, metrics)
    run = _Run(folder, quantize, train_paths, why, export_checks.Checks(folder, meta, test))
    try:
        for mode, path in _wanted(folder, quantize, output):
            run.export(mode, path)
    finally:  # what was written is recorded, also when a later export fails or the run is interrupted
        _record(folder, meta, metrics, run.results + run.unchecked)
    return run.results


def _checked_targets(folder: Path, quantize: Quantize, output: Path | None, force: bool) -> RetrainedRecord:
    """The folder's record, once every file the export writes may be written."""
    if not retrained.is_model_dir(folder):
        raise UsageError(f"{folder}: " + Advice.NOT_RETRAINED + f" (no {retrained.RETRAINED_FILE})", path=folder)
    meta = retrained.parts(str(folder), folder).record  # the one typed reader: "damaged retrained model", exit 3
    if output is not None:
        files.check_target(Path(output), Param("output"), kind="file", ours=is_imgtool_export, force=force)
    for name in ("model.tflite", default_file(quantize), "metrics.json"):  # in the folder: ours, but files only
        files.check_target(folder / name, f"{folder}'s", kind="file")
    return meta


def _wanted(folder: Path, quantize: Quantize, output: Path | None) -> list[tuple[Quantize, Path]]:
    """The files to write, float first: (mode, path)."""
    wanted: list[tuple[Quantize, Path]] = [("none", folder / "model.tflite")]
    if quantize != "none":
        wanted.append((quantize, output or folder / default_file(quantize)))
    elif output is not None:
        wanted = [("none", output)]
    return wanted


@dataclass
class _Run:
    """One export_model_dir call: its results so far, and the file written but not yet checked."""

    folder: Path
    quantize: Quantize
    train_paths: list[str] | None
    why: str | None  # why the test accuracy is unknown (None: it is measured)
    checks: export_checks.Checks
    float_acc: float | None = None
    results: list[ExportResult] = field(default_factory=list)
    unchecked: list[ExportResult] = field(default_factory=list)  # written, its figures not yet measured

    def export(self, mode: Quantize, path: Path) -> None:
        """Write (unless it is the float reference already there) and check one file."""
        float_path = self.folder / "model.tflite"
        if mode == "none" and path == float_path and self.quantize != "none" and _has_metadata(float_path):
            data = None  # the float reference is there already (one without metadata predates it: rebuilt)
        else:
            data, method, note = build(self.folder, mode, self.train_paths)
            _write(path, data)
            self.unchecked = [
                ExportResult(
                    path,
                    mode,
                    len(data),
                    method,
                    None,
                    self.float_acc,
                    0,
                    "test accuracy not measured: interrupted before the check",
                )
            ]
        acc, diff, agree, count = self.checks.of(data if data is not None else path.read_bytes(), path)
        self.unchecked = []
        if mode == "none":
            self.float_acc = acc
        if data is None:
            return
        why = self.why
        self.results.append(
            ExportResult(
                path,
                mode,
                path.stat().st_size,
                method,
                acc,
                self.float_acc,
                count,
                note if why is None else f"test accuracy unknown: {why}" + (f"; {note}" if note else ""),
                diff,
                agree,
            )
        )


def _record(folder: Path, meta: RetrainedRecord, metrics: dict[str, Any], written: list[ExportResult]) -> None:
    """metrics.json's exports with `written` in place of their earlier records, and report.html again."""
    records = [r for r in metrics.get("exports") or [] if isinstance(r, dict) and "bytes" in r]
    for r in written:
        rec = r.record(folder)
        records = [x for x in records if x.get("file") != rec["file"]] + [rec]
    metrics["exports"] = records
    with _named(
        folder / metrics_file.FILE,
        f"the export record {folder / metrics_file.FILE}",
        "write the model folder elsewhere",
    ):
        metrics_file.write_file(folder, metrics)
    _render_report(folder, meta, metrics)


def _render_report(folder: Path, meta: RetrainedRecord, metrics: dict[str, Any]) -> None:
    """report.html again, from the metrics.json just written: its exports table lists the
    new file. A folder without a report (none was ever written) gets none."""
    from imgtool.training import report

    page = folder / "report.html"
    if page.is_file():
        html = report.render(metrics, metrics.get("misclassified"), report.title_for(meta.image_dir))
        _write(page, html.encode("utf-8"), what=f"the report {page}", elsewhere="write the model folder elsewhere")


def export_for_retrain(staging: Path, quantize: str) -> list[dict[str, Any]]:
    """retrain's step: the exports written into the model folder being built. A failure
    is a warning (the folder still works with imgtool), recorded as such."""
    from imgtool.core import ui

    try:
        with ui.native_output_filtered():
            results = export_model_dir(staging, quantize)
        return [r.record(staging) for r in results]
    except Exception as err:  # an extra must not lose the trained model
        if isinstance(err, OSError) and (isinstance(err, StorageError) or store.is_storage_error(err, staging)):
            raise  # a full disk is not an optional extra: the folder would be written without its model.tflite
        first: Text | str = err.text if isinstance(err, ImgtoolError) else first_line(err)
    ui.warn(f"{default_file(quantize)} export skipped (" + first + "); the model folder still works with imgtool")
    records = [{"file": default_file(quantize), "quantize": quantize, "error": first}]
    metrics = store.read_json(staging / "metrics.json") or {}
    metrics["exports"] = [r for r in metrics.get("exports") or [] if "bytes" in r] + records
    with _named(staging / metrics_file.FILE):
        metrics_file.write_file(staging, metrics)
    return metrics["exports"]
