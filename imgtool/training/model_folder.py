"""Writing a retrained model folder: self-contained, atomic, usable by every command.

    <output>/
      imgtool-model.json   the record `imgtool classify/labels --model DIR` read
      backbone.tflite      the frozen backbone (copied: works after the cache is cleared)
      head.npz             the new last layer (weights [features, classes], bias) - no pickle
      labels.txt           class names, one a line, in output order
      metrics.json         accuracy, per-class figures, confusion matrix, counts, options
      report.html          the same for people, with misclassified thumbnails
      training-photos.txt  sha256 of each photo the head was fitted or tuned on (train and
                           validation splits), one a line, sorted: `evaluate` says how many
                           of the photos it is given the model has already seen
      saved_model/         (TF backbones) serving signature `serving_default`: float images
                           [N,H,W,3] with pixel values 0..255 -> probabilities, top class
      model.tflite         backbone + last layer + softmax in one file with TFLite metadata
                           (normalization, labels.txt as TENSOR_AXIS_LABELS); see tflite_export
      model-MODE.tflite    with --quantize dynamic|float16|int8

Layer: the work (writes through retrained.py; above model, tfutil, train).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from imgtool.core import files, store, ui
from imgtool.core.errors import Param, StorageError, first_line
from imgtool.core.version import __version__, made_with
from imgtool.models import caches, retrained
from imgtool.models.recipe import Recipe
from imgtool.models.retrained import (
    RETRAINED_FILE,
    TRAINING_PHOTOS,
    BackboneRecord,
    RetrainedRecord,
    is_model_dir,
    write_training_photos,
)
from imgtool.numbers import metrics as metrics_file
from imgtool.training.fitting import Head


def default_output(image_dir: Path) -> Path:
    """`./<folder>-model` in the current directory (beside the folder if the current
    directory is inside it); a name already taken by something else gets -2, -3, ..."""
    image_dir = image_dir.resolve()
    cwd = Path.cwd().resolve()
    base = image_dir.parent if (cwd == image_dir or image_dir in cwd.parents) else cwd
    stem = f"{image_dir.name}-model"
    candidate = base / stem
    n = 2
    while os.path.lexists(candidate) and not _same_source(candidate, image_dir):  # too long: no error here
        candidate = base / f"{stem}-{n}"
        n += 1
    return candidate


def _same_source(path: Path, image_dir: Path) -> bool:
    """A previous retrain of the same folder may be replaced; anything else may not."""
    return retrained.recorded_image_dir(path) == str(image_dir)


def check_output(output: Path, image_dir: Path, force: bool = False, photo_dirs: tuple[Path | None, ...] = ()) -> None:
    """The one rule for -o and the default name: never inside the image folder, never
    the image folder or a folder holding it (nor IMGTOOL_HOME), never a file or a symbolic
    link, a name that fits the file system (files.check_target); an existing non-empty
    folder is replaced only when it is an imgtool model of the same image folder, or with
    `force`."""
    from imgtool.core.errors import UsageError

    protected = [
        ("the image folder", image_dir),
        ("IMGTOOL_HOME", store.home()),
        *(("a photo folder", d) for d in photo_dirs),
    ]
    files.check_target(output, Param("output"), kind="folder", protected=protected)
    out, img = output.resolve(), image_dir.resolve()
    if out == img or img in out.parents:
        raise UsageError(
            Param("output") + f" {output} is inside the image folder; it would be read as a class next time",
            path=output,
        )
    check_writable(output)
    if force or not output.is_dir() or not any(output.iterdir()):
        return
    if not is_model_dir(output):
        raise UsageError(
            Param("output") + f" {output} exists and is not an imgtool model; choose another path, "
            "empty it, or pass " + Param("force") + " to replace it",
            path=output,
        )
    if not _same_source(output, img):
        meta = store.read_json(output / RETRAINED_FILE) or {}
        raise UsageError(
            Param("output") + f" {output} holds a model of other photos "
            f"({meta.get('image_dir', 'unknown')}); choose another path or pass " + Param("force") + " to replace it",
            path=output,
        )


def check_writable(output: Path) -> None:
    """The folder is written beside itself and renamed into place, so its parent (or the
    nearest existing ancestor, for a new path) must be writable: said now, as the write
    itself would say it (exit 4), rather than after all the work."""
    parent = Path(os.path.abspath(output)).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        code = errno.EROFS if _read_only_fs(parent) else errno.EACCES
        raise store.storage_error(
            OSError(code, os.strerror(code), str(parent)),
            f"the model folder {output}",
            "choose another " + Param("output"),
            note=_unchanged_note(output.exists()),
        )


def _unchanged_note(existed: bool) -> str:
    return "; the previous model is unchanged" if existed else "; nothing was written"


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Hard-link a file the cache owns (under IMGTOOL_HOME) when on the same file system:
    an 87 MB backbone costs nothing twice, and the cache never writes into a file in
    place, so sharing its inode is safe. Anything else is copied: a user's own file may
    be rewritten in place (`cp other.tflite emb.tflite` keeps the inode), and a model
    folder linked to it would silently change with it."""
    if _cache_owns(Path(src)):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def _cache_owns(path: Path) -> bool:
    try:
        real, root = path.resolve(), store.home().resolve()
    except (OSError, RuntimeError):
        return False
    return root in real.parents and not path.is_symlink()


