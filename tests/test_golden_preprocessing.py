"""One preprocessing everywhere: the fixtures' photos give byte-identical input arrays
and the same scores (to 1e-6) in every install, against ONE stored expectation
(tests/golden/preprocessing.json, written by `python -m tests.support.golden`). Run in .venv by
`make test` and in .venv-beam by `make test-beam`: Pillow 12 and 13 resize an upscaled
photo differently, which changed 33 of 255 records and one top-1 label (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import golden


def test_inputs_and_scores_match_the_stored_expectation(fixtures: Path) -> None:
    want = json.loads(golden.GOLDEN.read_text())
    got = golden.compute(fixtures)
    assert sorted(got) == sorted(want["photos"])
    assert any(min(w["size"]) < 224 for w in want["photos"].values())  # upscaled photos are in it
    inputs = [p for p in got if got[p]["input_sha256"] != want["photos"][p]["input_sha256"]]
    scores = [
        p
        for p in got
        if [i for i, _ in got[p]["top"]] != [i for i, _ in want["photos"][p]["top"]]
        or any(abs(a[1] - b[1]) > 1e-6 for a, b in zip(got[p]["top"], want["photos"][p]["top"]))
    ]
    import PIL

    assert not inputs and not scores, (
        f"with Pillow {PIL.__version__}: {len(inputs)} input arrays and {len(scores)} top-{golden.TOP} score lists "
        f"differ from {golden.GOLDEN.name} (e.g. {(inputs or scores)[:3]})"
    )


@pytest.mark.parametrize("name", ["pillow", "ai-edge-litert"])
def test_the_expectation_is_one_file_made_by_the_pinned_line(name: str) -> None:
    """The pin that keeps the numbers equal: Pillow 12.x in every install."""
    from importlib.metadata import version

    if name == "pillow":
        assert version("pillow").split(".")[0] == "12"
    assert version(name)


def test_a_workers_bytes_decode_as_the_file_does(fixtures: Path) -> None:
    """A Beam worker reads a photo's bytes through Beam's FileSystems and decodes them
    with images.decode(io.BytesIO(data)): the same array as decode(path), the same reasons."""
    import io

    import numpy as np

    from imgtool.core.errors import ImageError
    from imgtool.data.images import decode

    for p in golden.photos(fixtures)[::10]:
        assert np.array_equal(decode(io.BytesIO(p.read_bytes()), golden.SIZE), decode(str(p), golden.SIZE)), p
    with pytest.raises(ImageError, match=r"^not an image Pillow can read \(unknown or corrupt format\)$"):
        decode(io.BytesIO(b"this is not a JPEG"), golden.SIZE)
