"""Workloads that run in a fresh child process of benchmarks/run.py, one per run.

    python benchmarks/children.py plain-tf SAVEDMODEL PHOTO
        The plain-TensorFlow baseline for a cold single-photo classify: import TF, load
        the SavedModel, decode and resize the photo with Pillow, run it, print the top 5.
        It does not import imgtool.
    python benchmarks/children.py raw-forward MODEL.tflite VALUE_RANGE|none FOLDER [--batch 8]
        The engine's raw forward pass: decode every image of FOLDER first (not timed),
        then time imgtool.runtime.engine.LiteRTEngine.run over them in batches (as classify does).
    python benchmarks/children.py extract BACKBONE IMAGE_DIR [--order extract-first|raw-first]
        Bottleneck extraction as retrain does it (imgtool.runtime.bottlenecks.extract on a fresh
        cache: decode-ahead threads, backbone, cache writes) vs the same engine's raw
        forward pass on already-decoded arrays, in one process.
    .venv-beam/bin/python benchmarks/children.py beam-startup MODEL.tflite FOLDER WORKDIR
        The fixed cost of `imgtool beam classify` (run in .venv-beam): `import apache_beam`,
        then options + model resolution and staging, then pipeline construction (not run).

Each prints one JSON object on stdout. Imports are inside the commands, so importing this
module costs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _images(folder: str) -> list[str]:
    from imgtool.data.images import walk_images

    return list(walk_images(folder))


def _timed_forward(engine, arrays, batch: int) -> float:  # noqa: ANN001
    import numpy as np

    t0 = time.perf_counter()
    for start in range(0, len(arrays), batch):
        engine.run(np.stack(arrays[start:start + batch]))
    return time.perf_counter() - t0


def plain_tf(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    t_import = time.perf_counter() - t0
    model = tf.saved_model.load(args.savedmodel)
    t_load = time.perf_counter() - t0 - t_import
    with Image.open(args.photo) as im:
        x = np.asarray(im.convert("RGB").resize((299, 299), Image.BILINEAR), dtype=np.float32)[None] / 255.0
    logits = model(tf.constant(x), training=False).numpy()[0]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = np.argsort(-probs)[:5]
    for i in top:
        print(f"  {probs[i]:.4f}  {i}", file=sys.stderr)
    return {"import_s": t_import, "load_s": t_load, "total_s": time.perf_counter() - t0, "top1": int(top[0])}


def raw_forward(args: argparse.Namespace) -> dict:
    from imgtool.runtime.engine import LiteRTEngine
    from imgtool.data.images import decode

    vr = None if args.value_range == "none" else tuple(float(v) for v in args.value_range.split(","))
    engine = LiteRTEngine(Path(args.model), vr)
    paths = _images(args.folder)
    t0 = time.perf_counter()
    arrays = [decode(p, engine.input_size) for p in paths]
    decode_s = time.perf_counter() - t0
    _timed_forward(engine, arrays[:args.batch], args.batch)  # warm-up: first invoke packs weights
    seconds = _timed_forward(engine, arrays, args.batch)
    return {"n": len(arrays), "seconds": seconds, "rate": len(arrays) / seconds, "batch": args.batch,
            "decode_seconds_1_thread": decode_s, "threads_env": os.environ.get("IMGTOOL_THREADS")}


def extract(args: argparse.Namespace) -> dict:
    from imgtool.runtime import bottlenecks
    from imgtool.data.images import decode
    from imgtool.models.resolve import resolve

    engine = resolve(args.backbone, purpose="features").engine()
    paths = _images(args.image_dir)
    shas = [bottlenecks.file_sha256(p) for p in paths]
    workers = bottlenecks.default_workers()
    _timed_forward(engine, [decode(p, engine.input_size) for p in paths[:8]], 8)  # warm-up

    def run_extract() -> float:
        with tempfile.TemporaryDirectory(prefix="imgtool-bench-bn-") as d:
            cache = bottlenecks.BottleneckCache("bench", Path(d))
            t0 = time.perf_counter()
            got = sum(1 for _, vec, _ in bottlenecks.extract(engine, paths, shas, cache, workers=workers)
                      if vec is not None)
            seconds = time.perf_counter() - t0
        if got != len(paths):
            raise SystemExit(f"extraction gave {got} vectors for {len(paths)} images")
        return seconds

    def run_raw() -> float:
        arrays = [decode(p, engine.input_size) for p in paths]
        return _timed_forward(engine, arrays, 8)

    if args.order == "raw-first":
        raw_s = run_raw()
        ext_s = run_extract()
    else:
        ext_s = run_extract()
        raw_s = run_raw()
    n = len(paths)
    return {"n": n, "extract_seconds": ext_s, "raw_seconds": raw_s, "extract_rate": n / ext_s,
            "raw_rate": n / raw_s, "workers": workers, "order": args.order}


def beam_startup(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    import apache_beam  # noqa: F401

    t1 = time.perf_counter()
    import logging

    logging.basicConfig(level=logging.ERROR)
    from imgtool.beam import launcher, pipelines

    options = launcher.pipeline_options([])
    launcher.register_by_value()
    spec = launcher.prepare_model(args.model, "classify", os.path.join(args.workdir, "stage"))
    t2 = time.perf_counter()
    pipelines.classify_pipeline(options, spec, args.folder, os.path.join(args.workdir, "never-run"))
    t3 = time.perf_counter()
    return {"import_apache_beam_s": t1 - t0, "options_and_model_s": t2 - t1, "construct_pipeline_s": t3 - t2}


def main() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plain-tf")
    p.add_argument("savedmodel")
    p.add_argument("photo")
    p = sub.add_parser("raw-forward")
    p.add_argument("model")
    p.add_argument("value_range")
    p.add_argument("folder")
    p.add_argument("--batch", type=int, default=8)
    p = sub.add_parser("extract")
    p.add_argument("backbone")
    p.add_argument("image_dir")
    p.add_argument("--order", choices=("extract-first", "raw-first"), default="extract-first")
    p = sub.add_parser("beam-startup")
    p.add_argument("model")
    p.add_argument("folder")
    p.add_argument("workdir")
    args = ap.parse_args()
    fn = {"plain-tf": plain_tf, "raw-forward": raw_forward, "extract": extract, "beam-startup": beam_startup}[args.cmd]
    out = fn(args)
    sys.stdout.flush()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
