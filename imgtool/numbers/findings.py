"""What an audit finds, as numbers and records: suspect labels, duplicate groups,
outliers. Used by `imgtool audit` (auditing.py) and by retrain (its suspects and its
near-duplicates across train and test).

`imgtool audit`: what is wrong with a labelled folder, before or without training.

It reads the folder as retrain does (the same layouts, split rule and checks), takes the
backbone's features from the same bottleneck cache, and runs the same cross-validation
(train.select_and_fit: L2 by k-fold CV, calibrated) - here over every photo, since nothing
is being trained. From those it reports:

  * suspects: photos whose folder's label the out-of-fold prediction rejects (its top
    class is another), most suspicious first: by the out-of-fold probability of the
    folder's label, lowest first (the self-confidence of confident learning, Northcutt et
    al. 2021); ties by path. `score` is that probability; `suggested` the top class.
  * duplicates: groups of photos that are byte-identical (the same sha256) or
    near-identical: the cosine of their features, centred on the folder's mean feature,
    at least NEAR_DUPLICATE. Groups are the connected components of those pairs; a
    group's `similarity` is the lowest cosine between two of its photos (1 for
    byte-identical ones). A group spanning two classes is a label conflict; one spanning
    train/validation and test is leakage.
  * outliers: photos far from every other photo: the mean cosine of their features to
    their OUTLIER_NEIGHBOURS nearest photos, with a robust z-score (0.6745 (s - median) /
    MAD) below -OUTLIER_Z.
  * problems: unreadable files, classes too small to cross-validate, imbalance.

Thresholds, measured with the MobileNet V1 embedding on flowers-mini with 5 photos saved
again at 90% size and JPEG quality 75 (4 plantings): those pairs' centred cosine
0.795-0.986, the highest other pair 0.751 (docs/audit.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

NEAR_DUPLICATE = 0.78  # centred cosine at or above which two photos are near-duplicates
OUTLIER_NEIGHBOURS = 5
OUTLIER_Z = 3.5
BLOCK = 1024  # rows of the similarity matrix computed at once (memory stays O(BLOCK * n))


# ---------------------------------------------------------------- the numbers


def suspect_order(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the photos whose out-of-fold top class is not their label, most
    suspicious first: by the probability of their label, ascending (ties: lower index)."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y)
    rejected = np.flatnonzero(probs.argmax(axis=1) != y)
    own = probs[rejected, y[rejected]]
    return rejected[np.lexsort((rejected, own))]


def centred_unit(x: np.ndarray) -> np.ndarray:
    """Features minus their mean over the photos, scaled to unit length (a zero row stays 0)."""
    f = np.asarray(x, dtype=np.float64)
    f = f - f.mean(axis=0)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    return f / np.where(norm > 0, norm, 1.0)


def similar_pairs(unit: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """(i, j, cosine) for i < j with cosine >= threshold, in (i, j) order."""
    out = []
    n = len(unit)
    for start in range(0, n, BLOCK):
        s = unit[start : start + BLOCK] @ unit.T
        rows, cols = np.nonzero(s >= threshold)
        for r, c in zip(rows, cols):
            i = start + int(r)
            if i < c:
                out.append((i, int(c), float(s[r, c])))
    return out


def _components(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def duplicate_groups(
    x: np.ndarray, shas: list[str], threshold: float = NEAR_DUPLICATE
) -> list[tuple[str, float, list[int]]]:
    """(kind, similarity, member indices) per group of byte-identical or near-identical
    photos (see the module docstring); kind "identical" when every member has the same
    bytes, else "near". Ordered by similarity, highest first, then by first member."""
    n = len(shas)
    first: dict[str, int] = {}
    edges = []
    for i, sha in enumerate(shas):
        if sha in first:
            edges.append((first[sha], i))
        else:
            first[sha] = i
    unit = centred_unit(x) if n > 1 else np.zeros((n, 1))
    edges += [(i, j) for i, j, _ in similar_pairs(unit, threshold)]
    out = []
    for members in _components(n, edges):
        if len({shas[i] for i in members}) == 1:
            out.append(("identical", 1.0, members))
            continue
        sub = unit[members] @ unit[members].T
        low = min(
            1.0 if shas[a] == shas[b] else float(sub[p, q])
            for p, a in enumerate(members)
            for q, b in enumerate(members)
            if p < q
        )
        out.append(("near", round(low, 4), members))
    out.sort(key=lambda g: (-g[1], g[2][0]))
    return out


def neighbour_similarity(x: np.ndarray, k: int = OUTLIER_NEIGHBOURS) -> np.ndarray:
    """Each photo's mean (uncentred) cosine to its k most similar other photos."""
    f = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    unit = f / np.where(norm > 0, norm, 1.0)
    n = len(unit)
    k = max(1, min(k, n - 1))
    out = np.zeros(n)
    for start in range(0, n, BLOCK):
        s = unit[start : start + BLOCK] @ unit.T
        s[np.arange(len(s)), start + np.arange(len(s))] = -np.inf  # not itself
        out[start : start + len(s)] = np.sort(s, axis=1)[:, -k:].mean(axis=1)
    return out


