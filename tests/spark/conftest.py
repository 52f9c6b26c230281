"""Spark for the tests: a local[2] session, and a standalone master plus one worker
started with pyspark's own classes, everything bound to 127.0.0.1 (RPC, block manager,
web UIs: SPARK_LOCAL_IP), the driver's UI off, every wait bounded, torn down at the end."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"
# test JVMs live seconds: the quick (C1) JIT only and the serial collector start them with
# far less CPU on a busy 2-core machine
QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
START_TIMEOUT = 120.0  # seconds for a master or worker to come up on a busy 2-core machine


def _java_home() -> None:
    """Spark needs Java 17 or 21: `make test-spark` sets JAVA_HOME; without it, the
    `java` on PATH is used, else a Java 17 under /usr/lib/jvm (set for this process only)."""
    if os.environ.get("JAVA_HOME") or shutil.which("java"):
        return
    for cand in sorted(Path("/usr/lib/jvm").glob("java-17-openjdk-*")):
        if (cand / "bin" / "java").exists():
            os.environ["JAVA_HOME"] = str(cand)
            return
    msg = "no Java found for Spark (set JAVA_HOME to a Java 17 or 21)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def spark_env() -> dict[str, str]:
    """The environment of every Spark process: loopback only, this venv's Python."""
    return {
        "SPARK_LOCAL_IP": LOOPBACK,
        "SPARK_LOCAL_HOSTNAME": "localhost",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }


def _session(master: str, app: str, quick_jvm: bool = True):  # noqa: ANN202 - a SparkSession
    """`quick_jvm`: QUICK_JVM for the driver and executors (tests; not for measuring)."""
    from pyspark.sql import SparkSession

    jvm = QUICK_JVM if quick_jvm else ""
    return (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", LOOPBACK)
        .config("spark.driver.bindAddress", LOOPBACK)
        .config("spark.pyspark.python", sys.executable)
        .config("spark.driver.extraJavaOptions", jvm)
        .config("spark.executor.extraJavaOptions", jvm)
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.pyspark.udf.simplifiedTraceback.enabled", "false")
        .getOrCreate()
    )


@pytest.fixture(scope="session")
def spark_processes() -> None:
    _java_home()
    os.environ.update(spark_env())


@pytest.fixture(scope="module")
def spark(spark_processes: None) -> Iterator:
    """A local[2] SparkSession (one per test module: a standalone test needs its own)."""
    session = _session("local[2]", "imgtool-tests")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


class Standalone:
    """A standalone master and one worker (2 cores) on 127.0.0.1, on ports the kernel picks."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.url = ""

    def _start(self, name: str, *args: str) -> tuple[subprocess.Popen, Path]:
        from pyspark.find_spark_home import _find_spark_home

        log = self.root / f"{name}.log"
        # no REST submission server (it takes the fixed port 6066); everything else on ports the kernel picks
        env = dict(
            os.environ,
            **spark_env(),
            SPARK_WORKER_DIR=str(self.root / "work"),
            SPARK_LOG_DIR=str(self.root),
            SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false",
            SPARK_DAEMON_JAVA_OPTS=QUICK_JVM,
        )
        spark_class = Path(_find_spark_home()) / "bin" / "spark-class"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(spark_class), *args], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.procs.append(proc)
        return proc, log

    @staticmethod
    def _wait_for(proc: subprocess.Popen, log: Path, pattern: str, what: str) -> re.Match:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            m = re.search(pattern, log.read_text(errors="replace"))
            if m:
                return m
            if proc.poll() is not None:
                pytest.fail(f"{what} exited ({proc.returncode}): {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.25)
        pytest.fail(f"{what} did not start within {START_TIMEOUT:.0f} s: {log.read_text(errors='replace')[-2000:]}")

    def start(self) -> None:
        master, mlog = self._start(
            "master", "org.apache.spark.deploy.master.Master", "--host", LOOPBACK, "--port", "0", "--webui-port", "0"
        )
        m = self._wait_for(master, mlog, r"Starting Spark master at (spark://127\.0\.0\.1:\d+)", "the Spark master")
        self.url = m.group(1)
        self._start(
            "worker",
            "org.apache.spark.deploy.worker.Worker",
            "--host",
            LOOPBACK,
            "--port",
            "0",
            "--webui-port",
            "0",
            "--cores",
            "2",
            "--memory",
            "2g",
            self.url,
        )
        self._wait_for(master, mlog, r"Registering worker 127\.0\.0\.1:\d+", "the Spark worker")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def standalone(spark_processes: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    cluster = Standalone(tmp_path_factory.mktemp("spark-standalone"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def listeners_of(pids: set[int]) -> list[tuple[str, int, int]]:
    """(local address, port, pid) of every TCP socket in LISTEN state that one of `pids`
    holds, read from /proc/net/tcp{,6} and the processes' fds."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    out = []
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            addr_hex, port_hex = fields[1].split(":")
            out.append((_address(addr_hex, family), int(port_hex, 16), inodes[fields[9]]))
    return out


def _address(hex_addr: str, family: int) -> str:
    import ipaddress

    raw = bytes.fromhex(hex_addr)
    if family == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words))


def is_loopback(address: str) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def descendants(root: int) -> set[int]:
    """`root` and every process below it (children of children...), from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in out and pid not in out:
                out.add(pid)
                grew = True
    return out
