"""Decoding details that solid-colour corpus cases cannot show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgtool.data import images


@pytest.mark.parametrize(
    "orientation,top,bottom", [(1, "blue", "blue"), (6, "blue", "red"), (8, "red", "blue"), (3, "red", "red")]
)
def test_exif_orientation_is_applied_geometrically(tmp_path: Path, orientation: int, top: str, bottom: str) -> None:
    path = _exif_photo(tmp_path, orientation)
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


def test_in_memory_arrays_are_made_rgb_exactly_as_files_are() -> None:
    from imgtool.core.errors import ImageError
    from imgtool.data.images import from_memory

    gray = np.array([[0, 100], [200, 255]], np.uint8)
    assert from_memory(gray, (2, 2)).tolist() == [[[0, 0, 0], [100, 100, 100]], [[200, 200, 200], [255, 255, 255]]]
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0]]], np.uint8)  # opaque, then fully transparent
    assert from_memory(rgba, (1, 2)).tolist() == [[[10, 20, 30], [255, 255, 255]]]  # alpha over white
    rgb = np.array([[[1, 2, 3], [250, 251, 252]]], np.uint8)
    assert from_memory(rgb, (1, 2)).tolist() == rgb.tolist()  # RGB as it is
    half = np.array([[[0, 0, 0, 128]]], np.uint8)
    assert from_memory(half, (1, 1)).tolist() == [[[127, 127, 127]]]
    kept = rgba.copy()
    from_memory(rgba, (4, 4))
    assert np.array_equal(rgba, kept)
    for bad, why in (
        (np.zeros((0, 3, 3), np.uint8), "array of shape (0, 3, 3) holds no pixels"),
        (np.zeros((2, 2, 3), np.int64), "array of int64: give uint8 pixels (0..255)"),
        (np.zeros((2, 2, 3, 1), np.uint8), "array of shape (2, 2, 3, 1): give HxWx3 (RGB), HxWx4 (RGBA) or HxW (gray)"),
    ):
        with pytest.raises(ImageError) as info:
            from_memory(bad, (2, 2))
        assert str(info.value) == why


def _exif_photo(tmp_path: Path, orientation: int) -> Path:
    """A 40x20 JPEG, left half blue and right half red as stored, with an EXIF orientation."""
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 20, 20))
    exif = im.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    im.save(path, exif=exif.tobytes(), quality=95)
    return path


@pytest.mark.parametrize(
    "orientation,top,bottom", [(1, "blue", "blue"), (6, "blue", "red"), (8, "red", "blue"), (3, "red", "red")]
)
def test_in_memory_image_opened_from_a_rotated_file_equals_the_file(
    tmp_path: Path, orientation: int, top: str, bottom: str
) -> None:
    """`from_memory(Image.open(rotated.jpg))` is exactly `decode(path)`: EXIF orientation applied
    to the in-memory image too (files were tested, in-memory images were not). Planted change
    this catches: from_memory without `ImageOps.exif_transpose`."""
    path = _exif_photo(tmp_path, orientation)
    with Image.open(path) as im:
        got = images.from_memory(im, (40, 40))
        assert im.getexif()[0x0112] == orientation  # the caller's image is left as it was
    assert np.array_equal(got, images.decode(str(path), (40, 40)))
    colour = {True: "blue", False: "red"}
    assert colour[bool(got[2, 2, 2] > 128)] == top  # by hand: where the blue half ends up
    assert colour[bool(got[37, 2, 2] > 128)] == bottom


def test_thumbnail_is_a_bilinear_shrink(tmp_path: Path) -> None:
    """The report's thumbnails (`decode(..., keep_aspect=True)`) are shrunk with a bilinear
    (antialiasing) filter: one-pixel black/white stripes halved become mid grey. Planted change
    this catches: the thumbnail resized with NEAREST (every other column: all white or all
    black)."""
    stripes = np.zeros((8, 16, 3), np.uint8)
    stripes[:, 1::2] = 255
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    thumb = images.decode(str(tmp_path / "stripes.png"), (8, 8), keep_aspect=True)
    assert thumb.shape == (4, 8, 3)  # aspect kept: 16x8 fits 8x8 as 8x4
    # an inner output pixel spans input columns 2j-1 .. 2j+2 with triangle weights 1/4, 3/4,
    # 3/4, 1/4 (sum 2): (1/4 + 3/4) * 255 / 2 = 127.5
    assert np.abs(thumb[:, 1:-1].astype(int) - 127.5).max() <= 1


def test_a_truncated_in_memory_image_is_one_line_corrupt_image(tmp_path: Path) -> None:
    """A PIL image opened lazily from a file cut short fails when its pixels are read:
    ImageError "corrupt image (<Pillow's first line>)", as for the file."""
    from imgtool.core.errors import ImageError

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with Image.open(tmp_path / "cut.png") as im, pytest.raises(ImageError) as info:
        images.from_memory(im, (8, 8))
    assert str(info.value).startswith("corrupt image (") and "truncated" in str(info.value)
    assert "\n" not in str(info.value)


def test_one_input_is_decoded_on_the_calling_thread_many_on_workers(photos, monkeypatch):
    """No thread pool is started for one input (the cold one-photo path); two or more are
    decoded ahead on the worker threads. Same pixels either way."""
    import threading

    from imgtool.data import images as images_mod

    seen: list[str] = []
    real = images_mod.decode

    def spy(path, size, *a, **kw):
        seen.append(threading.current_thread().name)
        return real(path, size, *a, **kw)

    monkeypatch.setattr(images_mod, "decode", spy)
    one = str(photos / "parrot.jpg")
    alone = list(images_mod.decode_ahead([images_mod.Input(one)], (224, 224), workers=2, window=4))
    assert seen == [threading.current_thread().name]
    seen.clear()
    two = list(
        images_mod.decode_ahead(
            [images_mod.Input(one), images_mod.Input(str(photos / "cat.bmp"))], (224, 224), workers=2, window=4
        )
    )
    assert len(seen) == 2 and all(name.startswith("decode") for name in seen)
    assert alone[0][0] == two[0][0] and (alone[0][1] == two[0][1]).all() and alone[0][2] is None
