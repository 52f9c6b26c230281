"""The models that ship inside the package (imgtool/models/embedded/, catalog records with
`embedded`): found, and checked against their pinned sha256 and size before use.

Hashing the 3.6 MB file costs 3.5-20 ms (reading the note below: 0.04 ms), so it is
done once per file identity (device, inode, size, mtime and ctime): the identities
already verified are remembered in IMGTOOL_HOME/embedded-verified.json, and a file that
changed in any way is hashed again. That note is an optimisation: when it cannot be written, every run hashes.
Nothing of the models themselves is ever copied into the cache.

Layer: getting models (above catalog, store).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from imgtool.core import store, ui
from imgtool.core.errors import ModelError
from imgtool.models.catalog import ModelConfig

VERIFIED_FILE = "embedded-verified.json"
_verified: set[str] = set()  # identities verified by this process


def embedded_dir() -> Path:
    return Path(str(resources.files("imgtool.models").joinpath("embedded")))


def _identity(path: Path, st: os.stat_result, sha256: str) -> str:
    return f"{path}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{sha256}"


def path(config: ModelConfig) -> Path:
    """The embedded model file of `config`, checked: its size always, its sha256 once
    per file identity. ModelError (reinstall) when it is missing or not the file pinned."""
    assert config.embedded is not None and config.sha256 is not None
    file = embedded_dir() / config.embedded
    fix = "reinstall imgtool-ml (pip install --force-reinstall imgtool-ml)"
    try:
        st = file.stat()
    except OSError as err:
        raise ModelError(
            f"{config.name}: the model file that ships with imgtool is missing ({file}: {err.strerror}); {fix}"
        ) from None
    if config.size is not None and st.st_size != config.size:
        raise ModelError(
            f"{config.name}: the model file that ships with imgtool is damaged ({file}: "
            f"{st.st_size} bytes, expected {config.size}); {fix}"
        )
    ident = _identity(file, st, config.sha256)
    if ident in _verified:
        return file
    note = store.home() / VERIFIED_FILE
    known = store.read_json(note)
    known = known if isinstance(known, dict) else {}
    if known.get(config.embedded) == ident:
        _verified.add(ident)
        return file
    actual = store.sha256_file(file)
    if actual != config.sha256:
        raise ModelError(
            f"{config.name}: the model file that ships with imgtool is damaged ({file}: sha256 "
            f"{actual[:12]}..., expected {config.sha256[:12]}...); {fix}"
        )
    _verified.add(ident)
    try:  # no fsync: a lost note costs one more hash
        store.atomic_write_bytes(note, json.dumps({**known, config.embedded: ident}, indent=2).encode(), durable=False)
    except OSError as err:  # read-only or full IMGTOOL_HOME: the next run hashes again, that is all
        ui.log.debug("could not note that %s was verified (%s); it will be hashed again next time", file, err)
    return file
