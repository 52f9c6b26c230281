"""report.html: the figures it adds (F1, baseline, how the head was chosen, a curve, the
small-test-set caveat), read defensively from metrics.json old or new, and a page that
does not overflow in a real browser with 20 classes with long names."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

import pytest

from imgtool import __version__
from imgtool.numbers import metrics
from imgtool.training import audit_page, page_parts, report

WHEN = dt.datetime(2026, 11, 27, 4, 5, tzinfo=dt.timezone.utc)
LONG = [
    "Anemone coronaria (poppy anemone)",
    "Bellis perennis — common daisy of lawns",
    "Campanula rotundifolia",
    "Dianthus caryophyllus",
    "Echinacea purpurea 'Magnus'",
    "Fritillaria meleagris",
    "Galanthus nivalis",
    "Helianthus annuus (common sunflower)",
    "Iris germanica",
    "Jasminum officinale",
    "Kniphofia uvaria (red hot poker)",
    "Lavandula angustifolia 'Hidcote'",
    "Muscari armeniacum",
    "Narcissus pseudonarcissus",
    "Oenothera biennis",
    "Papaver rhoeas — Flanders poppy",
    "Quercus robur (not a flower at all)",
    "Rosa canina",
    "Salvia nemorosa 'Caradonna'",
    "Taraxacum officinale — dandelion_with_an_unbroken_name_that_is_really_long",
]


def many_classes_metrics(n_test_per_class: int = 4) -> dict[str, Any]:
    """A metrics.json as retrain writes it, with every key the report reads (new and old)."""
    classes = LONG
    k = len(classes)
    cm = [[0] * k for _ in range(k)]
    for i in range(k):
        cm[i][i] = n_test_per_class - (i % 3 == 0)
        if i % 3 == 0:
            cm[i][(i + 1) % k] += 1
    per_class = {}
    for i, c in enumerate(classes):
        tp, support, predicted = cm[i][i], sum(cm[i]), sum(row[i] for row in cm)
        per_class[c] = {"precision": round(tp / predicted, 4), "recall": round(tp / support, 4), "support": support}
    total = k * n_test_per_class
    correct = sum(cm[i][i] for i in range(k))
    return {
        "test": {
            "accuracy": round(correct / total, 4),
            "count": total,
            "per_class": per_class,
            "confusion_matrix": cm,
            "classes": classes,
            "baseline": {"class": classes[7], "accuracy": round(n_test_per_class / total, 4)},
        },
        "validation": {"accuracy": 0.8125, "count": 80},
        "train": {"accuracy": 0.97, "count": 640},
        "classes": classes,
        "counts": {
            c: {"train": 32 + (i == 7), "validation": 4, "test": n_test_per_class} for i, c in enumerate(classes)
        },
        "skipped": [],
        "backbone": "/models/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
        "options": {
            "validation_percent": 10.0,
            "test_percent": 10.0,
            "epochs": 50,
            "learning_rate": 0.001,
            "batch_size": 32,
            "l2": 0.1,
            "seed": 0,
            "label_smoothing": 0.1,
            "distortions": {"flip_left_right": False, "random_crop": 0.0, "copies": 4},
        },
        "head": {
            "method": "L2 by 5-fold cross-validation, full-batch L-BFGS",
            "l2": 0.01,
            "epochs": None,
            "cv_folds": 5,
            "cv_accuracy": 0.8412,
            "cv_accuracy_std": 0.0231,
            "cv_loss": 0.5123,
            "candidates": [
                {"l2": v, "cv_accuracy": a, "cv_loss": lo}
                for v, a, lo in (
                    (0.0001, 0.80, 0.71),
                    (0.001, 0.82, 0.60),
                    (0.01, 0.8412, 0.5123),
                    (0.1, 0.83, 0.55),
                    (1.0, 0.75, 0.82),
                )
            ],
            "fit_on": "train+validation",
            "curve": {
                "x": [0.0001, 0.001, 0.01, 0.1, 1.0],
                "x_label": "L2",
                "cv_accuracy": [0.80, 0.82, 0.8412, 0.83, 0.75],
                "cv_loss": [0.71, 0.60, 0.5123, 0.55, 0.82],
            },
        },
    }


def old_metrics() -> dict[str, Any]:
    """metrics.json as written before F1, the baseline and `head` existed."""
    return {
        "test": {
            "accuracy": 0.75,
            "count": 8,
            "classes": ["daisy", "roses"],
            "per_class": {
                "daisy": {"precision": 1.0, "recall": 0.5, "support": 4},
                "roses": {"precision": 0.6667, "recall": 1.0, "support": 4},
            },
            "confusion_matrix": [[2, 2], [0, 4]],
        },
        "validation": {"accuracy": 0.5, "count": 4, "per_class": {}, "confusion_matrix": [[1, 1], [1, 1]]},
        "train": {"accuracy": 1.0, "count": 20},
        "classes": ["daisy", "roses"],
        "counts": {
            "daisy": {"train": 9, "validation": 2, "test": 4},
            "roses": {"train": 11, "validation": 2, "test": 4},
        },
        "skipped": [{"path": "/x/bad.jpg", "reason": "truncated"}],
        "backbone": "bb.tflite",
        "options": {"epochs": 3, "l2": 0.1, "learning_rate": 0.001},
        "history": {"loss": [0.9, 0.6, 0.5], "validation_accuracy": [0.5, None, 0.75]},
    }


# ---------------------------------------------------------------- the numbers


def test_wilson_interval_exact_values() -> None:
    lo, hi = metrics.wilson_interval(17, 20)
    assert (round(lo, 6), round(hi, 6)) == (0.639581, 0.947631)
    lo, hi = metrics.wilson_interval(0, 10)
    assert lo == 0.0 and round(hi, 6) == 0.277533
    lo, hi = metrics.wilson_interval(10, 10)
    assert round(lo, 6) == 0.722467 and hi == 1.0
    lo, hi = metrics.wilson_interval(50, 100)
    assert (round(lo, 6), round(hi, 6)) == (0.403832, 0.596168)
    lo, hi = metrics.wilson_interval(50, 100, z=1.0)
    assert (round(lo, 6), round(hi, 6)) == (0.450248, 0.549752)
    assert metrics.wilson_interval(0, 0) is None


def test_f1_and_majority_baseline() -> None:
    assert metrics.f1_score(1.0, 0.5) == 0.6667
    assert metrics.f1_score(0.6, 0.6) == 0.6
    assert metrics.f1_score(0.0, 0.0) == 0.0
    assert metrics.f1_score(None, 0.5) is None and metrics.f1_score(0.5, None) is None
    old = old_metrics()
    # roses has the most training photos (11 > 9): always "roses" gets its 4 of 8 test photos
    assert metrics.majority_baseline(old) == {"class": "roses", "accuracy": 0.5}
    old["counts"]["daisy"]["train"] = 11  # a tie goes to the first class
    assert metrics.majority_baseline(old) == {"class": "daisy", "accuracy": 0.5}
    new = many_classes_metrics()
    assert metrics.majority_baseline(new) == new["test"]["baseline"]
    assert metrics.majority_baseline({"test": {}, "counts": {}}) is None


def test_curve_x_ticks_never_crowd_the_last_point() -> None:
    fifty = [float(i) for i in range(1, 51)]
    assert [lab for _, lab in page_parts.x_ticks(fifty, fifty, False)] == [
        "1",
        "7",
        "13",
        "19",
        "25",
        "31",
        "37",
        "43",
        "50",
    ]
    l2 = [0.0001, 0.001, 0.01]
    assert page_parts.x_ticks(l2, [-4.0, -3.0, -2.0], True) == [(-4.0, "0.0001"), (-3.0, "0.001"), (-2.0, "0.01")]


# ---------------------------------------------------------------- the page


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_new_metrics_render_every_section() -> None:
    m = many_classes_metrics()
    html = report.render(m, [], "imgtool retrain: flowers", generated=WHEN)
    text = _text(html)
    # per class: precision, recall and F1 (computed: the metrics here carry none)
    first = LONG[0]
    assert re.search(re.escape(first) + r" 100\.0% 75\.0% 85\.7% 3/4", text)
    assert re.search(re.escape(LONG[1]) + r" 80\.0% 100\.0% 88\.9% 4/4", text)
    # baseline, caveat with the Wilson interval of 73/80
    assert "always answering the most frequent class, Helianthus annuus (common sunflower) , scores 5.0%" in text
    assert metrics.wilson_interval(73, 80) == pytest.approx((0.830232, 0.956968), abs=1e-6)
    assert "With only 80 test photos, one photo moves accuracy by 1.2%" in text
    assert "interval (Wilson) for the accuracy is 83.0% – 95.7%" in text
    # how the head was chosen, the candidates with the chosen one marked, the curve
    assert (
        "method: L2 by 5-fold cross-validation, full-batch L-BFGS ; L2 0.01; 5-fold cross-validation: "
        "accuracy 84.1% ± 2.3%, loss 0.5123; final fit on train+validation."
    ) in text
    assert "<tr class=chosen><td>0.01 ✓</td><td>84.1%</td><td>0.5123</td></tr>" in html
    svg = re.search(r"<svg class=\"curve\".*?</svg>", html, re.S)
    assert svg and svg.group(0).count("<path") == 2 and "L2 (log scale)" in svg.group(0) and "chosen" in svg.group(0)
    # date, version, options
    assert f"date 2026-11-27 04:05 UTC imgtool {__version__}" in text
    assert "--l2 0.1" in text and "--random-crop 0" in text and "photos per split train 641" in text
    # confusion matrix: numbered columns with the full name as a tooltip, rows carry number and name
    for j, c in enumerate(LONG):
        assert f'<th class="col" title="{page_parts.esc(c)}" scope="col">{j + 1}</th>' in html
    assert "<b>20</b> Taraxacum" in html


@pytest.mark.parametrize("names", [["daisy", "roses", "tulips"], LONG[:3]], ids=["short", "numbered"])
def test_confusion_cells_are_true_rows_and_predicted_columns(names: list[str]) -> None:
    """Each cell, read in row order: row i is true class i, column j predicted class j, its
    number cm[i][j] and its tooltip "true <i>, predicted <j>: cm[i][j]". Only the headers were
    checked before. Planted change this catches: the matrix drawn transposed (cm[j][i])."""
    cm = [[5, 1, 0], [2, 7, 0], [0, 3, 4]]  # asymmetric: a transpose changes every off-diagonal pair
    m = {"test": {"accuracy": 0.727, "count": 22, "confusion_matrix": cm, "classes": names}, "classes": names}
    html = report.render(m, [], "t", generated=WHEN)
    table = re.search(r"<table class='cm'>(.*?)</table>", html, re.S)
    assert table
    rows = re.findall(r'<tr><th class="row"[^>]*title="([^"]*)">.*?</tr>', table.group(1), re.S)
    assert rows == [page_parts.esc(n) for n in names]
    cells = [
        re.findall(r'<td[^>]*title="([^"]*)">(\d+)</td>', r)
        for r in re.findall(r'<tr><th class="row".*?</tr>', table.group(1), re.S)
    ]
    want = [
        [
            (f"true {page_parts.esc(t)}, predicted {page_parts.esc(p)}: {cm[i][j]}", str(cm[i][j]))
            for j, p in enumerate(names)
        ]
        for i, t in enumerate(names)
    ]
    assert cells == want
    colours = re.findall(r'style="background:hsl\((\d+), 65%, (\d+)%\)"', table.group(1))
    # green on the diagonal, red off it; darker with the share of the true row (55% at all of it)
    assert colours[:3] == [("140", str(100 - int(55 * 5 / 6))), ("0", str(100 - int(55 * 1 / 6))), ("0", "100")]


def test_misclassified_thumbnail_is_a_bilinear_shrink(tmp_path: Path) -> None:
    """The report's thumbnail of a misclassified photo: shrunk to fit 224x224, aspect kept,
    with a bilinear (antialiasing) filter, so one-pixel black/white stripes halved are mid grey
    (by hand: weights 1/4, 3/4, 3/4, 1/4 over four columns, half of them white: 127.5).
    Planted change this catches: the thumbnail resized with NEAREST (all white or all black)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    stripes = np.zeros((224, 448, 3), np.uint8)
    stripes[:, 1::2] = 255
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    wrong = [
        {
            "path": str(tmp_path / "stripes.png"),
            "rel": "roses/stripes.png",
            "true": "roses",
            "predicted": "daisy",
            "score": 0.6,
        }
    ]
    html = report.render({"test": {"accuracy": 0.0, "count": 1}}, wrong, "t", generated=WHEN)
    uri = re.search(r'<img src="data:image/jpeg;base64,([^"]+)"', html)
    assert uri
    thumb = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.group(1)))).convert("RGB")).astype(int)
    assert thumb.shape == (112, 224, 3)
    assert np.abs(thumb[4:-4, 4:-4] - 127.5).max() <= 3  # JPEG (quality 80) of a flat grey: within 3