EXPORT_CACHE_KEEP = 3  # most recent TF exports kept in IMGTOOL_HOME/exports


def _export_key(backbone_ident: str, head: Head, classes: list[str], size: tuple[int, int]) -> str:
    h = hashlib.sha256(f"{backbone_ident}|{size}|{__version__}|".encode())
    h.update(head.weights.tobytes())
    h.update(head.bias.tobytes())
    h.update("\n".join(classes).encode("utf-8"))
    return h.hexdigest()[:24]


def _tf_exports(
    staging: Path, backbone: Recipe, size: tuple[int, int], head: Head, classes: list[str], backbone_ident: str
) -> dict[str, Any]:
    """saved_model/ and model.tflite for a TF backbone. TensorFlow's save + convert costs
    ~15 s on Inception v3, so the result is kept in IMGTOOL_HOME/exports under a key of
    backbone + weights + classes, and an identical later run links it instead."""
    assert backbone.tf_source is not None
    cache_root = store.home() / "exports"
    cached = cache_root / _export_key(backbone_ident, head, classes, size)
    record = store.read_json(cached / "exports.json")
    if record and (cached / "saved_model").is_dir():
        ui.info("Reusing the SavedModel export of an identical earlier run")
        shutil.copytree(cached / "saved_model", staging / "saved_model", copy_function=link_or_copy)
        return record
    from imgtool.runtime import tfutil

    ui.info("Exporting a SavedModel (serving signature; TensorFlow is loading)")
    with ui.native_output_filtered():
        tfutil.export_classifier(
            backbone.tf_source,
            size,
            backbone.config.value_range,
            head.weights,
            head.bias,
            classes,
            staging / "saved_model",
        )
    record = {"saved_model": "saved_model", "input": "float32 [N,H,W,3], pixel values 0..255"}
    tmp = cache_root / f".{cached.name}.{os.getpid()}.tmp"
    try:
        store.clean_stale(cache_root)
        # copied, not linked: the cache owns only what it wrote (the model folder is the user's)
        shutil.copytree(staging / "saved_model", tmp / "saved_model")
        store.atomic_write_json(tmp / "exports.json", record)
        store.replace_dir(tmp, cached)
        caches.prune(cache_root, EXPORT_CACHE_KEEP)
    except OSError as err:  # the cache is an optimisation; the model folder is what matters
        ui.warn(f"could not keep the export for reuse ({err})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def write_error(err: OSError, output: Path, staging: Path, existed: bool) -> Exception:
    """A failed write of the model folder as one line naming the output (not the staging
    name), the cause and the fix; anything else is returned as it is."""
    if isinstance(err, StorageError) and err.errno is not None:  # named for a file in staging: name the output's
        err = OSError(err.errno, os.strerror(err.errno), err.filename)
    if not store.is_storage_error(err, output.parent):
        return err
    name = err.filename
    shown: str | Path = ""  # no file named (a plain write() failing): the folder alone says it
    if isinstance(name, (str, os.PathLike)):
        p = Path(os.path.abspath(name))
        st = Path(os.path.abspath(staging))
        if st in p.parents:
            shown = output / p.relative_to(st)
        elif p == st:  # the staging folder itself could not be made: its parent is the problem
            shown = output.parent
        elif p != Path(os.path.abspath(output)):  # (the output itself: the folder named already says it)
            shown = p
    return store.storage_error(
        err,
        f"the model folder {output}",
        "choose another " + Param("output"),
        shown=shown,
        note=_unchanged_note(existed),
    )


def write_model_dir(
    staging: Path,
    backbone: Recipe,
    backbone_size: tuple[int, int],
    head: Head,
    classes: list[str],
    metrics: dict[str, Any],
    report_html: str,
    image_dir: Path,
    backbone_ident: str = "",
    tf_exports: bool = True,
    training_hashes: Any = None,
) -> dict[str, Any]:
    staging.mkdir(parents=True, exist_ok=True)
    record = RetrainedRecord(
        imgtool=__version__,
        made_with=made_with(),
        image_dir=str(image_dir.resolve()),
        classes=classes,
        backbone=BackboneRecord(
            ref=backbone.ref,
            input_size=list(backbone_size),
            value_range=list(backbone.config.value_range) if backbone.config.value_range else None,
        ),
    )
    _copy_backbone(staging, backbone, record)
    np.savez(staging / "head.npz", weights=head.weights, bias=head.bias)
    (staging / "labels.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    metrics_file.write_file(staging, metrics)
    (staging / "report.html").write_text(report_html, encoding="utf-8")
    _write_exports(staging, record, backbone, backbone_size, head, classes, backbone_ident, tf_exports)
    if training_hashes is not None:
        record.training_photos = write_training_photos(staging / TRAINING_PHOTOS, training_hashes)
    retrained.write(staging, record)
    _sync_written(staging)
    return record.to_dict()


def _copy_backbone(staging: Path, backbone: Recipe, record: RetrainedRecord) -> None:
    """The backbone into the folder (a .tflite linked when it can be), named in `record`."""
    if backbone.tflite is not None:
        link_or_copy(backbone.tflite, staging / "backbone.tflite")
        record.backbone.file = "backbone.tflite"
    else:
        assert backbone.tf_source is not None
        if backbone.tf_source.is_dir():
            shutil.copytree(backbone.tf_source, staging / "backbone_savedmodel")
            record.backbone.file = "backbone_savedmodel"
        else:
            shutil.copyfile(backbone.tf_source, staging / "backbone.pb")
            record.backbone.file = "backbone.pb"
            record.backbone.tensors = list(backbone.graph_tensors or ())


def _write_exports(
    staging: Path,
    record: RetrainedRecord,
    backbone: Recipe,
    backbone_size: tuple[int, int],
    head: Head,
    classes: list[str],
    backbone_ident: str,
    tf_exports: bool,
) -> None:
    """The TensorFlow exports (SavedModel backbones only), recorded in `record.exports`:
    what was written, why none was, or the error that skipped them (a warning)."""
    if backbone.tf_source is not None and backbone.config.format == "savedmodel" and not tf_exports:
        record.exports = {"note": "skipped (--no-export)"}
    elif backbone.tf_source is not None and backbone.config.format == "savedmodel":
        try:
            record.exports = _tf_exports(staging, backbone, backbone_size, head, classes, backbone_ident)
        except Exception as err:
            if store.is_storage_error(err, staging):
                raise  # a full disk is not an optional extra: the model folder would be half-written
            first = first_line(err)
            ui.warn(f"SavedModel/.tflite export skipped ({first}); the model folder still works with imgtool")
            record.exports = {"error": first}
    elif backbone.tflite is not None:
        record.exports = {
            "note": "the backbone is a .tflite; no SavedModel can be made from it "
            "(model.tflite is the backbone with the head appended)"
        }


def _sync_written(staging: Path) -> None:
    """Every file written into the folder on disk before it is renamed into place."""
    for p in staging.rglob("*"):
        if p.is_file() and p.stat().st_nlink == 1:  # linked files are already on disk
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
