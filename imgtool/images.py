"""Finding image inputs and decoding them (Pillow) into model-sized RGB arrays."""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgtool.errors import ImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Input:
    """One thing to classify: a path, or the reason it cannot be (found while listing)."""

    path: str
    error: str | None = None


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


def _stat_problem(path: str) -> tuple[os.stat_result | None, str | None]:
    """stat() without opening (a FIFO opened for reading waits for a writer forever)."""
    try:
        return os.stat(path), None
    except FileNotFoundError:
        if os.path.islink(path):
            return None, "broken symbolic link (its target does not exist)"
        return None, "no such file or directory"
    except OSError as err:
        return None, f"cannot access ({err.strerror or err})"


NOT_REGULAR = "not a regular file (a FIFO, socket or device); give an image file"


def not_a_regular_file(path: str) -> str | None:
    """Why `path` cannot be read as an image file, or None for a regular file."""
    st, problem = _stat_problem(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        return NOT_REGULAR
    return problem


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
                yield Input(p, "folder holds no images (looked for "
                            + " ".join(sorted(e[1:] for e in IMAGE_EXTENSIONS)) + ")")
        elif stat.S_ISREG(st.st_mode):
            yield Input(p)
        else:
            yield Input(p, NOT_REGULAR)


def _to_rgb(im):  # noqa: ANN001, ANN202 - PIL image in, PIL image out
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if (mode.startswith("I;16") or (arr.size and arr.max() > 255)) else 255.0
        arr8 = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
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


def decode(path: str, size: tuple[int, int], keep_aspect: bool = False,
           transform: Callable[[Any], Any] | None = None) -> np.ndarray:
    """Read an image file into a uint8 array of shape (height, width, 3).

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
        with Image.open(path) as im:
            if im.width * im.height > (Image.MAX_IMAGE_PIXELS or 1 << 62):
                raise Image.DecompressionBombError(f"{im.width}x{im.height}")
            if im.format == "JPEG" and transform is None:
                im.draft("RGB", (width, height))  # DCT scaling: decode big JPEGs at a smaller size
            im.load()  # decode the pixels here: a corrupt stream must raise now, not inside the EXIF guard
            try:
                ImageOps.exif_transpose(im, in_place=True)
            except Exception:  # noqa: BLE001 - corrupt EXIF: use the pixels as stored
                pass
            im = _to_rgb(im)
            if transform is not None:
                im = transform(im)
            if keep_aspect:
                im.thumbnail((width, height), Image.Resampling.BILINEAR)
            elif im.size != (width, height):
                im = im.resize((width, height), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
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
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
            ZeroDivisionError, MemoryError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "truncated" in reason.lower():
            reason = "truncated or incomplete image file"
        raise ImageError(f"corrupt image ({reason})") from None


def decode_distorted(path: str, size: tuple[int, int], plan: Any) -> np.ndarray:
    """Decode the photo at full size, apply a `distort.Plan` (crop, flip, brightness) to
    it, then resize to `size`: the distortion sees the original pixels, not a 224² copy."""
    from imgtool import distort

    return decode(path, size, transform=lambda im: distort.apply(im, plan))
