"""Running a pipeline and stopping it honestly: what an interrupt means for the job, and a
bounded wait for workers.

* An interrupt (SIGINT/SIGTERM) during a local run (the FnApiRunner: the run is this
  process) stops it: nothing is written. During a job the runner holds (PortableRunner,
  Dataflow, Flink, Spark: `p.run()` returned a PipelineResult), the job is cancelled with
  `result.cancel()` and the message says whether the runner confirmed it; when it cannot
  be cancelled, the message says plainly that the job goes on, and where.
* A run whose workers are started elsewhere (an EXTERNAL pool, worker processes) fails
  after `worker_timeout` seconds when no worker has connected to this process's control
  server, instead of waiting forever.

Layer: the launcher side of imgtool.beam (never shipped to workers)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from imgtool.core.errors import first_line

CANCEL_WAIT = 20.0  # seconds given to the runner to confirm a cancel
DEFAULT_WORKER_TIMEOUT = 120.0


class Interrupted(KeyboardInterrupt):
    """An interrupted run, with the one line that says what became of the job."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _runner(options: Any) -> str:
    from apache_beam.options.pipeline_options import StandardOptions

    name = options.view_as(StandardOptions).runner
    return name if isinstance(name, str) else type(name).__name__


def waits_for_workers(options: Any) -> bool:
    """Whether this process's control server waits for workers started elsewhere: an
    EXTERNAL/PROCESS/DOCKER environment run from here (PortableRunner with an embedded
    job server, or the FnApiRunner), or the FnApiRunner's worker processes."""
    from apache_beam.options.pipeline_options import DirectOptions, PortableOptions

    runner = _runner(options).rsplit(".", 1)[-1].lower()
    portable = options.view_as(PortableOptions)
    is_portable = runner in ("portablerunner", "portable")
    env = (portable.environment_type or ("DOCKER" if is_portable else "")).upper()  # the portable default
    in_process = runner in ("fnapirunner", "fnapi") or (is_portable and (portable.job_endpoint or "embed") == "embed")
    multi = options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    return in_process and (env in ("EXTERNAL", "PROCESS", "DOCKER") or (runner.startswith("fnapi") and multi))


class WorkerWatch:
    """Counts workers connecting to this process's control server (Beam's
    BeamFnControlServicer.Control, wrapped while the run lasts) and, after `timeout`
    seconds with none, interrupts the main thread with a real SIGINT (a blocked wait
    wakes for a signal, not for `_thread.interrupt_main`)."""

    def __init__(self, timeout: float | None):
        self.timeout = timeout
        self.connected = threading.Event()
        self.timed_out = False
        self._done = threading.Event()

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        if self.timeout is None:
            yield
            return
        from apache_beam.runners.portability.fn_api_runner import worker_handlers

        servicer = worker_handlers.BeamFnControlServicer
        real = servicer.Control
        watch = self

        def control(self: Any, iterator: Any, context: Any) -> Any:
            watch.connected.set()
            yield from real(self, iterator, context)

        servicer.Control = control
        thread = threading.Thread(target=self._wait, name="imgtool-worker-watch", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._done.set()
            servicer.Control = real

    def _wait(self) -> None:
        assert self.timeout is not None
        deadline = self.timeout
        while not self._done.wait(min(deadline, 0.5)):
            deadline -= 0.5
            if self.connected.is_set():
                return
            if deadline <= 0:
                self.timed_out = True
                os.kill(os.getpid(), signal.SIGINT)
                return


def stop(result: Any, options: Any) -> str:
    """The line for an interrupt: cancel the runner's job when there is one."""
    runner = _runner(options)
    if result is None:
        return "Interrupted; the local run stopped and wrote no shards (its temporary files were removed)."
    outcome: dict[str, Any] = {}

    def cancel() -> None:
        try:
            outcome["state"] = result.cancel()
        except Exception as err:  # noqa: BLE001 - each runner raises its own
            outcome["error"] = err

    t = threading.Thread(target=cancel, name="imgtool-cancel", daemon=True)
    try:
        t.start()
        t.join(CANCEL_WAIT)
    except KeyboardInterrupt:
        return (
            f"Interrupted again before {runner} confirmed the cancel: the job may go on; "
            "check it with the runner's own tools and cancel it there."
        )
    if "error" in outcome:
        err = outcome["error"]
        return (
            f"Interrupted; {runner} could not cancel the job ({first_line(err)}): it goes on; "
            "cancel it with the runner's own tools (e.g. `gcloud dataflow jobs cancel JOB_ID`)."
        )
    if t.is_alive():
        return (
            f"Interrupted; asked {runner} to cancel the job, with no answer in {CANCEL_WAIT:g} s: "
            "it may go on; check it with the runner's own tools."
        )
    state = outcome.get("state")
    try:
        state = state or result.state
    except Exception:  # noqa: BLE001 - a result that cannot say its state
        state = None
    return (
        f"Interrupted; cancelled the job on {runner}"
        + (f" (state {state})" if state else "")
        + "; shards it had not finalized are not written."
    )
