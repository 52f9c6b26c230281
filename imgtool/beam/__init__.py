"""`imgtool beam`: classify photos and extract retraining features on Apache Beam.

One pipeline runs locally (the FnApiRunner, multi-threaded, no network) and on Dataflow,
Flink and Spark. This package's __init__ imports nothing heavy: apache_beam is imported
only when a beam command runs, so `import imgtool` and the plain CLI never load it.

  imgtool/beam/cli.py        the click commands (`imgtool beam classify|features`)
  imgtool/beam/launcher.py   client side: resolve --model with imgtool's resolver, stage
                             the .tflite by its sha256, check options and outputs
  imgtool/beam/pipelines.py  the pipelines (listing, Reshuffle, batches, writers)
  imgtool/beam/worker.py     what workers run (Decode, the RunInference ModelHandler, the
                             records): numpy, Pillow and LiteRT only
  imgtool/beam/running.py    interrupts (cancel a runner's job) and the wait for workers
  imgtool/beam/loopback.py   Beam's local gRPC servers on 127.0.0.1 (stands alone: it also
                             starts an EXTERNAL worker pool from a worker-only venv)
"""

from __future__ import annotations

import importlib.util

INSTALL_HINT = (
    "install it with `make install-beam` (a separate .venv-beam) or "
    "`pip install 'imgtool-ml[beam]'` in a venv of its own"
)


def beam_installed() -> bool:
    return importlib.util.find_spec("apache_beam") is not None
