"""The examples in the docs run: docs/api.md's Python blocks (the fixtures in place of
their file names), and the README's quick start, shell and Python, offline with an empty
cache (tests/test_packaging.py runs the same shell lines in a fresh venv)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _blocks(path: Path, lang: str, section: str | None = None) -> list[str]:
    text = path.read_text()
    if section is not None:
        text = text.split(section, 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", text, re.DOTALL)


def _small_flowers(fixtures: Path, dest: Path, per_class: int = 10) -> Path:
    for c in sorted(p.name for p in (fixtures / "flowers-mini").iterdir() if p.is_dir()):
        (dest / c).mkdir(parents=True)
        for f in sorted((fixtures / "flowers-mini" / c).iterdir())[:per_class]:
            shutil.copy(f, dest / c / f.name)
    return dest


def quick_start_commands() -> list[str]:
    """The README's quick start shell lines, comments stripped, without the install."""
    block = _blocks(ROOT / "README.md", "sh", "## Quick start")[0]
    lines = [ln.split("#")[0].strip() for ln in block.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("pip ")]


def quick_start_folder(fixtures: Path, where: Path) -> Path:
    """What a newcomer has: photo.jpg (a parrot) and flowers/ (one sub-folder per class)."""
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(fixtures / "imagenet" / "images" / "parrot.jpg", where / "photo.jpg")
    _small_flowers(fixtures, where / "flowers")
    return where


def check_quick_start_output(outputs: list[str]) -> None:
    """classify (embedded classifier), retrain (embedded extractor), classify (the result)."""
    first, _, last = outputs
    assert first.splitlines()[:2] == ["photo.jpg", "  0.9961  macaw"]
    flower_classes = {"daisy", "dandelion", "roses", "sunflowers", "tulips"}
    assert last.splitlines()[0] == "photo.jpg"
    assert {line.split()[1] for line in last.splitlines()[1:]} == flower_classes


def test_the_readme_quick_start_runs_offline(fixtures: Path, tmp_path: Path, isolated_home: Path) -> None:
    work = quick_start_folder(fixtures, tmp_path / "work")
    commands = quick_start_commands()
    assert len(commands) == 3 and all(c.startswith("imgtool ") for c in commands)
    env = {
        **os.environ,
        "IMGTOOL_OFFLINE": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    outputs = []
    for command in commands:
        proc = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{command}: {proc.stderr}"
        outputs.append(proc.stdout)
    check_quick_start_output(outputs)
    assert (work / "flowers-model" / "model.tflite").is_file()
    assert not (isolated_home / "models").exists()  # nothing was downloaded


def test_the_readme_quick_start_in_python_runs(
    fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    [block] = _blocks(ROOT / "README.md", "python", "## Quick start")
    work = quick_start_folder(fixtures, tmp_path / "work")
    monkeypatch.chdir(work)
    monkeypatch.setenv("IMGTOOL_OFFLINE", "1")
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    first, last = capsys.readouterr().out.splitlines()
    assert first == "Prediction(label='macaw', score=0.996094, index=89)"
    assert re.fullmatch(
        r"Prediction\(label='(daisy|dandelion|roses|sunflowers|tulips)', score=0\.\d+, index=\d\)", last
    )
    assert (work / "flowers-model" / "imgtool-model.json").is_file()


def test_the_api_page_has_python_examples() -> None:
    blocks = _blocks(ROOT / "docs" / "api.md", "python")
    assert len(blocks) == 5
    joined = "\n".join(blocks)
    for name in ("imgtool.classify(", "load_model", "retrain", "evaluate", "list_models", "LookupError"):
        assert name in joined


def test_the_python_api_examples_run(
    fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    flowers = _small_flowers(fixtures, tmp_path / "flowers")
    names = {  # a string literal in the examples -> the fixture it stands for
        "mobilenet_v2_1.0_224_quant.tflite": fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite",
        "cat.bmp": fixtures / "imagenet" / "images" / "cat.bmp",
        "photos/": fixtures / "imagenet" / "images",
        "embedding.tflite": fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
        "flowers/": flowers,
        "more-flowers/": flowers,
        "flowers-model": tmp_path / "flowers-model",
    }
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        for block in _blocks(ROOT / "docs" / "api.md", "python"):
            code = re.sub(
                r'"([^"\n]*)"', lambda m: repr(str(names[m.group(1)])) if m.group(1) in names else m.group(0), block
            )
            exec(compile(code, "docs/api.md", "exec"), namespace)  # noqa: S102 - the page's own examples
    finally:  # the example's logging.basicConfig must not outlive this test
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
    out = capsys.readouterr().out
    assert f"{names['cat.bmp']} Egyptian cat\n" in out  # the one-shot call, with the embedded classifier
    assert "1001 Egyptian cat (224, 224)" in out
    assert "Prediction(label='Egyptian cat', score=0.789062, index=286)" in out
    assert f"{tmp_path / 'flowers-model'} " in out
    assert "unknown model 'inception_v33'" in out and "did you mean inception_v3" in out
    assert (tmp_path / "flowers-model" / "imgtool-model.json").is_file()
    assert "model-dynamic.tflite dynamic " in out and (tmp_path / "flowers-model" / "model-dynamic.tflite").is_file()
    assert "removed bottlenecks cache " in out and not (Path(os.environ["IMGTOOL_HOME"]) / "bottlenecks").exists()
