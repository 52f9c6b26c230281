"""The folder `imgtool retrain` writes, as a typed record (`imgtool-model.json`): the one
module that writes and reads it. Old folders stay readable: missing keys take defaults,
unknown keys are kept.

Layer: above catalog, labels, model, store; below export, tflite_export, resolve.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from imgtool.core import files, store
from imgtool.core.errors import ModelError, first_line
from imgtool.core.records import BadRecord, Record, is_empty, is_none, known, short
from imgtool.data import labels as labels_mod
from imgtool.models.catalog import MAX_INPUT_SIDE, ModelConfig, ModelFormat
from imgtool.models.recipe import Purpose, Recipe

RETRAINED_FILE = "imgtool-model.json"
TRAINING_PHOTOS = "training-photos.txt"
TRAINING_PHOTOS_MAX_BYTES = 1 << 30  # 65 bytes a photo: 16 million photos


class DamagedRecord(BadRecord):
    """imgtool-model.json holds something its reader cannot use: `str(err)` names the field."""


def _inside(name: str, value: str) -> str:
    """A path the record names: relative, no `..`, so it stays inside the model folder."""
    if not value:
        raise DamagedRecord(f"{name} is {short(value)}, not a file name")
    pure = PurePosixPath(value.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or ":" in value.split("/")[0]:
        raise DamagedRecord(f"{name} {value!r} points outside the model folder")
    return value


@dataclass
class BackboneRecord(Record):
    record_error: ClassVar[type[BadRecord]] = DamagedRecord

    ref: str = ""
    input_size: list[int] = known(factory=list, expect=f"not [height, width] in 1..{MAX_INPUT_SIDE}")
    value_range: list[float] | None = known(None, expect="not [low, high] (finite, low < high)")
    file: str = known("", omit=is_empty, expect="not a file name")  # backbone.tflite | backbone_savedmodel | .pb
    # a .pb backbone's input and feature tensors
    tensors: list[str] | None = known(None, omit=is_none, expect="not [input tensor, feature tensor]")
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["value_range"] = out["value_range"] or None  # [] is written as null, as it always was
        return out

    def check(self) -> None:
        _inside("backbone.file", self.file)
        size = self.input_size
        if len(size) != 2 or not all(1 <= v <= MAX_INPUT_SIDE for v in size):
            raise DamagedRecord(f"backbone.input_size is {size!r}, not [height, width] in 1..{MAX_INPUT_SIDE}")
        vr = self.value_range
        if vr is not None and not (len(vr) == 2 and all(math.isfinite(v) for v in vr) and vr[0] < vr[1]):
            raise DamagedRecord(f"backbone.value_range is {vr!r}, not [low, high] (finite, low < high)")
        if self.tensors is not None and not (len(self.tensors) == 2 and all(self.tensors)):
            raise DamagedRecord(f"backbone.tensors is {self.tensors!r}, not [input tensor, feature tensor]")


@dataclass
class RetrainedRecord(Record):
    """Fields in the order they are written."""

    record_error: ClassVar[type[BadRecord]] = DamagedRecord

    format: str = "imgtool-retrained"
    version: int = known(1, expect="not a whole number")
    imgtool: str | None = None
    image_dir: str | None = None
    head: str = known("head.npz", expect="not a file name")
    labels: str = known("labels.txt", expect="not a file name")
    classes: list[str] = known(factory=list, expect="not a list of class names")
    backbone: BackboneRecord = field(default_factory=BackboneRecord)
    exports: dict[str, Any] = field(default_factory=dict)
    training_photos: dict[str, Any] | None = known(None, omit=is_none)
    made_with: dict[str, str] | None = known(None, omit=is_none)  # {"pillow", "litert"}: made its scores
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> RetrainedRecord:
        """The record, every field checked (DamagedRecord naming the first bad one)."""
        if not isinstance(data, dict):
            raise DamagedRecord("not a JSON object")
        if not isinstance(data.get("backbone"), dict):
            raise DamagedRecord("backbone is missing or not an object")
        return super().from_dict(data, where)

    def check(self) -> None:
        if not (self.classes and all(self.classes)):
            raise DamagedRecord(f"classes is {short(self.classes)}, not a list of class names")
        _inside("head", self.head)
        _inside("labels", self.labels)

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
            raise damaged(
                ref, f"{record.labels} has {len(self.labels)} labels for the {w.shape[1]} outputs of {record.head}"
            )
        if len(record.classes) != w.shape[1]:
            raise damaged(
                ref,
                f"{RETRAINED_FILE} lists {len(record.classes)} classes for the {w.shape[1]} outputs of {record.head}",
            )


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
    meta = store.read_json(folder / RETRAINED_FILE)  # lenient: a damaged retrain of the folder may be replaced
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
    return {
        "file": path.name,
        "count": len(lines),
        "hash": "sha256 of each photo's bytes",
        "splits": ["train", "validation"],
    }


def read_training_photos(model_dir: Path) -> set[str] | None:
    """The hashes a retrained model folder records, or None when it records none
    (a model written before they were kept, or not an imgtool model)."""
    record = read_or_none(model_dir)
    if record is None or record.training_photos is None:
        return None
    name = str(record.training_photos.get("file") or TRAINING_PHOTOS)
    try:
        text = files.read_text(model_dir / Path(name).name, TRAINING_PHOTOS_MAX_BYTES)
    except files.FileProblem:
        return None
    return {ln.strip() for ln in text.splitlines() if len(ln.strip()) == 64}


def load_model(ref: str, path: Path, purpose: Purpose) -> Recipe:
    """A folder written by `imgtool retrain` as a Model: backbone (.tflite, or SavedModel/.pb
    when it could not be converted) + head.npz + labels.txt; for purpose "features", the backbone."""
    checked = parts(ref, path)
    meta, backbone_file, head = checked.record, checked.backbone, checked.head
    size, vr = meta.input_size, meta.value_range
    formats: dict[str, ModelFormat] = {".tflite": "tflite", ".pb": "graphdef"}
    fmt = formats.get(backbone_file.suffix, "savedmodel")
    backbone = Recipe(
        ref=str(backbone_file),
        config=ModelConfig(name=str(backbone_file), format=fmt, input_size=size, value_range=vr, output="features"),
    )
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
    notes = (
        []
        if is_calibrated(path)
        else [
            f"{ref}: trained before imgtool calibrated its scores: they are uncalibrated (often underconfident); "
            "retrain it for scores that mean what they say"
        ]
    )
    return Recipe(ref=ref, config=config, labels=checked.labels, head=head, backbone=backbone, notes=notes)


def is_calibrated(model_dir: Path) -> bool:
    """Whether a retrained folder's head has its temperature folded in (metrics.json
    records "calibration"); folders written before that do not."""
    metrics = store.read_json(model_dir / "metrics.json")
    return isinstance(metrics, dict) and isinstance(metrics.get("calibration"), dict)
