"""Distortions: each one changes the photo the way it says, on the original pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgtool.data import distortions, images
from imgtool.data.distortions import Distortions, Plan


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """400x200, asymmetric everywhere: a horizontal and a vertical gradient, and a thin line."""
    xs = np.linspace(0, 255, 400)[None, :].repeat(200, 0)
    ys = np.linspace(0, 255, 200)[:, None].repeat(400, 1)
    arr = np.stack([xs, ys, np.full_like(xs, 60)], axis=2).astype(np.uint8)
    arr[:, 37, :] = 255  # a 1-px line that only survives when cropped before the resize
    path = tmp_path / "p.png"
    Image.fromarray(arr).save(path)
    return path


def test_no_distortion_is_the_plain_decode(photo: Path) -> None:
    plan = distortions.sample_plan(Distortions(), np.random.default_rng(0))
    assert plan == Plan((0.0, 0.0, 1.0, 1.0), False, 1.0)
    assert np.array_equal(images.decode_distorted(str(photo), (50, 100), plan), images.decode(str(photo), (50, 100)))


def test_flip_mirrors(photo: Path) -> None:
    plain = images.decode(str(photo), (200, 400))
    flipped = images.decode_distorted(str(photo), (200, 400), Plan(flip=True))
    assert np.array_equal(flipped, plain[:, ::-1])


def test_brightness_scales_the_pixels(photo: Path) -> None:
    plain = images.decode(str(photo), (200, 400)).astype(int)
    dark = images.decode_distorted(str(photo), (200, 400), Plan(brightness=0.5)).astype(int)
    assert np.abs(dark - plain * 0.5).max() <= 1
    bright = images.decode_distorted(str(photo), (200, 400), Plan(brightness=1.5)).astype(int)
    assert np.abs(bright - np.minimum(plain * 1.5, 255)).max() <= 1


def test_crop_cuts_the_original_photo_then_resizes(photo: Path) -> None:
    out = images.decode_distorted(str(photo), (40, 40), Plan(box=(0.0, 0.0, 0.25, 0.5)))
    with Image.open(photo) as im:
        expected = np.asarray(im.convert("RGB").crop((0, 0, 100, 100)).resize((40, 40), Image.BILINEAR))
    assert np.array_equal(out, expected)
    # the left quarter of the photo: red (x gradient) stays below 64, the line is there
    assert out[..., 0].max() < 100 and (out[..., 1] > 0).all()
    plain = images.decode(str(photo), (40, 40))
    assert not np.array_equal(out, plain)


def test_apply_crops_the_plans_box_in_pixels_and_never_to_nothing() -> None:
    """Mutants this kills (mutmut, issue 21): `apply`'s `left * w` -> `left / w` and `top * h`
    -> `top / h` (the test above crops from the corner, where both round to 0), and the
    one-pixel floor of either side: `+ 1` -> `- 1` or `+ 2`, or counted from `left / w` or
    `top / h` (an empty or two-pixel crop for a box of no width or height); and the
    brightness step skipped at a factor of exactly 2."""
    xs, ys = np.meshgrid(np.arange(400), np.arange(200))
    im = Image.fromarray(np.stack([xs % 256, ys, (xs + ys) % 256], axis=-1).astype(np.uint8))
    out = distortions.apply(im, Plan(box=(0.25, 0.5, 0.75, 1.0)))
    assert np.array_equal(np.asarray(out), np.asarray(im)[100:200, 100:300])
    assert distortions.apply(im, Plan(box=(0.5, 0.5, 0.5, 0.5))).size == (1, 1)
    # brightness 2 doubles (clipped): mutmut's `brightness != 1.0` -> `!= 2.0` skipped exactly this
    doubled = np.asarray(distortions.apply(im, Plan(brightness=2.0))).astype(int)
    assert np.array_equal(doubled, np.minimum(2 * np.asarray(im).astype(int), 255))


def test_sample_plan_ranges() -> None:
    rng = np.random.default_rng(1)
    crop = [distortions.sample_plan(Distortions(random_crop=25), rng) for _ in range(50)]
    for p in crop:  # crop 25%: the kept box is 1/1.25 = 0.8 of each side, anywhere inside
        assert p.box[2] - p.box[0] == pytest.approx(0.8) and p.box[3] - p.box[1] == pytest.approx(0.8)
        assert 0 <= p.box[0] <= 0.2 and 0 <= p.box[1] <= 0.2 and not p.flip and p.brightness == 1.0
    assert len({p.box for p in crop}) == 50
    scale = [distortions.sample_plan(Distortions(random_scale=50), rng) for _ in range(200)]
    sides = [p.box[2] - p.box[0] for p in scale]
    assert min(sides) >= 1 / 1.5 - 1e-12 and max(sides) <= 1.0 and max(sides) - min(sides) > 0.2
    flips = [distortions.sample_plan(Distortions(flip_left_right=True), rng).flip for _ in range(200)]
    assert 60 < sum(flips) < 140
    light = [distortions.sample_plan(Distortions(random_brightness=20), rng).brightness for _ in range(200)]
    assert 0.8 <= min(light) < 0.85 and 1.15 < max(light) <= 1.2
    assert Distortions(random_brightness=1).active() and not Distortions().active()
    assert Distortions(flip_left_right=True).active()
    # each option alone (mutmut: `random_crop or random_scale` -> `and` survived)
    assert Distortions(random_crop=5).active() and Distortions(random_scale=5).active()


def test_sample_plan_zoom_is_crop_times_a_uniform_scale() -> None:
    """Mutant this kills (mutmut, issue 21): `random_scale / 100.0` -> `/ 101.0` (scale draws
    up to 1.495 instead of 1.5: inside every range checked above). The side is computed by
    hand from the same generator's first draw: 1 / ((1 + crop%) * (1 + scale% * u))."""
    for seed in range(5):
        u = np.random.default_rng(seed).random()
        plan = distortions.sample_plan(Distortions(random_crop=25, random_scale=50), np.random.default_rng(seed))
        side = 1 / (1.25 * (1 + 0.5 * u))
        assert plan.box[2] - plan.box[0] == pytest.approx(side, rel=1e-12)
        assert plan.box[3] - plan.box[1] == pytest.approx(side, rel=1e-12)


class _Edge:
    """A generator at the top of every range: uniform(lo, hi) gives hi, random() gives 0.5."""

    def uniform(self, lo: float, hi: float) -> float:
        return hi

    def random(self) -> float:
        return 0.5


def test_sample_plan_at_the_edges_of_its_ranges() -> None:
    """Mutants this kills (mutmut, issue 21): `random_brightness / 100.0` -> `/ 101.0` and the
    flip's `rng.random() < 0.5` -> `<= 0.5` (a draw of exactly 0.5 keeps the photo as it is:
    the flip has probability 1/2 over [0, 1))."""
    plan = distortions.sample_plan(
        Distortions(flip_left_right=True, random_crop=25, random_scale=50, random_brightness=20), _Edge()
    )  # type: ignore[arg-type]
    side = 1 / (1.25 * 1.5)
    assert plan.box == pytest.approx((1 - side, 1 - side, 1.0, 1.0), rel=1e-12)
    assert plan.flip is False
    assert plan.brightness == pytest.approx(1.2, rel=1e-12)
