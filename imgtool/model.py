"""The model value type: what to run, how to feed it, and its labels.

A Model only builds engines from files it already has: no network, no conversion. When
a cached .tflite no longer loads, the resolver's `repair` hook (imgtool.resolve) fetches
or converts it again; a user's own file is never repaired.

Layer: above engine, catalog, errors; below convert, entries, retrained, resolve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from imgtool.catalog import ModelConfig, ModelFormat
from imgtool.engine import Engine, HeadEngine, LiteRTEngine, TFEngine
from imgtool.errors import ModelError

Purpose = Literal["classify", "features", "labels"]
"""What a model is resolved for: classifying, feature vectors (retraining), or only its labels."""

__all__ = ["Model", "ModelFormat", "Purpose"]


@dataclass
class Model:
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
    backbone: Model | None = None
    notes: list[str] = field(default_factory=list)
    # called when the cached .tflite (self.entry is set) no longer loads: makes it loadable
    # again (True) or gives up on it (False: self.tflite is None, run in TF); set by the resolver
    repair: Callable[[Model], bool] | None = field(default=None, repr=False, compare=False)

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self.config.input_size

    def engine(self) -> Engine:
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
            raise ModelError(f"{self.ref}: cannot tell the input size; pass `input_size` HEIGHT,WIDTH")
        return TFEngine(self.tf_source, self.input_size, self.config.value_range, self.graph_tensors)
