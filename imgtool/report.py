"""report.html: a page a person would rather look at than read the numbers.

Self-contained (thumbnails inlined as data: URIs, the curve as inline SVG, no scripts),
so it survives being copied. Every figure comes from metrics.json; keys added later
(F1, the baseline, how the head was chosen) are read with `.get`, so a report can be
drawn from older or newer metrics alike. Readable with many classes and long names:
wide tables scroll inside their own box, the confusion matrix numbers its columns (the
full name in a tooltip and in the row header), class names wrap between words only, and
nothing widens the page (checked in Chromium at 1280, 800 and 420 px).

Bounded with many classes: no per-class table or confusion matrix without test photos;
above CONFUSION_MATRIX_MAX classes the matrix (classes^2 cells) becomes the TOP_CONFUSIONS
most frequent mistakes; at most MAX_THUMBNAILS misclassified photos are drawn."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from collections.abc import Sequence
from typing import Any

from imgtool import images

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal
SMALL_TEST_SET = 100  # below this many test photos the page says how uncertain accuracy is
CONFUSION_MATRIX_MAX = 30  # classes; above this, the most frequent confusions instead of the matrix
TOP_CONFUSIONS = 25
MAX_THUMBNAILS = 100  # misclassified photos drawn (the rest are counted; metrics.json lists them all)


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion `correct`/`n` (95% by default); None for n=0.
    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0% or 100%."""
    if n <= 0:
        return None
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if correct == 0 else max(0.0, centre - half)  # exact at the ends (rounding leaves 1 - 1e-16)
    hi = 1.0 if correct == n else min(1.0, centre + half)
    return lo, hi


def f1_score(precision: float | None, recall: float | None) -> float | None:
    """Harmonic mean of precision and recall; None when either is undefined."""
    if precision is None or recall is None:
        return None
    if precision + recall == 0:
        return 0.0
    return round(2 * precision * recall / (precision + recall), 4)


