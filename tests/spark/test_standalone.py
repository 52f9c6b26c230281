"""imgtool.spark on a standalone cluster: a master and one worker started by the test
with pyspark's own classes on 127.0.0.1, executors in separate JVMs and Python workers,
the model shipped to them with SparkFiles; records against `imgtool classify`, and
nothing of the cluster listening beyond loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.spark.conftest import Standalone, _session, descendants, is_loopback, listeners_of
from tests.spark.test_spark import classify_cli, spark_records

pytestmark = pytest.mark.spark


def test_standalone_cluster_gives_classifys_records_on_loopback_only(
    standalone: Standalone, mobilenet: str, fixtures: Path, tmp_path: Path
) -> None:
    from imgtool.spark import classify_udf

    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated JPEG")
    paths = [
        *sorted(str(p) for p in (fixtures / "flowers-mini" / "sunflowers").glob("*.jpg"))[:30],
        str(tmp_path / "broken.jpg"),
    ]
    want = classify_cli(mobilenet, paths)
    spark = _session(standalone.url, "imgtool-standalone-test")
    try:
        sc = spark.sparkContext
        assert sc.master == standalone.url
        udf = classify_udf(mobilenet, top_k=5)
        df = spark.createDataFrame([(p,) for p in paths], "path string").repartition(4)
        got = spark_records(df.select("path", udf("path").alias("pred")))
        executors = sc._jsc.sc().getExecutorMemoryStatus().size() - 1  # noqa: SLF001 - minus the driver
        listening = listeners_of(descendants(os.getpid()))
    finally:
        spark.stop()
    assert got == want
    assert want[str(tmp_path / "broken.jpg")]["error"].startswith(("corrupt image", "truncated"))
    assert executors >= 1
    # the master (RPC + web UI), the worker (RPC + web UI), the driver and the executor's
    # block managers: at least five listeners, every one of them on loopback
    assert len(listening) >= 5, listening
    assert [sock for sock in listening if not is_loopback(sock[0])] == []


def test_shipping_by_sparkfiles_needs_a_session(spark_processes: None, mobilenet: str) -> None:
    from pyspark.sql import SparkSession

    from imgtool.core.errors import UsageError
    from imgtool.spark import classify_udf

    assert SparkSession.getActiveSession() is None
    with pytest.raises(UsageError, match="no active SparkSession"):
        classify_udf(mobilenet)
    assert classify_udf(mobilenet, ship="path") is not None  # a path needs no session to be made
