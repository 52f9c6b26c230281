"""A corpus of awkward and broken image inputs, generated at test time.

Nothing binary is checked in: ``build_corpus(root)`` writes every case under
``root`` (a new or empty directory) and returns one :class:`Case` per input.

Outcomes describe what imgtool must do with ``Case.path``:

* ``"ok"``    -- decode and classify it.  When ``colour`` is set, the decoded
  image (after EXIF orientation, alpha handling, first-frame selection, ...)
  is dominated by that colour, so a test model whose output depends on the
  mean channel values can tell whether decoding was right.
* ``"error"`` -- print one error line naming the file and keep processing the
  other inputs; never crash, never hang.
* ``"skip"``  -- when met while walking a directory it is not an image input
  at all (hidden file, extension not in the allow-list): no result, no error.

The decoding rules the corpus assumes (they are imgtool's rules):

* extension allow-list, case-insensitive: jpg jpeg png bmp gif webp tif tiff;
  the *content* is sniffed by Pillow, so a PNG named ``.jpg`` is fine;
* ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` stays False and
  ``PIL.Image.MAX_IMAGE_PIXELS`` keeps its default;
* ``ImageOps.exif_transpose`` is applied, then the image becomes RGB (alpha is
  composited onto white or dropped; the corpus works with either);
* animated images use their first frame;
* directory walks do not follow symlinked directories (or detect cycles),
  skip hidden entries and files whose extension is not allowed;
* only regular files are opened: directories, FIFOs, sockets and devices given
  (or found) with an image extension are errors, reported without opening them.

Run ``python -m tests.support.corpus DIR`` (or ``python tests/support/corpus.py DIR``) to build
the corpus into DIR and print a markdown table for docs/reliability.md.
"""

from __future__ import annotations

import io
import os
import random
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

__all__ = ["ALLOWED_EXTENSIONS", "Case", "build_corpus", "expected_counts", "markdown_table"]

ALLOWED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
OUTCOMES = ("ok", "error", "skip")

RGB = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
SIZE = (32, 24)  # small, non-square: EXIF rotations by 90 degrees visibly swap it


@dataclass(frozen=True)
class Case:
    name: str  # short kind id, e.g. "zero_bytes", "truncated_jpeg_50pct"
    path: Path  # the input to hand to the tool (file, dir, symlink, fifo...)
    outcome: str  # "ok", "error" or "skip" (see module docstring)
    note: str  # what it is and why that outcome is right
    colour: str | None = None  # dominant colour of an "ok" case after correct decoding


# --------------------------------------------------------------------------- bytes