def majority_baseline(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The accuracy of always answering the most frequent training class, on the test
    photos: metrics["test"]["baseline"] when given, else computed from the counts."""
    test = metrics.get("test") or {}
    given = test.get("baseline")
    if isinstance(given, dict) and given.get("class") is not None and given.get("accuracy") is not None:
        return given
    counts = metrics.get("counts") or {}
    per_class = test.get("per_class") or {}
    n = test.get("count") or 0
    if not counts or not n:
        return None
    classes = metrics.get("classes") or list(counts)
    best = max(classes, key=lambda c: ((counts.get(c) or {}).get("train", 0), -classes.index(c)))
    support = (per_class.get(best) or {}).get("support", 0)
    return {"class": best, "accuracy": round(support / n, 4)}


def _thumb(path: str, size: int = 224) -> str:
    from PIL import Image

    try:
        arr = images.decode(path, (size, size), keep_aspect=True)
    except Exception:  # noqa: BLE001 - a thumbnail is never worth failing the report
        return ""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _cell_colour(value: int, row_total: int, diagonal: bool) -> str:
    frac = value / row_total if row_total else 0.0
    hue = 140 if diagonal else 0
    light = 100 - int(55 * frac)
    return f"hsl({hue}, 65%, {light}%)"


def _pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}%}"


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def esc(text: str) -> str:
    """HTML-escaped; a file name's undecodable bytes (surrogate-escaped) as \\xNN, so the
    report is UTF-8 whatever the photos are called."""
    return html.escape(text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))



def title_for(image_dir: str | None) -> str:
    """The report's title for a model trained on `image_dir` (retrain and export agree)."""
    from pathlib import Path

    return f"imgtool retrain: {Path(image_dir).name}" if image_dir else "imgtool retrain"

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



def _exports_section(metrics: dict[str, Any]) -> str:
    """The single-file exports (model.tflite, model-MODE.tflite): size and test accuracy
    next to the float model's."""
    exports = [e for e in metrics.get("exports") or [] if "bytes" in e]
    if not exports:
        return ""
    rows = ["<h2>Exported .tflite files</h2><div class='scroll'><table><tr><th>file</th><th>quantize</th><th>size</th>"
            "<th>test accuracy</th><th>float model</th></tr>"]
    for e in exports:
        acc = "unknown" if e.get("test_accuracy") is None else f'{e["test_accuracy"]:.1%}'
        ref = "" if e.get("float_test_accuracy") is None else f'{e["float_test_accuracy"]:.1%}'
        rows.append(f'<tr><td class="name">{esc(str(e["file"]))}</td><td>{esc(str(e["quantize"]))}</td>'
                    f'<td>{e["bytes"] / 1e6:.2f} MB</td><td>{acc}</td><td>{ref}</td></tr>')
    rows.append("</table></div>")
    return "".join(rows)

def render(metrics: dict[str, Any], misclassified: list[dict[str, Any]] | None, title: str,
           generated: _dt.datetime | None = None) -> str:
    """The page. `misclassified`: the test photos predicted wrong (None: not recorded,
    as in a model folder written before metrics.json kept them)."""
    test = metrics.get("test") or {}
    classes = list(metrics.get("classes") or test.get("classes") or [])
    when = (generated or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    parts = [_page_head(title)]
    parts.append(_summary(metrics, test))
    parts.append(_per_class(test, classes))
    parts.append(_confusion(test, classes))
    parts.append(_head_section(metrics))
    parts.append(_calibration_section(metrics))
    parts.append(_exports_section(metrics))
    parts.append(_misclassified(misclassified))
    parts.append(_suspects_section(metrics.get("suspects") or [], "Check these labels",
                                   "The training photos the out-of-fold predictions most reject: the probability "
                                   "given to their folder's class, and the class they look like."))
    parts.append(_leakage_section(metrics.get("near_duplicates") or {}))
    parts.append(_run_section(metrics, when))
    parts.append("</body></html>\n")
    return "".join(parts)


def _summary(metrics: dict[str, Any], test: dict[str, Any]) -> str:
    acc = test.get("accuracy")
    n = int(test.get("count") or 0)
    val = (metrics.get("validation") or {}).get("accuracy")
    out = []
    if acc is None:
        out.append("<p>No test photos were held out, so there is no test accuracy.")
    else:
        out.append(f'<p><span class="big">{acc:.1%}</span> test accuracy on {n} held-out photos')
    if val is not None:
        out.append(f' &middot; <span class="muted">validation {val:.1%}</span>')
    out.append("</p>")
    base = majority_baseline(metrics)
    if base is not None:
        out.append('<p>Baseline: always answering the most frequent class, '
                   f'<b class="cls">{esc(str(base["class"]))}</b>, '
                   f'scores {_pct(base["accuracy"])} on the same photos.</p>')
    if acc is not None and 0 < n < SMALL_TEST_SET:
        lo_hi = wilson_interval(round(acc * n), n)
        assert lo_hi is not None
        out.append(f'<p class="caveat"><b>Small test set.</b> With only {n} test photos, one photo moves accuracy by '
                   f'{1 / n:.1%}; the 95% confidence interval (Wilson) for the accuracy is '
                   f'<b>{lo_hi[0]:.1%} – {lo_hi[1]:.1%}</b>. Differences between runs within that range are noise; '
                   "add photos for a firmer figure.</p>")
    counts = metrics.get("counts") or {}
    total = sum(sum(v.values()) for v in counts.values() if isinstance(v, dict))
    out.append(f'<p class="muted">backbone <span class="path">{esc(str(metrics.get("backbone", "")))}</span>; '
               f'{total} photos in '
               f'{len(metrics.get("classes") or [])} classes</p>')
    return "".join(out)


def _per_class(test: dict[str, Any], classes: list[str]) -> str:
    per_class = test.get("per_class") or {}
    if not per_class or not test.get("count"):  # no test photos: every row would be empty
        return ""
    cm = test.get("confusion_matrix")
    rows = ["<h2>Per class, on the test photos</h2><div class='scroll'><table class='names'>"
            "<tr><th class='name'>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>"
            "<th aria-label='recall, as a bar'></th></tr>"]
    for i, c in enumerate(classes):
        pc = per_class.get(c) or {}
        p, r = pc.get("precision"), pc.get("recall")
        f1 = pc.get("f1") if "f1" in pc else f1_score(p, r)
        correct = f"{cm[i][i]}/" if cm and i < len(cm) else ""
        width = int(160 * (r or 0))
        rows.append(f'<tr><td class="name">{esc(c)}</td><td>{_pct(p)}</td><td>{_pct(r)}</td><td>{_pct(f1)}</td>'
                    f'<td class="muted">{correct}{pc.get("support", 0)}</td>'
                    f'<td><div class="bar"><span style="width:{width}px"></span></div></td></tr>')
    rows.append("</table></div><p class='muted'>precision: of the photos predicted as the class, the share "
                "that were; recall: of the class's photos, the share found; F1: their harmonic mean.</p>")
    return "".join(rows)


def _confusion(test: dict[str, Any], classes: list[str]) -> str:
    cm = test.get("confusion_matrix")
    if not cm or not any(any(row) for row in cm):  # no test photos: nothing to show
        return ""
    names = list(test.get("classes") or classes)  # evaluate may add "(other)"
    if len(names) > CONFUSION_MATRIX_MAX:
        return _top_confusions(cm, names)
    short = len(names) <= 8 and all(len(c) <= 10 for c in names)
    head = "".join(
        f'<th class="col" title="{esc(c)}" scope="col">{esc(c) if short else j + 1}</th>' for j, c in enumerate(names))
    out = ["<h2>Confusion matrix</h2><p class='muted'>rows: true class, columns: predicted"
           + ("" if short else " (numbered as the rows; hover a number for its name)") + "</p>"
           f"<div class='scroll'><table class='cm'><tr><th></th>{head}</tr>"]
    for i, row in enumerate(cm):
        c = names[i] if i < len(names) else str(i + 1)
        total = sum(row)
        cells = "".join(f'<td{" class=zero" if v == 0 else ""} style="background:{_cell_colour(v, total, i == j)}" '
                        f'title="true {esc(c)}, predicted {esc(names[j] if j < len(names) else str(j + 1))}: {v}">'
                        f"{v}</td>" for j, v in enumerate(row))
        label = esc(c) if short else f"<b>{i + 1}</b> {esc(c)}"
        out.append(f'<tr><th class="row" scope="row" title="{esc(c)}">{label}</th>{cells}</tr>')
    out.append("</table></div>")
    return "".join(out)


def _top_confusions(cm: list[list[int]], names: list[str], n: int = TOP_CONFUSIONS) -> str:
    """With many classes: the most frequent mistakes (true -> predicted), most first; ties
    in class order."""
    def name(i: int) -> str:
        return names[i] if i < len(names) else str(i + 1)

    pairs = sorted(((v, i, j) for i, row in enumerate(cm) for j, v in enumerate(row) if i != j and v),
                   key=lambda t: (-t[0], t[1], t[2]))
    out = [f"<h2>Most frequent confusions</h2><p class='muted'>{len(names)} classes: too many for a matrix "
           f"({len(names)}&times;{len(names)} cells); metrics.json has it in full.</p>"]
    if not pairs:
        out.append("<p>None: every test photo was classified right.</p>")
        return "".join(out)
    shown = pairs[:n]
    out.append("<div class='scroll'><ol class='confusions'>")  # a name longer than the page scrolls, unbroken
    for v, i, j in shown:
        out.append(f'<li><span class="right">{esc(name(i))}</span> predicted as '
                   f'<span class="wrong">{esc(name(j))}</span>: {v} photo{"" if v == 1 else "s"}</li>')
    out.append("</ol></div>")
    if len(pairs) > n:
        rest = sum(v for v, _, _ in pairs[n:])
        out.append(f"<p class='muted'>and {len(pairs) - n} other confusions ({rest} photos).</p>")
    return "".join(out)


def _head_section(metrics: dict[str, Any]) -> str:
    head = metrics.get("head") if isinstance(metrics.get("head"), dict) else None
    opts = metrics.get("options") or {}
    out = ["<h2>How the last layer was chosen</h2>"]
    if head:
        facts = [f"method: <b>{esc(str(head.get('method', '?')))}</b>"]
        if head.get("l2") is not None:
            facts.append(f"L2 {_num(head['l2'])}")
        if head.get("epochs") is not None:
            facts.append(f"{head['epochs']} epochs")
        if head.get("cv_folds"):
            cv = f"{head['cv_folds']}-fold cross-validation"
            if head.get("cv_accuracy") is not None:
                cv += f": accuracy {_pct(head['cv_accuracy'])}"
                if head.get("cv_accuracy_std") is not None:
                    cv += f" ± {_pct(head['cv_accuracy_std'])}"
            if head.get("cv_loss") is not None:
                cv += f", loss {head['cv_loss']:.4f}"
            facts.append(cv)
        if head.get("fit_on"):
            facts.append(f"final fit on {esc(str(head['fit_on']))}")
        out.append("<p>" + "; ".join(facts) + ".</p>")
        cands = [c for c in head.get("candidates") or [] if isinstance(c, dict)]
        if cands:
            out.append("<div class='scroll'><table><tr><th>L2</th><th>CV accuracy</th><th>CV loss</th></tr>")
            for c in cands:
                chosen = c.get("l2") == head.get("l2")
                loss = c.get("cv_loss")
                out.append(f'<tr{" class=chosen" if chosen else ""}><td>{_num(c.get("l2"))}{" ✓" if chosen else ""}'
                           f'</td><td>{_pct(c.get("cv_accuracy"))}</td>'
                           f'<td>{"–" if loss is None else f"{loss:.4f}"}</td></tr>')
            out.append("</table></div>")
    else:
        bits = [f"{k.replace('_', ' ')} {_num(opts[k])}" for k in ("epochs", "learning_rate", "l2", "label_smoothing")
                if opts.get(k) is not None]
        out.append("<p>Trained with fixed settings" + (": " + ", ".join(bits) if bits else "") + ".</p>")
    curve = _curve_data(metrics)
    if curve is not None:
        out.append(_svg_curve(*curve, chosen=(head or {}).get("l2") if curve[0] == "L2" else None))
    return "".join(out)


def _curve_data(metrics: dict[str, Any]) -> tuple[str, list[float], list[float | None], list[float | None], str] | None:
    """(x label, x, accuracy, loss, what) from head.curve, else from the epoch history."""
    head = metrics.get("head") if isinstance(metrics.get("head"), dict) else {}
    curve = (head or {}).get("curve")
    if isinstance(curve, dict) and curve.get("x"):
        x = [float(v) for v in curve["x"]]
        return (str(curve.get("x_label") or "x"), x, _floats(curve.get("cv_accuracy"), len(x)),
                _floats(curve.get("cv_loss"), len(x)), "cross-validated")
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


def _svg_curve(x_label: str, xs: Sequence[float], acc: Sequence[float | None], loss: Sequence[float | None],
               what: str, chosen: float | None = None) -> str:
    """Accuracy (left axis, 0-100%) and loss (right axis, 0-max) against x; a log x axis
    when x is an L2 strength spanning decades."""
    w, h, left, right, top, bottom = 640, 300, 56, 60, 16, 46
    pw, ph = w - left - right, h - top - bottom
    log = x_label.lower() == "l2" and all(v > 0 for v in xs) and max(xs) / min(xs) >= 10
    tx = [math.log10(v) for v in xs] if log else list(xs)
    x0, x1 = min(tx), max(tx)
    span = (x1 - x0) or 1.0
    losses = [v for v in loss if v is not None]
    lmax = max(losses) * 1.1 if losses and max(losses) > 0 else 1.0

    def px(t: float) -> float:
        return left + (t - x0) / span * pw if x1 > x0 else left + pw / 2

    def py_acc(a: float) -> float:
        return top + (1 - a) * ph

    def py_loss(v: float) -> float:
        return top + (1 - v / lmax) * ph

    def path(vals: Sequence[float | None], f: Any) -> str:
        pts, pen = [], "M"
        for t, v in zip(tx, vals):
            if v is None:
                pen = "M"
                continue
            pts.append(f"{pen}{px(t):.1f},{f(v):.1f}")
            pen = "L"
        return " ".join(pts)

    g = [f'<svg class="curve" viewBox="0 0 {w} {h}" role="img" xmlns="http://www.w3.org/2000/svg" '
         f'aria-label="{esc(what)} accuracy and loss against {esc(x_label)}">',
         f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>']
    for a in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = py_acc(a)
        g.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>'
                 f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#2a7">{a:.0%}</text>'
                 f'<text x="{left + pw + 6}" y="{y + 4:.1f}" font-size="11" fill="#c60">{lmax * a:.3g}</text>')
    ticks = _x_ticks(xs, tx, log)
    for t, label in ticks:
        g.append(f'<text x="{px(t):.1f}" y="{top + ph + 16}" font-size="11" text-anchor="middle">{esc(label)}</text>')
    if chosen is not None and (not log or chosen > 0):
        tc = math.log10(chosen) if log else chosen
        if x0 <= tc <= x1:
            g.append(f'<line x1="{px(tc):.1f}" x2="{px(tc):.1f}" y1="{top}" y2="{top + ph}" stroke="#555" '
                     f'stroke-dasharray="4 3"/><text x="{px(tc) + 4:.1f}" y="{top + 12}" font-size="11">chosen</text>')
    acc_path, loss_path = path(acc, py_acc), path(loss, py_loss)
    if acc_path:
        g.append(f'<path d="{acc_path}" fill="none" stroke="#2a7" stroke-width="2"/>')
    if loss_path:
        g.append(f'<path d="{loss_path}" fill="none" stroke="#c60" stroke-width="2" stroke-dasharray="6 3"/>')
    if len(xs) <= 30:
        for t, v in zip(tx, acc):
            if v is not None:
                g.append(f'<circle cx="{px(t):.1f}" cy="{py_acc(v):.1f}" r="3" fill="#2a7"/>')
    g.append(f'<text x="{left + pw / 2:.1f}" y="{h - 8}" font-size="12" text-anchor="middle">'
             f'{esc(x_label)}{" (log scale)" if log else ""}</text>')
    g.append(f'<text x="{left}" y="{h - 8}" font-size="12" fill="#2a7">— accuracy</text>'
             f'<text x="{left + pw}" y="{h - 8}" font-size="12" fill="#c60" text-anchor="end">- - loss</text>')
    g.append("</svg>")
    return f'<p class="muted">{esc(what[0].upper() + what[1:])}: accuracy (left axis) and loss (right axis).</p>' \
           + "".join(g)


def _x_ticks(xs: Sequence[float], tx: Sequence[float], log: bool) -> list[tuple[float, str]]:
    if log or len(xs) <= 10:
        return [(t, f"{v:g}") for t, v in zip(tx, xs)]
    step = max(1, round(len(xs) / 8))
    picked = list(range(0, len(xs), step))
    if picked[-1] != len(xs) - 1:
        if len(xs) - 1 - picked[-1] < step / 2:
            picked.pop()  # too close to the last point: the labels would overlap
        picked.append(len(xs) - 1)
    return [(tx[i], f"{xs[i]:g}") for i in picked]


def _misclassified(misclassified: list[dict[str, Any]] | None) -> str:
    if misclassified is None:
        return ("<h2>Misclassified test photos</h2><p class='muted'>Not recorded (this model folder was written by "
                "an older imgtool).</p>")
    out = [f"<h2>Misclassified test photos ({len(misclassified)})</h2>"]
    if not misclassified:
        out.append("<p>None.</p>")
        return "".join(out)
    if len(misclassified) > MAX_THUMBNAILS:
        out.append(f"<p class='muted'>The first {MAX_THUMBNAILS} are shown; metrics.json lists all "
                   f"{len(misclassified)}.</p>")
    out.append('<div class="grid">')
    for m in misclassified[:MAX_THUMBNAILS]:
        src = _thumb(m["path"])
        img = f'<img src="{src}" alt="">' if src else '<div class="muted">(unreadable)</div>'
        out.append(f'<figure>{img}<figcaption><span class="right" title="{esc(m["true"])}">true: '
                   f'{esc(m["true"])}</span><span class="wrong" title="{esc(m["predicted"])}">predicted: '
                   f'{esc(m["predicted"])} ({m["score"]:.0%})</span>'
                   f'<span class="muted">{esc(m["rel"])}</span></figcaption></figure>')
    out.append("</div>")
    return "".join(out)


# metrics.json's options as a person writes them: retrain's option for each key (the key with
# dashes, but for these), and the keys that are no option but a fact of the fit
_OPTION_SPELLING = {"copies": "--distorted-copies"}
_NOT_OPTIONS = {"cv_folds": "cross-validation folds", "l2_grid": "L2 candidates"}
_WHEN_NOT_GIVEN = {"l2": "chosen by cross-validation"}


def _option_rows(options: dict[str, Any]) -> list[tuple[str, str]]:
    """[(how a person writes the option, its value)]: `--test-percent` 10, `--flip-left-right`
    on/off; an option not given is left out (or says what happens instead)."""
    flat: list[tuple[str, Any]] = []
    for k, v in options.items():
        flat += list(v.items()) if isinstance(v, dict) else [(k, v)]  # distortions.* are options too
    rows = []
    for key, value in flat:
        if key in _NOT_OPTIONS:
            label = _NOT_OPTIONS[key]
        else:
            label = _OPTION_SPELLING.get(key, "--" + key.replace("_", "-"))
        if value is None:
            if key not in _WHEN_NOT_GIVEN:
                continue
            shown = _WHEN_NOT_GIVEN[key]
        else:
            shown = _value(value)
        rows.append((label, shown))
    return rows


def _value(v: Any) -> str:
    """A value as typed on a command line: on/off, 10 (not 10.0), 224,224, names as they are."""
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_value(x) for x in v)
    return str(v)


def _run_section(metrics: dict[str, Any], when: str) -> str:
    from imgtool.version import __version__

    version = metrics.get("imgtool") or __version__
    rows: list[tuple[str, str]] = [("date", when), ("imgtool", str(version)),
                                   ("backbone", str(metrics.get("backbone", "")))]
    rows += _option_rows(metrics.get("options") or {})
    counts = metrics.get("counts") or {}
    splits: dict[str, int] = {}
    for per in counts.values():
        if isinstance(per, dict):
            for s, n in per.items():
                splits[s] = splits.get(s, 0) + int(n)
    if splits:
        rows.append(("photos per split", ", ".join(f"{s} {n}" for s, n in splits.items())))
    skipped = metrics.get("skipped") or []
    if skipped:
        rows.append(("skipped photos", str(len(skipped))))
    body = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
    return f"<h2>This run</h2><dl class='run'>{body}</dl>"


# ---------------------------------------------------------------- calibration, suspects, duplicates

def _calibration_section(metrics: dict[str, Any]) -> str:
    from imgtool.calibration import plain_sentence

    cal = metrics.get("calibration")
    if not isinstance(cal, dict):
        return "" if not metrics.get("head") else ("<h2>Calibration</h2><p class='muted'>This model's scores are not "
                                                   "calibrated (trained before imgtool calibrated them).</p>")
    out = ["<h2>Calibration</h2>"]
    t = cal.get("temperature")
    out.append(f"<p>The scores are divided by a temperature T = <b>{_num(t)}</b> (fitted on the out-of-fold "
               f"predictions): the expected calibration error went from {_num(cal.get('ece_before'))} to "
               f"<b>{_num(cal.get('ece_after'))}</b> (10 bins, out of fold).")
    sentence = plain_sentence(cal.get("reliability_after") or [])
    if sentence:
        out.append(f" In plain words: {esc(sentence)}.")
    out.append("</p>")
    opens = metrics.get("open_set") or {}
    if opens.get("min_score") is not None:
        out.append(f"<p>Suggested <code>--min-score</code>: <b>{opens['min_score']:.4g}</b> - out of fold, the photos "
                   f"scored at least that were right {_pct(opens.get('precision'))} of the time, and "
                   f"{_pct(opens.get('accepted'))} of the photos were. <code>imgtool classify -m MODEL "
                   "--min-score auto</code> uses it.</p>")
    out.append(_svg_reliability(cal.get("reliability_before") or [], cal.get("reliability_after") or []))
    return "".join(out)


def _svg_reliability(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> str:
    """Reliability diagram: share right against top-1 score, per bin, before and after
    calibration, with the diagonal (perfect calibration); in the CV curve's style."""
    w, h, left, right, top, bottom = 640, 300, 56, 60, 16, 46
    pw, ph = w - left - right, h - top - bottom

    def px(v: float) -> float:
        return left + v * pw

    def py(v: float) -> float:
        return top + (1 - v) * ph

    g = ['<svg class="curve" viewBox="0 0 640 300" role="img" xmlns="http://www.w3.org/2000/svg" '
         'aria-label="reliability diagram: share right against top-1 score, before and after calibration">',
         f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>']
    for a in (0.0, 0.25, 0.5, 0.75, 1.0):
        g.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(a):.1f}" y2="{py(a):.1f}" stroke="#e4e4e4"/>'
                 f'<text x="{left - 6}" y="{py(a) + 4:.1f}" font-size="11" text-anchor="end">{a:.0%}</text>'
                 f'<text x="{px(a):.1f}" y="{top + ph + 16}" font-size="11" text-anchor="middle">{a:g}</text>')
    g.append(f'<line x1="{px(0):.1f}" y1="{py(0):.1f}" x2="{px(1):.1f}" y2="{py(1):.1f}" stroke="#999" '
             'stroke-dasharray="4 3"/>')
    for bins, colour, dash in ((before, "#c60", ' stroke-dasharray="6 3"'), (after, "#2a7", "")):
        pts = [(b["confidence"], b["accuracy"]) for b in bins
               if b.get("count") and b.get("confidence") is not None and b.get("accuracy") is not None]
        if pts:
            d = " ".join(f"{'M' if i == 0 else 'L'}{px(c):.1f},{py(a):.1f}" for i, (c, a) in enumerate(pts))
            g.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
            g += [f'<circle cx="{px(c):.1f}" cy="{py(a):.1f}" r="3" fill="{colour}"/>' for c, a in pts]
    g.append(f'<text x="{left + pw / 2:.1f}" y="{h - 8}" font-size="12" text-anchor="middle">top-1 score</text>'
             f'<text x="12" y="{top + ph / 2:.1f}" font-size="12" text-anchor="middle" '
             f'transform="rotate(-90 12 {top + ph / 2:.1f})">share right</text>'
             f'<text x="{left}" y="{h - 8}" font-size="12" fill="#2a7">— calibrated</text>'
             f'<text x="{left + pw}" y="{h - 8}" font-size="12" fill="#c60" text-anchor="end">- - before</text>')
    g.append("</svg>")
    return ("<p class='muted'>Reliability (out of fold): of the photos scored about x, the share that were right; "
            "the dashed diagonal is a score that means what it says.</p>" + "".join(g))


def _figure(path: str, caption: str) -> str:
    src = _thumb(path, 160)
    img = f'<img src="{src}" alt="">' if src else '<div class="muted">(unreadable)</div>'
    return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"


def _suspects_section(suspects: list[dict[str, Any]], title: str, note: str) -> str:
    if not suspects:
        return ""
    out = [f"<h2>{esc(title)} ({len(suspects)})</h2><p class='muted'>{esc(note)}</p><div class='grid'>"]
    for s in suspects:
        out.append(_figure(s["path"], f'<span class="wrong">labelled {esc(s["label"])}</span> ({s["score"]:.0%})<br>'
                                      f'<span class="right">looks like {esc(s["suggested"])}</span> '
                                      f'({s.get("suggested_score", 0):.0%})<br>'
                                      f'<span class="muted">{esc(s["rel"])}</span>'))
    out.append("</div>")
    return "".join(out)


def _groups_section(groups: list[dict[str, Any]], title: str, note: str) -> str:
    if not groups:
        return ""
    out = [f"<h2>{esc(title)} ({len(groups)})</h2><p class='muted'>{esc(note)}</p>"]
    for g in groups:
        flags = [w for w, on in (("label conflict", g.get("label_conflict")), ("leakage", g.get("leakage"))) if on]
        out.append(f'<p><b>{esc(str(g["kind"]))}</b>, similarity {g["similarity"]:.2f}'
                   + (f' <span class="wrong">({esc(", ".join(flags))})</span>' if flags else "") + "</p>"
                   "<div class='grid'>")
        out += [_figure(m["path"], f'{esc(m["label"])} · {esc(m["split"])}<br>'
                                   f'<span class="muted">{esc(m["rel"])}</span>') for m in g["members"]]
        out.append("</div>")
    return "".join(out)


def _leakage_section(near: dict[str, Any]) -> str:
    return _groups_section(near.get("groups") or [], "Near-duplicates across train and test",
                           "These photos are near-identical by their features but some were tested on while "
                           "others were fitted on: the test accuracy counts them as unseen.")


def _page_head(title: str) -> str:
    """The start of every page this module draws (the report, the audit): one style."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style></head><body>
<h1>{esc(title)}</h1>"""


def render_audit(result: dict[str, Any], title: str) -> str:
    """The audit (AuditResult.to_dict()) as a self-contained page, in the report's style."""
    s = result.get("summary") or {}
    parts = [_page_head(title)]
    cv = s.get("cv_accuracy")
    parts.append(f"<p>{s.get('photos', 0)} photos in {len(s.get('classes') or [])} classes"
                 + (f"; cross-validated accuracy {_pct(cv)}" if cv is not None else "")
                 + f'.</p><p class="muted">backbone {esc(str(s.get("backbone", "")))}; '
                 f'{len(result.get("suspects") or [])} suspects, {len(result.get("duplicates") or [])} duplicate '
                 f'groups, {len(result.get("outliers") or [])} outliers, {len(result.get("problems") or [])} '
                 "problems</p>")
    parts.append(_suspects_section(result.get("suspects") or [], "Suspect labels",
                                   "Photos whose folder's class the out-of-fold predictions reject, most suspicious "
                                   "first."))
    parts.append(_groups_section(result.get("duplicates") or [], "Duplicates",
                                 "Byte-identical or near-identical photos. Across classes: a label conflict; across "
                                 "train and test: leakage."))
    outliers = result.get("outliers") or []
    if outliers:
        parts.append(f"<h2>Outliers ({len(outliers)})</h2><p class='muted'>Photos far from every other photo: "
                     "likely of no class at all.</p><div class='grid'>")
        parts += [_figure(o["path"], f'{esc(o["label"])} · similarity {o["score"]:.2f}<br>'
                                     f'<span class="muted">{esc(o["rel"])}</span>') for o in outliers]
        parts.append("</div>")
    problems = result.get("problems") or []
    if problems:
        parts.append(f"<h2>Problems ({len(problems)})</h2><ul>"
                     + "".join(f"<li><b>{esc(p['kind'])}</b>: {esc(p['message'])}</li>" for p in problems) + "</ul>")
    if not (result.get("suspects") or result.get("duplicates") or outliers or problems):
        parts.append("<p>Nothing found.</p>")
    parts.append("</body></html>\n")
    return "".join(parts)
