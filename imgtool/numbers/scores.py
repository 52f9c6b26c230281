"""What a model's outputs are — probabilities, logits or feature vectors — decided once,
from the model, never from the numbers it happens to produce; and turning them into the
scores imgtool reports.

The decision, in order (the first that speaks wins):
  1. `--scores probabilities|logits` (for a model that says the wrong thing);
  2. the catalog record, or the record `imgtool retrain` writes (ModelConfig.output);
  3. the TFLite metadata's description of the output tensor;
  4. the graph: a last SOFTMAX (or LOGISTIC), or an integer output quantized the way
     TFLite quantizes a softmax (scale 1/256, zero point 0 for uint8, -128 for int8), is
     probabilities; a pooled output ([1,1,1,N], or computed by a pooling op) on a model
     with no labels is a feature vector; anything else is logits.
Probabilities are reported as the model gives them (dequantized, never renormalized);
logits go through softmax."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from imgtool.core.errors import Param
from imgtool.core.options import SCORE_READINGS

OutputKind = Literal["logits", "probabilities", "features"]  # what a model's outputs are
OUTPUT_KINDS: tuple[OutputKind, ...] = get_args(OutputKind)

# TFLite's quantized SOFTMAX (and LOGISTIC) kernels require exactly these output
# parameters: [0, 255/256] in steps of 1/256.
SOFTMAX_SCALE = 1.0 / 256.0
SOFTMAX_ZERO_POINT = {"uint8": 0, "int8": -128}

PROBABILITY_OPS = frozenset({"SOFTMAX", "LOGISTIC"})
POOLING_OPS = frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "REDUCE_MAX", "L2_POOL_2D"})


@dataclass(frozen=True)
class OutputFacts:
    """What the model itself says about the output it is read from (no data involved)."""

    width: int  # scores per input
    shape: tuple[int, ...] = ()  # the output tensor's shape, batch first
    dtype: str = "float32"  # numpy name: float32, uint8, int8, ...
    quantization: tuple[float, int] | None = None  # (scale, zero point) of an integer output
    producer: str | None = None  # the op computing it (through reshapes / (de)quantize), e.g. SOFTMAX
    metadata: str | None = None  # the TFLite metadata's name and description of the output
    source: str = "model"  # where these facts were read, for explanations


@dataclass(frozen=True)
class Decision:
    kind: OutputKind
    reason: str

    def __str__(self) -> str:
        return f"{self.kind} ({self.reason})"


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed stably (max subtracted first)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def metadata_kind(text: str | None) -> OutputKind | None:
    """What a TFLite metadata name/description says the output is, if it says.

    tflite_support's classifier writer names the output `probability` ("Probabilities of
    the N labels respectively."); an embedder's output is a feature vector or embedding."""
    if not text:
        return None
    t = text.casefold()
    if "logit" in t:
        return "logits"
    if "probabilit" in t:
        return "probabilities"
    if "feature" in t or "embedding" in t:
        return "features"
    return None


def is_softmax_quantization(dtype: str, quantization: tuple[float, int] | None) -> bool:
    """An integer output quantized exactly as TFLite quantizes a softmax."""
    if quantization is None or dtype not in SOFTMAX_ZERO_POINT:
        return False
    scale, zero = quantization
    return abs(float(scale) - SOFTMAX_SCALE) <= 1e-9 and int(zero) == SOFTMAX_ZERO_POINT[dtype]


def is_pooled(facts: OutputFacts) -> bool:
    """A pooled feature map: shape [1,1,1,N] or computed by a pooling op."""
    spatial_ones = len(facts.shape) == 4 and tuple(facts.shape[1:3]) == (1, 1)
    return spatial_ones or (facts.producer in POOLING_OPS)


def decide_output_kind(
    config_output: str | None, facts: OutputFacts | None, override: str | None = None, has_labels: bool = True
) -> Decision:
    """The output kind of a model, and why. Pure: the same model always gets the same answer."""
    if override not in (None, "auto"):
        if override not in ("probabilities", "logits"):
            raise ValueError(f"override must be one of {', '.join(SCORE_READINGS)}, not {override!r}")
        return Decision(override, Param("scores") + f" {override}")  # type: ignore[arg-type]
    if config_output is not None:
        if config_output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {', '.join(OUTPUT_KINDS)}, not {config_output!r}")
        return Decision(config_output, "the model's record says so")
    if facts is None:
        return Decision("logits", "nothing in the model says otherwise")
    said = metadata_kind(facts.metadata)
    if said is not None:
        return Decision(said, f"its TFLite metadata describes the output as {facts.metadata!r}")
    if facts.producer in PROBABILITY_OPS:
        return Decision("probabilities", f"the graph's last op is {facts.producer}")
    if is_softmax_quantization(facts.dtype, facts.quantization):
        assert facts.quantization is not None
        return Decision(
            "probabilities",
            f"{facts.dtype} output quantized as a softmax (scale 1/256, zero point {facts.quantization[1]})",
        )
    if not has_labels and is_pooled(facts):
        shape = "x".join(str(d) for d in facts.shape)
        return Decision("features", f"a pooled {shape} output ({facts.producer or 'no softmax'}) and no labels")
    return Decision("logits", f"the graph's last op is {facts.producer or 'unknown'}, not a softmax")


def to_scores(outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
    """The scores to report for a batch of outputs [N, K]: probabilities as they are,
    logits through softmax. Row by row: no input's scores depend on another's."""
    if kind == "logits":
        return softmax(outputs.astype(np.float32, copy=False))
    if kind == "probabilities":
        return outputs
    raise ValueError("a feature extractor has no scores")
