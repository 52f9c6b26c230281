"""Spark's throughput against `imgtool classify` (run in .venv-spark: `make install-spark`).

    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 .venv-spark/bin/python benchmarks/spark_throughput.py [--runs 3]

The flowers-mini photos (250, each listed twice: 500 rows) with the quantized MobileNet
V2 fixture, top 5. Per run, interleaved: `imgtool classify --format jsonl` (the installed
command, start-up included) and one Spark job `select(path, classify_udf(path)).collect()`
on a session that is already up, in local[2] and on a standalone master + one 2-core
worker on 127.0.0.1. Each Spark run makes a new UDF, so every Python worker loads the
model again (as a new job would); the first Spark run also starts the Python workers and
is reported apart. The 1-minute load average is printed with each figure: the machine
is shared, so CPU time per photo (every process of the run: classify's; Spark's driver
JVM, master, worker, executor and Python workers) is given too, which depends far less
on what else runs. Prints one JSON object."""

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


def tree_cpu() -> float:
    """CPU seconds (user + system) used so far by this process's live descendants (the
    driver JVM, master, worker, executors, Python workers) and this process itself."""
    from tests.spark.conftest import descendants

    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in descendants(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def classify_once(paths: list[str]) -> tuple[float, float]:
    imgtool = str(Path(sys.executable).parent / "imgtool")
    cpu = children_cpu()
    t = time.perf_counter()
    res = subprocess.run([imgtool, "classify", "-q", "--format", "jsonl", "-m", MODEL, *paths],
                         capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    assert res.returncode == 0 and len(res.stdout.splitlines()) == len(paths), res.stderr[-500:]
    return wall, children_cpu() - cpu


def spark_once(spark, paths: list[str]) -> tuple[float, float]:  # noqa: ANN001 - a SparkSession
    from imgtool.spark import classify_udf

    cpu = tree_cpu()
    t = time.perf_counter()
    udf = classify_udf(MODEL, top_k=5)
    rows = spark.createDataFrame([(p,) for p in paths], "path string").repartition(4).select(
        "path", udf("path").alias("pred")).collect()
    wall = time.perf_counter() - t
    assert len(rows) == len(paths) and all(r.pred.error is None for r in rows)
    return wall, tree_cpu() - cpu


def measure(name: str, spark, paths: list[str], runs: int) -> dict:  # noqa: ANN001
    first_load = load()
    first, _ = spark_once(spark, paths)
    out: dict = {"first_spark_run_s": round(first, 2), "load_at_first": first_load, "runs": []}
    for _ in range(runs):
        row = {"load_before": load()}
        wall, cpu = classify_once(paths)
        row["classify_s"], row["classify_cpu_ms_per_img"] = round(wall, 2), round(1000 * cpu / len(paths), 1)
        wall, cpu = spark_once(spark, paths)
        row["spark_s"], row["spark_cpu_ms_per_img"] = round(wall, 2), round(1000 * cpu / len(paths), 1)
        row["spark_img_s"] = round(len(paths) / row["spark_s"], 1)
        row["classify_img_s"] = round(len(paths) / row["classify_s"], 1)
        row["ratio"] = round(row["spark_img_s"] / row["classify_img_s"], 2)
        out["runs"].append(row)
        print(name, row, file=sys.stderr, flush=True)
    for key in ("ratio", "spark_img_s", "classify_img_s", "spark_cpu_ms_per_img", "classify_cpu_ms_per_img",
                "load_before"):
        values = sorted(r[key] for r in out["runs"])
        out[f"median_{key}"] = values[len(values) // 2]
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
    spark = _session("local[2]", "imgtool-bench-local", quick_jvm=False)
    spark.sparkContext.setLogLevel("ERROR")
    result["local_session_start_s"] = round(time.perf_counter() - t, 1)
    result["local[2]"] = measure("local[2]", spark, paths, args.runs)
    spark.stop()

    cluster = Standalone(Path(tempfile.mkdtemp(prefix="imgtool-bench-spark-")))
    try:
        t = time.perf_counter()
        cluster.start()
        spark = _session(cluster.url, "imgtool-bench-standalone", quick_jvm=False)
        spark.sparkContext.setLogLevel("ERROR")
        result["standalone_start_s"] = round(time.perf_counter() - t, 1)
        result["standalone"] = measure("standalone", spark, paths, args.runs)
        spark.stop()
    finally:
        cluster.stop()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
