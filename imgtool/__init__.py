"""imgtool: classify photos with pretrained networks, retrain the last layer on your own.

    import imgtool
    for r in imgtool.classify(["photo.jpg", "photos/"], model="mobilenet_v2_quant", top_k=3):
        print(r.path, r.predictions or r.error)

`imgtool.classify` loads the model for one call; `imgtool.load_model` keeps it loaded.

`import imgtool` is instant: the names below are imported on first use (no TensorFlow,
LiteRT, numpy or Pillow until a model is loaded). The library prints nothing: messages go
to the `imgtool` logger, progress to the `progress=` callbacks.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from imgtool.core.version import __version__

logging.getLogger("imgtool").addHandler(logging.NullHandler())

# public name -> the module that defines it
_LAZY = {
    "classify": "imgtool.api",
    "load_model": "imgtool.api",
    "Model": "imgtool.api",
    "ModelInfo": "imgtool.api_store",
    "list_models": "imgtool.api_store",
    "retrain": "imgtool.api_training",
    "evaluate": "imgtool.api_training",
    "download_model": "imgtool.api_store",
    "model_path": "imgtool.api_store",
    "remove_models": "imgtool.api_store",
    "Removed": "imgtool.api_store",
    "export_model": "imgtool.api_training",
    "list_caches": "imgtool.api_store",
    "audit": "imgtool.api_training",
    "AuditResult": "imgtool.numbers.findings",
    "CacheInfo": "imgtool.models.caches",
    "ExportResult": "imgtool.training.tflite_model",
    "Result": "imgtool.inference.classifier",
    "Prediction": "imgtool.inference.classifier",
    "RetrainResult": "imgtool.training.retraining",
    "Evaluation": "imgtool.training.evaluation",
    "ProgressCallback": "imgtool.core.ui",
    "ImgtoolError": "imgtool.core.errors",
    "UsageError": "imgtool.core.errors",
    "ModelError": "imgtool.core.errors",
    "ModelNotFoundError": "imgtool.core.errors",
    "DownloadError": "imgtool.core.errors",
    "ImageError": "imgtool.core.errors",
    "DatasetError": "imgtool.core.errors",
    "StorageError": "imgtool.core.errors",
    "SettingError": "imgtool.core.errors",
}

__all__ = [
    "AuditResult",
    "CacheInfo",
    "DatasetError",
    "DownloadError",
    "Evaluation",
    "ExportResult",
    "ImageError",
    "ImgtoolError",
    "Model",
    "ModelError",
    "ModelInfo",
    "ModelNotFoundError",
    "Prediction",
    "ProgressCallback",
    "Removed",
    "Result",
    "RetrainResult",
    "SettingError",
    "StorageError",
    "UsageError",
    "__version__",
    "audit",
    "classify",
    "download_model",
    "evaluate",
    "export_model",
    "list_caches",
    "list_models",
    "load_model",
    "model_path",
    "remove_models",
    "retrain",
]
assert set(__all__) == set(_LAZY) | {"__version__"}

if TYPE_CHECKING:
    from imgtool.api import Model, classify, load_model
    from imgtool.api_store import (
        ModelInfo,
        Removed,
        download_model,
        list_caches,
        list_models,
        model_path,
        remove_models,
    )
    from imgtool.api_training import audit, evaluate, export_model, retrain
    from imgtool.core.errors import (
        DatasetError,
        DownloadError,
        ImageError,
        ImgtoolError,
        ModelError,
        ModelNotFoundError,
        SettingError,
        StorageError,
        UsageError,
    )
    from imgtool.core.ui import ProgressCallback
    from imgtool.inference.classifier import Prediction, Result
    from imgtool.models.caches import CacheInfo
    from imgtool.numbers.findings import AuditResult
    from imgtool.training.evaluation import Evaluation
    from imgtool.training.retraining import RetrainResult
    from imgtool.training.tflite_model import ExportResult


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'imgtool' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
