"""The audit's numbers (findings.py): suspect ranking, duplicate grouping, outliers - on
synthetic features, where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from imgtool.data.splits import Sample
from imgtool.numbers import findings as auditing
from imgtool.training import fitting, l2_search


def _blobs(n_per: int, classes: int, dim: int = 8, spread: float = 6.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (classes, dim))
    y = np.repeat(np.arange(classes), n_per)
    return centres[y] + rng.normal(0, 1, (len(y), dim)), y


def test_a_planted_flip_ranks_first_on_separable_features() -> None:
    x, y = _blobs(20, 3, seed=1)
    flipped = y.copy()
    flipped[7] = 2  # a class-0 photo filed under class 2
    _, sel = l2_search.select_and_fit(x, flipped, 3, fitting.TrainConfig(seed=0))
    order = auditing.suspect_order(sel.oof_probs, flipped)
    assert order[0] == 7 and len(order) == 1  # separable: nothing else is rejected
    samples = [Sample(f"/d/{i}.jpg", f"c{flipped[i]}/{i}.jpg", int(flipped[i])) for i in range(len(y))]
    (s,) = auditing.suspects_of(samples, ["a", "b", "c"], sel.oof_probs, flipped)
    assert (s.path, s.label, s.suggested, s.split) == ("/d/7.jpg", "c", "a", "train")
    assert s.score == round(float(sel.oof_probs[7, 2]), 4) and s.score < 0.1
    assert s.suggested_score == round(float(sel.oof_probs[7, 0]), 4) and s.suggested_score > 0.8


def test_suspect_order_by_hand() -> None:
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    y = np.array([0, 0, 0, 1, 0, 1])
    # rejected: 1 (own 0.3), 2 (0.2), 3 (0.4), 4 (0.3); photo 5's top class is its own
    assert auditing.suspect_order(probs, y).tolist() == [2, 1, 4, 3]  # ties by index
    samples = [Sample(f"/p{i}", f"r{i}", int(y[i]), "test") for i in range(6)]
    assert [s.rel for s in auditing.suspects_of(samples, ["a", "b"], probs, y, limit=2)] == ["r2", "r1"]


def test_duplicate_groups_identical_bytes_near_features_and_a_cross_class_pair() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (12, 16))
    x[3] = x[0]  # photo 3: the same bytes as photo 0
    x[5] = x[4] + rng.normal(0, 0.05, 16)  # photo 5: a re-encode of photo 4
    x[9] = x[8] + rng.normal(0, 0.05, 16)  # photo 9: a re-encode of 8, filed in another class
    shas = [f"s{i}" for i in range(12)]
    shas[3] = "s0"
    groups = auditing.duplicate_groups(x, shas)
    assert [(g[0], g[2]) for g in groups] == [("identical", [0, 3]), ("near", [4, 5]), ("near", [8, 9])] or [
        (g[0], g[2]) for g in groups
    ] == [("identical", [0, 3]), ("near", [8, 9]), ("near", [4, 5])]
    unit = auditing.centred_unit(x)
    near = {tuple(g[2]): g[1] for g in groups if g[0] == "near"}
    assert near[(4, 5)] == round(float(unit[4] @ unit[5]), 4) and near[(4, 5)] > 0.95
    assert groups[1][1] >= groups[2][1]  # highest similarity first
    labels = [0] * 8 + [0, 1, 1, 1]
    splits = ["train"] * 5 + ["test"] + ["train"] * 6
    samples = [Sample(f"/p{i}", f"r{i}", labels[i], splits[i]) for i in range(12)]
    recs = {tuple(m.rel for m in g.members): g for g in auditing.groups_of(samples, ["a", "b"], x, shas)}
    assert not recs[("r0", "r3")].label_conflict and not recs[("r0", "r3")].leakage
    assert recs[("r4", "r5")].leakage and not recs[("r4", "r5")].label_conflict  # train + test
    assert recs[("r8", "r9")].label_conflict and not recs[("r8", "r9")].leakage  # two classes
    d = recs[("r8", "r9")].to_dict()
    assert (
        d["kind"] == "near"
        and d["label_conflict"] is True
        and d["members"][1] == {"path": "/p9", "rel": "r9", "label": "b", "split": "train"}
    )
    # an unrelated pair is no group; the threshold decides
    assert auditing.duplicate_groups(x, shas, threshold=1.01) == [("identical", 1.0, [0, 3])]
    assert len(auditing.duplicate_groups(x, shas, threshold=-1.0)) == 1  # everything joins one group


def test_a_chain_is_one_group_with_its_lowest_similarity() -> None:
    x = np.array([[1.0, 0, 0], [0.9, 0.1, 0], [0.8, 0.2, 0], [0, 0, 1.0], [0, 1.0, 0]])
    unit = auditing.centred_unit(x)
    s01, s12, s02 = float(unit[0] @ unit[1]), float(unit[1] @ unit[2]), float(unit[0] @ unit[2])
    threshold = min(s01, s12) - 1e-6
    assert s02 < threshold  # 0 and 2 join only through 1
    (g,) = auditing.duplicate_groups(x, ["a", "b", "c", "d", "e"], threshold)
    assert g == ("near", round(s02, 4), [0, 1, 2])
    assert auditing.similar_pairs(unit, threshold) == [(0, 1, pytest.approx(s01)), (1, 2, pytest.approx(s12))]


def test_blocks_do_not_change_the_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    x, _ = _blobs(15, 2, dim=4, spread=1.0, seed=4)
    unit = auditing.centred_unit(x)
    whole = auditing.similar_pairs(unit, 0.9)
    sims = auditing.neighbour_similarity(x)
    monkeypatch.setattr(auditing, "BLOCK", 7)
    assert auditing.similar_pairs(unit, 0.9) == whole and len(whole) > 3
    assert np.array_equal(auditing.neighbour_similarity(x), sims)


def test_an_outlier_is_far_from_every_photo() -> None:
    rng = np.random.default_rng(5)
    base = np.abs(rng.normal(1, 0.3, 32))
    x = np.abs(base + rng.normal(0, 0.1, (40, 32)))  # photos alike, as a backbone's features are
    x[17] = np.abs(rng.normal(1, 0.3, 32))  # something else altogether
    idx, sim = auditing.outlier_order(x)
    assert idx.tolist() == [17]
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = unit @ unit.T
    np.fill_diagonal(s, -np.inf)
    assert sim[17] == pytest.approx(np.sort(s[17])[-5:].mean())
    assert auditing.robust_z(sim)[17] < -auditing.OUTLIER_Z
    assert auditing.outlier_order(x[:2])[0].tolist() == []  # too few photos to say


def test_robust_z_by_hand() -> None:
    v = np.array([1.0, 2.0, 3.0, 4.0, 100.0])  # median 3, MAD 1
    assert auditing.robust_z(v).tolist() == pytest.approx([-1.349, -0.6745, 0.0, 0.6745, 65.4265])
    assert auditing.robust_z(np.ones(4)).tolist() == [0.0] * 4


def test_the_result_record_and_its_text() -> None:
    r = auditing.AuditResult()
    assert not r.found and set(r.to_dict()) == {"suspects", "duplicates", "outliers", "problems", "summary"}
    r.problems.append(auditing.Problem("tiny_class", "class 'x' has 1 photo", label="x"))
    assert r.found
    from imgtool.training.auditing import format_text

    assert "problems: 1\n  tiny_class: class 'x' has 1 photo" in format_text(r)


# ---------------------------------------------------------------- exact edges


def test_centring_and_zero_rows() -> None:
    x = np.array([[3.0, 1.0], [1.0, 1.0], [2.0, 1.0], [2.0, 4.0]])
    unit = auditing.centred_unit(x)  # mean (2, 1.75)
    assert unit[2] == pytest.approx([0.0, -1.0]) and unit[0] == pytest.approx(np.array([1.0, -0.75]) / 1.25)
    assert auditing.centred_unit(np.array([[1.0, 2.0], [1.0, 2.0]])).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    x32 = np.random.default_rng(7).random((6, 5)).astype(np.float32)
    assert np.array_equal(auditing.centred_unit(x32), auditing.centred_unit(x32.astype(np.float64)))
    small = np.array([[0.001, 0.002], [0.002, 0.001], [0.0, 0.0]])  # norms below 1, and a zero row
    sims = auditing.neighbour_similarity(small, k=1)
    assert sims == pytest.approx([0.8, 0.8, 0.0])
    assert np.array_equal(auditing.neighbour_similarity(x32), auditing.neighbour_similarity(x32.astype(np.float64)))


def test_neighbour_similarity_never_counts_itself() -> None:
    x = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 2.0]])
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = unit @ unit.T
    assert auditing.neighbour_similarity(x[:2]) == pytest.approx([s[0, 1], s[0, 1]])  # k capped at n - 1
    want = [np.sort(np.delete(s[i], i))[-3:].mean() for i in range(4)]
    assert auditing.neighbour_similarity(x, k=5) == pytest.approx(want)  # k = 5 capped at 3
    want2 = [np.sort(np.delete(s[i], i))[-2:].mean() for i in range(4)]
    assert auditing.neighbour_similarity(x, k=2) == pytest.approx(want2)
    assert auditing.outlier_order(x, k=2)[1] == pytest.approx(want2)  # k is passed on


def test_three_photos_are_enough_to_find_an_outlier() -> None:
    x = np.array([[1.0, 0.0, 0.0], [1.0, 0.01, 0.01], [0.0, 0.0, 1.0]])
    idx, _ = auditing.outlier_order(x)
    assert idx.tolist() == [2] and idx.dtype.kind == "i"
    none, ones = auditing.outlier_order(x[:2])
    assert none.dtype.kind == "i" and ones.tolist() == [1.0, 1.0]
    v32 = np.array([1.0, 2.5, 3.0, 4.25, 100.0], dtype=np.float32) / 3
    assert np.array_equal(auditing.robust_z(v32), auditing.robust_z(v32.astype(np.float64)))


def test_groups_of_equal_similarity_are_ordered_by_first_member() -> None:
    x = np.random.default_rng(8).normal(size=(6, 4))
    shas = ["a", "b", "c", "b", "e", "a"]  # identical groups [0, 5] and [1, 3]
    assert [g[2] for g in auditing.duplicate_groups(x, shas, threshold=1.5)] == [[0, 5], [1, 3]]
    assert auditing.duplicate_groups(x[:1], ["a"]) == []


def test_records_as_dicts_exactly() -> None:
    g = auditing.DuplicateGroup(
        "near", 0.91, [auditing.Member("/p", "a/p", "a", "train"), auditing.Member("/q", "b/q", "b", "test")]
    )
    assert g.to_dict() == {
        "kind": "near",
        "similarity": 0.91,
        "label_conflict": True,
        "leakage": True,
        "members": [
            {"path": "/p", "rel": "a/p", "label": "a", "split": "train"},
            {"path": "/q", "rel": "b/q", "label": "b", "split": "test"},
        ],
    }
    only_test = auditing.DuplicateGroup("identical", 1.0, [auditing.Member("/p", "a/p", "a", "test")] * 2)
    assert not only_test.leakage and not only_test.label_conflict
    r = auditing.AuditResult(
        suspects=[auditing.Suspect("/p", "a/p", "a", "b", 0.1, 0.8, "train")],
        duplicates=[g],
        outliers=[auditing.Outlier("/o", "a/o", "a", 0.4, -4.0)],
        problems=[auditing.Problem("imbalance", "too many a")],
        summary={"photos": 3},
    )
    assert r.to_dict() == {
        "suspects": [
            {
                "path": "/p",
                "rel": "a/p",
                "label": "a",
                "suggested": "b",
                "score": 0.1,
                "suggested_score": 0.8,
                "split": "train",
            }
        ],
        "duplicates": [g.to_dict()],
        "outliers": [{"path": "/o", "rel": "a/o", "label": "a", "score": 0.4, "z": -4.0}],
        "problems": [{"kind": "imbalance", "message": "too many a", "path": None, "label": None}],
        "summary": {"photos": 3},
    }
    samples = [Sample(f"/d/{i}", f"c/{i}", i % 2, ["train", "test"][i % 2]) for i in range(4)]
    x = np.eye(4)
    (grp,) = auditing.groups_of(samples, ["u", "v"], x, ["s", "t", "s", "w"])
    assert grp == auditing.DuplicateGroup(
        "identical", 1.0, [auditing.Member("/d/0", "c/0", "u", "train"), auditing.Member("/d/2", "c/2", "u", "train")]
    )


def test_groups_of_passes_its_threshold_on() -> None:
    samples = [Sample(f"/d/{i}", f"c/{i}", 0) for i in range(4)]
    x = np.eye(4)
    assert auditing.groups_of(samples, ["u"], x, ["a", "b", "c", "d"]) == []
    (everything,) = auditing.groups_of(samples, ["u"], x, ["a", "b", "c", "d"], threshold=-1.0)
    assert [m.rel for m in everything.members] == ["c/0", "c/1", "c/2", "c/3"] and everything.kind == "near"
