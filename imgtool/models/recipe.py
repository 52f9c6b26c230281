"""The model value type: what to run, how to feed it, and its labels.

A Model only builds engines from files it already has: no network, no conversion. When
a cached .tflite no longer loads, the resolver's `repair` hook (imgtool.models.resolve) fetches
or converts it again; a user's own file is never repaired.

Layer: above engine, catalog, errors; below convert, entries, retrained, resolve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from imgtool.core.errors import ModelError, Param, Text, UsageError
from imgtool.models.catalog import ModelConfig
from imgtool.runtime.engine import Engine, HeadEngine, LiteRTEngine, TFEngine

Purpose = Literal["classify", "features", "labels"]
"""What a model is resolved for: classifying, feature vectors (retraining), or only its labels."""

__all__ = ["Purpose", "Recipe"]


@dataclass
class Recipe:
    """A resolved model: what to run, how to feed it, and its labels."""

    ref: str
    config: ModelConfig
    labels: list[str] | None = None
    labels_file: str | None = None  # set when the labels came from --labels FILE
    tflite: Path | None = None
    tf_source: Path | None = None
    graph_tensors: tuple[str, str] | None = None
    entry: Path | None = None
    head: Path | None = None
    backbone: Recipe | None = None
    notes: list[str] = field(default_factory=list)
    # what the caller said of the model (`input_size`, `value_range`): checked against what the
    # model itself says once its engine is made (a .tflite fixes both for quantized inputs)
    given: dict[str, Any] = field(default_factory=dict)
    # called when the cached .tflite (self.entry is set) no longer loads: makes it loadable
    # again (True) or gives up on it (False: self.tflite is None, run in TF); set by the resolver
    repair: Callable[[Recipe], bool] | None = field(default=None, repr=False, compare=False)

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self.config.input_size

    def engine(self) -> Engine:
        engine = self._engine()
        lite = engine.backbone if isinstance(engine, HeadEngine) else engine
        if isinstance(lite, LiteRTEngine):
            problem = given_mismatch(lite, self.given, self.ref)
            if problem is not None:
                raise UsageError(problem, model=self.ref)
        return engine

    def _engine(self) -> Engine:
        if self.head is not None:
            assert self.backbone is not None
            with np.load(self.head, allow_pickle=False) as npz:
                w, b = npz["weights"], npz["bias"]
            return HeadEngine(self.backbone.engine(), w, b)
        if self.tflite is not None:
            try:
                return LiteRTEngine(self.tflite, self.config.value_range)
            except ModelError:
                if self.entry is None or self.repair is None:
                    raise  # the user's own file: nothing of ours to repair
                if self.repair(self):
                    assert self.tflite is not None
                    return LiteRTEngine(self.tflite, self.config.value_range)
        if self.tf_source is None:
            raise ModelError(f"{self.ref}: nothing runnable was found")
        if self.input_size is None:
            raise ModelError(
                f"{self.ref}: cannot tell the input size; pass " + Param("input_size") + " HEIGHT,WIDTH", model=self.ref
            )
        return TFEngine(self.tf_source, self.input_size, self.config.value_range, self.graph_tensors)


def given_mismatch(engine: LiteRTEngine, given: dict[str, Any], ref: str) -> Text | None:
    """Why the caller's `input_size` / `value_range` cannot apply to this .tflite, or None.
    Its input size is fixed; a quantized (uint8/int8) input already says which real values
    the pixels 0..255 stand for, so a different range would feed it garbage. A value that
    agrees with the model (within one quantization step) is fine."""
    size = given.get("input_size")
    if size is not None and tuple(size) != tuple(engine.input_size):
        h, w = engine.input_size
        return (
            Param("input_size") + f" {size[0]},{size[1]} does not apply to {ref}: a .tflite has a fixed input "
            f"size, here {h},{w}; leave " + Param("input_size") + " out"
        )
    vr = given.get("value_range")
    implied = engine.quantized_input_range()
    if vr is None or not engine.quantized:
        return None
    if implied is None:
        return (
            Param("value_range") + f" {vr[0]:g},{vr[1]:g} does not apply to {ref}: its input is raw uint8 "
            "pixels (0..255 as they are); leave " + Param("value_range") + " out"
        )
    step = engine.input_scale() + 1e-6
    if abs(vr[0] - implied[0]) <= step and abs(vr[1] - implied[1]) <= step:
        return None
    return (
        Param("value_range") + f" {vr[0]:g},{vr[1]:g} does not apply to {ref}: its input is quantized "
        f"({engine.input_dtype}: pixel values 0..255 already stand for {implied[0]:g}..{implied[1]:g}); "
        "leave " + Param("value_range") + " out"
    )
