"""Beam's local servers on loopback only. Stands alone (the standard library and
apache_beam, no imgtool): the launcher imports it, and a worker-only venv runs it as a
script to start Beam's EXTERNAL worker pool bound to 127.0.0.1:

    .venv-worker/bin/python imgtool/beam/loopback.py --service_port=50000

(`python -m apache_beam.runners.worker.worker_pool_main --service_port=N` binds `[::]:N`,
every interface; on a cluster that may be what you want, on a laptop or CI it is not.)
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

LOOPBACK = "127.0.0.1"
WILDCARDS = ("[::]", "0.0.0.0", "", "[::0]")


class _LoopbackServer:
    """A grpc.Server whose wildcard ports ([::]:0, 0.0.0.0:0) bind 127.0.0.1 instead."""

    def __init__(self, server: Any):
        self._server = server

    def add_insecure_port(self, address: str) -> int:
        host, _, port = address.rpartition(":")
        if host in WILDCARDS:
            address = f"{LOOPBACK}:{port}"
        return int(self._server.add_insecure_port(address))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class _LoopbackGrpc:
    """The grpc module as the local runner's worker handlers see it: servers on loopback."""

    def __init__(self, grpc: Any):
        self._grpc = grpc

    def server(self, *args: Any, **kwargs: Any) -> _LoopbackServer:
        return _LoopbackServer(self._grpc.server(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grpc, name)


# the modules of Beam's local runners that open gRPC servers on `[::]`: the FnApiRunner's
# worker handlers (control, data, state, logging), a local worker process's logging
# server, and the embedded job service's artifact staging (PortableRunner without a job
# endpoint)
WILDCARD_BINDERS = (
    "apache_beam.runners.portability.fn_api_runner.worker_handlers",
    "apache_beam.runners.portability.local_job_service",
    "apache_beam.runners.portability.abstract_job_service",
)


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Beam 2.77's local runners bind their gRPC servers to `[::]:0`, every interface of
    the machine, unauthenticated: for this run they bind 127.0.0.1. Their workers
    (threads, local processes, an EXTERNAL pool on this machine) connect to
    `localhost:PORT`, which reaches them. Only those modules' view of grpc changes."""
    patched = []
    for name in WILDCARD_BINDERS:
        module = importlib.import_module(name)
        real = getattr(module, "grpc", None)
        if real is not None and not isinstance(real, _LoopbackGrpc):
            module.grpc = _LoopbackGrpc(real)  # type: ignore[attr-defined]
            patched.append((module, real))
    try:
        yield
    finally:
        for module, real in patched:
            module.grpc = real  # type: ignore[attr-defined]


def worker_pool_main(argv: list[str]) -> None:
    """apache_beam's worker_pool_main with its server on 127.0.0.1."""
    from apache_beam.runners.worker import worker_pool_main as pool

    pool.grpc = _LoopbackGrpc(pool.grpc)
    pool.main(argv)


if __name__ == "__main__":
    import sys

    worker_pool_main(sys.argv)
