"""A closed stdout (`imgtool ... | head -1`) is how a pipeline says "enough": exit 0, and
not a word on stderr (no traceback, no "Exception ignored ... BrokenPipeError")."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IMGTOOL


@pytest.fixture(scope="module")
def quant(fixtures: Path) -> str:
    return str(fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite")


@pytest.fixture(scope="module")
def small_flowers(fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """flowers/ (3 classes, for retrain) and imagenet-named/daisy (evaluate needs folders
    named after the model's labels)."""
    root = tmp_path_factory.mktemp("photos")
    for c in ("daisy", "dandelion", "roses"):
        (root / "flowers" / c).mkdir(parents=True)
        for f in sorted((fixtures / "flowers-mini" / c).iterdir())[:8]:
            shutil.copy(f, root / "flowers" / c / f.name)
    shutil.copytree(root / "flowers" / "daisy", root / "imagenet-named" / "daisy")
    return root


def _commands(fixtures: Path, quant: str, flowers: Path) -> dict[str, list[str]]:
    embedder = str(fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
    return {
        "classify": ["classify", "-q", "-m", quant, "-f", "jsonl", str(fixtures / "flowers-mini")],
        "labels": ["labels", "-m", quant],
        "evaluate": ["evaluate", "-q", "-m", quant, "-f", "json", str(flowers / "imagenet-named")],
        "models list": ["models", "list"],
        "retrain": [
            "retrain",
            "-q",
            "-m",
            embedder,
            "-o",
            "{tmp}/model",
            "--epochs",
            "2",
            "-f",
            "json",
            str(flowers / "flowers"),
        ],
    }


NAMES = ["classify", "labels", "evaluate", "models list", "retrain"]


@pytest.mark.parametrize("name", NAMES)
def test_stdout_closed_before_the_first_write(
    name: str, fixtures: Path, quant: str, small_flowers: Path, tmp_path: Path
) -> None:
    """Deterministic: the read end is closed before imgtool starts, so its first write
    to stdout fails with EPIPE."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in _commands(fixtures, quant, small_flowers)[name]]
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([IMGTOOL, *args], stdout=w, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(w)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


@pytest.mark.parametrize("name", NAMES)
def test_head_1_under_pipefail(name: str, fixtures: Path, quant: str, small_flowers: Path, tmp_path: Path) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in _commands(fixtures, quant, small_flowers)[name]]
    line = " ".join(shlex.quote(a) for a in [IMGTOOL, *args])
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{line} | head -1"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode in (0, 141), proc.stderr
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert len(proc.stdout.splitlines()) == 1


def test_classify_writing_past_a_full_pipe_buffer_ends_quietly(quant: str, fixtures: Path) -> None:
    """250 photos of jsonl are more than a pipe holds: the writes after `head` left fail,
    and imgtool ends there, quietly, instead of classifying on into nothing."""
    line = " ".join(
        shlex.quote(a)
        for a in [IMGTOOL, "classify", "-m", quant, "-f", "jsonl", "-k", "5", str(fixtures / "flowers-mini")]
    )
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{line} | head -c 100 >/dev/null"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0
    assert "Error" not in proc.stderr and "Traceback" not in proc.stderr and "Exception" not in proc.stderr