def test_old_metrics_still_render() -> None:
    html = report.render(old_metrics(), [], "old", generated=WHEN)
    text = _text(html)
    assert re.search(r"daisy 100\.0% 50\.0% 66\.7% 2/4", text)
    assert "always answering the most frequent class, roses , scores 50.0%" in text
    assert "With only 8 test photos" in text
    assert "Trained with fixed settings: epochs 3, learning rate 0.001, l2 0.1." in text
    svg = re.search(r"<svg class=\"curve\".*?</svg>", html, re.S)
    assert svg and "epoch" in svg.group(0) and "log scale" not in svg.group(0)
    assert "skipped photos 1" in text
    # short names: the matrix shows them in full
    assert '<th class="col" title="daisy" scope="col">daisy</th>' in html


def test_large_test_set_has_no_caveat_and_empty_metrics_do_not_crash() -> None:
    m = many_classes_metrics(n_test_per_class=5)  # 100 photos
    assert "Small test set" not in report.render(m, [], "t", generated=WHEN)
    bare = report.render({"classes": ["a", "b"], "test": {"accuracy": None, "count": 0}}, [], "t", generated=WHEN)
    assert "No test photos were held out" in bare and "Small test set" not in bare


def _section(html: str, heading: str) -> str:
    start = html.index(f"<h2>{heading}")
    end = html.find("<h2>", start + 1)
    return html[start : end if end != -1 else len(html)]


