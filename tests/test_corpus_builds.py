"""The awkward-input corpus (tests/support/corpus.py) really is what it claims to be.

These tests use Pillow directly, not imgtool: every "ok" case decodes the way
imgtool decodes (Image.open, ImageOps.exif_transpose, convert to RGB; alpha
composited onto white *or* dropped) and shows its claimed colour, every
"error" case fails to decode or is not a regular file, every "skip" case is
something a directory walk ignores.  FIFOs are only ever os.stat()-ed.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.support.corpus import ALLOWED_EXTENSIONS, Case, build_corpus, expected_counts, markdown_table

# Corrupt-EXIF cases make Pillow warn; that is part of what they test, not noise.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning"),
    pytest.mark.filterwarnings("ignore:Metadata Warning:UserWarning"),
]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list[Case]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, build_corpus(root)


@pytest.fixture(scope="module")
def by_name(built) -> dict[str, Case]:
    return {c.name: c for c in built[1]}


# -- helpers ----------------------------------------------------------------------


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)  # follows symlinks; never opens
    except OSError:
        return False


def _decode_variants(path: Path) -> dict[str, Image.Image]:
    """Decode like imgtool; one RGB image per acceptable alpha policy."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        out = {"convert": im.convert("RGB")}
        if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            out["white"] = Image.alpha_composite(white, rgba).convert("RGB")
    return out


