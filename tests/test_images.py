"""Decoding details that solid-colour corpus cases cannot show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgtool import images


@pytest.mark.parametrize("orientation,top,bottom", [(1, "blue", "blue"), (6, "blue", "red"), (8, "red", "blue"),
                                                     (3, "red", "red")])
def test_exif_orientation_is_applied_geometrically(tmp_path: Path, orientation: int, top: str, bottom: str) -> None:
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue, as stored
    exif = im.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    im.save(path, exif=exif.tobytes(), quality=95)
    arr = images.decode(str(path), (40, 40))
    colour = {True: "blue", False: "red"}
    assert colour[bool(arr[2, 2, 2] > 128)] == top  # top-left corner
    assert colour[bool(arr[37, 2, 2] > 128)] == bottom  # bottom-left corner
    thumb = images.decode(str(path), (40, 40), keep_aspect=True)
    assert thumb.shape == ((40, 20, 3) if orientation in (6, 8) else (20, 40, 3))


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr16 = np.full((8, 8), 32768, dtype=np.uint16)
    Image.fromarray(arr16).save(tmp_path / "g16.png")
    out = images.decode(str(tmp_path / "g16.png"), (8, 8))
    assert 120 <= int(out.mean()) <= 135  # mid grey, not the white Pillow's convert() gives


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert images.decode(str(tmp_path / "clear.png"), (8, 8)).min() >= 250
