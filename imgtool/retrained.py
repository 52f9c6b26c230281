"""The folder `imgtool retrain` writes, as a typed record (`imgtool-model.json`): the one
module that writes and reads it. Old folders stay readable: missing keys take defaults,
unknown keys are kept.

Layer: above catalog, labels, model, store; below export, tflite_export, resolve.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from imgtool import labels as labels_mod
from imgtool import store
from imgtool.catalog import ModelConfig, ModelFormat
from imgtool.errors import ModelError
from imgtool.model import Model, Purpose

RETRAINED_FILE = "imgtool-model.json"
TRAINING_PHOTOS = "training-photos.txt"


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
        return cls(**known, extra=extra)


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
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format, "version": self.version, "imgtool": self.imgtool, "image_dir": self.image_dir,
            "head": self.head, "labels": self.labels, "classes": self.classes,
            "backbone": self.backbone.to_dict(), "exports": self.exports,
        }
        if self.training_photos is not None:
            out["training_photos"] = self.training_photos
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrainedRecord:
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        known, extra = _known(cls, data)
        known.pop("extra", None)
        backbone = known.pop("backbone", None)
        if not isinstance(backbone, dict):
            raise KeyError("backbone")
        return cls(**known, backbone=BackboneRecord.from_dict(backbone), extra=extra)

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
    """The folder's record (OSError, ValueError, KeyError or TypeError when missing or damaged)."""
    return RetrainedRecord.from_dict(json.loads((folder / RETRAINED_FILE).read_text(encoding="utf-8")))


def recorded_image_dir(folder: Path) -> str | None:
    """The image folder a model folder records, read leniently (None: not a model folder,
    or none recorded)."""
    meta = store.read_json(folder / RETRAINED_FILE)
    return meta.get("image_dir") if isinstance(meta, dict) else None


def read_or_none(folder: Path) -> RetrainedRecord | None:
    try:
        return read(folder)
    except (OSError, ValueError, KeyError, TypeError):
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
        text = (model_dir / Path(name).name).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    return {ln.strip() for ln in text.splitlines() if len(ln.strip()) == 64}


def load_model(ref: str, path: Path, purpose: Purpose) -> Model:
    """A folder written by `imgtool retrain` as a Model: backbone (.tflite, or SavedModel/.pb
    when it could not be converted) + head.npz + labels.txt; for purpose "features", the backbone."""
    try:
        meta = read(path)
        backbone_file = path / meta.backbone.file
        if not meta.backbone.file:
            raise KeyError("file")
        head = path / meta.head
        size = meta.input_size
        vr = meta.value_range
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"{ref}: damaged retrained model ({RETRAINED_FILE}: {err}); retrain it again") from None
    if not backbone_file.exists() or not head.is_file() or not (path / "labels.txt").is_file():
        raise ModelError(f"{ref}: damaged retrained model (missing {backbone_file.name}, {head.name} or labels.txt); "
                         "retrain it again")
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
    return Model(ref=ref, config=config, labels=labels_mod.read_lines(path / "labels.txt"),
                 head=head, backbone=backbone, notes=notes)


def is_calibrated(model_dir: Path) -> bool:
    """Whether a retrained folder's head has its temperature folded in (metrics.json
    records "calibration"); folders written before that do not."""
    metrics = store.read_json(model_dir / "metrics.json")
    return isinstance(metrics, dict) and isinstance(metrics.get("calibration"), dict)
