"""Scores come from the model: the output kind is decided once, from the model (record,
TFLite metadata, graph), never from the numbers a batch happens to produce."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from imgtool.numbers.scores import (
    Decision,
    OutputFacts,
    decide_output_kind,
    is_pooled,
    is_softmax_quantization,
    metadata_kind,
    softmax,
    to_scores,
)
from tests.support import scoremodels as sm

# ------------------------------------------------------------------ the decision, pure

SOFTMAX_U8 = OutputFacts(width=1001, shape=(1, 1001), dtype="uint8", quantization=(0.00390625, 0), producer="SOFTMAX")
LOGITS_F32 = OutputFacts(width=1001, shape=(1, 1001), dtype="float32", producer="FULLY_CONNECTED")
POOLED = OutputFacts(
    width=1024, shape=(1, 1, 1, 1024), dtype="uint8", quantization=(0.0235, 0), producer="AVERAGE_POOL_2D"
)


def test_override_wins_over_record_metadata_and_graph() -> None:
    facts = dataclasses.replace(SOFTMAX_U8, metadata="probability: Probabilities of the labels respectively.")
    assert decide_output_kind("probabilities", facts, "logits") == Decision("logits", "`scores` logits")
    assert decide_output_kind("logits", LOGITS_F32, "probabilities") == Decision(
        "probabilities", "`scores` probabilities"
    )
    # the override even turns a feature extractor's record into a classifier (a model that lies)
    assert decide_output_kind("features", POOLED, "logits", has_labels=False).kind == "logits"
    # auto (and None) decide from the model
    assert decide_output_kind(None, facts, "auto").kind == "probabilities"
    assert decide_output_kind(None, LOGITS_F32, None).kind == "logits"


def test_bad_override_or_record_is_refused() -> None:
    """Each message lists the choices (mutmut: `', '.join` -> `'XX, XX'.join` survived a match
    on the bad value alone)."""
    with pytest.raises(ValueError, match=r"^override must be one of auto, probabilities, logits, not 'features'$"):
        decide_output_kind(None, LOGITS_F32, "features")
    with pytest.raises(ValueError, match=r"^output must be one of logits, probabilities, features, not 'softmax'$"):
        decide_output_kind("softmax", LOGITS_F32)


def test_record_wins_over_metadata_and_graph() -> None:
    facts = dataclasses.replace(SOFTMAX_U8, metadata="probability")
    assert decide_output_kind("logits", facts) == Decision("logits", "the model's record says so")
    assert decide_output_kind("probabilities", LOGITS_F32) == Decision("probabilities", "the model's record says so")
    assert decide_output_kind("features", SOFTMAX_U8, has_labels=True).kind == "features"


def test_metadata_wins_over_graph() -> None:
    said = dataclasses.replace(LOGITS_F32, metadata="probability: Probabilities of the 1001 labels respectively.")
    d = decide_output_kind(None, said)
    assert d.kind == "probabilities" and "TFLite metadata" in d.reason and "Probabilities of the 1001" in d.reason
    assert decide_output_kind(None, dataclasses.replace(SOFTMAX_U8, metadata="logits: raw scores")).kind == "logits"
    # metadata that says nothing about the kind leaves it to the graph
    assert (
        decide_output_kind(None, dataclasses.replace(SOFTMAX_U8, metadata="output: the result")).kind == "probabilities"
    )
    assert decide_output_kind(None, dataclasses.replace(LOGITS_F32, metadata="output: the result")).kind == "logits"


@pytest.mark.parametrize(
    "text, kind",
    [
        ("probability: Probabilities of the labels respectively.", "probabilities"),
        ("PROBABILITIES", "probabilities"),
        ("logits: unnormalized log probabilities", "logits"),  # "logit" is checked first
        ("feature: the embedding", "features"),
        ("Feature vector", "features"),  # "feature" alone (mutmut: "feature" -> "FEATURE" survived the line above)
        ("embedding", "features"),
        ("output", None),
        ("", None),
        (None, None),
    ],
)
def test_metadata_kind(text: str | None, kind: str | None) -> None:
    assert metadata_kind(text) == kind


@pytest.mark.parametrize(
    "producer, kind",
    [
        ("SOFTMAX", "probabilities"),
        ("LOGISTIC", "probabilities"),
        ("LOG_SOFTMAX", "logits"),
        ("FULLY_CONNECTED", "logits"),
        ("ADD", "logits"),
        (None, "logits"),
    ],
)
def test_graph_last_op(producer: str | None, kind: str) -> None:
    facts = dataclasses.replace(LOGITS_F32, producer=producer)
    d = decide_output_kind(None, facts)
    assert d.kind == kind
    # the whole reason (mutmut: 'unknown' -> 'XXunknownXX' survived a substring check)
    assert d.reason == (
        f"the graph's last op is {producer}"
        if kind == "probabilities"
        else f"the graph's last op is {producer or 'unknown'}, not a softmax"
    )


@pytest.mark.parametrize(
    "dtype, quant, expected",
    [
        ("uint8", (0.00390625, 0), True),
        ("int8", (0.00390625, -128), True),
        ("uint8", (0.00390625, -128), False),
        ("int8", (0.00390625, 0), False),
        ("uint8", (0.00390625, 1), False),
        ("int8", (0.00390625, -127), False),
        ("uint8", (0.0078125, 0), False),  # 1/128
        ("uint8", (0.00392156862745098, 0), False),  # 1/255: close, but not TFLite's softmax scale
        ("uint8", (0.0039, 0), False),
        ("int16", (0.00390625, 0), False),
        ("float32", (0.00390625, 0), False),
        ("uint8", None, False),
    ],
)
def test_softmax_quantization_is_exact(dtype: str, quant: tuple[float, int] | None, expected: bool) -> None:
    assert is_softmax_quantization(dtype, quant) is expected


def test_quantized_softmax_inside_a_custom_op_is_probabilities() -> None:
    """An Edge TPU model is one custom op: only the output quantization tells."""
    edgetpu = dataclasses.replace(SOFTMAX_U8, producer="CUSTOM:edgetpu-custom-op")
    d = decide_output_kind(None, edgetpu)
    assert d == Decision("probabilities", "uint8 output quantized as a softmax (scale 1/256, zero point 0)")
    int8 = dataclasses.replace(edgetpu, dtype="int8", quantization=(0.00390625, -128))
    assert decide_output_kind(None, int8).reason == "int8 output quantized as a softmax (scale 1/256, zero point -128)"
    assert decide_output_kind(None, dataclasses.replace(edgetpu, quantization=(0.1, 0))).kind == "logits"


def test_pooled_output_without_labels_is_a_feature_extractor() -> None:
    """Also kills (mutmut, issue 21): `decide_output_kind(..., has_labels=True)` default made
    False, and the "(no softmax)" of an output whose producer is unknown replaced."""
    assert decide_output_kind(None, POOLED, has_labels=False) == Decision(
        "features", "a pooled 1x1x1x1024 output (AVERAGE_POOL_2D) and no labels"
    )
    # with labels, a pooled output is a classifier's logits (SqueezeNet ends in a pool); a
    # caller that says nothing about labels gets that too (mutmut: default has_labels=False)
    assert decide_output_kind(None, POOLED, has_labels=True).kind == "logits"
    assert decide_output_kind(None, POOLED).kind == "logits"
    flat = OutputFacts(width=1280, shape=(1, 1280), producer="MEAN")
    assert decide_output_kind(None, flat, has_labels=False).kind == "features"
    unnamed = OutputFacts(width=16, shape=(1, 1, 1, 16), producer=None)  # mutmut: "no softmax" replaced
    assert (
        decide_output_kind(None, unnamed, has_labels=False).reason
        == "a pooled 1x1x1x16 output (no softmax) and no labels"
    )
    # [1,N] from a dense layer is a classifier's logits, labels or not (shown as `class N`)
    assert decide_output_kind(None, LOGITS_F32, has_labels=False).kind == "logits"
    # a softmax is a classifier whatever its shape
    reshaped = OutputFacts(width=1001, shape=(1, 1, 1, 1001), producer="SOFTMAX")
    assert decide_output_kind(None, reshaped, has_labels=False).kind == "probabilities"
    # a feature map that is not pooled is not taken for a feature vector
    assert not is_pooled(OutputFacts(width=7 * 7 * 8, shape=(1, 7, 7, 8), producer="CONV_2D"))
    assert is_pooled(OutputFacts(width=8, shape=(1, 1, 1, 8), producer=None))
    assert is_pooled(OutputFacts(width=8, shape=(1, 8), producer="MAX_POOL_2D"))


def test_no_facts_is_logits() -> None:
    assert decide_output_kind(None, None) == Decision("logits", "nothing in the model says otherwise")


def test_softmax_values() -> None:
    np.testing.assert_allclose(softmax(np.array([[0.0, np.log(3.0)]])), [[0.25, 0.75]], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(softmax(np.array([[1000.0, 1000.0]])), [[0.5, 0.5]])  # no overflow
    rows = np.array([[1.0, 2.0, 3.0], [30.0, 10.0, 10.0]])
    out = softmax(rows)
    np.testing.assert_allclose(out[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(), rtol=1e-12)
    np.testing.assert_array_equal(out[1], softmax(rows[1:])[0])  # each row on its own


def test_softmax_shifts_each_row_by_its_own_max_over_the_last_axis() -> None:
    """Mutants this kills (mutmut, issue 21): the shift `logits.max(axis=-1, ...)` made
    `axis=None` or dropped (one max for the whole batch: a row far below the batch's largest
    logit underflows to 0/0), and `axis=-1` made `axis=+1` in the max or in the sum (the same
    on a 2-D batch; wrong on one row, and on an output with more axes)."""
    third = 1 / (1 + np.e)  # softmax([a, a - 1]) = [1 - third, third] for any a
    out = softmax(np.array([[1000.0, 999.0], [0.0, -1.0]]))
    np.testing.assert_allclose(out, [[1 - third, third]] * 2, rtol=1e-12)
    np.testing.assert_allclose(softmax(np.array([0.0, np.log(3.0)])), [0.25, 0.75], rtol=1e-12)  # one row
    deep = softmax(np.array([[[0.0, np.log(3.0)]], [[np.log(3.0), 0.0]]]))  # (2, 1, 2)
    np.testing.assert_allclose(deep, [[[0.25, 0.75]], [[0.75, 0.25]]], rtol=1e-12)


def test_to_scores_never_renormalizes_probabilities() -> None:
    """Also kills (mutmut, issue 21): `to_scores`'s `astype(np.float32)` -> `astype(None)`
    (float64 scores) and its error message replaced."""
    probs = np.array([[0.5, 0.1, 0.0]], np.float32)  # a quantized softmax summing to 0.6
    out = to_scores(probs, "probabilities")
    np.testing.assert_array_equal(out, probs)
    np.testing.assert_allclose(to_scores(np.array([[0.0, np.log(3.0)]]), "logits"), [[0.25, 0.75]], atol=1e-7)
    # logits become float32 scores whatever their dtype (mutmut: `astype(np.float32)` -> `astype(None)`)
    assert to_scores(np.array([[0.0, 1.0]]), "logits").dtype == np.float32
    with pytest.raises(ValueError, match=r"^a feature extractor has no scores$"):
        to_scores(probs, "features")


def test_softmax_lives_in_scores_only() -> None:
    from imgtool.runtime import engine

    assert not hasattr(engine, "softmax") and not hasattr(engine, "looks_like_probabilities")


# ------------------------------------------------------------ generated .tflite models


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every kind in tests/support/scoremodels.py, built once per session (~15 s of TensorFlow).

    With IMGTOOL_TEST_MODEL_CACHE set to a folder (the mutation run: every mutant is a new
    pytest session), they are built once into it, keyed by scoremodels.py's bytes and the
    TensorFlow version, and read back by every later session without importing TensorFlow.
    The models are TensorFlow's work alone (no imgtool code builds them)."""
    cache = os.environ.get("IMGTOOL_TEST_MODEL_CACHE")
    if not cache:
        folder = tmp_path_factory.mktemp("score-models")
        return {kind: sm.build(kind, folder / f"{kind}.tflite") for kind in sm.KINDS}
    key = hashlib.sha256(Path(sm.__file__).read_bytes() + importlib.metadata.version("tensorflow").encode())
    folder = Path(cache) / f"score-models-{key.hexdigest()[:16]}"
    if not folder.is_dir():
        Path(cache).mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(dir=cache, prefix=".score-models-"))
        for kind in sm.KINDS:
            sm.build(kind, building / f"{kind}.tflite")
        try:
            building.rename(folder)  # whole or not at all
        except OSError:  # another session finished first: its copy is the same
            shutil.rmtree(building)
    return {kind: folder / f"{kind}.tflite" for kind in sm.KINDS}