def _encode(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def _solid(colour: str, size: tuple[int, int] = SIZE) -> Image.Image:
    return Image.new("RGB", size, RGB[colour])


def _noisy(colour: str, size: tuple[int, int], seed: int) -> Image.Image:
    """Mostly ``colour`` with random noise, so that compressed data is spread over
    the whole file and a cut at N% really lands inside the pixel data."""
    rnd = random.Random(seed)
    noise = Image.frombytes("RGB", size, rnd.randbytes(size[0] * size[1] * 3))
    return Image.blend(_solid(colour, size), noise, 0.25)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_chunk_span(png: bytes, kind: bytes) -> tuple[int, int]:
    """(start, end) of the first chunk ``kind`` including length and CRC."""
    pos = 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        if png[pos + 4 : pos + 8] == kind:
            return pos, pos + 12 + length
        pos += 12 + length
    raise ValueError(f"no {kind!r} chunk")


def _png_bomb() -> bytes:
    """PNG whose IHDR claims 30000x30000 8-bit grey (900 M pixels, 5x Pillow's
    default limit) while the file holds a few hundred bytes."""
    width = height = 30000
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 4, 9)  # four rows of zeros
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _jpeg_bomb() -> bytes:
    """A tiny solid JPEG whose SOF0 frame header is patched to say 30000x30000."""
    data = bytearray(_encode(_solid("red", (16, 16)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    if sof < 0:
        raise RuntimeError("Pillow did not write a baseline SOF0 marker")
    # FFC0, length(2), precision(1), height(2), width(2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
    return bytes(data)


def _jpeg_with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """Insert an APP1 segment carrying ``payload`` right after SOI."""
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _exif_truncated_ifd() -> bytes:
    """TIFF-structured Exif whose IFD0 claims 255 entries but holds one:
    Orientation=6.  Pillow warns "Corrupt EXIF data" and still reads the tag."""
    entry = struct.pack("<HHII", 0x0112, 3, 1, 6)  # Orientation, SHORT, count 1, value 6
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 255) + entry


def _exif_double_header() -> bytes:
    """Orientation=6 Exif with the "Exif\\0\\0" prefix written twice (seen in the wild,
    Pillow issue #8348: older Pillow raised SyntaxError in exif_transpose)."""
    ifd = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1, 6)
    return b"Exif\x00\x00Exif\x00\x00" + ifd + struct.pack("<I", 0)


def _exif_zero_rational() -> bytes:
    """Orientation=6 plus XResolution = 0/0 (a zero-denominator RATIONAL; the kind of
    value behind Pillow issue #8605, a ZeroDivisionError in exif_transpose)."""
    entries = struct.pack("<HHII", 0x0112, 3, 1, 6) + struct.pack("<HHII", 0x011A, 5, 1, 38)
    ifd = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + entries + struct.pack("<I", 0)
    assert len(ifd) == 38
    return b"Exif\x00\x00" + ifd + struct.pack("<II", 0, 0)


def _ycck_jpeg(colour_cmyk: tuple[int, int, int, int]) -> bytes:
    """A 4-component JPEG stored as YCCK (Adobe APP14 transform=2).

    Pillow's encoder only writes plain CMYK (Adobe transform=0), so the YCCK
    component values are computed here, written through Pillow's CMYK path
    (which stores 255-v, "CMYK;I") and the Adobe transform byte is patched to 2.
    libjpeg then converts YCC->RGB->CMY on decode, exactly as for a YCCK file
    from Photoshop.
    """
    c, m, y, k = colour_cmyk
    # Pillow-CMYK (c,m,y,k) is read from an Adobe file as stored (255-c,255-m,255-y,255-k).
    # For YCCK, libjpeg outputs C=255-R, M=255-G, Y=255-B, K=K(stored), so the RGB that the
    # YCC part must encode is (c, m, y) and the stored K is 255-k.
    r, g, b = c, m, y
    yy = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    stored = [min(255, max(0, round(v))) for v in (yy, cb, cr)] + [255 - k]
    pil_values = tuple(255 - v for v in stored)  # Pillow writes CMYK inverted
    data = bytearray(_encode(Image.new("CMYK", SIZE, pil_values), "JPEG", quality=100, subsampling=0))
    adobe = data.find(b"Adobe")
    if adobe < 4 or data[adobe - 4 : adobe - 2] != b"\xff\xee":
        raise RuntimeError("Pillow wrote a CMYK JPEG without an Adobe APP14 marker")
    # FFEE, length(2), "Adobe"(5), version(2), flags0(2), flags1(2), transform(1)
    transform_at = adobe + 5 + 2 + 2 + 2
    assert data[transform_at] == 0
    data[transform_at] = 2
    return bytes(data)


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "this is a zip archive, not a photo\n")
    return buf.getvalue()


_PDF = (
    b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
)
_HTML = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n<body><h1>Not Found</h1></body></html>\n"
_TEXT = b"hello, this is a plain text file that someone named .jpg\n"


# --------------------------------------------------------------------------- corpus


class _Builder:
    def __init__(self, root: Path):
        self.root = root
        self.cases: list[Case] = []

    def add(self, name: str, path: Path, outcome: str, note: str, colour: str | None = None) -> None:
        assert outcome in OUTCOMES, outcome
        assert colour is None or (colour in RGB and outcome == "ok"), (name, colour)
        assert name not in {c.name for c in self.cases}, name
        self.cases.append(Case(name, path, outcome, note, colour))

    def file(
        self,
        name: str,
        filename: str | bytes,
        data: bytes,
        outcome: str,
        note: str,
        colour: str | None = None,
        subdir: str | None = None,
    ) -> Path:
        folder = self.root / subdir if subdir else self.root
        folder.mkdir(exist_ok=True)
        if isinstance(filename, bytes):
            path = Path(os.fsdecode(os.path.join(os.fsencode(folder), filename)))
        else:
            path = folder / filename
        path.write_bytes(data)
        self.add(name, path, outcome, note, colour)
        return path


