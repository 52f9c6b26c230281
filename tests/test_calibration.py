"""Calibration (calibration.py): the temperature fit, ECE, the reliability table, the
suggested minimum score, and the head with 1/T folded in."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imgtool.numbers import calibration
from imgtool.numbers.calibration import Bin
from imgtool.numbers.scores import softmax
from imgtool.training import fitting


def _sampled(t_true: float, n: int = 20000, c: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits z and labels drawn from softmax(z / t_true): T = t_true is the calibration."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, c))
    p = softmax(z / t_true)
    y = np.array([rng.choice(c, p=row) for row in p])
    return z, y


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5])
def test_the_fit_recovers_a_known_temperature(t_true: float) -> None:
    z, y = _sampled(t_true)
    t = calibration.fit_temperature(z, y)
    assert t == pytest.approx(t_true, rel=0.05)
    # and it is the minimum of the log-loss, to float precision of the bisection
    assert calibration.nll(z, y, t) < calibration.nll(z, y, t * 1.001)
    assert calibration.nll(z, y, t) < calibration.nll(z, y, t / 1.001)
    assert abs(calibration._slope(z, y, 1 / t)) < 1e-9


def test_the_fit_is_exact_on_a_small_hand_case() -> None:
    # two photos, two classes: logits (+1, -1) right and (+1, -1) wrong (label 1): the
    # NLL of s is log(1 + e^-2s) + log(1 + e^2s), minimal at s = 0, i.e. T at its top end
    z = np.array([[1.0, -1.0], [1.0, -1.0]])
    assert calibration.fit_temperature(z, np.array([0, 1])) == calibration.T_RANGE[1]
    # always right: sharper is always better, T at its bottom end
    assert calibration.fit_temperature(z, np.array([0, 0])) == calibration.T_RANGE[0]
    # 3 right, 1 wrong on logits (+d/2, -d/2) with d = 2: p = sigmoid(2 s) = 3/4 at the optimum
    z4 = np.tile([1.0, -1.0], (4, 1))
    t = calibration.fit_temperature(z4, np.array([0, 0, 0, 1]))
    assert 1 / (1 + math.exp(-2 / t)) == pytest.approx(0.75, abs=1e-12)
    with pytest.raises(ValueError, match="at least one photo"):
        calibration.fit_temperature(np.zeros((0, 2)), np.zeros(0, int))


def test_the_fit_does_not_depend_on_a_shift_of_the_logits() -> None:
    z, y = _sampled(1.7, n=3000, seed=1)
    assert calibration.fit_temperature(z + 100.0, y) == pytest.approx(calibration.fit_temperature(z, y), rel=1e-9)
    assert calibration.scale(z, 2.0) == pytest.approx(softmax(z / 2.0), abs=1e-6)


def test_ece_and_the_reliability_table_by_hand() -> None:
    # top-1 scores 0.95 (right), 0.85 (right), 0.85 (wrong), 0.55 (right), 0.8 exactly (wrong), 1.0 (right)
    probs = np.array([[0.95, 0.05], [0.85, 0.15], [0.15, 0.85], [0.55, 0.45], [0.8, 0.2], [1.0, 0.0]])
    y = np.array([0, 0, 0, 0, 1, 0])
    table = calibration.reliability(probs, y)
    assert len(table) == 10 and table[0] == Bin(0.0, 0.1, 0, None, None)
    assert [b.count for b in table] == [0, 0, 0, 0, 0, 1, 0, 0, 3, 2]  # 0.8 -> [0.8, 0.9); 1.0 -> the last bin
    assert table[8].confidence == pytest.approx((0.85 + 0.85 + 0.8) / 3) and table[8].accuracy == pytest.approx(1 / 3)
    assert table[9].confidence == pytest.approx(0.975) and table[9].accuracy == 1.0
    want = (1 * abs(1 - 0.55) + 3 * abs(1 / 3 - 2.5 / 3) + 2 * abs(1 - 0.975)) / 6
    assert calibration.ece(probs, y) == pytest.approx(want, abs=1e-12)
    assert calibration.ece(probs, y, bins=1) == pytest.approx(abs(4 / 6 - (0.95 + 0.85 * 2 + 0.55 + 0.8 + 1) / 6))
    assert table[8].to_dict() == {"lo": 0.8, "hi": 0.9, "count": 3, "confidence": 0.8333, "accuracy": 0.3333}
    with pytest.raises(ValueError, match="at least one photo"):
        calibration.ece(np.zeros((0, 2)), np.zeros(0, int))
    # a perfectly calibrated table has ECE 0
    assert calibration.ece_of([Bin(0.5, 0.6, 4, 0.5, 0.5), Bin(0.9, 1.0, 1, 1.0, 1.0)]) == 0.0


def test_the_suggested_minimum_score_by_hand() -> None:
    # scores ascending: 0.3 wrong, 0.5 right, 0.6 wrong, 0.7 right x 19 (at 0.7..0.89), 0.95 right
    conf = [0.3, 0.5, 0.6] + [0.7 + 0.01 * i for i in range(19)] + [0.95]
    right = [False, True, False] + [True] * 20
    probs = np.array([[c] + [(1 - c) / 9] * 9 for c in conf])  # class 0 on top of 10, scored c
    y = np.array([0 if r else 1 for r in right])
    s = calibration.suggest_min_score(probs, y)
    # accepting >= 0.5: 21/22 = 95.45% right - the lowest threshold that reaches 95% (>= 0.3 is 21/23)
    assert s.value == 0.5 and s.accepted == pytest.approx(22 / 23) and s.precision == pytest.approx(21 / 22)
    assert s.to_dict()["min_score"] == 0.5 and s.to_dict()["target_precision"] == 0.95
    assert calibration.suggest_min_score(probs, y, target=0.9).value == 0.0  # 21/23 = 91%: everything accepted
    assert calibration.suggest_min_score(probs, y, target=1.0).value == 0.7  # only the all-right tail
    # floored to 4 places, so the photo at the threshold is accepted
    odd = calibration.suggest_min_score(np.array([[0.876543, 0.123457], [0.6, 0.4]]), np.array([0, 1]))
    assert odd.value == 0.8765 and odd.accepted == 0.5 and odd.precision == 1.0
    wrong = calibration.suggest_min_score(np.array([[0.9, 0.1]]), np.array([1]))
    assert wrong.value is None and wrong.accepted == 0.0 and wrong.precision is None
    assert calibration.suggest_min_score(np.zeros((0, 2)), np.zeros(0, int)).value is None


def test_ties_are_accepted_or_refused_together() -> None:
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [0.9, 0.1]])
    s = calibration.suggest_min_score(probs, np.array([0, 1, 0]), target=0.66)
    assert s.value == 0.0 and s.accepted == 1.0  # 2/3 of all: the tie never splits
    s = calibration.suggest_min_score(probs, np.array([0, 1, 0]), target=0.7)
    assert s.value == 0.9 and s.accepted == pytest.approx(1 / 3)


def test_calibrate_describes_before_and_after() -> None:
    z, y = _sampled(0.5, n=4000, seed=2)
    cal = calibration.calibrate(z, y)
    assert cal.temperature == calibration.fit_temperature(z, y) and cal.count == 4000
    assert cal.ece_before == calibration.ece(softmax(z), y) and cal.ece_after == calibration.ece(
        calibration.scale(z, cal.temperature), y
    )
    assert cal.ece_after < 0.02 < cal.ece_before and cal.log_loss_after < cal.log_loss_before
    d = cal.to_dict()
    assert d["temperature"] == round(cal.temperature, 6) and d["ece_after"] == round(cal.ece_after, 4)
    assert d["bins"] == 10 and len(d["reliability_before"]) == 10 and d["count"] == 4000
    assert d["reliability_after"][9] == cal.bins_after[9].to_dict()


def test_the_folded_head_gives_the_calibrated_probabilities() -> None:
    rng = np.random.default_rng(3)
    head = fitting.Head(rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32))
    x = rng.normal(size=(10, 6)).astype(np.float32)
    folded = fitting.calibrated(head, 0.6)
    assert folded.weights.dtype == np.float32 and folded.bias.dtype == np.float32
    assert folded.predict(x) == pytest.approx(calibration.scale(head.logits(x), 0.6), abs=1e-5)
    assert np.array_equal(folded.predict(x).argmax(axis=1), head.predict(x).argmax(axis=1))


def test_the_plain_sentence() -> None:
    bins = [
        {"lo": 0.8, "hi": 0.9, "count": 20, "accuracy": 0.87},
        {"lo": 0.9, "hi": 1.0, "count": 20, "accuracy": 0.99},
        {"lo": 0.5, "hi": 0.6, "count": 3, "accuracy": 0.5},
        {"lo": 0.1, "hi": 0.2, "count": 0, "accuracy": None},
    ]
    assert calibration.plain_sentence(bins) == "of the 20 photos scored 0.9–1.0, 99% were right"
    assert calibration.plain_sentence(bins[:1]) == "of the 20 photos scored 0.8–0.9, 87% were right"
    assert calibration.plain_sentence(bins[3:]) is None


# ---------------------------------------------------------------- exact records and edges


def test_float32_inputs_are_computed_in_float64() -> None:
    z, y = _sampled(0.8, n=500, seed=5)
    z32 = z.astype(np.float32)
    z64 = z32.astype(np.float64)
    assert calibration.fit_temperature(z32, y) == calibration.fit_temperature(z64, y)
    assert calibration.nll(z32, y, 0.7) == calibration.nll(z64, y, 0.7)
    assert np.array_equal(calibration.scale(z32, 0.7), calibration.scale(z64, 0.7))
    assert np.array_equal(calibration.log_softmax(z32), calibration.log_softmax(z64))
    assert calibration.scale(z32, 0.7).dtype == np.float64
    p32 = softmax(z64).astype(np.float32)
    assert calibration.reliability(p32, y) == calibration.reliability(p32.astype(np.float64), y)
    assert calibration.reliability_of(p32.max(axis=1), [1, 0] * 250) == calibration.reliability_of(
        p32.max(axis=1).astype(np.float64), np.array([True, False] * 250)
    )
    assert calibration.suggest_min_score(p32, y) == calibration.suggest_min_score(p32.astype(np.float64), y)


def test_the_temperature_range_ends_exactly() -> None:
    # 3 right and 1 wrong on logits (+a, -a): the optimum has sigmoid(2a / T) = 3/4, T = 2a / ln 3
    for t_star, want in ((75.0, 75.0), (0.0075, calibration.T_RANGE[0]), (150.0, calibration.T_RANGE[1])):
        a = t_star * math.log(3) / 2
        z = np.tile([a, -a], (4, 1))
        assert calibration.fit_temperature(z, np.array([0, 0, 0, 1])) == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError, match=r"^fit_temperature needs at least one photo$"):
        calibration.fit_temperature(np.zeros((0, 2)), np.zeros(0, int))
    with pytest.raises(ValueError, match=r"^ece needs at least one photo$"):
        calibration.ece_of([])


def test_bin_edges_are_rounded_to_six_places() -> None:
    table = calibration.reliability(np.array([[0.5, 0.5]]), np.array([0]), bins=3)
    assert [(b.lo, b.hi) for b in table] == [(0.0, 0.333333), (0.333333, 0.666667), (0.666667, 1.0)]


def test_ece_skips_empty_bins_only() -> None:
    assert calibration.ece_of([Bin(0.9, 1.0, 2, 0.9, 1.0), Bin(0.5, 0.6, 0, 0.5, None)]) == pytest.approx(0.1)
    # a bin without figures adds nothing but its count
    assert calibration.ece_of([Bin(0.9, 1.0, 2, 0.9, 1.0), Bin(0.5, 0.6, 1, None, None)]) == pytest.approx(0.2 / 3)


def test_min_score_records_keep_their_target_on_every_path() -> None:
    probs = np.array([[0.8, 0.2], [0.6, 0.4]])
    for y, target in ((np.array([0, 0]), 0.9), (np.array([1, 1]), 0.9), (np.array([0, 1]), 0.7)):
        assert calibration.suggest_min_score(probs, y, target=target).target == target
    empty = calibration.suggest_min_score(np.zeros((0, 2)), np.zeros(0, int), target=0.8)
    assert empty == calibration.MinScore(None, 0.0, None, 0.8)
    one = calibration.suggest_min_score(np.array([[0.7, 0.3]]), np.array([0]))
    assert one == calibration.MinScore(0.0, 1.0, 1.0, 0.95)
    found = calibration.MinScore(0.68914, 0.732149, 0.951219, 0.9)
    assert found.to_dict() == {
        "min_score": 0.68914,
        "accepted": 0.7321,
        "precision": 0.9512,
        "target_precision": 0.9,
        "source": "out-of-fold calibrated top-1 scores of the train+validation photos",
    }
    assert calibration.MinScore(None, 0.0, None).to_dict()["precision"] is None


def test_the_calibration_record_exactly() -> None:
    z, y = _sampled(0.5, n=300, seed=6)
    cal = calibration.calibrate(z, y)
    assert cal.bins_before == calibration.reliability(softmax(z), y)
    assert cal.bins_after == calibration.reliability(calibration.scale(z, cal.temperature), y)
    assert cal.log_loss_before == calibration.nll(z, y) and cal.log_loss_after == calibration.nll(z, y, cal.temperature)
    rec = calibration.Calibration(
        0.59890123,
        0.131049,
        0.038051,
        0.6123456,
        0.4123456,
        [Bin(0.0, 0.1, 0, None, None)],
        [Bin(0.9, 1.0, 3, 0.912345, 1.0)],
        224,
    )
    assert rec.to_dict() == {
        "method": "temperature scaling, fitted on the out-of-fold logits of train+validation by log-loss against "
        "the true labels; folded into the head (logits / T)",
        "temperature": 0.598901,
        "ece_before": 0.131,
        "ece_after": 0.0381,
        "log_loss_before": 0.61235,
        "log_loss_after": 0.41235,
        "bins": 10,
        "count": 224,
        "reliability_before": [{"lo": 0.0, "hi": 0.1, "count": 0, "confidence": None, "accuracy": None}],
        "reliability_after": [{"lo": 0.9, "hi": 1.0, "count": 3, "confidence": 0.9123, "accuracy": 1.0}],
    }


def test_the_plain_sentence_needs_a_counted_bin_with_figures() -> None:
    bins = [
        {"lo": 0.9, "hi": 1.0, "count": 50, "accuracy": None},
        {"lo": 0.8, "hi": 0.9, "count": 3, "accuracy": 0.5},
        {"lo": 0.7, "hi": 0.8, "count": 0, "accuracy": 1.0},
    ]
    assert calibration.plain_sentence(bins) == "of the 3 photos scored 0.8–0.9, 50% were right"
