"""Shared test setup: every test gets its own IMGTOOL_HOME; real fixtures found by path."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("IMGTOOL_FIXTURES", ROOT.parent / "shared" / "fixtures"))

pytest_plugins = ["tests.support.httpserver"]

# tests/beam need apache_beam, which lives in .venv-beam (`make test-beam`), not in .venv
collect_ignore = [] if importlib.util.find_spec("apache_beam") else ["beam"]
# tests/spark need pyspark, which lives in .venv-spark (`make test-spark`)
if not importlib.util.find_spec("pyspark"):
    collect_ignore.append("spark")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the real cache; no test inherits the user's settings."""
    home = tmp_path_factory.mktemp("imgtool-home")
    monkeypatch.setenv("IMGTOOL_HOME", str(home))
    for var in (
        "IMGTOOL_OFFLINE",
        "IMGTOOL_MODEL",
        "IMGTOOL_CATALOG",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("IMGTOOL_TIMEOUT", "3")
    monkeypatch.setenv("IMGTOOL_NO_PROGRESS", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    return home


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The real models and photos in ../shared/fixtures (or $IMGTOOL_FIXTURES).
    Missing: skip on a developer machine, fail under CI."""
    if not (FIXTURES / "imagenet").is_dir():
        msg = f"real fixtures not found at {FIXTURES} (set IMGTOOL_FIXTURES)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return FIXTURES


@pytest.fixture(scope="session")
def flowers(fixtures: Path) -> Path:
    """The real flowers-mini folder: 5 classes of 50 photos."""
    return fixtures / "flowers-mini"


@pytest.fixture(scope="session")
def embedder(fixtures: Path) -> str:
    """The real MobileNet V1 feature extractor (uint8, 1024-wide)."""
    return str(fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")


@pytest.fixture(scope="session")
def mobilenet(fixtures: Path) -> str:
    """The real quantized MobileNet V2 ImageNet classifier (labels in its metadata)."""
    return str(fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite")


@pytest.fixture(scope="session")
def photos(fixtures: Path) -> Path:
    """The real sample photos (cat, parrot, grace_hopper, sunflower)."""
    return fixtures / "imagenet" / "images"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(*args: str, input: str | None = None):
    """Run the CLI in-process; crashes propagate (catch_exceptions=False)."""
    from imgtool.cli.main import cli

    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


IMGTOOL = shutil.which("imgtool", path=str(Path(sys.executable).parent)) or "imgtool"


def default_sigint() -> None:
    """`preexec_fn` of a child that a test interrupts with SIGINT: the signal back to its
    default. A shell without job control starts background jobs (a CI step, `pytest &`)
    with SIGINT ignored, children inherit that, and Python then installs no
    KeyboardInterrupt handler: the test's Ctrl-C would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run the installed `imgtool` as a real subprocess."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run([IMGTOOL, *args], capture_output=True, text=True, env=full_env, timeout=timeout, **kw)
