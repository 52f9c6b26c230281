"""The parts imgtool's HTML pages (report.html, assembled in report.py; the audit page, in
audit_page.py) are drawn with: one style and page head, escaping, numbers, thumbnails and
photo grids, and the inline SVG charts (accuracy and loss against L2 or epoch, the
reliability diagram).

Layer: the work (above images; used by report)."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imgtool.data import images


def esc(text: str) -> str:
    """HTML-escaped; a file name's undecodable bytes (surrogate-escaped) as \\xNN, so the
    report is UTF-8 whatever the photos are called."""
    return html.escape(text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))


def pct(v: float | None, digits: int = 1) -> str:
    """A share as a percentage; "–" for none."""
    return "–" if v is None else f"{v:.{digits}%}"


def num(v: Any) -> str:
    """A number as a page shows it: a float to 4 significant digits, anything else as it is."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; overflow-wrap: anywhere; } h2 { font-size: 1.15em; margin-top: 2em; }
.big { font-size: 2.2em; font-weight: 600; } .muted { color: #666; } .path { overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; } td, th { padding: 4px 8px; text-align: right; }
th { font-weight: 600; } td.name, th.name { text-align: left; }
.names td.name { max-width: 22em; overflow-wrap: normal; }
@media (max-width: 600px) { .names td.name { max-width: 11em; } .bar { width: 80px; } }
.caveat { background: #fff6e0; border-left: 4px solid #e0a800; padding: .6em 1em; }
.cm td, .cm th { padding: 3px 4px; }
.cm td { min-width: 1.7em; text-align: center; border: 1px solid #fff; font-variant-numeric: tabular-nums; }
.cm td.zero { color: #c4c4c4; }
.cm th.col { min-width: 1.7em; text-align: center; font-weight: 600; cursor: help; }
.cm th.row { text-align: left; font-weight: normal; max-width: 14em; white-space: nowrap; overflow: hidden;
             text-overflow: ellipsis; }
.cm th.row b { display: inline-block; min-width: 1.8em; }
.bar { background: #e8e8e8; width: 160px; height: 12px; position: relative; }
.bar span { display: block; height: 100%; background: #3a7; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 140px; font-size: 12px; }
figure img { width: 140px; height: 140px; object-fit: cover; border-radius: 4px; }
figcaption span { display: block; overflow: hidden; text-overflow: ellipsis; }
figcaption .muted { overflow-wrap: anywhere; }
ol.confusions li { margin: 2px 0; }
.wrong { color: #b22; } .right { color: #282; }
tr.chosen td { font-weight: 600; background: #eef7ee; }
svg.curve { width: 100%; max-width: 680px; height: auto; display: block; }
dl.run { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 2px 1em; }
dl.run dt { color: #666; } dl.run dd { margin: 0; overflow-wrap: anywhere; }
"""


def page_head(title: str) -> str:
    """The start of every page this module draws (the report, the audit): one style."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style></head><body>
<h1>{esc(title)}</h1>"""


def thumb(path: str, size: int = 224) -> str:
    from PIL import Image

    try:
        arr = images.decode(path, (size, size), keep_aspect=True)
    except Exception:  # noqa: BLE001 - a thumbnail is never worth failing the report
        return ""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure(path: str, caption: str) -> str:
    src = thumb(path, 160)
    img = f'<img src="{src}" alt="">' if src else '<div class="muted">(unreadable)</div>'
    return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"


def suspects_section(suspects: list[dict[str, Any]], title: str, note: str) -> str:
    if not suspects:
        return ""
    out = [f"<h2>{esc(title)} ({len(suspects)})</h2><p class='muted'>{esc(note)}</p><div class='grid'>"]
    for s in suspects:
        out.append(
            figure(
                s["path"],
                f'<span class="wrong">labelled {esc(s["label"])}</span> ({s["score"]:.0%})<br>'
                f'<span class="right">looks like {esc(s["suggested"])}</span> '
                f"({s.get('suggested_score', 0):.0%})<br>"
                f'<span class="muted">{esc(s["rel"])}</span>',
            )
        )
    out.append("</div>")
    return "".join(out)


def groups_section(groups: list[dict[str, Any]], title: str, note: str) -> str:
    if not groups:
        return ""
    out = [f"<h2>{esc(title)} ({len(groups)})</h2><p class='muted'>{esc(note)}</p>"]
    for g in groups:
        flags = [w for w, on in (("label conflict", g.get("label_conflict")), ("leakage", g.get("leakage"))) if on]
        out.append(
            f"<p><b>{esc(str(g['kind']))}</b>, similarity {g['similarity']:.2f}"
            + (f' <span class="wrong">({esc(", ".join(flags))})</span>' if flags else "")
            + "</p>"
            "<div class='grid'>"
        )
        out += [
            figure(m["path"], f'{esc(m["label"])} · {esc(m["split"])}<br><span class="muted">{esc(m["rel"])}</span>')
            for m in g["members"]
        ]
        out.append("</div>")
    return "".join(out)


def leakage_section(near: dict[str, Any]) -> str:
    return groups_section(
        near.get("groups") or [],
        "Near-duplicates across train and test",
        "These photos are near-identical by their features but some were tested on while "
        "others were fitted on: the test accuracy counts them as unseen.",
    )


def curve_data(metrics: dict[str, Any]) -> tuple[str, list[float], list[float | None], list[float | None], str] | None:
    """(x label, x, accuracy, loss, what) from head.curve, else from the epoch history."""
    head = metrics.get("head") if isinstance(metrics.get("head"), dict) else {}
    curve = (head or {}).get("curve")
    if isinstance(curve, dict) and curve.get("x"):
        x = [float(v) for v in curve["x"]]
        return (
            str(curve.get("x_label") or "x"),
            x,
            _floats(curve.get("cv_accuracy"), len(x)),
            _floats(curve.get("cv_loss"), len(x)),
            "cross-validated",
        )
    hist = metrics.get("history")
    if isinstance(hist, dict) and hist.get("loss"):
        loss = _floats(hist.get("loss"), len(hist["loss"]))
        x = [float(i + 1) for i in range(len(loss))]
        return "epoch", x, _floats(hist.get("validation_accuracy"), len(x)), loss, "training loss, validation accuracy"
    return None


def _floats(values: Any, n: int) -> list[float | None]:
    out: list[float | None] = []
    for v in list(values or [])[:n]:
        out.append(float(v) if isinstance(v, (int, float)) and v == v and math.isfinite(v) else None)
    return out + [None] * (n - len(out))


@dataclass(frozen=True)
class _CurvePlot:
    """The curve's plot area and scales: x (log10 when `log`), accuracy 0..1 on the left,
    loss 0..lmax on the right."""

    tx: list[float]  # the x values as plotted
    log: bool
    lmax: float
    w: int = 640
    h: int = 300
    left: int = 56
    right: int = 60
    top: int = 16
    bottom: int = 46

    @property
    def pw(self) -> int:
        return self.w - self.left - self.right

    @property
    def ph(self) -> int:
        return self.h - self.top - self.bottom

    def px(self, t: float) -> float:
        x0, x1 = min(self.tx), max(self.tx)
        span = (x1 - x0) or 1.0
        return self.left + (t - x0) / span * self.pw if x1 > x0 else self.left + self.pw / 2

    def py_acc(self, a: float) -> float:
        return self.top + (1 - a) * self.ph

    def py_loss(self, v: float) -> float:
        return self.top + (1 - v / self.lmax) * self.ph

    def path(self, vals: Sequence[float | None], f: Any) -> str:
        pts, pen = [], "M"
        for t, v in zip(self.tx, vals):
            if v is None:
                pen = "M"
                continue
            pts.append(f"{pen}{self.px(t):.1f},{f(v):.1f}")
            pen = "L"
        return " ".join(pts)


def svg_curve(
    x_label: str,
    xs: Sequence[float],
    acc: Sequence[float | None],
    loss: Sequence[float | None],
    what: str,
    chosen: float | None = None,
) -> str:
    """Accuracy (left axis, 0-100%) and loss (right axis, 0-max) against x; a log x axis
    when x is an L2 strength spanning decades."""
    log = x_label.lower() == "l2" and all(v > 0 for v in xs) and max(xs) / min(xs) >= 10
    losses = [v for v in loss if v is not None]
    c = _CurvePlot(
        [math.log10(v) for v in xs] if log else list(xs), log, max(losses) * 1.1 if losses and max(losses) > 0 else 1.0
    )
    g = [
        f'<svg class="curve" viewBox="0 0 {c.w} {c.h}" role="img" xmlns="http://www.w3.org/2000/svg" '
        f'aria-label="{esc(what)} accuracy and loss against {esc(x_label)}">',
        f'<rect x="{c.left}" y="{c.top}" width="{c.pw}" height="{c.ph}" fill="#fafafa" stroke="#ccc"/>',
    ]
    g += _curve_axes(c, xs, chosen)
    acc_path, loss_path = c.path(acc, c.py_acc), c.path(loss, c.py_loss)
    if acc_path:
        g.append(f'<path d="{acc_path}" fill="none" stroke="#2a7" stroke-width="2"/>')
    if loss_path:
        g.append(f'<path d="{loss_path}" fill="none" stroke="#c60" stroke-width="2" stroke-dasharray="6 3"/>')
    if len(xs) <= 30:
        for t, v in zip(c.tx, acc):
            if v is not None:
                g.append(f'<circle cx="{c.px(t):.1f}" cy="{c.py_acc(v):.1f}" r="3" fill="#2a7"/>')
    g.append(
        f'<text x="{c.left + c.pw / 2:.1f}" y="{c.h - 8}" font-size="12" text-anchor="middle">'
        f"{esc(x_label)}{' (log scale)' if log else ''}</text>"
    )
    g.append(
        f'<text x="{c.left}" y="{c.h - 8}" font-size="12" fill="#2a7">— accuracy</text>'
        f'<text x="{c.left + c.pw}" y="{c.h - 8}" font-size="12" fill="#c60" text-anchor="end">- - loss</text>'
    )
    g.append("</svg>")
    return (
        f'<p class="muted">{esc(what[0].upper() + what[1:])}: accuracy (left axis) and loss (right axis).</p>'
        + "".join(g)
    )


def _curve_axes(c: _CurvePlot, xs: Sequence[float], chosen: float | None) -> list[str]:
    """The curve's grid lines, both y axes' labels, the x ticks and the chosen x's marker."""
    left, top, pw, ph = c.left, c.top, c.pw, c.ph
    g = []
    for a in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = c.py_acc(a)
        g.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#2a7">{a:.0%}</text>'
            f'<text x="{left + pw + 6}" y="{y + 4:.1f}" font-size="11" fill="#c60">{c.lmax * a:.3g}</text>'
        )
    for t, label in x_ticks(xs, c.tx, c.log):
        g.append(f'<text x="{c.px(t):.1f}" y="{top + ph + 16}" font-size="11" text-anchor="middle">{esc(label)}</text>')
    if chosen is not None and (not c.log or chosen > 0):
        tc = math.log10(chosen) if c.log else chosen
        if min(c.tx) <= tc <= max(c.tx):
            x = c.px(tc)
            g.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#555" '
                f'stroke-dasharray="4 3"/><text x="{x + 4:.1f}" y="{top + 12}" font-size="11">chosen</text>'
            )
    return g


def x_ticks(xs: Sequence[float], tx: Sequence[float], log: bool) -> list[tuple[float, str]]:
    if log or len(xs) <= 10:
        return [(t, f"{v:g}") for t, v in zip(tx, xs)]
    step = max(1, round(len(xs) / 8))
    picked = list(range(0, len(xs), step))
    if picked[-1] != len(xs) - 1:
        if len(xs) - 1 - picked[-1] < step / 2:
            picked.pop()  # too close to the last point: the labels would overlap
        picked.append(len(xs) - 1)
    return [(tx[i], f"{xs[i]:g}") for i in picked]


def svg_reliability(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> str:
    """Reliability diagram: share right against top-1 score, per bin, before and after
    calibration, with the diagonal (perfect calibration); in the CV curve's style."""
    w, h, left, right, top, bottom = 640, 300, 56, 60, 16, 46
    pw, ph = w - left - right, h - top - bottom

    def px(v: float) -> float:
        return left + v * pw

    def py(v: float) -> float:
        return top + (1 - v) * ph

    g = [
        '<svg class="curve" viewBox="0 0 640 300" role="img" xmlns="http://www.w3.org/2000/svg" '
        'aria-label="reliability diagram: share right against top-1 score, before and after calibration">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for a in (0.0, 0.25, 0.5, 0.75, 1.0):
        g.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{py(a):.1f}" y2="{py(a):.1f}" stroke="#e4e4e4"/>'
            f'<text x="{left - 6}" y="{py(a) + 4:.1f}" font-size="11" text-anchor="end">{a:.0%}</text>'
            f'<text x="{px(a):.1f}" y="{top + ph + 16}" font-size="11" text-anchor="middle">{a:g}</text>'
        )
    g.append(
        f'<line x1="{px(0):.1f}" y1="{py(0):.1f}" x2="{px(1):.1f}" y2="{py(1):.1f}" stroke="#999" '
        'stroke-dasharray="4 3"/>'
    )
    for bins, colour, dash in ((before, "#c60", ' stroke-dasharray="6 3"'), (after, "#2a7", "")):
        pts = [
            (b["confidence"], b["accuracy"])
            for b in bins
            if b.get("count") and b.get("confidence") is not None and b.get("accuracy") is not None
        ]
        if pts:
            d = " ".join(f"{'M' if i == 0 else 'L'}{px(c):.1f},{py(a):.1f}" for i, (c, a) in enumerate(pts))
            g.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
            g += [f'<circle cx="{px(c):.1f}" cy="{py(a):.1f}" r="3" fill="{colour}"/>' for c, a in pts]
    g.append(
        f'<text x="{left + pw / 2:.1f}" y="{h - 8}" font-size="12" text-anchor="middle">top-1 score</text>'
        f'<text x="12" y="{top + ph / 2:.1f}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + ph / 2:.1f})">share right</text>'
        f'<text x="{left}" y="{h - 8}" font-size="12" fill="#2a7">— calibrated</text>'
        f'<text x="{left + pw}" y="{h - 8}" font-size="12" fill="#c60" text-anchor="end">- - before</text>'
    )
    g.append("</svg>")
    return (
        "<p class='muted'>Reliability (out of fold): of the photos scored about x, the share that were right; "
        "the dashed diagonal is a score that means what it says.</p>" + "".join(g)
    )