LEVELS = (156, 166, 184, 204, 230, 255)  # red levels: class-1 probability 0.60 .. 0.99


def _facts(path: Path) -> OutputFacts:
    from imgtool.runtime.engine import LiteRTEngine

    return LiteRTEngine(path).output_facts()


@pytest.mark.parametrize(
    "kind, producer, dtype, quant, shape, decided",
    [
        ("float_logits", "FULLY_CONNECTED", "float32", None, (1, 1001), "logits"),
        ("float_softmax", "SOFTMAX", "float32", None, (1, 1001), "probabilities"),
        ("float_softmax_reshaped", "SOFTMAX", "float32", None, (1, 1, 1, 1001), "probabilities"),
        ("float_sigmoid", "LOGISTIC", "float32", None, (1, 1001), "probabilities"),
        ("float_log_softmax", "LOG_SOFTMAX", "float32", None, (1, 1001), "logits"),
        ("uint8_softmax", "SOFTMAX", "uint8", (0.00390625, 0), (1, 1001), "probabilities"),
        ("int8_softmax", "SOFTMAX", "int8", (0.00390625, -128), (1, 1001), "probabilities"),
        ("uint8_logits", "FULLY_CONNECTED", "uint8", (12 / 255, 0), (1, 1001), "logits"),
        ("float_io_int8_softmax", "SOFTMAX", "float32", None, (1, 1001), "probabilities"),  # through DEQUANTIZE
        ("float_pooled_features", "AVERAGE_POOL_2D", "float32", None, (1, 1, 1, 16), "features"),
        ("float_flat_features", "MEAN", "float32", None, (1, 16), "features"),
    ],
)
def test_facts_and_decision_of_real_tflite_files(
    models: dict[str, Path],
    kind: str,
    producer: str,
    dtype: str,
    quant: tuple[float, int] | None,
    shape: tuple[int, ...],
    decided: str,
) -> None:
    facts = _facts(models[kind])
    assert facts.producer == producer
    assert facts.dtype == dtype
    assert facts.shape == shape
    assert facts.width == int(np.prod(shape[1:]))
    if quant is None:
        assert facts.quantization is None
    else:
        assert facts.quantization is not None
        assert facts.quantization[1] == quant[1]
        assert facts.quantization[0] == pytest.approx(quant[0], rel=1e-6)
    assert facts.metadata is None
    assert decide_output_kind(None, facts, has_labels=False).kind == decided