def test_this_run_shows_options_as_a_person_writes_them() -> None:
    """As retrain records them: no Python None/False/True, no 10.0; each as its option."""
    m = many_classes_metrics()
    m["options"] = {
        "validation_percent": 10.0,
        "test_percent": 0.0,
        "l2": None,
        "seed": 0,
        "label_smoothing": 0.1,
        "class_weight": "balanced",
        "cv_folds": 5,
        "l2_grid": [10.0, 1.0, 0.1],
        "distortions": {
            "flip_left_right": True,
            "random_crop": 0.0,
            "random_scale": 12.5,
            "random_brightness": 0.0,
            "copies": 4,
        },
        "validation_dir": None,
        "test_dir": "/photos/holdout",
    }
    run = _text(_section(report.render(m, [], "t", generated=WHEN), "This run"))
    for python in ("None", "False", "True", "10.0", "0.0", "[", "_"):
        assert python not in run.replace("/photos/holdout", "").replace(m["backbone"], ""), python
    for shown in (
        "--validation-percent 10 ",
        "--test-percent 0 ",
        "--l2 chosen by cross-validation ",
        "--seed 0 ",
        "--label-smoothing 0.1 ",
        "--class-weight balanced ",
        "cross-validation folds 5 ",
        "L2 candidates 10,1,0.1 ",
        "--flip-left-right on ",
        "--random-crop 0 ",
        "--random-scale 12.5 ",
        "--distorted-copies 4 ",
        "--test-dir /photos/holdout ",
    ):
        assert shown in run, shown
    assert "--validation-dir" not in run  # not given: left out


