"""The README's "Python API" examples run, with the fixtures in place of their file names."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_readme_has_python_api_examples() -> None:
    blocks = _blocks()
    assert len(blocks) == 4
    joined = "\n".join(blocks)
    for name in ("load_model", "classify", "retrain", "evaluate", "list_models", "LookupError"):
        assert name in joined


def test_the_python_api_examples_run(fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    flowers = tmp_path / "flowers"
    for c in sorted(p.name for p in (fixtures / "flowers-mini").iterdir() if p.is_dir()):
        (flowers / c).mkdir(parents=True)
        for f in sorted((fixtures / "flowers-mini" / c).iterdir())[:10]:
            shutil.copy(f, flowers / c / f.name)
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
        for block in _blocks():
            code = re.sub(r'"([^"\n]*)"',
                          lambda m: repr(str(names[m.group(1)])) if m.group(1) in names else m.group(0), block)
            exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own examples
    finally:  # the example's logging.basicConfig must not outlive this test
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
    out = capsys.readouterr().out
    assert "1001 Egyptian cat (224, 224)" in out
    assert "Prediction(label='Egyptian cat', score=0.789062, index=286)" in out
    assert f"{tmp_path / 'flowers-model'} " in out
    assert "unknown model 'inception_v33'" in out and "did you mean inception_v3" in out
    assert (tmp_path / "flowers-model" / "imgtool-model.json").is_file()
    assert "model-dynamic.tflite dynamic " in out and (tmp_path / "flowers-model" / "model-dynamic.tflite").is_file()
    assert "removed bottlenecks cache " in out and not (Path(os.environ["IMGTOOL_HOME"]) / "bottlenecks").exists()