def robust_z(values: np.ndarray) -> np.ndarray:
    """0.6745 (v - median) / MAD (0 everywhere when the MAD is 0)."""
    v = np.asarray(values, dtype=np.float64)
    med = np.median(v)
    mad = np.median(np.abs(v - med))
    return np.zeros_like(v) if mad == 0 else 0.6745 * (v - med) / mad


def outlier_order(x: np.ndarray, k: int = OUTLIER_NEIGHBOURS, z: float = OUTLIER_Z) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the outliers, farthest first; every photo's neighbour similarity)."""
    if len(x) < 3:
        return np.zeros(0, dtype=int), np.ones(len(x))
    sim = neighbour_similarity(x, k)
    zs = robust_z(sim)
    idx = np.flatnonzero(zs < -z)
    return idx[np.lexsort((idx, sim[idx]))], sim


# ---------------------------------------------------------------- the records


@dataclass(frozen=True)
class Suspect:
    """A photo whose folder's label the out-of-fold prediction rejects."""

    path: str
    rel: str
    label: str  # its folder's class
    suggested: str  # the class the out-of-fold prediction gives it
    score: float  # out-of-fold probability of `label` (low: suspicious)
    suggested_score: float  # ... of `suggested`
    split: str


@dataclass(frozen=True)
class Member:
    path: str
    rel: str
    label: str
    split: str


@dataclass(frozen=True)
class DuplicateGroup:
    """Photos that are byte-identical ("identical") or near-identical ("near")."""

    kind: str
    similarity: float
    members: list[Member]

    @property
    def label_conflict(self) -> bool:
        """Its photos are in more than one class."""
        return len({m.label for m in self.members}) > 1

    @property
    def leakage(self) -> bool:
        """Some of its photos are tested on while others are fitted on."""
        splits = {m.split for m in self.members}
        return "test" in splits and bool(splits - {"test"})

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "similarity": self.similarity,
            "label_conflict": self.label_conflict,
            "leakage": self.leakage,
            "members": [asdict(m) for m in self.members],
        }


@dataclass(frozen=True)
class Outlier:
    """A photo far from every other photo: likely of no class at all."""

    path: str
    rel: str
    label: str
    score: float  # mean cosine to its nearest photos
    z: float  # its robust z-score among the folder's photos


@dataclass(frozen=True)
class Problem:
    """unreadable | tiny_class | imbalance | too_few_classes."""

    kind: str
    message: str
    path: str | None = None
    label: str | None = None


@dataclass
class AuditResult:
    """What `imgtool.audit` found. `found`: anything at all (the CLI exits 1)."""

    suspects: list[Suspect] = field(default_factory=list)
    duplicates: list[DuplicateGroup] = field(default_factory=list)
    outliers: list[Outlier] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return bool(self.suspects or self.duplicates or self.outliers or self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suspects": [asdict(s) for s in self.suspects],
            "duplicates": [g.to_dict() for g in self.duplicates],
            "outliers": [asdict(o) for o in self.outliers],
            "problems": [asdict(p) for p in self.problems],
            "summary": self.summary,
        }


# ---------------------------------------------------------------- records of samples


def suspects_of(
    samples: list[Any], classes: list[str], probs: np.ndarray, y: np.ndarray, limit: int | None = None
) -> list[Suspect]:
    """The Suspect records of `samples` (rows of probs), most suspicious first."""
    order = suspect_order(probs, y)[:limit]
    return [
        Suspect(
            samples[i].path,
            samples[i].rel,
            classes[int(y[i])],
            classes[int(probs[i].argmax())],
            round(float(probs[i, y[i]]), 4),
            round(float(probs[i].max()), 4),
            samples[i].split,
        )
        for i in order
    ]


def groups_of(
    samples: list[Any], classes: list[str], x: np.ndarray, shas: list[str], threshold: float = NEAR_DUPLICATE
) -> list[DuplicateGroup]:
    return [
        DuplicateGroup(
            kind,
            sim,
            [Member(samples[i].path, samples[i].rel, classes[samples[i].label], samples[i].split) for i in members],
        )
        for kind, sim, members in duplicate_groups(x, shas, threshold)
    ]
