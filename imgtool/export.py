"""Writing a retrained model folder: self-contained, atomic, usable by every command.

    <output>/
      imgtool-model.json   the record `imgtool classify/labels --model DIR` read
      backbone.tflite      the frozen backbone (copied: works after the cache is cleared)
      head.npz             the new last layer (weights [features, classes], bias) - no pickle
      labels.txt           class names, one a line, in output order
      metrics.json         accuracy, per-class figures, confusion matrix, counts, options
      report.html          the same for people, with misclassified thumbnails
      saved_model/         (TF backbones) serving signature `serving_default`: float images
                           [N,H,W,3] with pixel values 0..255 -> probabilities, top class
      model.tflite         (TF backbones) the same as one .tflite, labels embedded as a
                           metadata zip (`zipfile.ZipFile(model.tflite).read('labels.txt')`)
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from imgtool import __version__, store, ui
from imgtool.resolve import RETRAINED_FILE, Model
from imgtool.train import Head

MARKER = RETRAINED_FILE


def is_model_dir(path: Path) -> bool:
    return (path / MARKER).is_file()


def default_output(image_dir: Path) -> Path:
    """`./<folder>-model` in the current directory (beside the folder if the current
    directory is inside it); a name already taken by something else gets -2, -3, ..."""
    image_dir = image_dir.resolve()
    cwd = Path.cwd().resolve()
    base = image_dir.parent if (cwd == image_dir or image_dir in cwd.parents) else cwd
    stem = f"{image_dir.name}-model"
    candidate = base / stem
    n = 2
    while candidate.exists() and not _same_source(candidate, image_dir):
        candidate = base / f"{stem}-{n}"
        n += 1
    return candidate


def _same_source(path: Path, image_dir: Path) -> bool:
    """A previous retrain of the same folder may be replaced; anything else may not."""
    meta = store.read_json(path / MARKER)
    return bool(meta) and meta.get("image_dir") == str(image_dir)


def check_output(output: Path, image_dir: Path) -> None:
    from imgtool.errors import UsageError

    out, img = output.resolve(), image_dir.resolve()
    if out == img or img in out.parents:
        raise UsageError(f"--output {output} is inside the image folder; it would be read as a class next time")
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} is a file; give a folder path")
    if output.is_dir() and any(output.iterdir()) and not is_model_dir(output):
        raise UsageError(f"--output {output} exists and is not an imgtool model; choose another path or empty it")


def append_labels_zip(tflite_bytes: bytes, labels: list[str]) -> bytes:
    """TFLite metadata keeps associated files in a zip appended to the flatbuffer;
    LiteRT ignores the trailing bytes and zip readers find the labels."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("labels.txt", "\n".join(labels) + "\n")
    return tflite_bytes + buf.getvalue()


def write_model_dir(staging: Path, backbone: Model, backbone_size: tuple[int, int], head: Head,
                    classes: list[str], metrics: dict[str, Any], report_html: str,
                    image_dir: Path) -> dict[str, Any]:
    staging.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "format": "imgtool-retrained", "version": 1, "imgtool": __version__,
        "image_dir": str(image_dir.resolve()),
        "head": "head.npz", "labels": "labels.txt", "classes": classes,
        "backbone": {"ref": backbone.ref, "input_size": list(backbone_size),
                     "value_range": list(backbone.config.value_range) if backbone.config.value_range else None},
        "exports": {},
    }
    if backbone.tflite is not None:
        shutil.copyfile(backbone.tflite, staging / "backbone.tflite")
        record["backbone"]["file"] = "backbone.tflite"
    else:
        assert backbone.tf_source is not None
        if backbone.tf_source.is_dir():
            shutil.copytree(backbone.tf_source, staging / "backbone_savedmodel")
            record["backbone"]["file"] = "backbone_savedmodel"
        else:
            shutil.copyfile(backbone.tf_source, staging / "backbone.pb")
            record["backbone"]["file"] = "backbone.pb"
            record["backbone"]["tensors"] = list(backbone.graph_tensors or ())
    np.savez(staging / "head.npz", weights=head.weights, bias=head.bias)
    (staging / "labels.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (staging / "report.html").write_text(report_html, encoding="utf-8")
    if backbone.tf_source is not None and backbone.config.format == "savedmodel":
        try:
            from imgtool import tfutil

            ui.info("Exporting a SavedModel (serving signature) and a single .tflite (TensorFlow is loading)")
            with ui.native_output_filtered():
                diff = tfutil.export_classifier(backbone.tf_source, backbone_size, backbone.config.value_range,
                                                head.weights, head.bias, classes, staging / "saved_model",
                                                staging / ".model.tflite")
            tfl = (staging / ".model.tflite").read_bytes()
            (staging / "model.tflite").write_bytes(append_labels_zip(tfl, classes))
            (staging / ".model.tflite").unlink()
            record["exports"] = {"saved_model": "saved_model", "tflite": "model.tflite",
                                 "input": "float32 [N,H,W,3], pixel values 0..255", "tflite_max_diff": diff}
        except Exception as err:  # noqa: BLE001 - the exports are extras; the model itself is written
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            ui.warn(f"SavedModel/.tflite export skipped ({first}); the model folder still works with imgtool")
            record["exports"] = {"error": first}
    elif backbone.tflite is not None:
        record["exports"] = {"note": "the backbone is a .tflite; no SavedModel can be made from it, and the head "
                                     "runs beside it (backbone.tflite + head.npz)"}
    (staging / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    for p in staging.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    return record
