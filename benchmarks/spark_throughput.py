"""Spark's throughput against `imgtool classify` (run in .venv-spark: `make install-spark`).

    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 .venv-spark/bin/python benchmarks/spark_throughput.py [--runs 3]

The flowers-mini photos (250, each listed twice: 500 rows) with the quantized MobileNet
V2 fixture, top 5. Per run, interleaved: `imgtool classify --format jsonl` (the installed
command, start-up included) and one Spark job `select(path, classify_udf(path)).collect()`
on a session that is already up, in local[2] and on a standalone master + one 2-core
worker on 127.0.0.1. Each Spark run makes a new UDF, so every Python worker loads the
model again (as a new job would); the first Spark run also starts the Python workers and
is reported apart. The 1-minute load average is printed with each figure: the machine
is shared. Prints one JSON object."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIXTURES = Path(os.environ.get("IMGTOOL_FIXTURES", ROOT.parent / "shared" / "fixtures"))
MODEL = str(FIXTURES / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite")


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def classify_once(paths: list[str]) -> float:
    imgtool = str(Path(sys.executable).parent / "imgtool")
    t = time.perf_counter()
    res = subprocess.run([imgtool, "classify", "-q", "--format", "jsonl", "-m", MODEL, *paths],
                         capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    assert res.returncode == 0 and len(res.stdout.splitlines()) == len(paths), res.stderr[-500:]
    return wall


def spark_once(spark, paths: list[str]) -> float:  # noqa: ANN001 - a SparkSession
    from imgtool.spark import classify_udf

    t = time.perf_counter()
    udf = classify_udf(MODEL, top_k=5)
    rows = spark.createDataFrame([(p,) for p in paths], "path string").repartition(4).select(
        "path", udf("path").alias("pred")).collect()
    wall = time.perf_counter() - t
    assert len(rows) == len(paths) and all(r.pred.error is None for r in rows)
    return wall


def measure(name: str, spark, paths: list[str], runs: int) -> dict:  # noqa: ANN001
    first_load = load()
    first = spark_once(spark, paths)
    out: dict = {"first_spark_run_s": round(first, 2), "load_at_first": first_load, "runs": []}
    for _ in range(runs):
        row = {"load_before": load()}
        row["classify_s"] = round(classify_once(paths), 2)
        row["spark_s"] = round(spark_once(spark, paths), 2)
        row["spark_img_s"] = round(len(paths) / row["spark_s"], 1)
        row["classify_img_s"] = round(len(paths) / row["classify_s"], 1)
        row["ratio"] = round(row["spark_img_s"] / row["classify_img_s"], 2)
        out["runs"].append(row)
        print(name, row, file=sys.stderr, flush=True)
    ratios = sorted(r["ratio"] for r in out["runs"])
    out["median_ratio"] = ratios[len(ratios) // 2]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from tests.spark.conftest import Standalone, _session, spark_env

    os.environ.update(spark_env())
    os.environ.setdefault("IMGTOOL_HOME", tempfile.mkdtemp(prefix="imgtool-bench-home-"))
    photos = sorted(str(p) for p in (FIXTURES / "flowers-mini").rglob("*.jpg"))
    paths = photos * 2
    result: dict = {"photos": len(paths), "model": Path(MODEL).name, "cores": os.cpu_count()}

    t = time.perf_counter()
    spark = _session("local[2]", "imgtool-bench-local")
    spark.sparkContext.setLogLevel("ERROR")
    result["local_session_start_s"] = round(time.perf_counter() - t, 1)
    result["local[2]"] = measure("local[2]", spark, paths, args.runs)
    spark.stop()

    cluster = Standalone(Path(tempfile.mkdtemp(prefix="imgtool-bench-spark-")))
    try:
        t = time.perf_counter()
        cluster.start()
        spark = _session(cluster.url, "imgtool-bench-standalone")
        spark.sparkContext.setLogLevel("ERROR")
        result["standalone_start_s"] = round(time.perf_counter() - t, 1)
        result["standalone"] = measure("standalone", spark, paths, args.runs)
        spark.stop()
    finally:
        cluster.stop()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
