"""A worker environment that submits: Beam's EXTERNAL worker pool, started on 127.0.0.1
from a venv built ONLY from requirements-worker.lock plus apache-beam (what the SDK
container has: `make install-worker` -> .venv-worker; no imgtool, no TensorFlow), runs
`imgtool beam classify` and `features` through the PortableRunner
(`--environment_type=EXTERNAL`) and gives the records `imgtool classify` gives."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.beam.interrupting import interrupt_once_writing
from tests.beam.test_listeners import _loopback, listeners
from tests.conftest import ROOT

pytestmark = pytest.mark.beam

WORKER_VENV = Path(os.environ.get("IMGTOOL_WORKER_VENV", ROOT / ".venv-worker"))


def _lock() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements-worker.lock").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[name.lower().replace("_", "-").replace(".", "-")] = version
    return out


@pytest.fixture(scope="module")
def worker_python() -> Path:
    py = WORKER_VENV / "bin" / "python"
    if not py.exists():
        msg = f"{py} is missing: run `make install-worker`"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return py


def test_the_lock_is_exact_and_installed_beside_beam(worker_python: Path, tmp_path: Path) -> None:
    """Every line an exact pin; the worker venv holds exactly those versions beside Beam
    2.77, with pillow<13 and protobuf<7 (Beam's pins), and has no imgtool or TensorFlow."""
    lock = _lock()
    assert {"numpy", "pillow", "ai-edge-litert", "protobuf"} <= set(lock)
    assert lock["pillow"].startswith("12.") and int(lock["protobuf"].split(".")[0]) < 7
    script = (
        "import importlib.metadata as m, importlib.util as u, json\n"
        "print(json.dumps({'dists': {d.metadata['Name'].lower().replace('_', '-').replace('.', '-'): d.version "
        "for d in m.distributions()}, 'imgtool': u.find_spec('imgtool') is not None, "
        "'tensorflow': u.find_spec('tensorflow') is not None}))"
    )
    proc = subprocess.run([str(worker_python), "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    found = json.loads(proc.stdout)
    assert found["imgtool"] is False and found["tensorflow"] is False
    assert found["dists"]["apache-beam"].startswith("2.77.")
    assert {k: found["dists"].get(k) for k in lock} == lock
    from importlib.metadata import version

    assert version("pillow") == lock["pillow"]  # the launcher's venv decodes as the workers do


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pool(worker_python: Path, tmp_path_factory: pytest.TempPathFactory):
    """The pool process, its port; its SDK workers are `python` from the worker venv."""
    cwd = tmp_path_factory.mktemp("pool")  # not the repo: imgtool must not be importable from the cwd
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PATH"] = f"{worker_python.parent}{os.pathsep}{env.get('PATH', '')}"
    log = open(cwd / "pool.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(worker_python), str(ROOT / "imgtool" / "beam" / "loopback.py"), f"--service_port={port}"],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, (cwd / "pool.log").read_text()
            time.sleep(0.2)
        else:
            pytest.fail("the worker pool did not start: " + (cwd / "pool.log").read_text()[-2000:])
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _portable(port: int) -> list[str]:
    return [
        "--runner=PortableRunner",
        "--job_endpoint=embed",
        "--environment_type=EXTERNAL",
        f"--environment_config=localhost:{port}",
    ]


def _beam(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imgtool.beam", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_the_pool_listens_on_loopback_only(pool) -> None:
    proc, port = pool
    found = listeners(proc.pid)
    assert f"127.0.0.1:{port}" in found and all(_loopback(a) for a in found), found


def test_classify_through_the_external_pool(pool, mobilenet: str, photos: Path, tmp_path: Path) -> None:
    _, port = pool
    src = tmp_path / "photos"
    shutil.copytree(photos, src)
    (src / "broken.jpg").write_bytes(b"not a JPEG")
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imgtool.beam",
            "classify",
            "-m",
            mobilenet,
            "-i",
            str(src),
            "-o",
            str(tmp_path / "out" / "x"),
            "--",
            *_portable(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    seen: set[str] = set()
    try:
        while run.poll() is None:  # the launcher's embedded job service and its runner's servers
            try:
                seen.update(listeners(run.pid))
            except (FileNotFoundError, ProcessLookupError):
                break
            time.sleep(0.05)
        _, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1, err[-3000:]  # the broken photo
    assert "5 photos classified, 1 failed" in err and "Traceback" not in err
    assert seen and all(_loopback(a) for a in seen), seen  # the launcher listens on loopback only
    got = sorted(
        (
            json.loads(line)
            for s in glob.glob(str(tmp_path / "out" / "x-*.jsonl"))
            for line in Path(s).read_text().splitlines()
        ),
        key=lambda r: r["path"],
    )
    from imgtool.inference.classifier import Classifier
    from imgtool.models.resolve import resolve

    want = sorted((r.to_dict() for r in Classifier(resolve(mobilenet)).classify([str(src)])), key=lambda r: r["path"])
    assert got == want


def test_features_through_the_external_pool(pool, embedder: str, flowers: Path, tmp_path: Path) -> None:
    _, port = pool
    data = tmp_path / "flowers"
    for c in ("daisy", "tulips"):
        (data / c).mkdir(parents=True)
        for f in sorted((flowers / c).iterdir())[:4]:
            shutil.copy(f, data / c / f.name)
    proc = _beam(
        "features",
        "-m",
        embedder,
        "-i",
        str(data),
        "-o",
        str(tmp_path / "f" / "f"),
        "--",
        *_portable(port),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import pyarrow.parquet as pq

    from imgtool.data.images import decode
    from imgtool.runtime.engine import LiteRTEngine

    rows = [r for s in sorted(glob.glob(str(tmp_path / "f" / "f-*.parquet"))) for r in pq.read_table(s).to_pylist()]
    assert sorted(r["path"] for r in rows) == sorted(f"{p.parent.name}/{p.name}" for p in data.rglob("*.jpg"))
    engine = LiteRTEngine(Path(embedder), threads=1)
    for r in rows:
        want = engine.run(decode(r["source"], (224, 224))[None])[0]
        assert np.array_equal(np.array(r["features"], dtype=np.float32), want)


def _many(flowers: Path, d: Path, copies: int) -> Path:
    d.mkdir()
    for i in range(copies):
        for f in flowers.rglob("*.jpg"):
            os.link(f, d / f"{i}-{f.parent.name}-{f.name}")
    return d


@pytest.mark.parametrize("sig", [__import__("signal").SIGINT, __import__("signal").SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_cancels_the_runners_job_and_says_so(
    sig: int, pool, mobilenet: str, flowers: Path, tmp_path: Path
) -> None:
    _, port = pool
    big = _many(flowers, tmp_path / "big", 4)
    out = tmp_path / "out"
    code, err, took = interrupt_once_writing(
        ["classify", "-m", mobilenet, "-i", str(big), "-o", str(out / "x"), "--", *_portable(port)],
        out,
        sig,
        wait_s=60,
        cwd=tmp_path,
    )
    assert code == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Interrupted; cancelled the job on PortableRunner (state "), err
    assert lines[0].endswith("; shards it had not finalized are not written.")
    assert "CANCEL" in lines[0]
    assert not list(out.glob("x-*"))
    assert took < 25, f"{took:.1f} s from the signal to the exit"  # the cancel is confirmed within CANCEL_WAIT


def test_a_worker_that_never_connects_is_an_error_after_a_bounded_wait(
    mobilenet: str, photos: Path, tmp_path: Path
) -> None:
    """A pool that accepts StartWorker but whose worker never connects back (here: one
    that starts nothing) fails the run after --worker-timeout, in one line."""
    from concurrent import futures

    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc

    class Silent(beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolServicer):
        def StartWorker(self, request, context):  # noqa: ANN001, ANN201 - gRPC's names
            return beam_fn_api_pb2.StartWorkerResponse()

        def StopWorker(self, request, context):  # noqa: ANN001, ANN201
            return beam_fn_api_pb2.StopWorkerResponse()

    server = grpc.server(futures.ThreadPoolExecutor(2))
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(Silent(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        started = time.monotonic()
        proc = _beam(
            "classify",
            "-m",
            mobilenet,
            "-i",
            str(photos),
            "-o",
            str(tmp_path / "x"),
            "--worker-timeout",
            "5",
            "--",
            *_portable(port),
            cwd=tmp_path,
        )
        took = time.monotonic() - started
    finally:
        server.stop(0)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "Error: no Beam worker connected within 5 s (is the worker pool running, and can its workers reach this "
        "machine?); the run was stopped"
    ]
    assert took < 60  # start-up, the 5 s, and the exit: not the runner's wait for ever
    assert not list(tmp_path.glob("x-*"))


def test_the_dockerfile_is_this_beam_and_python_plus_the_lock() -> None:
    """No Docker here: the image is checked by what it is made of. Its SDK image is this
    venv's Beam and Python minor version (Beam refuses a mismatch at submission); it
    installs the lock the worker-venv test installs; the build context is the lock only."""
    import apache_beam

    lines = [
        ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert lines[0] == f"FROM apache/beam_python{py}_sdk:{apache_beam.__version__}"
    assert "COPY requirements-worker.lock /tmp/requirements-worker.lock" in lines
    assert any(ln.startswith("RUN pip install --no-cache-dir -r /tmp/requirements-worker.lock") for ln in lines)
    assert (ROOT / ".dockerignore").read_text().split("\n")[-3:-1] == ["*", "!requirements-worker.lock"]


def test_which_runs_wait_for_workers() -> None:
    """The bounded wait applies where this process's control server waits for workers
    started elsewhere; a cluster's job server (a remote --job_endpoint, Dataflow) and the
    threads of the local default have their own."""
    from imgtool.beam import launcher, running

    def waits(*flags: str) -> bool:
        return running.waits_for_workers(launcher.pipeline_options(list(flags)))

    assert not waits()  # the local default: threads in this process
    assert waits("--direct_running_mode=multi_processing")
    assert waits(
        "--runner=PortableRunner",
        "--job_endpoint=embed",
        "--environment_type=EXTERNAL",
        "--environment_config=localhost:1",
    )
    assert waits("--runner=PortableRunner")  # embedded job server, DOCKER workers by default
    assert not waits(
        "--runner=PortableRunner",
        "--job_endpoint=flink-jobserver:8099",
        "--environment_type=EXTERNAL",
        "--environment_config=localhost:1",
    )
    assert not waits("--runner=FlinkRunner", "--environment_type=EXTERNAL", "--environment_config=localhost:1")
