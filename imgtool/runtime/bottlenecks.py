"""The bottleneck cache: backbone features of each image, computed once.

Key: the image's content hash + the backbone's identity and preprocessing, so a renamed
file is a hit and a changed image or another backbone a miss. Each entry is a small file
`<sha256 of payload (32 bytes)><float32 payload>`, written atomically and verified on read:
a damaged entry is recomputed, never fatal. The cache is an optimisation: when it cannot
be written (full disk, read-only, permission denied) the run warns once and goes on with
the features in memory."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from imgtool.core import store, ui
from imgtool.core.errors import Param
from imgtool.runtime.engine import Engine

FORMAT_VERSION = "1"


file_sha256 = store.sha256_file  # a photo's content key


def backbone_id(
    model_file: Path, input_size: tuple[int, int], value_range: tuple[float, float] | None, extra: str = ""
) -> str:
    """Identity of a backbone + preprocessing. The model file's hash is remembered by
    (path, size, mtime) in the cache so a 90 MB model is not rehashed every run."""
    st = model_file.stat()
    memo = (
        store.home()
        / "bottlenecks"
        / "model-hashes"
        / hashlib.sha256(f"{model_file.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:24]
    )
    try:
        digest = memo.read_text().strip()
        if len(digest) != 64:
            raise ValueError
    except (OSError, ValueError):
        digest = file_sha256(str(model_file))
        with contextlib.suppress(OSError):  # only a memo: an unwritable cache rehashes next time
            store.atomic_write_text(memo, digest)
    ident = f"v{FORMAT_VERSION}|{digest}|{input_size}|{value_range}|{extra}"
    return hashlib.sha256(ident.encode()).hexdigest()[:20]


class BottleneckCache:
    def __init__(self, ident: str, root: Path | None = None):
        self.dir = (root or store.home() / "bottlenecks") / ident
        self.damaged = 0
        self.write_error: OSError | None = None  # set by the first failed write; later puts are skipped

    def _path(self, sha: str) -> Path:
        return self.dir / sha[:2] / f"{sha}.f32"

    def has(self, sha: str) -> bool:
        try:
            return stat.S_ISREG(os.stat(self._path(sha)).st_mode)
        except OSError:  # missing, or a cache folder we may not read
            return False

    def get(self, sha: str) -> np.ndarray | None:
        p = self._path(sha)
        try:
            blob = p.read_bytes()
        except OSError:
            return None
        payload = blob[32:]
        if len(blob) < 36 or len(payload) % 4 or hashlib.sha256(payload).digest() != blob[:32]:
            self.damaged += 1
            with contextlib.suppress(OSError):  # a read-only cache keeps it; it is never trusted
                p.unlink(missing_ok=True)
            return None
        return np.frombuffer(payload, dtype=np.float32)

    def put(self, sha: str, vector: np.ndarray) -> None:
        """Keep a vector for next time; a cache that cannot be written is said once
        (`write_error`) and then left alone - the run goes on with the vectors in memory."""
        if self.write_error is not None:
            return
        payload = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        try:
            # no fsync: a torn entry fails its checksum on read and is recomputed
            store.atomic_write_bytes(self._path(sha), hashlib.sha256(payload).digest() + payload, durable=False)
        except OSError as err:
            self.write_error = err
            ui.warn(
                f"cannot write the bottleneck cache {self.dir} ({store.write_cause(err)}); going on without "
                "it - features are kept in memory only, so the next run computes them again (free space, "
                "or set " + Param("bottleneck_dir") + " / IMGTOOL_HOME to a writable folder)"
            )


def extract(
    engine: Engine, paths: list[str], shas: list[str], cache: BottleneckCache, batch_size: int = 8, workers: int = 2
) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    """Features for each path (cache first, backbone for misses): yields (i, vector, error)."""
    from imgtool.data.images import Input, decode_ahead

    misses: list[int] = []
    for i, sha in enumerate(shas):
        vec = cache.get(sha)
        if vec is None:
            misses.append(i)
        else:
            yield i, vec, None
    if cache.damaged:
        ui.info(
            f"{cache.damaged} damaged bottleneck cache entr{'y' if cache.damaged == 1 else 'ies'} removed; recomputing"
        )
    if not misses:
        return
    bar = ui.progress(len(misses), "bottlenecks", unit="img")
    ui.info(f"Computing {len(misses)} bottleneck{'s' if len(misses) != 1 else ''} (cached for next time)")
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> Iterator[tuple[int, np.ndarray | None, str | None]]:
        feats = engine.run(np.stack([a for _, a in pending]))
        for (i, _), vec in zip(pending, feats):
            cache.put(shas[i], vec)
            yield i, vec, None
        bar.update(len(pending))
        pending.clear()

    inputs: Iterable[Input] = (Input(paths[i]) for i in misses)
    for j, (_, arr, err) in enumerate(
        decode_ahead(inputs, engine.input_size, workers, window=batch_size * 2 + workers)
    ):
        i = misses[j]
        if arr is None:
            yield i, None, err
            continue
        pending.append((i, arr))
        if len(pending) >= batch_size:
            yield from flush()
    if pending:
        yield from flush()
    bar.close()


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2)))