def test_the_last_op_is_read_from_the_file_not_the_delegated_nodes(models: dict[str, Path]) -> None:
    """XNNPACK adds a DELEGATE node writing the same output tensor as the SOFTMAX it took over."""
    from ai_edge_litert.interpreter import Interpreter

    from imgtool.tflite import reading

    it = Interpreter(model_path=str(models["float_softmax"]))
    it.allocate_tensors()
    out = int(it.get_output_details()[0]["index"])
    writers = [d["op_name"] for d in it._get_ops_details() if out in list(d["outputs"])]
    assert "DELEGATE" in writers
    assert reading.output_producer(models["float_softmax"], out) == "SOFTMAX"
    assert reading.output_metadata(models["float_softmax"], 0) is None  # no TFLITE_METADATA


def _raw_dequantized(path: Path, pixels: np.ndarray) -> np.ndarray:
    """The model's own output for one image, straight from LiteRT (no imgtool code)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x = pixels[None].astype(np.int16)
    x = (x - 128).astype(np.int8) if inp["dtype"] == np.int8 else x.astype(np.uint8)  # uint8 image -> int8: -128
    it.set_tensor(inp["index"], x)
    it.invoke()
    scale, zero = out["quantization"]
    return (it.get_tensor(out["index"]).astype(np.float32) - zero) * np.float32(scale)


def _classifier(path: Path, **kw):  # noqa: ANN202
    from imgtool.inference.classifier import Classifier
    from imgtool.models.resolve import resolve

    return Classifier(resolve(str(path)), **kw)


@pytest.mark.parametrize("kind", ["uint8_softmax", "int8_softmax"])
def test_quantized_softmax_scores_are_the_models_own(models: dict[str, Path], kind: str) -> None:
    """Sums from 0.6 to 1.0: each score is the model's dequantized output, alone or not."""
    clf = _classifier(models[kind])
    assert clf.decision.kind == "probabilities" and clf.decision.reason == "the graph's last op is SOFTMAX"
    batch = np.stack([sm.red_image(level) for level in LEVELS])
    scores = clf.scores(batch)
    sums = scores.sum(axis=1)
    assert sums.min() < 0.62 and sums.max() > 0.99  # the range that fooled the sum-based guess
    for i, level in enumerate(LEVELS):
        raw = _raw_dequantized(models[kind], batch[i])[0]
        np.testing.assert_array_equal(scores[i], raw)  # exactly: no softmax on top, no renormalizing
        np.testing.assert_array_equal(clf.scores(batch[i : i + 1])[0], raw)  # alone
        assert scores[i, 1] == pytest.approx(sm.class1_probability(level / 255), abs=1.5 / 256)
        assert scores[i, 1] * 256 == round(scores[i, 1] * 256)  # steps of 1/256
    # the lowest-sum photo first in the batch changes nothing for the others
    np.testing.assert_array_equal(clf.scores(batch[::-1])[::-1], scores)


