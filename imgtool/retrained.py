"""The folder `imgtool retrain` writes, as a typed record (`imgtool-model.json`): the one
module that writes and reads it. Old folders stay readable: missing keys take defaults,
unknown keys are kept.

Layer: above catalog, labels, model, store; below export, tflite_export, resolve.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

from imgtool import files, store
from imgtool import labels as labels_mod
from imgtool.catalog import MAX_INPUT_SIDE, ModelConfig, ModelFormat
from imgtool.errors import ModelError, first_line
from imgtool.model import Model, Purpose

RETRAINED_FILE = "imgtool-model.json"
TRAINING_PHOTOS = "training-photos.txt"
TRAINING_PHOTOS_MAX_BYTES = 1 << 30  # 65 bytes a photo: 16 million photos


class DamagedRecord(ValueError):
    """imgtool-model.json holds something its reader cannot use: `str(err)` names the field."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _typed(name: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind):
        raise DamagedRecord(f"{name} is {_short(value)}, of the wrong type")
    return value


def _inside(name: str, value: Any) -> str:
    """A path the record names: relative, no `..`, so it stays inside the model folder."""
    if not isinstance(value, str) or not value:
        raise DamagedRecord(f"{name} is {_short(value)}, not a file name")
    pure = PurePosixPath(value.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or ":" in value.split("/")[0]:
        raise DamagedRecord(f"{name} {value!r} points outside the model folder")
    return value


def _known(cls: type, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}, {k: v for k, v in data.items() if k not in names}


@dataclass
class BackboneRecord:
    ref: str = ""
    input_size: list[int] = field(default_factory=list)
    value_range: list[float] | None = None
    file: str = ""                      # backbone.tflite | backbone_savedmodel | backbone.pb
    tensors: list[str] | None = None    # a .pb backbone's input and feature tensors
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ref": self.ref, "input_size": list(self.input_size),
                               "value_range": list(self.value_range) if self.value_range else None}
        if self.file:
            out["file"] = self.file
        if self.tensors is not None:
            out["tensors"] = list(self.tensors)
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneRecord:
        known, extra = _known(cls, data)
        known.pop("extra", None)
        record = cls(**known, extra=extra)
        record.ref = _typed("backbone.ref", record.ref, str)
        record.file = _inside("backbone.file", record.file)
        size = record.input_size
        if (not isinstance(size, list) or len(size) != 2
                or not all(type(v) is int and 1 <= v <= MAX_INPUT_SIDE for v in size)):
            raise DamagedRecord(f"backbone.input_size is {size!r}, not [height, width] in 1..{MAX_INPUT_SIDE}")
        vr = record.value_range
        if vr is not None and not (isinstance(vr, list) and len(vr) == 2
                                   and all(type(v) in (int, float) and math.isfinite(v) for v in vr) and vr[0] < vr[1]):
            raise DamagedRecord(f"backbone.value_range is {vr!r}, not [low, high] (finite, low < high)")
        if record.tensors is not None and not (isinstance(record.tensors, list) and len(record.tensors) == 2
                                               and all(isinstance(t, str) and t for t in record.tensors)):
            raise DamagedRecord(f"backbone.tensors is {record.tensors!r}, not [input tensor, feature tensor]")
        return record


