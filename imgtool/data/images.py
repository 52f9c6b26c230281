"""Finding image inputs and decoding them (Pillow) into model-sized RGB arrays: files,
and images already in memory (a PIL image, a uint8 array) made exactly as a decoded file
is; `decode_ahead` decodes many on worker threads."""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from imgtool.core import files
from imgtool.core.errors import ImageError, first_line

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Input:
    """One thing to classify: a path, or the reason it cannot be (found while listing),
    or an image in memory (`image`: a PIL image or an array; `path` is None)."""

    path: str | None
    error: str | None = None
    image: Any = None


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _hidden(name: str) -> bool:
    return name.startswith(".")


def walk_images(folder: str) -> Iterator[str]:
    """Image files below `folder`, sorted, hidden entries skipped. Symlinked files are
    followed, symlinked directories are not (a link loop cannot hang the walk)."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        for name in sorted(filenames):
            if not _hidden(name) and is_image_name(name):
                yield os.path.join(dirpath, name)


_stat_problem = files.stat_problem  # stat() without opening (a FIFO opened for reading waits forever)

NOT_REGULAR = files.NOT_REGULAR + "; give an image file"


def not_a_regular_file(path: str) -> str | None:
    """Why `path` cannot be read as an image file, or None for a regular file
    (`files.problem`, in an image's words)."""
    why = files.problem(path)
    return NOT_REGULAR if why in (files.NOT_REGULAR, files.IS_DIR) else why


def expand_inputs(paths: Iterable[str]) -> Iterator[Input]:
    """Files as given, directories walked; order stable. Problems become `Input.error`."""
    for p in paths:
        st, problem = _stat_problem(p)
        if st is None:
            yield Input(p, problem)
        elif stat.S_ISDIR(st.st_mode):
            found = False
            for f in walk_images(p):
                found = True
                yield Input(f, not_a_regular_file(f))
            if not found:
                yield Input(
                    p, "folder holds no images (looked for " + " ".join(sorted(e[1:] for e in IMAGE_EXTENSIONS)) + ")"
                )
        elif stat.S_ISREG(st.st_mode):
            yield Input(p)
        else:
            yield Input(p, NOT_REGULAR)


HIGH_DEPTH_GRAY = ("I;16", "I;16B", "I;16L", "I", "F")
_STRIP_PIXELS = 1 << 16  # rows converted at a time: the only copy besides the image and the result


def _gray8(im):  # noqa: ANN001, ANN202 - PIL image in, PIL image out
    """A 16-bit, 32-bit or float gray image as 8-bit gray ("L"), scaled (65535 or, for
    I/F with values above 255, the maximum -> 255; floor, as the float path did) rather
    than clipped. Converted a strip of rows at a time in its own integer type: memory is
    the image plus one byte a pixel plus one strip, never a float64 copy."""
    from PIL import Image

    mode = im.mode
    width, height = im.size
    hi = im.getextrema()[1] if width and height else 0
    top = 65535 if mode.startswith("I;16") or hi > 255 else 255
    out = np.empty((height, width), np.uint8)
    step = max(1, _STRIP_PIXELS // max(width, 1))
    for y in range(0, height, step):
        strip = np.asarray(im.crop((0, y, width, min(height, y + step))))
        if mode == "F":
            f = np.nan_to_num(strip.astype(np.float32), nan=0.0, posinf=top, neginf=0.0)
            np.clip(f, 0, top, out=f)
            f *= np.float32(255.0 / top)
            scaled = np.floor(f, out=f)
        else:  # v * 255 // top in uint32 (65535 * 255 < 2**32), in place
            scaled = np.clip(strip, 0, top).astype(np.uint32)
            if top != 255:
                scaled *= 255
                scaled //= top
        out[y : y + strip.shape[0]] = scaled
    return Image.fromarray(out, "L")


def _to_rgb(im):  # noqa: ANN001, ANN202 - PIL image in, PIL image out
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return im
    if mode in HIGH_DEPTH_GRAY:
        return _gray8(im)  # gray: made RGB after the resize (to_array), at the model's size
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


_warnings_set = False


def _quiet_pillow() -> None:
    """Pillow warns (on stderr) about huge images and corrupt EXIF; we check and report
    those ourselves, once per file, so its warnings are silenced. Set once: warning
    filters are process-global and not thread-safe to change per call."""
    global _warnings_set
    if not _warnings_set:
        from PIL import Image

        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", module=r"PIL\..*")
        _warnings_set = True


def decode(
    path: str | os.PathLike[str] | BinaryIO,
    size: tuple[int, int],
    keep_aspect: bool = False,
    transform: Callable[[Any], Any] | None = None,
) -> np.ndarray:
    """Read an image file (a path, or an open binary file such as the bytes of a Beam or
    Spark row in io.BytesIO) into a uint8 array of shape (height, width, 3).

    EXIF orientation applied; grayscale, palette, CMYK, 16-bit and alpha made RGB (alpha
    over white); animations give their first frame; decompression bombs refused. Raises
    ImageError with a one-line reason. With `keep_aspect`, the image is shrunk to fit
    within `size` instead (thumbnails). `transform` (a PIL image -> PIL image function,
    e.g. a training distortion) is applied to the full-size decoded photo before the
    resize; see `decode_distorted`."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    _quiet_pillow()
    height, width = size
    try:
        opened = files.open_regular(path) if isinstance(path, (str, os.PathLike)) else contextlib.nullcontext(path)
        with opened as fh, Image.open(fh) as im:
            if im.width * im.height > (Image.MAX_IMAGE_PIXELS or 1 << 62):
                raise Image.DecompressionBombError(f"{im.width}x{im.height}")
            if im.format == "JPEG" and transform is None:
                im.draft("RGB", (width, height))  # DCT scaling: decode big JPEGs at a smaller size
            im.load()  # decode the pixels here: a corrupt stream must raise now, not inside the EXIF guard
            try:
                ImageOps.exif_transpose(im, in_place=True)
            except Exception:  # noqa: BLE001 - corrupt EXIF: use the pixels as stored
                pass
            return to_array(im, size, keep_aspect=keep_aspect, transform=transform)
    except files.FileProblem as err:
        raise ImageError(NOT_REGULAR if str(err) == files.NOT_REGULAR else str(err)) from None
    except Image.DecompressionBombError:
        raise ImageError("refused: too many pixels for a photo (a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can read (unknown or corrupt format)") from None
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:
        raise ImageError("is a directory, not an image file") from None
    except PermissionError:
        raise ImageError("permission denied; make the file readable") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, ZeroDivisionError, MemoryError) as err:
        reason = first_line(err, None)
        if "truncated" in reason.lower():
            reason = "truncated or incomplete image file"
        raise ImageError(f"corrupt image ({reason})") from None


def to_array(
    im: Any, size: tuple[int, int], keep_aspect: bool = False, transform: Callable[[Any], Any] | None = None
) -> np.ndarray:
    """The part of decoding after the pixels are read, shared by files and in-memory
    images: made RGB (alpha over white), `transform` applied, resized to `size` (height,
    width; bilinear) or with `keep_aspect` shrunk to fit in it. Never changes `im`."""
    from PIL import Image

    height, width = size
    im = _to_rgb(im)  # RGB, or 8-bit gray from a high-depth image: made RGB once model-sized
    if transform is not None:
        im = transform(im)
    if keep_aspect:
        im = im.copy()
        im.thumbnail((width, height), Image.Resampling.BILINEAR)
    elif im.size != (width, height):
        im = im.resize((width, height), Image.Resampling.BILINEAR)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8)


def is_in_memory(obj: Any) -> bool:
    """A PIL image or a numpy array (checked without importing either)."""
    import sys

    if isinstance(obj, (str, bytes, os.PathLike)):
        return False
    np_mod, pil = sys.modules.get("numpy"), sys.modules.get("PIL.Image")
    return bool(
        (np_mod is not None and isinstance(obj, np_mod.ndarray)) or (pil is not None and isinstance(obj, pil.Image))
    )


def from_memory(obj: Any, size: tuple[int, int]) -> np.ndarray:
    """A PIL image or a uint8 array (HxWx3 RGB, HxW gray, HxWx4 RGBA) made into the
    model-sized RGB array a file of the same pixels decodes to (`to_array`). EXIF
    orientation of a PIL image opened from a file is applied, as for the file. The
    input is never changed. Raises ImageError with a one-line reason."""
    from PIL import Image, ImageOps

    _quiet_pillow()
    if isinstance(obj, np.ndarray):
        if obj.dtype != np.uint8:
            raise ImageError(f"array of {obj.dtype}: give uint8 pixels (0..255)")
        if obj.ndim == 2:
            mode = "L"
        elif obj.ndim == 3 and obj.shape[2] in (3, 4):
            mode = "RGB" if obj.shape[2] == 3 else "RGBA"
        else:
            raise ImageError(f"array of shape {tuple(obj.shape)}: give HxWx3 (RGB), HxWx4 (RGBA) or HxW (gray)")
        if 0 in obj.shape:
            raise ImageError(f"array of shape {tuple(obj.shape)} holds no pixels")
        im = Image.fromarray(np.ascontiguousarray(obj).copy(), mode)  # a copy: Pillow may share the buffer
    else:
        try:
            im = obj.copy()  # also loads a lazily opened image; the caller's object is left as it was
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise ImageError(f"corrupt image ({first_line(err, None)})") from None
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # noqa: BLE001 - corrupt EXIF: use the pixels as stored, as `decode` does
            pass
    try:
        return to_array(im, size)
    except (OSError, ValueError) as err:
        raise ImageError(f"cannot convert the image ({first_line(err, None)})") from None


def decode_ahead(
    inputs: Iterable[Input], size: tuple[int, int], workers: int, window: int
) -> Iterator[tuple[str | None, np.ndarray | None, str | None]]:
    """(path, pixels or None, error or None) per input, in input order, decoded on
    `workers` threads with at most `window` images in flight (memory stays flat). An
    in-memory input (`Input.image`) has path None."""

    def settle(item: tuple[Input, Future | None]) -> tuple[str | None, np.ndarray | None, str | None]:
        inp, fut = item
        if fut is None:
            return inp.path, None, inp.error
        try:
            return inp.path, fut.result(), None
        except ImageError as err:
            return inp.path, None, str(err)

    it = iter(inputs)
    first = list(itertools.islice(it, 2))
    if len(first) < 2:  # one input: decode it here, no thread pool to start
        for inp in first:
            if inp.error:
                yield inp.path, None, inp.error
                continue
            try:
                pixels = from_memory(inp.image, size) if inp.image is not None else decode(str(inp.path), size)
            except ImageError as err:
                yield inp.path, None, str(err)
                continue
            yield inp.path, pixels, None
        return
    from concurrent.futures import ThreadPoolExecutor

    def submit(pool: ThreadPoolExecutor, inp: Input) -> Future | None:
        if inp.error:
            return None
        if inp.image is not None:
            return pool.submit(from_memory, inp.image, size)
        assert inp.path is not None
        return pool.submit(decode, inp.path, size)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque[tuple[Input, Future | None]] = deque()
        for inp in itertools.chain(first, it):
            pending.append((inp, submit(pool, inp)))
            while len(pending) >= window:
                yield settle(pending.popleft())
        while pending:
            yield settle(pending.popleft())


def decode_distorted(path: str, size: tuple[int, int], plan: Any) -> np.ndarray:
    """Decode the photo at full size, apply a `distort.Plan` (crop, flip, brightness) to
    it, then resize to `size`: the distortion sees the original pixels, not a 224² copy."""
    from imgtool.data import distortions

    return decode(path, size, transform=lambda im: distortions.apply(im, plan))
