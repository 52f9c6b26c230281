"""The golden preprocessing expectation: every fixture photo's decoded input array (its
sha256) and the real MobileNet V2's top scores on it, stored ONCE in
tests/golden/preprocessing.json and checked by tests/test_golden_preprocessing.py in both
venvs (`make test` in .venv, `make test-beam` in .venv-beam): a photo's input and score
must not depend on which install (or which Beam worker) computed them.

Regenerate (only when the model, the fixtures or the decoder change on purpose, and say
why in the commit):

    .venv/bin/python -m tests.support.golden        # writes tests/golden/preprocessing.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "preprocessing.json"
TOP = 5
SIZE = (224, 224)


def photos(fixtures: Path) -> list[Path]:
    """Every fixture photo: the ImageNet samples and all of flowers-mini (several of them
    smaller than 224 on a side, so they are upscaled)."""
    return sorted([*(fixtures / "imagenet" / "images").glob("*.*"), *(fixtures / "flowers-mini").rglob("*.jpg")])


def compute(fixtures: Path) -> dict[str, Any]:
    """{relative path: {"size", "input_sha256", "top": [[index, score], ...]}} with the
    library's own decoder and LiteRT engine (what `imgtool classify` and a Beam worker run)."""
    from PIL import Image

    from imgtool.data.images import decode
    from imgtool.runtime.engine import LiteRTEngine

    engine = LiteRTEngine(fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite", threads=1)
    out: dict[str, Any] = {}
    for p in photos(fixtures):
        arr = decode(str(p), SIZE)
        scores = engine.run(arr[None])[0]
        order = np.argsort(-scores, kind="stable")[:TOP]
        with Image.open(p) as im:
            size = list(im.size)
        out[p.relative_to(fixtures).as_posix()] = {
            "size": size,  # width, height as stored: < 224 means upscaled
            "input_sha256": hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest(),
            "top": [[int(i), float(scores[i])] for i in order],
        }
    return out


def main() -> None:
    from tests.conftest import FIXTURES

    data = {
        "model": "imagenet/mobilenet_v2_1.0_224_quant.tflite",
        "input_size": list(SIZE),
        "photos": compute(FIXTURES),
    }
    tmp = GOLDEN.with_suffix(".json.tmp")
    GOLDEN.parent.mkdir(exist_ok=True)
    lines = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(data["photos"].items())]
    head = json.dumps({k: v for k, v in data.items() if k != "photos"}, sort_keys=True)[:-1]
    tmp.write_text(head + ', "photos": {\n' + ",\n".join(lines) + "\n}}\n")  # one photo a line: readable diffs
    tmp.replace(GOLDEN)
    print(f"wrote {GOLDEN} ({len(data['photos'])} photos)", file=sys.stderr)


if __name__ == "__main__":
    main()