def build_corpus(root: Path) -> list[Case]:
    """Write the corpus into ``root`` (created if missing; must be empty) and return its cases."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"corpus root {root} is not empty")
    b = _Builder(root)

    red_jpeg = _encode(_solid("red"), "JPEG", quality=90)
    red_png = _encode(_solid("red"), "PNG")

    # -- empty / truncated -------------------------------------------------------------
    b.file("zero_bytes", "zero_bytes.jpg", b"", "error", "Empty file named .jpg. Pillow raises UnidentifiedImageError.")

    noisy_jpeg = _encode(_noisy("red", (96, 64), seed=1), "JPEG", quality=90)
    for pct in (10, 50, 90):
        b.file(
            f"truncated_jpeg_{pct}pct",
            f"truncated_jpeg_{pct}pct.jpg",
            noisy_jpeg[: len(noisy_jpeg) * pct // 100],
            "error",
            f"Valid JPEG cut to its first {pct}% of bytes. With LOAD_TRUNCATED_IMAGES=False Pillow raises "
            "OSError ('image file is truncated' or 'Truncated File Read'); the tool must not "
            "silently classify a half-grey image.",
        )
    b.file(
        "truncated_jpeg_no_eoi",
        "truncated_jpeg_no_eoi.jpg",
        noisy_jpeg[:-2],
        "error",
        "Valid JPEG missing only its final EOI marker (2 bytes). libjpeg reports a premature end of "
        "data and Pillow raises OSError 'image file is truncated' even though every scan byte is present.",
    )

    noisy_png = _encode(_noisy("red", (96, 64), seed=2), "PNG")
    b.file(
        "truncated_png_signature",
        "truncated_png_signature.png",
        noisy_png[:8],
        "error",
        "Only the 8-byte PNG signature. Pillow raises (UnidentifiedImageError / OSError).",
    )
    b.file(
        "truncated_png_in_ihdr",
        "truncated_png_in_ihdr.png",
        noisy_png[:20],
        "error",
        "PNG cut inside the IHDR chunk: the size is not even known. Pillow raises.",
    )
    for pct in (50, 90):
        b.file(
            f"truncated_png_{pct}pct",
            f"truncated_png_{pct}pct.png",
            noisy_png[: len(noisy_png) * pct // 100],
            "error",
            f"PNG cut at {pct}% (inside IDAT). Pillow raises OSError 'image file is truncated'.",
        )
    iend_start, _ = _png_chunk_span(red_png, b"IEND")
    b.file(
        "truncated_png_missing_iend",
        "truncated_png_missing_iend.png",
        red_png[:iend_start],
        "ok",
        "PNG missing only its 12-byte IEND chunk. All pixel data is present and Pillow does not "
        "require IEND, so it decodes normally: this truncation is undetectable through Pillow, and "
        "classifying the (complete) pixels is the right result.",
        "red",
    )
    idat_start, _idat_end = _png_chunk_span(noisy_png, b"IDAT")
    corrupt = bytearray(noisy_png)
    corrupt[idat_start + 8 + 40] ^= 0xFF  # flip a byte inside the zlib stream
    b.file(
        "png_corrupt_idat",
        "png_corrupt_idat.png",
        bytes(corrupt),
        "error",
        "PNG with one byte of its compressed IDAT stream flipped. Pillow does not check chunk CRCs "
        "for IDAT but zlib/the filter decoder fail: OSError 'broken data stream'.",
    )

    # -- not images at all -------------------------------------------------------------
    b.file(
        "text_as_jpg",
        "text_as_jpg.jpg",
        _TEXT,
        "error",
        "Plain text named .jpg. Pillow sniffs content, finds no format: UnidentifiedImageError.",
    )
    b.file(
        "html_as_jpg",
        "html_as_jpg.jpg",
        _HTML,
        "error",
        "An HTML error page saved as .jpg (typical failed download). UnidentifiedImageError.",
    )
    b.file(
        "pdf_as_jpg",
        "pdf_as_jpg.jpg",
        _PDF,
        "error",
        "A minimal PDF (%PDF- header) named .jpg. Pillow can write but not read PDF: UnidentifiedImageError.",
    )
    b.file("zip_as_jpg", "zip_as_jpg.jpg", _zip_bytes(), "error", "A ZIP archive named .jpg. UnidentifiedImageError.")

    # -- wrong extension, still valid ---------------------------------------------------
    b.file(
        "png_named_jpg",
        "png_named_jpg.jpg",
        red_png,
        "ok",
        "A valid PNG with a .jpg extension. The extension only gates the allow-list; Pillow sniffs "
        "the content, so it decodes.",
        "red",
    )
    b.file(
        "jpeg_named_png",
        "jpeg_named_png.png",
        _encode(_solid("green"), "JPEG"),
        "ok",
        "A valid JPEG with a .png extension; decoded by content.",
        "green",
    )
    b.file(
        "uppercase_ext",
        "uppercase_ext.JPG",
        _encode(_solid("blue"), "JPEG"),
        "ok",
        "Valid JPEG with an upper-case .JPG extension (cameras do this); the allow-list is case-insensitive.",
        "blue",
    )
    b.file(
        "jpeg_trailing_garbage",
        "jpeg_trailing_garbage.jpg",
        red_jpeg + b"\x00garbage after EOI" * 20,
        "ok",
        "Valid JPEG followed by junk after the EOI marker (seen from some phones/editors). Decoders stop "
        "at EOI; Pillow decodes it.",
        "red",
    )

    # -- sizes ---------------------------------------------------------------------------
    b.file(
        "tiny_1x1",
        "tiny_1x1.png",
        _encode(_solid("red", (1, 1)), "PNG"),
        "ok",
        "A 1x1 image. Valid; the tool upscales it to the model's input size.",
        "red",
    )
    b.file(
        "wide_100000x1",
        "wide_100000x1.png",
        _encode(_solid("blue", (100_000, 1)), "PNG"),
        "ok",
        "A 100000x1 PNG: extreme aspect ratio but only 100k pixels, far below the decompression-bomb "
        "limit, so it decodes. Decision: it is classified (resizing/cropping to the model input keeps "
        "the colour); the tool must not divide by zero or produce a 0-pixel side while resizing.",
        "blue",
    )
    b.file(
        "decompression_bomb_png",
        "decompression_bomb_png.png",
        _png_bomb(),
        "error",
        "PNG whose IHDR claims 30000x30000 (900 M pixels, > 2x Image.MAX_IMAGE_PIXELS) in a few hundred "
        "bytes. Image.open raises DecompressionBombError before allocating anything; the tool must keep "
        "the limit and report it. (The pixel data is deliberately incomplete so that even a tool that "
        "disabled the limit would fail - but only after trying to allocate ~900 MB.)",
    )
    b.file(
        "decompression_bomb_jpeg",
        "decompression_bomb_jpeg.jpg",
        _jpeg_bomb(),
        "error",
        "Tiny JPEG whose SOF0 header is patched to claim 30000x30000. Image.open raises DecompressionBombError.",
    )

    # -- modes -----------------------------------------------------------------------------
    grey16 = Image.new("I;16", SIZE, 0x8080)
    b.file(
        "grey16_png",
        "grey16_png.png",
        _encode(grey16, "PNG"),
        "ok",
        "16-bit greyscale PNG (Pillow mode I;16) filled with mid-grey 0x8080. Decodes; note that "
        "Pillow's convert('RGB') clips I;16 values at 255 instead of scaling them, so this mid-grey comes "
        "out pure white. No colour to check.",
    )
    onebit = Image.new("1", SIZE, 1)
    onebit.paste(0, (0, 0, SIZE[0] // 2, SIZE[1] // 2))
    b.file(
        "bilevel_1bit_png",
        "bilevel_1bit_png.png",
        _encode(onebit, "PNG"),
        "ok",
        "1-bit black/white PNG (mode '1'); converted to RGB as 0/255 greys. No colour to check.",
    )
    pal = Image.new("P", SIZE, 0)
    pal.putpalette([255, 0, 0, 0, 0, 0] + [0, 0, 0] * 254)  # 0 = red, 1 = black (to be transparent)
    pal.paste(1, (0, 0, SIZE[0] // 2, SIZE[1] // 2))  # a quarter is transparent
    b.file(
        "palette_trns_png",
        "palette_trns_png.png",
        _encode(pal, "PNG", transparency=1),
        "ok",
        "Palette PNG with a tRNS chunk making palette index 1 (a quarter of the pixels) transparent. "
        "The opaque rest is red, so the result is red whether transparency is composited on white or "
        "dropped.",
        "red",
    )
    la = Image.new("LA", SIZE, (128, 255))
    la.paste((0, 0), (0, 0, SIZE[0] // 2, SIZE[1]))
    b.file(
        "grey_alpha_la_png",
        "grey_alpha_la_png.png",
        _encode(la, "PNG"),
        "ok",
        "Greyscale + alpha (LA) PNG, half fully transparent. Converts to RGB grey. No colour to check.",
    )
    rgba = Image.new("RGBA", SIZE, (0, 0, 255, 255))
    rgba.paste((255, 0, 0, 0), (0, 0, SIZE[0] // 2, SIZE[1] // 2))  # transparent pixels hide red
    b.file(
        "rgba_png",
        "rgba_png.png",
        _encode(rgba, "PNG"),
        "ok",
        "RGBA PNG: opaque blue with a fully transparent quarter whose hidden RGB is red. Blue dominates "
        "whether alpha is composited on white or dropped.",
        "blue",
    )
    b.file(
        "cmyk_jpeg",
        "cmyk_jpeg.jpg",
        _encode(Image.new("CMYK", SIZE, (0, 255, 255, 0)), "JPEG"),
        "ok",
        "CMYK JPEG (Adobe APP14, transform 0, inverted storage as Photoshop writes it) built from "
        "CMYK (0,255,255,0). Pillow decodes mode CMYK; convert('RGB') gives red.",
        "red",
    )
    b.file(
        "ycck_jpeg",
        "ycck_jpeg.jpg",
        _ycck_jpeg((0, 255, 255, 0)),
        "ok",
        "YCCK JPEG (Adobe APP14 transform 2) for CMYK (0,255,255,0). Pillow cannot write YCCK directly, "
        "so the YCC values are computed by hand, written through the CMYK encoder and the transform "
        "byte patched; libjpeg converts YCCK->CMYK on read and Pillow gives red.",
        "red",
    )
    b.file(
        "progressive_jpeg",
        "progressive_jpeg.jpg",
        _encode(_solid("green"), "JPEG", progressive=True),
        "ok",
        "Progressive JPEG (SOF2, several scans).",
        "green",
    )

    # -- other formats -------------------------------------------------------------------
    b.file(
        "tiff",
        "tiff.tif",
        _encode(_solid("green"), "TIFF", compression="tiff_lzw"),
        "ok",
        "LZW-compressed RGB TIFF.",
        "green",
    )
    b.file("bmp", "bmp.bmp", _encode(_solid("blue"), "BMP"), "ok", "24-bit BMP.", "blue")
    b.file(
        "webp_still", "webp_still.webp", _encode(_solid("red"), "WEBP", quality=90), "ok", "Lossy still WebP.", "red"
    )
    b.file(
        "gif_still",
        "gif_still.gif",
        _encode(_solid("green"), "GIF"),
        "ok",
        "Single-frame GIF (palette image).",
        "green",
    )
    frames = [_solid("red"), _solid("blue")]
    b.file(
        "animated_gif",
        "animated_gif.gif",
        _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "ok",
        "Two-frame animated GIF, first frame red, second blue. The tool uses the first frame.",
        "red",
    )
    b.file(
        "animated_webp",
        "animated_webp.webp",
        _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True),
        "ok",
        "Two-frame animated (lossless) WebP, first frame red, second blue. The tool uses the first frame.",
        "red",
    )

    # -- EXIF --------------------------------------------------------------------------------
    colours = ("red", "green", "blue")
    for orientation in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        colour = colours[orientation % 3]
        swap = " and swaps width/height" if orientation >= 5 else ""
        b.file(
            f"exif_orientation_{orientation}",
            f"exif_orientation_{orientation}.jpg",
            _encode(_solid(colour), "JPEG", exif=exif.tobytes()),
            "ok",
            f"Solid {SIZE[0]}x{SIZE[1]} JPEG with EXIF Orientation={orientation}; exif_transpose "
            f"flips/rotates it{swap}; colour unchanged.",
            colour,
        )
    b.file(
        "exif_garbage",
        "exif_garbage.jpg",
        _jpeg_with_app1(red_jpeg, b"Exif\x00\x00" + random.Random(3).randbytes(200)),
        "ok",
        "Valid JPEG with an APP1 'Exif' segment full of random bytes. Pixels decode; Pillow ignores the "
        "unparseable EXIF (getexif() is empty) and exif_transpose does not raise. The tool must still "
        "guard exif_transpose (it has raised on broken EXIF in other Pillow versions, e.g. issues #3973, "
        "#4215, #8348, #8605) and classify the image.",
        "red",
    )
    b.file(
        "exif_truncated_ifd",
        "exif_truncated_ifd.jpg",
        _jpeg_with_app1(red_jpeg, _exif_truncated_ifd()),
        "ok",
        "Valid JPEG whose EXIF IFD claims 255 entries but holds only Orientation=6. Pillow emits "
        "UserWarning 'Corrupt EXIF data', keeps the orientation it could read and rotates the image. "
        "The tool must not turn that warning into a failure.",
        "red",
    )
    b.file(
        "exif_double_header",
        "exif_double_header.jpg",
        _jpeg_with_app1(red_jpeg, _exif_double_header()),
        "ok",
        "JPEG whose APP1 starts with 'Exif\\0\\0' twice before an Orientation=6 IFD (real-world "
        "corruption, Pillow issue #8348 where exif_transpose raised SyntaxError). Pillow 13 strips the "
        "duplicate prefix and rotates; the tool must classify it either way.",
        "red",
    )
    b.file(
        "exif_zero_rational",
        "exif_zero_rational.jpg",
        _jpeg_with_app1(red_jpeg, _exif_zero_rational()),
        "ok",
        "JPEG with Orientation=6 and XResolution=0/0 (zero-denominator RATIONAL, cf. Pillow issue "
        "#8605, ZeroDivisionError in exif_transpose). Pillow 13 reads it as nan and rotates.",
        "red",
    )
    exif = Image.Exif()
    exif[0x0112] = 9
    b.file(
        "exif_orientation_invalid",
        "exif_orientation_invalid.jpg",
        _encode(_solid("blue"), "JPEG", exif=exif.tobytes()),
        "ok",
        "EXIF Orientation=9 (out of the 1..8 range). exif_transpose leaves the image as is.",
        "blue",
    )

    # -- file-system oddities -----------------------------------------------------------
    unreadable = root / "unreadable_permissions.jpg"
    unreadable.write_bytes(red_jpeg)
    os.chmod(unreadable, 0)
    try:
        with open(unreadable, "rb"):
            pass
        readable = True
    except PermissionError:
        readable = False
    if readable:
        b.add(
            "unreadable_permissions",
            unreadable,
            "ok",
            "Valid JPEG with mode 000. This process can still read it (running as root, "
            f"euid={os.geteuid() if hasattr(os, 'geteuid') else '?'}, or with CAP_DAC_OVERRIDE), "
            "so it is a normal image here; as an ordinary user it must be a one-line "
            "'permission denied' error.",
            "red",
        )
    else:
        b.add(
            "unreadable_permissions",
            unreadable,
            "error",
            "Valid JPEG with mode 000: open() fails with PermissionError; one-line error, others still "
            "processed. (When run as root the file is readable and the case becomes 'ok'.)",
        )

    if hasattr(os, "symlink"):
        broken = root / "broken_symlink.jpg"
        os.symlink("does_not_exist.jpg", broken)
        b.add(
            "broken_symlink",
            broken,
            "error",
            "Symlink named .jpg pointing to a missing target. stat() fails with FileNotFoundError: "
            "one-line error, also when found during a directory walk.",
        )

        good_link = root / "symlink_to_image.jpg"
        os.symlink("png_named_jpg.jpg", good_link)
        b.add(
            "symlink_to_image",
            good_link,
            "ok",
            "Relative symlink to a valid image in the same folder; followed like a regular file.",
            "red",
        )

        loop = root / "symlink_loop"
        (loop / "sub").mkdir(parents=True)
        (loop / "red.jpg").write_bytes(red_jpeg)
        os.symlink(".", loop / "self")  # symlink_loop/self -> symlink_loop
        os.symlink("..", loop / "sub" / "up")  # symlink_loop/sub/up -> symlink_loop
        b.add(
            "symlink_loop",
            loop,
            "ok",
            "Folder containing red.jpg plus symlinks back to itself (self -> ., sub/up -> ..). A walk that "
            "follows directory symlinks without cycle detection never ends (the paths branch at every "
            "level). Expected: the walk terminates and red.jpg is classified exactly once.",
            "red",
        )

    try:
        b.file(
            "non_utf8_name",
            b"non_utf8_caf\xe9.jpg",
            red_jpeg,
            "ok",
            "Valid JPEG whose file name is not UTF-8 (Latin-1 byte 0xE9). Python sees it as "
            "'non_utf8_caf\\udce9.jpg' (surrogateescape); the tool must open it and print the name "
            "without UnicodeEncodeError (e.g. errors='backslashreplace' or os.fsencode).",
            "red",
        )
    except (OSError, UnicodeError):
        pass  # file systems that enforce UTF-8 names (e.g. APFS) cannot hold this case

    long_name = "long_name_" + "x" * 240 + ".jpg"  # 250 characters + .jpg = 254 bytes (NAME_MAX 255)
    b.file(
        "long_name",
        long_name,
        red_jpeg,
        "ok",
        "Valid JPEG with a 254-byte file name (250 characters + .jpg), just under NAME_MAX. Output "
        "lines must not truncate or choke on it.",
        "red",
    )

    fake_dir = root / "directory_named.jpg"
    fake_dir.mkdir()
    b.add(
        "directory_named_jpg",
        fake_dir,
        "error",
        "An empty directory whose name ends in .jpg, given as a direct input: a one-line error, not an "
        "IsADirectoryError traceback (imgtool takes folders as inputs, so it walks it and says the folder "
        "holds no images). (During a walk it is just a folder to descend into.)",
    )

    if hasattr(os, "mkfifo"):
        fifo = root / "fifo.jpg"
        os.mkfifo(fifo)
        b.add(
            "fifo",
            fifo,
            "error",
            "A named pipe called fifo.jpg. Opening it for reading blocks forever (no writer), so the "
            "tool must stat() it, see it is not a regular file and report a one-line error without "
            "opening it - both as a direct input and when met in a walk.",
        )

    hidden = b.file(
        "hidden_file",
        ".hidden.jpg",
        red_jpeg,
        "skip",
        "A valid JPEG named .hidden.jpg inside a folder. Hidden entries (dot-files such as macOS "
        "'._photo.jpg' AppleDouble files, which are not images) are skipped silently when "
        "walking. Given explicitly as an argument, classifying it would be acceptable.",
        subdir="hidden_file",
    )
    assert hidden.name.startswith(".")
    b.file(
        "non_image_extension",
        "notes.txt",
        b"shopping list: milk, eggs\n",
        "skip",
        "notes.txt inside a folder: extension not in the allow-list, so a walk ignores it silently (no error line).",
        subdir="non_image_extension",
    )

    return b.cases


def expected_counts(cases: list[Case]) -> dict[str, int]:
    """Number of cases per outcome, always with the keys "ok", "error" and "skip"."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for case in cases:
        counts[case.outcome] += 1
    return counts


def markdown_table(cases: list[Case]) -> str:
    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    lines = ["| name | outcome | note |", "| --- | --- | --- |"]
    lines += [f"| `{case.name}` | {case.outcome} | {cell(case.note)} |" for case in cases]
    return "\n".join(lines)


def _main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.support.corpus DIR   (DIR must be new or empty)", file=sys.stderr)
        return 2
    cases = build_corpus(Path(argv[0]))
    print(markdown_table(cases))
    counts = expected_counts(cases)
    print()
    print(f"{len(cases)} cases: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