@dataclass
class RetrainedRecord:
    backbone: BackboneRecord = field(default_factory=BackboneRecord)
    classes: list[str] = field(default_factory=list)
    image_dir: str | None = None
    head: str = "head.npz"
    labels: str = "labels.txt"
    format: str = "imgtool-retrained"
    version: int = 1
    imgtool: str | None = None
    exports: dict[str, Any] = field(default_factory=dict)
    training_photos: dict[str, Any] | None = None
    made_with: dict[str, str] | None = None  # {"pillow", "litert"}: the versions that made its scores
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format, "version": self.version, "imgtool": self.imgtool, "image_dir": self.image_dir,
            "head": self.head, "labels": self.labels, "classes": self.classes,
            "backbone": self.backbone.to_dict(), "exports": self.exports,
        }
        if self.training_photos is not None:
            out["training_photos"] = self.training_photos
        if self.made_with is not None:
            out["made_with"] = dict(self.made_with)
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrainedRecord:
        """The record, every field checked (DamagedRecord naming the first bad one)."""
        if not isinstance(data, dict):
            raise DamagedRecord("not a JSON object")
        known, extra = _known(cls, data)
        known.pop("extra", None)
        backbone = known.pop("backbone", None)
        if not isinstance(backbone, dict):
            raise DamagedRecord("backbone is missing or not an object")
        record = cls(**known, backbone=BackboneRecord.from_dict(backbone), extra=extra)
        if not (isinstance(record.classes, list) and len(record.classes) >= 1
                and all(isinstance(c, str) and c for c in record.classes)):
            raise DamagedRecord(f"classes is {_short(record.classes)}, not a list of class names")
        record.head = _inside("head", record.head)
        record.labels = _inside("labels", record.labels)
        for name, value, kind in (("format", record.format, str), ("image_dir", record.image_dir, (str, type(None))),
                                  ("imgtool", record.imgtool, (str, type(None))), ("exports", record.exports, dict),
                                  ("training_photos", record.training_photos, (dict, type(None)))):
            _typed(name, value, kind)
        if type(record.version) is not int:
            raise DamagedRecord(f"version is {_short(record.version)}, not a whole number")
        return record

    @property
    def input_size(self) -> tuple[int, int]:
        h, w = self.backbone.input_size
        return int(h), int(w)

    @property
    def value_range(self) -> tuple[float, float] | None:
        if not self.backbone.value_range:
            return None
        lo, hi = self.backbone.value_range
        return float(lo), float(hi)


def is_model_dir(path: Path) -> bool:
    return (path / RETRAINED_FILE).is_file()


def read(folder: Path) -> RetrainedRecord:
    """The folder's record, every field checked: OSError when it cannot be read,
    DamagedRecord (a ValueError) when it is not a whole, well-typed record whose paths
    stay inside the folder. The one reader of imgtool-model.json."""
    try:
        text = files.read_text(folder / RETRAINED_FILE, files.RECORD_MAX_BYTES)
    except files.FileProblem as err:
        raise DamagedRecord(str(err)) from None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise DamagedRecord(f"not JSON ({err})") from None
    record = RetrainedRecord.from_dict(data)
    root = folder.resolve()
    for name, rel in (("head", record.head), ("labels", record.labels), ("backbone.file", record.backbone.file)):
        target = (folder / rel).resolve()  # a symlink inside the folder may not lead out of it either
        if target != root and root not in target.parents:
            raise DamagedRecord(f"{name} {rel!r} leads outside the model folder")
    return record