def _retrain_metrics(n_classes: int, test_per_class: int, wrong_every: int = 3) -> dict[str, Any]:
    """What retrain records for n_classes x 2 photos (+ test photos), built by the same code."""
    import numpy as np

    classes = [f"class_{i:04d}" for i in range(n_classes)]
    y = np.repeat(np.arange(n_classes), test_per_class)
    pred = y.copy()
    pred[::wrong_every] = (y[::wrong_every] + 1) % n_classes
    m = many_classes_metrics()
    m.update(
        {
            "classes": classes,
            "test": metrics.evaluate(y, pred, classes),
            "counts": {c: {"train": 2, "validation": 0, "test": test_per_class} for c in classes},
        }
    )
    return m


def test_a_thousand_classes_without_test_photos_make_a_small_report() -> None:
    """1,000 classes x 2 photos with --test-percent 0 once wrote 107 MB (an all-zero
    1,000,000-cell matrix): no test photos, no per-class table and no matrix."""
    m = _retrain_metrics(1000, 0)
    assert m["test"]["count"] == 0 and len(m["test"]["confusion_matrix"]) == 1000
    html = report.render(m, [], "t", generated=WHEN)
    assert len(html.encode()) < 50_000, len(html)
    assert "No test photos were held out" in html
    assert "Confusion matrix" not in html and "Per class, on the test photos" not in html
    assert "Most frequent confusions" not in html