def test_uint8_and_int8_softmax_models_agree(models: dict[str, Path]) -> None:
    batch = np.stack([sm.red_image(level) for level in LEVELS])
    u8 = _classifier(models["uint8_softmax"]).scores(batch)
    i8 = _classifier(models["int8_softmax"]).scores(batch)
    np.testing.assert_array_equal(u8, i8)


@pytest.mark.parametrize(
    "kind, tolerance",
    [
        ("float_softmax", 1e-5),
        ("float_softmax_reshaped", 1e-5),
        ("float_logits", 1e-5),
        ("float_log_softmax", 1e-5),
        ("uint8_logits", 1e-5),  # logits 12 * level / 255 fall exactly on its quantization steps
        ("float_io_int8_softmax", 1.5 / 256),  # an int8 softmax inside, dequantized at the output
    ],
)
def test_float_and_logit_models_give_the_true_probability(models: dict[str, Path], kind: str, tolerance: float) -> None:
    clf = _classifier(models[kind])
    batch = np.stack([sm.red_image(level) for level in LEVELS])
    scores = clf.scores(batch)
    for i, level in enumerate(LEVELS):
        assert scores[i, 1] == pytest.approx(sm.class1_probability(level / 255), abs=tolerance)
        if tolerance < 1e-3:
            assert scores[i].sum() == pytest.approx(1.0, abs=1e-5)


