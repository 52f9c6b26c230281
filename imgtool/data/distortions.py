"""Training-time distortions, as retrain.py made them: on the decoded ORIGINAL photo
(crop, scale, flip, brightness), then resized to the model's input size.

`sample_plan` draws one distortion from the options and a random generator; `apply`
performs a plan on a full-size PIL image. Split so that each step can be tested exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Distortions:
    flip_left_right: bool = False
    random_crop: float = 0.0  # percent: the kept box is 1 / (1 + crop/100) of the photo's width and height
    random_scale: float = 0.0  # percent: a further zoom of up to 1 + scale/100
    random_brightness: float = 0.0  # percent: pixel values times a factor in 1 +- brightness/100
    copies: int = 4  # distorted copies of each training image

    def active(self) -> bool:
        return self.flip_left_right or bool(self.random_crop or self.random_scale or self.random_brightness)


@dataclass(frozen=True)
class Plan:
    """One distortion: the kept box as fractions of the photo (left, top, right, bottom),
    a left-right flip, a brightness factor."""

    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    flip: bool = False
    brightness: float = 1.0


def sample_plan(d: Distortions, rng: np.random.Generator) -> Plan:
    """retrain.py's recipe: the photo is (virtually) enlarged by (1 + crop%) * (1 + U(0,
    scale%)) and a model-sized box cut from it at a random place - i.e. a box of 1/that
    of the photo's sides; flipped with probability 1/2; brightness times U(1 -+ b%)."""
    zoom = (1.0 + d.random_crop / 100.0) * (1.0 + rng.uniform(0.0, d.random_scale / 100.0))
    side = 1.0 / zoom
    left = float(rng.uniform(0.0, 1.0 - side))
    top = float(rng.uniform(0.0, 1.0 - side))
    flip = bool(d.flip_left_right and rng.random() < 0.5)
    b = d.random_brightness / 100.0
    brightness = float(rng.uniform(1.0 - b, 1.0 + b))
    return Plan((left, top, left + side, top + side), flip, brightness)


def apply(im: Any, plan: Plan) -> Any:
    """Crop (the plan's box, in pixels rounded), flip, brightness on a PIL RGB image."""
    from PIL import Image, ImageEnhance

    w, h = im.size
    left, top, right, bottom = plan.box
    px = (
        round(left * w),
        round(top * h),
        max(round(left * w) + 1, round(right * w)),
        max(round(top * h) + 1, round(bottom * h)),
    )
    if px != (0, 0, w, h):
        im = im.crop(px)
    if plan.flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if plan.brightness != 1.0:
        im = ImageEnhance.Brightness(im).enhance(plan.brightness)
    return im