def test_many_classes_get_the_top_confusions_instead_of_a_matrix() -> None:
    m = _retrain_metrics(1000, 2)  # 2,000 test photos, every 3rd predicted as the next class
    html = report.render(m, [], "t", generated=WHEN)
    assert "Confusion matrix" not in html and "class='cm'" not in html
    top = _section(html, "Most frequent confusions")
    items = re.findall(r"<li>(.*?)</li>", top)
    assert len(items) == report.TOP_CONFUSIONS
    # 667 photos wrong, each its own (true, predicted) pair of 1 photo: the first in class order
    assert _text(items[0]).strip() == "class_0000 predicted as class_0001 : 1 photo"
    assert "and 642 other confusions (642 photos)" in top
    assert len(html.encode()) < 1_000_000, len(html)  # the per-class table: ~1,000 rows
    # a pair that happens twice comes first
    m["test"]["confusion_matrix"][5][9] = 2
    items = re.findall(
        r"<li>(.*?)</li>", _section(report.render(m, [], "t", generated=WHEN), "Most frequent confusions")
    )
    assert _text(items[0]).strip() == "class_0005 predicted as class_0009 : 2 photos"
    # up to CONFUSION_MATRIX_MAX classes: the matrix
    small = _retrain_metrics(report.CONFUSION_MATRIX_MAX, 2)
    html = report.render(small, [], "t", generated=WHEN)
    assert "Confusion matrix" in html and "Most frequent confusions" not in html


def test_misclassified_thumbnails_are_capped(fixtures: Path) -> None:
    photo = str(sorted((fixtures / "flowers-mini" / "daisy").glob("*.jpg"))[0])
    wrong = [
        {"path": photo, "rel": f"daisy/{i}.jpg", "true": "daisy", "predicted": "roses", "score": 0.5}
        for i in range(report.MAX_THUMBNAILS + 7)
    ]
    html = report.render(many_classes_metrics(), wrong, "t", generated=WHEN)
    assert html.count("<figure>") == report.MAX_THUMBNAILS
    assert f"Misclassified test photos ({report.MAX_THUMBNAILS + 7})" in html
    assert f"metrics.json lists all {report.MAX_THUMBNAILS + 7}" in html
    unknown = report.render(many_classes_metrics(), None, "t", generated=WHEN)
    assert "Not recorded" in _section(unknown, "Misclassified test photos")