def test_float_model_scores_do_not_depend_on_the_batch(models: dict[str, Path], tmp_path: Path) -> None:
    """A dynamic-batch model runs whole batches: any batch size, the same scores (1e-6)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(11):
        Image.fromarray(rng.integers(0, 256, (sm.SIZE, sm.SIZE, 3), dtype=np.uint8)).save(tmp_path / f"{i:02}.png")
    for kind in ("float_logits", "float_softmax"):
        clf = _classifier(models[kind])
        runs = {}
        for bs in (1, 3, 8):
            runs[bs] = {
                r.path: [(p.index, p.score) for p in r.predictions or []]
                for r in clf.classify([str(tmp_path)], top_k=5, batch_size=bs)
            }
        alone = {
            str(p): [(q.index, q.score) for q in next(iter(clf.classify([str(p)], top_k=5))).predictions or []]
            for p in sorted(tmp_path.iterdir())
        }
        for bs, got in runs.items():
            assert got.keys() == alone.keys()
            for path, preds in got.items():
                assert [i for i, _ in preds] == [i for i, _ in alone[path]], (kind, bs, path)
                np.testing.assert_allclose([s for _, s in preds], [s for _, s in alone[path]], atol=1e-6)


def test_catalog_record_overrides_the_graph(models: dict[str, Path]) -> None:
    from imgtool.inference.classifier import Classifier
    from imgtool.models.resolve import resolve

    model = resolve(str(models["float_softmax"]))
    model.config = dataclasses.replace(model.config, output="logits")  # a record that says logits
    clf = Classifier(model)
    assert clf.decision == Decision("logits", "the model's record says so")
    probs = _classifier(models["float_softmax"]).scores(sm.red_image(255)[None])
    np.testing.assert_allclose(clf.scores(sm.red_image(255)[None]), softmax(probs), rtol=1e-6)


def test_scores_override_reads_logits_as_given(models: dict[str, Path]) -> None:
    clf = _classifier(models["float_logits"], scores="probabilities")
    assert clf.decision == Decision("probabilities", "`scores` probabilities")
    out = clf.scores(sm.red_image(255)[None])
    assert out[0, 1] == pytest.approx(12.0, abs=1e-5)  # the raw logit, no softmax


def test_feature_extractor_built_from_the_graph_is_refused(models: dict[str, Path]) -> None:
    from imgtool.core.errors import UsageError

    for kind in ("float_pooled_features", "float_flat_features"):
        with pytest.raises(UsageError, match=r"is a feature extractor \(16-wide feature vectors\), not a classifier"):
            _classifier(models[kind])


def test_is_feature_extractor_follows_the_rule_classify_uses(models: dict[str, Path]) -> None:
    """Mutants this kills (mutmut, issue 21): every change to `classifier.is_feature_extractor`
    (27) and to `feature_extractor_message` survived the selected tests: only `imgtool labels`
    in a subprocess (tests/test_mistakes.py) asked it. Labels, a record that says the output
    is not features, and a TF model not yet converted each answer None before the graph.
    Equivalent survivors: the override "auto" -> None or dropped, has_labels False -> None."""
    from imgtool.inference.classifier import feature_extractor_message, is_feature_extractor
    from imgtool.models.resolve import resolve

    pooled = resolve(str(models["float_pooled_features"]))
    assert is_feature_extractor(pooled) == 16
    assert is_feature_extractor(resolve(str(models["float_flat_features"]))) == 16
    assert is_feature_extractor(resolve(str(models["float_logits"]))) is None  # [1, N] from a dense layer
    assert is_feature_extractor(resolve(str(models["uint8_softmax"]))) is None
    assert is_feature_extractor(dataclasses.replace(pooled, labels=[f"c{i}" for i in range(16)])) is None
    said = dataclasses.replace(pooled, config=dataclasses.replace(pooled.config, output="logits"))
    assert is_feature_extractor(said) is None
    records = dataclasses.replace(pooled, config=dataclasses.replace(pooled.config, output="features"))
    assert is_feature_extractor(records) == 16
    logits = resolve(str(models["float_logits"]))  # the record wins over the graph
    assert (
        is_feature_extractor(dataclasses.replace(logits, config=dataclasses.replace(logits.config, output="features")))
        == 1001
    )
    assert is_feature_extractor(dataclasses.replace(pooled, tflite=None, head=None)) is None
    assert feature_extractor_message("m.tflite", 16) == (
        "m.tflite is a feature extractor (16-wide feature vectors), not a classifier; train a classifier "
        "on it (it is a backbone to retrain), or pick a classifier from the catalog"
    )


def test_retrained_head_reports_its_width() -> None:
    from imgtool.runtime.engine import HeadEngine

    class Backbone:
        input_size = (4, 4)

    head = HeadEngine(Backbone(), np.zeros((8, 5)), np.zeros(5))  # type: ignore[arg-type]
    facts = head.output_facts()
    assert (facts.width, facts.shape, facts.producer) == (5, (1, 5), "FULLY_CONNECTED")


@pytest.mark.heavy
def test_tf_engine_reads_the_graph_output_op(tmp_path: Path) -> None:
    """A frozen graph run in TensorFlow: the width from the output's shape, the op from the graph."""
    from imgtool.runtime.engine import TFEngine
    from tests.support import modelgen

    pb = tmp_path / "graph.pb"
    pb.write_bytes(modelgen._graph2015_graph_def(16).SerializeToString())
    engine = TFEngine(pb, (16, 16), (-1.0, 0.9921875), ("Mul:0", "softmax:0"))
    facts = engine.output_facts()
    assert (facts.width, facts.producer) == (modelgen.GRAPH2015_SOFTMAX_SIZE, "SOFTMAX")
    assert decide_output_kind(None, facts).kind == "probabilities"
    pool = TFEngine(pb, (16, 16), (-1.0, 0.9921875), ("Mul:0", "pool_3:0")).output_facts()
    assert (pool.width, pool.producer) == (modelgen.GRAPH2015_POOL3_DIM, "AVERAGE_POOL_2D")
    assert decide_output_kind(None, pool, has_labels=False).kind == "features"