class Parts:
    """A retrained folder's files, checked: `labels` fit the head's outputs, the head's
    weights fit each other. ModelError ("damaged retrained model") otherwise."""

    def __init__(self, ref: str, folder: Path, record: RetrainedRecord):
        import numpy as np

        self.record = record
        self.backbone = folder / record.backbone.file
        self.head = folder / record.head
        labels_path = folder / record.labels
        for path in (self.head, labels_path):
            why = files.problem(path)
            if why is not None:
                raise damaged(ref, f"{path.name}: {why}")
        if record.backbone.file.endswith((".tflite", ".pb")) and files.problem(self.backbone):
            raise damaged(ref, f"{record.backbone.file}: {files.problem(self.backbone)}")
        if not self.backbone.exists():
            raise damaged(ref, f"{record.backbone.file}: missing")
        try:
            self.labels = labels_mod.read_lines(labels_path)
            with np.load(self.head, allow_pickle=False) as npz:
                self.weights, self.bias = npz["weights"], npz["bias"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise damaged(ref, f"{record.head} or {record.labels}: " + first_line(err, None)) from None
        w, b = self.weights, self.bias
        if w.ndim != 2 or b.ndim != 1 or w.shape[1] != b.shape[0] or w.dtype.kind != "f" or b.dtype.kind != "f":
            raise damaged(ref, f"{record.head}: weights {w.shape} and bias {b.shape} do not make a layer")
        if len(self.labels) != w.shape[1]:
            raise damaged(ref, f"{record.labels} has {len(self.labels)} labels for the {w.shape[1]} outputs of "
                               f"{record.head}")
        if len(record.classes) != w.shape[1]:
            raise damaged(ref, f"{RETRAINED_FILE} lists {len(record.classes)} classes for the {w.shape[1]} outputs "
                               f"of {record.head}")


def damaged(ref: str | Path, why: str) -> ModelError:
    return ModelError(f"{ref}: damaged retrained model (" + why + "); retrain it again", model=str(ref))


def parts(ref: str, folder: Path) -> Parts:
    """The folder's record and files, all checked (ModelError: damaged retrained model)."""
    try:
        record = read(folder)
    except (OSError, DamagedRecord) as err:
        raise damaged(ref, f"{RETRAINED_FILE}: {err}") from None
    return Parts(ref, folder, record)


def recorded_image_dir(folder: Path) -> str | None:
    """The image folder a model folder records, read leniently (None: not a model folder,
    or none recorded)."""
    meta = store.read_json(folder / RETRAINED_FILE)
    return meta.get("image_dir") if isinstance(meta, dict) else None


def read_or_none(folder: Path) -> RetrainedRecord | None:
    try:
        return read(folder)
    except (OSError, DamagedRecord):
        return None


def write(staging: Path, record: RetrainedRecord) -> None:
    """Written last into the staging folder (the caller renames the folder into place)."""
    (staging / RETRAINED_FILE).write_text(json.dumps(record.to_dict(), indent=2) + "\n", encoding="utf-8")


def write_training_photos(path: Path, hashes: Any) -> dict[str, Any]:
    """The content hashes (sha256 hex, the bottleneck cache's key) of the photos a model
    was trained on, one a line, sorted; returns the record for imgtool-model.json."""
    lines = sorted(set(hashes))
    path.write_text("".join(f"{h}\n" for h in lines), encoding="utf-8")
    return {"file": path.name, "count": len(lines), "hash": "sha256 of each photo's bytes",
            "splits": ["train", "validation"]}


def read_training_photos(model_dir: Path) -> set[str] | None:
    """The hashes a retrained model folder records, or None when it records none
    (a model written before they were kept, or not an imgtool model)."""
    meta = store.read_json(model_dir / RETRAINED_FILE)
    if not isinstance(meta, dict) or not isinstance(meta.get("training_photos"), dict):
        return None
    name = str(meta["training_photos"].get("file") or TRAINING_PHOTOS)
    try:
        text = files.read_text(model_dir / Path(name).name, TRAINING_PHOTOS_MAX_BYTES)
    except files.FileProblem:
        return None
    return {ln.strip() for ln in text.splitlines() if len(ln.strip()) == 64}


def load_model(ref: str, path: Path, purpose: Purpose) -> Model:
    """A folder written by `imgtool retrain` as a Model: backbone (.tflite, or SavedModel/.pb
    when it could not be converted) + head.npz + labels.txt; for purpose "features", the backbone."""
    checked = parts(ref, path)
    meta, backbone_file, head = checked.record, checked.backbone, checked.head
    size, vr = meta.input_size, meta.value_range
    formats: dict[str, ModelFormat] = {".tflite": "tflite", ".pb": "graphdef"}
    fmt = formats.get(backbone_file.suffix, "savedmodel")
    backbone = Model(ref=str(backbone_file), config=ModelConfig(
        name=str(backbone_file), format=fmt, input_size=size, value_range=vr, output="features"))
    if fmt == "tflite":
        backbone.tflite = backbone_file
    else:
        backbone.tf_source = backbone_file
        if fmt == "graphdef":
            t_in, t_out = meta.backbone.tensors or ("Mul:0", "pool_3:0")
            backbone.graph_tensors = (t_in, t_out)
    if purpose == "features":
        return backbone
    config = ModelConfig(name=ref, format="tflite", input_size=size, value_range=vr, output="logits")
    notes = [] if is_calibrated(path) else [
        f"{ref}: trained before imgtool calibrated its scores: they are uncalibrated (often underconfident); "
        "retrain it for scores that mean what they say"]
    return Model(ref=ref, config=config, labels=checked.labels, head=head, backbone=backbone, notes=notes)


def is_calibrated(model_dir: Path) -> bool:
    """Whether a retrained folder's head has its temperature folded in (metrics.json
    records "calibration"); folders written before that do not."""
    metrics = store.read_json(model_dir / "metrics.json")
    return isinstance(metrics, dict) and isinstance(metrics.get("calibration"), dict)