# ---------------------------------------------------------------- in a real browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright package is not installed (pip install -e '.[test]', or make install)"
    if problem is None and not Path(CHROMIUM).exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does it)"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _assert_fits_and_names_unbroken(page, width: int) -> None:  # noqa: ANN001
    """Nothing wider than the viewport (a .scroll box may scroll inside itself, not stick
    out), and class names wrap between words, never inside one."""
    scroll_w, client_w = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert client_w == width and scroll_w <= client_w
    outside = page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter(e => !(e.parentElement && e.parentElement.closest('.scroll')))
        .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
        .map(e => e.tagName + '.' + e.className)""")
    assert outside == []
    # each word of a class name is on one line
    broken = page.evaluate("""() => {
        const names = document.querySelectorAll(
            'td.name, th.row, figcaption span.right, figcaption span.wrong, b.cls, ol.confusions span');
        const out = [];
        for (const el of names) {
            const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                for (const m of node.data.matchAll(/\\S+/g)) {
                    const r = document.createRange();
                    r.setStart(node, m.index);
                    r.setEnd(node, m.index + m[0].length);
                    const lines = new Set([...r.getClientRects()].filter(b => b.width > 0).map(b => b.top));
                    if (lines.size > 1) out.push(m[0]);
                }
            }
        }
        return out;
    }""")
    assert broken == []


@pytest.mark.parametrize("width", [1280, 800, 420])
def test_report_with_20_long_class_names_fits_the_page(
    browser,
    fixtures: Path,
    tmp_path: Path,  # noqa: ANN001
    width: int,
) -> None:
    photo = sorted((fixtures / "flowers-mini" / "daisy").glob("*.jpg"))
    wrong = [
        {"path": str(p), "rel": f"{LONG[0]}/{p.name}", "true": LONG[0], "predicted": LONG[i], "score": 0.61}
        for i, p in zip((1, 19, 16), photo[:3])
    ]
    page_file = tmp_path / "report.html"
    page_file.write_text(
        report.render(many_classes_metrics(), wrong, "imgtool retrain: " + "x" * 120, generated=WHEN), encoding="utf-8"
    )
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.goto(page_file.as_uri())
        _assert_fits_and_names_unbroken(page, width)
        # the matrix: one column per class, each header a number with the full name on hover
        titles = page.eval_on_selector_all("table.cm th.col", "els => els.map(e => [e.textContent, e.title])")
        assert titles == [[str(j + 1), c] for j, c in enumerate(LONG)]
        # the columns of the matrix are narrow enough to read at a glance: 20 fit in 1000 px
        cm_width = page.eval_on_selector("table.cm", "e => e.getBoundingClientRect().width")
        assert cm_width < 1000
        assert page.eval_on_selector("svg.curve", "e => e.getBoundingClientRect().width") <= min(680, width)
        assert page.eval_on_selector_all("figure img", "els => els.filter(e => e.naturalWidth > 0).length") == 3
    finally:
        page.close()


# ---------------------------------------------------------------- calibration, suspects, near-duplicates, audit


def _bins(pairs: list[tuple[int, float | None, float | None]]) -> list[dict[str, Any]]:
    return [
        {"lo": i / 10, "hi": (i + 1) / 10, "count": n, "confidence": c, "accuracy": a}
        for i, (n, c, a) in enumerate(pairs)
    ]


def test_calibration_suggested_score_suspects_and_leakage_render() -> None:
    m = many_classes_metrics()
    before = _bins(
        [(0, None, None)] * 3
        + [
            (10, 0.35, 0.4),
            (20, 0.45, 0.6),
            (0, None, None),
            (0, None, None),
            (5, 0.75, 0.9),
            (0, None, None),
            (0, None, None),
        ]
    )
    after = _bins(
        [(0, None, None)] * 5 + [(8, 0.55, 0.5), (0, None, None), (0, None, None), (12, 0.85, 0.87), (15, 0.95, 0.96)]
    )
    m["calibration"] = {
        "temperature": 0.6,
        "ece_before": 0.13,
        "ece_after": 0.021,
        "reliability_before": before,
        "reliability_after": after,
    }
    m["open_set"] = {"min_score": 0.6891, "accepted": 0.7321, "precision": 0.9512}
    m["suspects"] = [
        {
            "path": "/nowhere/a.jpg",
            "rel": "daisy/a.jpg",
            "label": "daisy",
            "suggested": "roses",
            "score": 0.01,
            "suggested_score": 0.97,
            "split": "train",
        }
    ]
    m["near_duplicates"] = {
        "straddling": 1,
        "groups": [
            {
                "kind": "near",
                "similarity": 0.91,
                "label_conflict": False,
                "leakage": True,
                "members": [
                    {"path": "/nowhere/b.jpg", "rel": "roses/b.jpg", "label": "roses", "split": "train"},
                    {"path": "/nowhere/b2.jpg", "rel": "roses/b2.jpg", "label": "roses", "split": "test"},
                ],
            }
        ],
    }
    html = report.render(m, [], "t", generated=WHEN)
    text = _text(html)
    assert "temperature T = 0.6" in text and "went from 0.13 to 0.021" in text
    assert "In plain words: of the 15 photos scored 0.9–1.0, 96% were right." in text
    assert "Suggested --min-score : 0.6891" in text and "right 95.1% of the time, and 73.2% of the photos" in text
    svg = re.findall(r"<svg class=\"curve\".*?</svg>", html, re.S)[1]
    assert svg.count("<path") == 2 and svg.count("<circle") == 3 + 3  # one point per filled bin, before and after
    assert "share right" in svg and "top-1 score" in svg
    assert "Check these labels (1)" in text and "labelled daisy (1%)" in text and "looks like roses (97%)" in text
    assert "Near-duplicates across train and test (1)" in text and "(leakage)" in text and "roses · test" in text


def test_a_model_from_before_calibration_says_so() -> None:
    text = _text(report.render(many_classes_metrics(), [], "t", generated=WHEN))
    assert "This model's scores are not calibrated" in text and "Check these labels" not in text
    assert "not calibrated" not in _text(report.render(old_metrics(), [], "t", generated=WHEN))  # no head at all


def test_the_audit_page() -> None:
    empty = audit_page.render_audit({"summary": {"photos": 4, "classes": ["a", "b"], "backbone": "bb"}}, "audit: x")
    assert "Nothing found." in _text(empty) and "4 photos in 2 classes" in _text(empty)
    full = {
        "summary": {"photos": 9, "classes": ["a", "b"], "cv_accuracy": 0.8, "backbone": "bb"},
        "suspects": [
            {
                "path": "/n/a.jpg",
                "rel": "a/a.jpg",
                "label": "a",
                "suggested": "b",
                "score": 0.02,
                "suggested_score": 0.9,
                "split": "test",
            }
        ],
        "duplicates": [
            {
                "kind": "identical",
                "similarity": 1.0,
                "label_conflict": True,
                "leakage": False,
                "members": [
                    {"path": "/n/x", "rel": "a/x", "label": "a", "split": "train"},
                    {"path": "/n/y", "rel": "b/y", "label": "b", "split": "train"},
                ],
            }
        ],
        "outliers": [{"path": "/n/o", "rel": "b/<o>.jpg", "label": "b", "score": 0.41, "z": -4.2}],
        "problems": [{"kind": "unreadable", "message": "/n/bad.jpg: truncated", "path": "/n/bad.jpg"}],
    }
    html = audit_page.render_audit(full, "audit: <x>")
    text = _text(html)
    assert "<title>audit: &lt;x&gt;</title>" in html and "b/&lt;o&gt;.jpg" in html  # names escaped
    assert "cross-validated accuracy 80.0%" in text and "Nothing found" not in text
    assert "Suspect labels (1)" in text and "Duplicates (1)" in text and "(label conflict)" in text
    assert "Outliers (1)" in text and "similarity 0.41" in text and "unreadable : /n/bad.jpg: truncated" in text


def test_report_with_40_long_class_names_lists_top_confusions_that_fit_420px(browser, tmp_path: Path) -> None:  # noqa: ANN001
    """Above CONFUSION_MATRIX_MAX classes the top-confusions list replaces the matrix; it too
    fits a phone-sized page without breaking a name."""
    m = _retrain_metrics(40, 3)
    names = [f"{LONG[i % len(LONG)]} {i}" for i in range(40)]
    m["classes"] = m["test"]["classes"] = names
    m["test"]["per_class"] = {names[i]: v for i, v in enumerate(m["test"]["per_class"].values())}
    m["counts"] = {names[i]: v for i, v in enumerate(m["counts"].values())}
    page_file = tmp_path / "report.html"
    page_file.write_text(report.render(m, [], "imgtool retrain: many", generated=WHEN), encoding="utf-8")
    page = browser.new_page(viewport={"width": 420, "height": 900})
    try:
        page.goto(page_file.as_uri())
        assert page.eval_on_selector_all("ol.confusions li", "els => els.length") == report.TOP_CONFUSIONS
        assert page.eval_on_selector_all("table.cm", "els => els.length") == 0
        _assert_fits_and_names_unbroken(page, 420)
    finally:
        page.close()