def _dominant(im: Image.Image) -> str | None:
    means = np.asarray(im, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    order = np.argsort(means)[::-1]
    top, second = means[order[0]], means[order[1]]
    if top >= 150 and top - second >= 100:
        return ("red", "green", "blue")[order[0]]
    return None


def _walk_images(folder: Path) -> list[Path]:
    """The walk imgtool is expected to do: no following of symlinked dirs, no hidden
    entries, allow-listed extensions only."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in ALLOWED_EXTENSIONS:
                found.append(Path(dirpath, name))
    return found


def _check_ok_file(case: Case) -> list[str]:
    problems = []
    if Path(case.path).suffix.lower() not in ALLOWED_EXTENSIONS:
        problems.append("extension not in the allow-list")
    if not _is_regular_file(case.path):
        return [*problems, "not a regular file"]
    try:
        variants = _decode_variants(case.path)
    except Exception as exc:  # noqa: BLE001 - report any failure
        return [*problems, f"does not decode: {type(exc).__name__}: {exc}"]
    for policy, rgb in variants.items():
        if rgb.mode != "RGB" or min(rgb.size) < 1:
            problems.append(f"{policy}: bad result {rgb.mode} {rgb.size}")
        if case.colour is not None and _dominant(rgb) != case.colour:
            means = np.asarray(rgb).reshape(-1, 3).mean(axis=0).round(1).tolist()
            problems.append(f"{policy}: dominant {_dominant(rgb)} != {case.colour} (means {means})")
    return problems


# -- the corpus as a whole ------------------------------------------------------------


def test_enough_cases_with_unique_names_and_valid_fields(built):
    root, cases = built
    assert len(cases) >= 30
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    paths = [os.fsencode(c.path) for c in cases]
    assert len(paths) == len(set(paths)), "two cases share a path"
    for c in cases:
        assert c.outcome in ("ok", "error", "skip"), c
        assert c.note.strip(), c.name
        assert c.colour in (None, "red", "green", "blue"), c
        assert c.colour is None or c.outcome == "ok", c
        assert os.path.lexists(c.path), c.name
        assert Path(c.path).parent == root or Path(c.path).parent.parent == root, c.path
    counts = expected_counts(cases)
    assert set(counts) == {"ok", "error", "skip"}
    assert sum(counts.values()) == len(cases)
    assert counts["ok"] >= 10 and counts["error"] >= 10 and counts["skip"] >= 2


def test_required_kinds_present(by_name):
    required = {
        "zero_bytes",
        "truncated_jpeg_10pct",
        "truncated_jpeg_50pct",
        "truncated_jpeg_90pct",
        "text_as_jpg",
        "html_as_jpg",
        "pdf_as_jpg",
        "zip_as_jpg",
        "png_named_jpg",
        "jpeg_named_png",
        "tiny_1x1",
        "wide_100000x1",
        "decompression_bomb_png",
        "grey16_png",
        "bilevel_1bit_png",
        "palette_trns_png",
        "cmyk_jpeg",
        "ycck_jpeg",
        "progressive_jpeg",
        "grey_alpha_la_png",
        "animated_gif",
        "animated_webp",
        "exif_garbage",
        "unreadable_permissions",
        "long_name",
        "directory_named_jpg",
        "hidden_file",
        "uppercase_ext",
        "tiff",
        "bmp",
        "webp_still",
        "gif_still",
        "non_image_extension",
    } | {f"exif_orientation_{o}" for o in range(2, 9)}
    if hasattr(os, "symlink"):
        required |= {"broken_symlink", "symlink_loop"}
    if hasattr(os, "mkfifo"):
        required.add("fifo")
    assert required <= set(by_name), sorted(required - set(by_name))
    assert len([n for n in by_name if n.startswith("truncated_png")]) >= 3


def test_corpus_is_small(built):
    root, _ = built
    total = 0
    for dirpath, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    assert total < 2_000_000


def test_build_refuses_a_non_empty_root(built):
    root, _ = built
    with pytest.raises(FileExistsError):
        build_corpus(root)


# -- per outcome ------------------------------------------------------------------------


def test_ok_files_decode_to_rgb_with_claimed_colour(built):
    problems = {}
    for case in built[1]:
        if case.outcome == "ok" and not os.path.isdir(case.path):
            p = _check_ok_file(case)
            if p:
                problems[case.name] = p
    assert not problems, problems


def test_ok_folders_walk_to_valid_images(built):
    folders = [c for c in built[1] if c.outcome == "ok" and os.path.isdir(c.path)]
    for case in folders:
        images = _walk_images(case.path)
        assert len(images) == 1, (case.name, images)
        problems = _check_ok_file(Case(case.name, images[0], "ok", case.note, case.colour))
        assert not problems, (case.name, problems)


def test_error_cases_fail_to_decode_or_are_not_regular_files(built):
    decoded = []
    for case in built[1]:
        if case.outcome != "error":
            continue
        assert Path(case.path).suffix.lower() in ALLOWED_EXTENSIONS, case.name  # the tool will try it
        if not _is_regular_file(case.path):
            continue  # directory, FIFO, broken symlink: rejected without opening
        try:
            _decode_variants(case.path)
        except Exception:  # noqa: BLE001 - any decode failure is what we want
            continue
        decoded.append(case.name)
    assert not decoded, f"these 'error' cases decode fine with Pillow: {decoded}"


def test_skip_cases_are_hidden_or_not_allow_listed(built):
    root, cases = built
    for case in [c for c in cases if c.outcome == "skip"]:
        name = Path(case.path).name
        assert Path(case.path).parent != root, "skip cases live in their own folder"
        assert name.startswith(".") or Path(name).suffix.lower() not in ALLOWED_EXTENSIONS, name
        assert case.path not in _walk_images(Path(case.path).parent)


# -- individual cases are what their names say --------------------------------------------


def _open(by_name, name) -> Image.Image:
    return Image.open(by_name[name].path)


def test_mode_and_format_specific_cases(by_name):
    with _open(by_name, "cmyk_jpeg") as im:
        assert (im.format, im.mode) == ("JPEG", "CMYK")
    with _open(by_name, "ycck_jpeg") as im:
        assert (im.format, im.mode) == ("JPEG", "CMYK")
        assert im.info.get("adobe_transform") == 2  # YCCK
    with _open(by_name, "progressive_jpeg") as im:
        assert im.info.get("progressive") or im.info.get("progression")
    with _open(by_name, "grey16_png") as im:
        assert im.mode == "I;16"
        # Pillow clips I;16 at 255 when converting to RGB (the case note says so).
        assert im.convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    with _open(by_name, "bilevel_1bit_png") as im:
        assert im.mode == "1"
    with _open(by_name, "palette_trns_png") as im:
        assert im.mode == "P" and "transparency" in im.info
        assert im.convert("RGBA").getextrema()[3][0] == 0  # some pixels really are transparent
    with _open(by_name, "grey_alpha_la_png") as im:
        assert im.mode == "LA" and im.getextrema()[1][0] == 0
    with _open(by_name, "rgba_png") as im:
        assert im.mode == "RGBA" and im.getextrema()[3][0] == 0
    for name, fmt in [("animated_gif", "GIF"), ("animated_webp", "WEBP")]:
        with _open(by_name, name) as im:
            assert im.format == fmt and im.n_frames >= 2
            im.seek(1)
            assert _dominant(im.convert("RGB")) == "blue"  # only the first frame is red
    for name, fmt in [
        ("tiff", "TIFF"),
        ("bmp", "BMP"),
        ("webp_still", "WEBP"),
        ("gif_still", "GIF"),
        ("png_named_jpg", "PNG"),
        ("jpeg_named_png", "JPEG"),
    ]:
        with _open(by_name, name) as im:
            assert im.format == fmt, name
    with _open(by_name, "tiny_1x1") as im:
        assert im.size == (1, 1)
    with _open(by_name, "wide_100000x1") as im:
        assert im.size == (100_000, 1)
    assert by_name["uppercase_ext"].path.suffix == ".JPG"


def test_exif_cases(by_name):
    for o in range(2, 9):
        with _open(by_name, f"exif_orientation_{o}") as im:
            assert im.getexif().get(0x0112) == o
            w, h = im.size
            assert ImageOps.exif_transpose(im).size == ((h, w) if o >= 5 else (w, h))
    with _open(by_name, "exif_garbage") as im:
        assert im.info.get("exif", b"").startswith(b"Exif\x00\x00")
        ImageOps.exif_transpose(im)  # must not raise (Pillow 13)
    with pytest.warns(UserWarning, match="Corrupt EXIF"), _open(by_name, "exif_truncated_ifd") as im:
        orientation = im.getexif().get(0x0112)
    assert orientation == 6
    for name in ("exif_double_header", "exif_zero_rational"):
        with _open(by_name, name) as im:
            w, h = im.size
            assert ImageOps.exif_transpose(im).size == (h, w), name


def test_truncations_and_bombs(by_name):
    for name in ("decompression_bomb_png", "decompression_bomb_jpeg"):
        path = by_name[name].path
        assert path.stat().st_size < 1_000_000
        with pytest.raises(Image.DecompressionBombError):
            Image.open(path)
    assert by_name["zero_bytes"].path.stat().st_size == 0
    sizes = [by_name[f"truncated_jpeg_{p}pct"].path.stat().st_size for p in (10, 50, 90)]
    assert 0 < sizes[0] < sizes[1] < sizes[2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete PNG minus IEND decodes without any complaint
        with _open(by_name, "truncated_png_missing_iend") as im:
            im.load()
    assert not by_name["truncated_png_missing_iend"].path.read_bytes().endswith(b"IEND\xaeB`\x82")


def test_file_system_cases(built, by_name):
    _root, _ = built
    if "fifo" in by_name:
        assert stat.S_ISFIFO(os.stat(by_name["fifo"].path).st_mode)  # never open() it
    assert os.path.isdir(by_name["directory_named_jpg"].path)
    if "broken_symlink" in by_name:
        path = by_name["broken_symlink"].path
        assert os.path.islink(path) and not os.path.exists(path)
        loop = by_name["symlink_loop"].path
        assert os.path.realpath(loop / "self") == os.path.realpath(loop)
        assert os.path.realpath(loop / "sub" / "up") == os.path.realpath(loop)
    unreadable = by_name["unreadable_permissions"]
    assert stat.S_IMODE(os.stat(unreadable.path).st_mode) == 0
    try:
        with open(unreadable.path, "rb"):  # a regular file: safe to open
            can_read = True
    except PermissionError:
        can_read = False
    assert unreadable.outcome == ("ok" if can_read else "error")
    if "non_utf8_name" in by_name:
        raw = os.fsencode(by_name["non_utf8_name"].path.name)
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
    assert len(os.fsencode(by_name["long_name"].path.name)) == 254
    assert by_name["hidden_file"].path.name == ".hidden.jpg"
    assert by_name["non_image_extension"].path.name == "notes.txt"


def test_markdown_table_and_main(built, tmp_path):
    _, cases = built
    table = markdown_table(cases).splitlines()
    assert table[0] == "| name | outcome | note |"
    assert len(table) == len(cases) + 2
    assert all(line.count(" | ") - line.count("\\|") >= 2 for line in table)

    out = subprocess.run(
        [sys.executable, "-m", "tests.support.corpus", str(tmp_path / "c")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.startswith("| name | outcome | note |")
    assert f"{len(cases)} cases" in out
