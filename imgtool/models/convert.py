"""Converting a TF model (SavedModel, frozen GraphDef) to .tflite once, into its cache
entry, and checking the .tflite against TensorFlow; plus the one LiteRT-vs-reference
agreement measure that the export code uses for its files too.

Layer: above engine, entries, model, store, tfutil (imported only to convert); below resolve.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from imgtool.core import locks, store, ui
from imgtool.core.errors import Call, ImgtoolError, ModelError, Param, first_line
from imgtool.models.catalog import ModelConfig
from imgtool.models.entries import Conversion, EntryRecord, read_record, write_record
from imgtool.models.recipe import Purpose, Recipe
from imgtool.runtime.engine import LiteRTEngine, to_float

VERIFY_TOLERANCE = 1e-3  # relative to the output's scale

ConversionPurpose = Literal["model", "features", "labels"]
"""The file a conversion writes (`<purpose>.tflite`); "labels" needs none."""


@dataclass(frozen=True)
class Agreement:
    """How closely LiteRT's outputs follow a reference's on the same inputs."""

    max_diff: float  # largest absolute difference (inf when the shapes differ)
    scale: float  # largest absolute reference value
    top1: float | None  # share of rows whose argmax agrees (None for no rows)

    def within(self, tolerance: float = VERIFY_TOLERANCE) -> bool:
        """The conversion check: max diff within `tolerance` of the output's scale (at least 1)."""
        return self.max_diff <= tolerance * max(1.0, self.scale)


def agreement(got: np.ndarray, want: np.ndarray) -> Agreement:
    """Compare outputs [N, ...] row by row: the conversion check and the export reports use this."""
    got = np.asarray(got).reshape(len(got), -1)
    want = np.asarray(want).reshape(len(want), -1)
    if got.shape != want.shape:
        return Agreement(float("inf"), 1.0, None)
    if not got.size:
        return Agreement(0.0, 0.0, None)
    return Agreement(
        float(np.max(np.abs(got - want))),
        float(np.max(np.abs(want))),
        float(np.mean(got.argmax(axis=1) == want.argmax(axis=1))),
    )


def probe_images(size: tuple[int, int]) -> np.ndarray:
    """Two uint8 probe images: seeded noise and a smooth horizontal ramp."""
    rng = np.random.default_rng(0)
    probe = rng.integers(0, 256, size=(2, *size, 3), dtype=np.uint8)
    probe[1] = np.linspace(0, 255, size[1], dtype=np.uint8)[None, :, None]
    return probe


def verify(
    reference: Callable[[np.ndarray], Any], tflite: Path, size: tuple[int, int], value_range: tuple[float, float] | None
) -> Agreement:
    """The .tflite against the TF reference (which takes float input) on the probe images."""
    probe = probe_images(size)
    engine = LiteRTEngine(tflite, value_range)
    want = np.concatenate(
        [np.asarray(reference(to_float(probe[i : i + 1], value_range))).reshape(1, -1) for i in range(len(probe))]
    )
    return agreement(engine.run(probe), want)


def conversion_for(config: ModelConfig, purpose: Purpose) -> ConversionPurpose:
    """The conversion a resolver purpose needs (config: the model's ModelConfig)."""
    if purpose == "labels":
        return "labels"  # labels need no conversion, so no TensorFlow
    if purpose == "features" and config.format == "graphdef" and config.feature_tensor:
        return "features"
    return "model"


def ensure_tflite(
    model: Recipe, entry: Path, purpose: ConversionPurpose = "model", record_failure: bool = True
) -> Recipe:
    """Convert a TF model to `<purpose>.tflite` once, verify it against TF on a probe
    input, and use it; when conversion or the check fails, record why and run in TF.
    `record_failure` False (an option of this run chose the size): a failure is not
    written to the entry, which stays as it was for later runs."""
    config = model.config
    if config.format == "tflite" or purpose == "labels":
        return model
    if config.format == "graphdef":
        out_t = config.feature_tensor if purpose == "features" else config.output_tensor
        model.graph_tensors = (config.input_tensor or "Mul:0", out_t or "softmax:0")
        if purpose == "features":
            model.labels = None
            model.config = replace(config, output="features")
    record = read_record(entry) or EntryRecord()
    if record.source_dir_rel:
        model.tf_source = entry / "source" / record.source_dir_rel
    conv = record.conversions.get(purpose)
    target = entry / f"{purpose}.tflite"
    if conv is None or (conv.ok and not _size_matches(target, conv.size)):
        with locks.lock(entry.name):
            record = read_record(entry) or EntryRecord()
            conv = record.conversions.get(purpose)
            if conv is None or (conv.ok and not _size_matches(target, conv.size)):
                if conv is not None:
                    ui.info(f"the cached conversion {target.name} of {model.ref} is damaged; converting again")
                conv = convert(model, target)
                if conv.ok or record_failure:
                    record.conversions[purpose] = conv
                    write_record(entry, record)
    if conv.ok:
        model.tflite = target
    else:
        model.notes.append(
            f"warning: running {model.ref} in TensorFlow (slower): its .tflite conversion failed "
            f"({conv.error}); " + Call("remove_models", model.ref) + " retries it"
        )
    if conv.input_size and model.config.input_size is None:
        h, w = conv.input_size
        model.config = replace(model.config, input_size=(h, w))
    return model


def _size_matches(path: Path, size: int | None) -> bool:
    try:
        return size is None or path.stat().st_size == size
    except OSError:
        return False


def convert(model: Recipe, target: Path) -> Conversion:
    """Convert and check; the conversion record (ok, size, max_diff, error)."""
    import importlib.util

    from imgtool.runtime import tfutil

    config = model.config
    if importlib.util.find_spec("tensorflow") is None:  # e.g. .venv-beam: say so, record no failed conversion
        raise ModelError(
            f"{model.ref} needs a one-time conversion to .tflite, which needs TensorFlow, and this "
            "Python has none; run " + Call("download_model", model.ref) + " with the main install "
            "(same IMGTOOL_HOME) first",
            model=model.ref,
        )
    assert model.tf_source is not None
    ui.info(f"Converting {config.name} to .tflite once (TensorFlow is loading; later runs skip this)")
    size = config.input_size
    store.clean_stale(target.parent, f".{target.name}.")  # a killed conversion's half-written file
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    record = Conversion(ok=False, converted=time.time())
    try:
        if size is None and config.format == "savedmodel":
            size = tfutil.savedmodel_input_size(model.tf_source)
            if size is None:
                size = (224, 224)
                ui.warn(
                    f"{model.ref}: input size unknown, assuming 224x224 (pass " + Param("input_size") + " to change)"
                )
        assert size is not None
        record.input_size = list(size)
        with ui.native_output_filtered(), store.scratch_dir():
            if config.format == "graphdef":
                assert model.graph_tensors is not None
                reference = tfutil.convert_graphdef(model.tf_source, model.graph_tensors, size, tmp)
            else:
                reference = tfutil.convert_savedmodel(model.tf_source, size, tmp)
            check = verify(reference, tmp, size, config.value_range)
        record.max_diff = check.max_diff
        if not check.within():
            raise ModelError(f"the .tflite disagrees with TensorFlow on a probe image (max diff {check.max_diff:.3g})")
        record.ok, record.size = True, tmp.stat().st_size
        os.replace(tmp, target)
    except ImgtoolError as err:
        record.error = str(err)
    except Exception as err:
        if store.is_storage_error(err, target.parent):
            raise  # a full disk is not a failed conversion: say so, record nothing
        record.error = first_line(err)
    finally:
        tmp.unlink(missing_ok=True)
    return record
