"""Held-out accuracy of the whole retrain head procedure on flowers-mini, by repeated
stratified 5-fold over all 250 photos: for each seed, the photos are dealt into 5 folds
(stratified, seeded); for each fold the procedure runs on the other 4/5 (its own
validation/test split included, exactly as `imgtool retrain` would) and is scored on the
fold; every photo is scored once per seed.

Runs with whichever imgtool the interpreter imports, so the same protocol measures the
old procedure (`/work/main/.venv/bin/python benchmarks/head_protocol.py`) and the new one.
Features: an .npz of x [250, d], y [250], rel [250] (see --make-features)."""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def outer_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The protocol's outer folds: the trainer's own stratified dealing, on a seed of its own."""
    from imgtool.training.l2_search import stratified_folds

    return stratified_folds(y, k, 1000 + seed)


def procedure(x: np.ndarray, y: np.ndarray, rel: list[str], classes: list[str], seed: int):
    """Fit a head as `imgtool retrain` (this interpreter's version) would; return predict(x) -> labels."""
    from imgtool.data import folders, splits
    from imgtool.training import fitting, l2_search

    photo = getattr(folders, "Photo", lambda *f: f)  # a tuple before dataset.Photo
    files = [photo(f"/x/{r}", r, int(label)) for r, label in zip(rel, y)]
    if hasattr(l2_search, "select_and_fit"):  # the new procedure
        samples = splits.assign_splits(files, len(classes), 10.0, 10.0)
        fit = np.array([s.split != "test" for s in samples])
        head, _ = l2_search.select_and_fit(x[fit], y[fit], len(classes), fitting.TrainConfig(seed=seed))
    else:  # main: train on train, keep the epoch with the best validation accuracy
        samples = splits.assign_splits(files, len(classes), 10.0, 10.0)
        split = np.array([s.split for s in samples])
        tr, va = split == "train", split == "validation"
        head, _ = fitting.train(x[tr], y[tr], len(classes), fitting.TrainConfig(seed=seed), x[va], y[va])
    return lambda xs: head.predict(xs).argmax(axis=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("features")
    ap.add_argument("--seeds", default="1,2,3,4,5")
    args = ap.parse_args()
    d = np.load(args.features)
    x, y, rel = d["x"], d["y"], [str(r) for r in d["rel"]]
    classes = sorted({r.split("/")[0] for r in rel})
    out = {}
    t0 = time.perf_counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        folds = outer_folds(y, 5, seed)
        right = 0
        per_fold = []
        for f in range(5):
            tr, te = folds != f, folds == f
            predict = procedure(x[tr], y[tr], [r for r, keep in zip(rel, tr) if keep], classes, seed)
            ok = int(np.sum(predict(x[te]) == y[te]))
            right += ok
            per_fold.append(ok / int(te.sum()))
        out[seed] = {"accuracy": right / len(y), "fold_min": min(per_fold), "fold_max": max(per_fold)}
        print(f"seed {seed}: held-out accuracy {right / len(y):.4f} (folds {min(per_fold):.3f}..{max(per_fold):.3f})",
              file=sys.stderr)
    accs = np.array([v["accuracy"] for v in out.values()])
    print(json.dumps({"seeds": out, "mean": float(accs.mean()), "std": float(accs.std()),
                      "min": float(accs.min()), "max": float(accs.max()),
                      "seconds": round(time.perf_counter() - t0, 1)}, indent=1))


if __name__ == "__main__":
    main()
