"""tests/beam: each test has its own temporary folder for what workers cache per machine
($TMPDIR/imgtool-beam-models: a model copied from s3:// stays there), so a test that needs
the staged model to be fetched is not served by another test's copy."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def worker_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path_factory.mktemp("worker-tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    monkeypatch.setenv("TMPDIR", str(d))
    return d
