"""metrics.py against hand-computed values."""

from __future__ import annotations

import numpy as np

from imgtool.numbers import metrics


def test_asymmetric_confusion_precision_recall_f1_baseline() -> None:
    # true:  a a a b b c    predicted: a b b b b a
    m = metrics.evaluate(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 1, 0]), ["a", "b", "c"])
    assert m["confusion_matrix"] == [[1, 2, 0], [0, 2, 0], [1, 0, 0]]
    assert m["accuracy"] == 0.5 and m["count"] == 6
    # a: 1 right of 2 predicted (precision 1/2), of 3 true (recall 1/3); F1 = 2PR/(P+R) = 0.4
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 0.3333, "f1": 0.4, "support": 3}
    # b: 2 right of 4 predicted, of 2 true
    assert m["per_class"]["b"] == {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 2}
    # c: never predicted (precision undefined), never right
    assert m["per_class"]["c"] == {"precision": None, "recall": 0.0, "f1": None, "support": 1}
    assert m["baseline"] == {"class": "a", "accuracy": 0.5}
    assert m["classes"] == ["a", "b", "c"]


def test_f1_is_zero_when_precision_and_recall_are_zero_and_baseline_ties_go_to_the_first_class() -> None:
    m = metrics.evaluate(np.array([0, 1]), np.array([1, 0]), ["x", "y"])
    assert m["per_class"]["x"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["baseline"] == {"class": "x", "accuracy": 0.5}
    assert m["accuracy"] == 0.0
    m = metrics.evaluate(np.array([1, 1, 1, 0]), np.array([1, 1, 1, 1]), ["x", "y"])
    assert m["baseline"] == {"class": "y", "accuracy": 0.75}
    assert m["per_class"]["y"] == {"precision": 0.75, "recall": 1.0, "f1": 0.8571, "support": 3}
    assert m["per_class"]["x"] == {"precision": None, "recall": 0.0, "f1": None, "support": 1}


def test_no_photos() -> None:
    m = metrics.evaluate(np.array([], dtype=int), np.array([], dtype=int), ["x", "y"])
    assert m["accuracy"] is None and m["baseline"] is None and m["count"] == 0
    assert m["per_class"]["x"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert metrics.format_text(m).splitlines()[0] == "test accuracy: n/a (no images)"


def test_format_text_shows_baseline_and_f1() -> None:
    m = metrics.evaluate(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 1, 0]), ["a", "b", "c"])
    lines = metrics.format_text(m, "test").splitlines()
    assert lines[0] == "test accuracy: 50.0% (3/6); majority-class baseline 50.0% (always a)"
    assert lines[1] == "  class     precision  recall      F1  support"
    assert lines[2] == "  a             50.0%   33.3%   40.0%        3"
    assert lines[4] == "  c                 -    0.0%       -        1"


def test_rounding_and_types() -> None:
    # 2/3 everywhere: precision, accuracy and baseline rounded to 4 places, counts ints
    m = metrics.evaluate(np.array([0, 0, 1]), np.array([0, 0, 0]), ["x", "y"])
    assert m["accuracy"] == 0.6667 and m["baseline"] == {"class": "x", "accuracy": 0.6667}
    assert m["per_class"]["x"] == {"precision": 0.6667, "recall": 1.0, "f1": 0.8, "support": 2}
    assert all(type(v) is int for row in m["confusion_matrix"] for v in row)
    # precision == recall (not zero): F1 is that value
    m = metrics.evaluate(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), ["x", "y"])
    assert m["per_class"]["x"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}


def test_format_text_confusion_matrix_lines() -> None:
    m = metrics.evaluate(np.array([0, 1, 1]), np.array([0, 1, 0]), ["daisies", "roses"])
    lines = metrics.format_text(m, "val").splitlines()
    assert lines[4:] == [
        "  confusion matrix (rows: true, columns: predicted):",
        "           daisie  roses",
        "  daisies       1      0",
        "  roses         1      1",
    ]
