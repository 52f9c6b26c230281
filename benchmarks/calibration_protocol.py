"""Held-out calibration of the retrain head on flowers-mini (issue 17; docs/calibration.md).

The outer folds of head_protocol.py: for each seed the 250 photos are dealt into 5
stratified folds; on each 4/5 the head is fitted exactly as `imgtool retrain` fits it (its
own hashed test split left out), without and with calibration, and scores the held-out
fifth. Prints the reliability table (top-1 score bins against the share right), the ECE
and the accuracy before and after, T, and the suggested --min-score applied to the
held-out photos.

    .venv/bin/python benchmarks/calibration_protocol.py --make-features fm.npz   # once
    .venv/bin/python benchmarks/calibration_protocol.py fm.npz --seeds 1,2,3,4,5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

EMBEDDER = "embedding/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"


def make_features(out: str, fixtures: Path) -> None:
    from imgtool.data import folders
    from imgtool.models.resolve import resolve
    from imgtool.runtime import bottlenecks

    model = resolve(str(fixtures / EMBEDDER), purpose="features")
    engine = model.engine()
    assert model.tflite is not None
    cache = bottlenecks.BottleneckCache(bottlenecks.backbone_id(model.tflite, engine.input_size,
                                                                model.config.value_range))
    _, files = folders.scan(fixtures / "flowers-mini")
    paths = [f.path for f in files]
    x: list[np.ndarray | None] = [None] * len(paths)
    for i, vec, err in bottlenecks.extract(engine, paths, [bottlenecks.file_sha256(p) for p in paths], cache):
        if vec is None:
            raise SystemExit(f"{paths[i]}: {err}")
        x[i] = vec
    np.savez(out, x=np.stack(x).astype(np.float32), y=np.array([f[2] for f in files]),
             rel=np.array([f[1] for f in files]))


def main() -> None:
    from head_protocol import outer_folds

    from imgtool.data import splits
    from imgtool.numbers import calibration
    from imgtool.training import fitting, l2_search

    ap = argparse.ArgumentParser()
    ap.add_argument("features")
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--make-features", action="store_true", help="write FEATURES from the fixtures and stop")
    ap.add_argument("--fixtures", default=str(Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
    args = ap.parse_args()
    if args.make_features:
        make_features(args.features, Path(args.fixtures))
        return
    d = np.load(args.features)
    x, y, rel = d["x"], d["y"], [str(r) for r in d["rel"]]
    n_classes = len(set(y.tolist()))
    probs: dict[bool, list[np.ndarray]] = {False: [], True: []}
    truth, temps, accepted = [], [], []
    for seed in (int(s) for s in args.seeds.split(",")):
        folds = outer_folds(y, 5, seed)
        for f in range(5):
            tr, te = folds != f, folds == f
            files = [(f"/x/{r}", r, int(label)) for r, label, keep in zip(rel, y, tr) if keep]
            fit = np.array([s.split != "test" for s in splits.assign_splits(files, n_classes, 10.0, 10.0)])
            xt, yt = x[tr][fit], y[tr][fit]
            for cal in (False, True):
                head, sel = l2_search.select_and_fit(xt, yt, n_classes, fitting.TrainConfig(seed=seed, calibrate=cal))
                p = head.predict(x[te])
                probs[cal].append(p)
                if cal:
                    assert sel.calibration is not None and sel.oof_probs is not None
                    temps.append(sel.calibration.temperature)
                    s = calibration.suggest_min_score(sel.oof_probs, yt)
                    keep = p.max(axis=1) >= (s.value or 0.0)
                    accepted.append((int(keep.sum()), int((p.argmax(axis=1) == y[te])[keep].sum()), int(te.sum())))
            truth.append(y[te])
    yy = np.concatenate(truth)
    for cal in (False, True):
        p = np.concatenate(probs[cal])
        print(f"{'calibrated' if cal else 'uncalibrated'}: accuracy {np.mean(p.argmax(axis=1) == yy):.4f}, "
              f"ECE {calibration.ece(p, yy):.4f}, {len(yy)} held-out predictions")
        for b in calibration.reliability(p, yy):
            if b.count:
                print(f"  {b.lo:.1f}-{b.hi:.1f}: {b.count:4d} photos, mean score {b.confidence:.3f}, "
                      f"right {b.accuracy:.1%}")
    n_acc, n_right, n_all = (sum(v) for v in zip(*accepted))
    print(f"T {np.mean(temps):.3f} (range {min(temps):.3f}-{max(temps):.3f}); the suggested --min-score accepts "
          f"{n_acc / n_all:.1%} of the held-out photos, {n_right / n_acc:.1%} of them right")


if __name__ == "__main__":
    main()
