"""Reliability, part 5: fuzzing the image-decoding path, imgtool.data.images.decode.

Inputs: random bytes (bare, and behind the magic numbers of formats Pillow sniffs), and
real photos mutated by flipping, inserting, deleting, overwriting bytes and truncating:
/work/shared/fixtures/imagenet/images/parrot.jpg and a PNG made from it (whose chunk CRCs
are re-stamped after half of the mutations, to get past Pillow's CRC check).

Only the documented outcomes may occur: a uint8 array of shape (H, W, 3) for the size
asked, or imgtool.core.errors.ImageError with a one-line message. Any other exception fails
the test, and so does a single decode that takes more than SLOW seconds (a hang).
Examples are bounded (max_examples) and derandomized, so CI runs the same inputs.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imgtool.core.errors import ImageError
from imgtool.data.images import decode
from tests.conftest import FIXTURES

PARROT = FIXTURES / "imagenet" / "images" / "parrot.jpg"
SLOW = 10.0  # seconds for one decode; a real one takes milliseconds
SIZES = [(32, 32), (224, 224), (5, 17)]

pytestmark = [
    pytest.mark.skipif(not PARROT.is_file(), reason=f"fixture photo not found at {PARROT}"),
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),  # a failing photo-sized example
]

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _seeds() -> dict[str, bytes]:
    if not PARROT.is_file():
        return {}
    jpeg = PARROT.read_bytes()
    buf = io.BytesIO()
    with Image.open(PARROT) as im:
        im.resize((96, 174)).save(buf, "PNG")  # small: mutations land in every chunk
    return {"jpeg": jpeg, "png": buf.getvalue()}


SEEDS = _seeds()

_FILE = Path(tempfile.gettempdir()) / f"imgtool-fuzz-{os.getpid()}.img"


def _check(data: bytes, size: tuple[int, int]) -> None:
    _FILE.write_bytes(data)
    t0 = time.monotonic()
    try:
        with warnings.catch_warnings():
            # Pillow's warnings (corrupt EXIF...) are not outcomes; that the CLI keeps them off
            # stderr is checked by the whole-corpus run in test_reliability_corpus.py
            warnings.simplefilter("ignore")
            arr = decode(str(_FILE), size)
    except ImageError as err:
        msg = str(err)
        assert msg and "\n" not in msg, repr(msg)
    else:
        assert isinstance(arr, np.ndarray) and arr.dtype == np.uint8, (type(arr), getattr(arr, "dtype", None))
        assert arr.shape == (size[0], size[1], 3), arr.shape
    finally:
        elapsed = time.monotonic() - t0
    assert elapsed < SLOW, f"decode took {elapsed:.1f} s"


def teardown_module() -> None:
    _FILE.unlink(missing_ok=True)


# ------------------------------------------------------------------ strategies

MAGIC = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"\xff\xd8\xff\xe1",
    b"GIF89a",
    b"GIF87a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"\x00\x00\x01\x00",
    b"P6\n",
    b"P5\n",
    b"8BPS",
    b"\x0a\x05\x01\x08",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",
    b"icns",
    b"DDS ",
    b"qoif",
]


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        # mostly near the start, where the headers and tables are; sometimes anywhere
        limit = len(data) if draw(st.booleans()) else min(len(data), 2048)
        pos = draw(st.integers(0, max(0, limit - 1)))
        op = draw(st.sampled_from(["flip", "flip", "insert", "delete", "overwrite", "overwrite", "truncate"]))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "overwrite" and data:
            chunk = draw(st.sampled_from([b"\xff", b"\x00", b"\xff\xff\xff\xff", b"\x7f\xff", b"\x00\x00\x00\x00"]))
            data[pos : pos + len(chunk)] = chunk
        elif op == "truncate":
            del data[max(1, pos) :]
    return bytes(data)


def _fix_png_crcs(data: bytes) -> bytes:
    """Re-stamp every chunk's CRC (as far as the chunk structure still parses), so the
    mutation gets past Pillow's CRC check and into the decoder."""
    out = bytearray(data)
    pos = 8
    while pos + 12 <= len(out):
        (length,) = struct.unpack(">I", out[pos : pos + 4])
        end = pos + 8 + length
        if end + 4 > len(out):
            break
        out[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(out[pos + 4 : end])))
        pos = end + 4
    return bytes(out)


@st.composite
def mutated_png(draw: st.DrawFn, seed: bytes) -> bytes:
    data = draw(mutated(seed))
    return _fix_png_crcs(data) if draw(st.booleans()) else data


# ------------------------------------------------------------------ tests


@FUZZ
@given(prefix=st.sampled_from(MAGIC), body=st.binary(max_size=4096), size=st.sampled_from(SIZES))
def test_random_bytes(prefix: bytes, body: bytes, size: tuple[int, int]) -> None:
    _check(prefix + body, size)


@FUZZ
@given(data=mutated(SEEDS.get("jpeg", b"")), size=st.sampled_from(SIZES))
def test_mutated_jpeg_photo(data: bytes, size: tuple[int, int]) -> None:
    _check(data, size)


@FUZZ
@given(data=mutated_png(SEEDS.get("png", b"")), size=st.sampled_from(SIZES))
def test_mutated_png_photo(data: bytes, size: tuple[int, int]) -> None:
    _check(data, size)


def test_seeds_decode() -> None:
    """The unmutated seeds decode: the fuzzers start from valid images."""
    for data in SEEDS.values():
        _FILE.write_bytes(data)
        assert decode(str(_FILE), (32, 32)).shape == (32, 32, 3)


def _pillow_loads(data: bytes) -> bool:
    _FILE.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(_FILE) as im:
                im.load()
        return True
    except Exception:  # noqa: BLE001 - any failure of Pillow's own full decode
        return False


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_decode_never_returns_pixels_pillow_cannot_decode(fmt: str) -> None:
    """A stronger oracle on the same mutations: when decode returns an array, Pillow's own
    full decode of the file succeeds (LOAD_TRUNCATED_IMAGES stays False), i.e. a corrupt
    file is never classified from half-decoded pixels."""
    strategy = mutated(SEEDS[fmt]) if fmt == "jpeg" else mutated_png(SEEDS[fmt])

    @FUZZ
    @given(data=strategy)
    def check(data: bytes) -> None:
        _FILE.write_bytes(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                decode(str(_FILE), (32, 32))
        except ImageError:
            return
        assert _pillow_loads(data), "decode returned pixels for a file whose pixel data Pillow cannot decode"

    check()