@pytest.mark.parametrize(
    "kind, decided, reason",
    [
        ("float_softmax", "probabilities", "the graph's last op is SOFTMAX"),
        ("float_logits", "logits", "the graph's last op is FULLY_CONNECTED, not a softmax"),
    ],
)
@pytest.mark.heavy
def test_a_tf_model_is_judged_by_its_converted_tflite(tmp_path: Path, kind: str, decided: str, reason: str) -> None:
    """A local SavedModel is converted once; the converted file's graph decides."""
    from imgtool.inference.classifier import Classifier
    from imgtool.models.resolve import resolve

    saved = sm.build_savedmodel(kind, tmp_path / kind)
    model = resolve(str(saved))
    assert model.tflite is not None and model.tflite.is_file()  # converted, runs in LiteRT
    clf = Classifier(model)
    assert (clf.decision.kind, clf.decision.reason) == (decided, reason)
    scores = clf.scores(np.stack([sm.red_image(level) for level in LEVELS]))
    for i, level in enumerate(LEVELS):
        assert scores[i, 1] == pytest.approx(sm.class1_probability(level / 255), abs=1e-5)


@pytest.mark.parametrize("kind, taken", [("float_logits", True), ("uint8_softmax", False)])
def test_metadata_normalization_is_taken_for_float_input_only(
    models: dict[str, Path], tmp_path: Path, kind: str, taken: bool
) -> None:
    """NormalizationOptions map pixels for a float input; a quantized input takes raw
    pixels (its quantization is the mapping), as the TFLite Task Library does."""
    from imgtool.models.resolve import resolve
    from imgtool.tflite import reading, schema, writing

    info = writing.ClassifierInfo(
        "m", "1", "d", [f"c{i}" for i in range(1001)], (sm.SIZE, sm.SIZE), schema.normalization_for((-1.0, 1.0))
    )
    path = tmp_path / f"{kind}.tflite"
    path.write_bytes(writing.attach(models[kind].read_bytes(), info))
    want = {"value_range": (-1.0, 1.0)} if taken else {}
    assert reading.file_value_range(path) == want
    assert resolve(str(path)).config.value_range == ((-1.0, 1.0) if taken else None)
