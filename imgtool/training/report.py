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

import datetime as _dt
from typing import Any

from imgtool.numbers.metrics import f1_score, majority_baseline, wilson_interval
from imgtool.training.page_parts import (
    curve_data,
    esc,
    leakage_section,
    num,
    page_head,
    pct,
    suspects_section,
    svg_curve,
    svg_reliability,
    thumb,
)
from imgtool.training.run_facts import run_section

SMALL_TEST_SET = 100  # below this many test photos the page says how uncertain accuracy is
CONFUSION_MATRIX_MAX = 30  # classes; above this, the most frequent confusions instead of the matrix
TOP_CONFUSIONS = 25
MAX_THUMBNAILS = 100  # misclassified photos drawn (the rest are counted; metrics.json lists them all)


def _cell_colour(value: int, row_total: int, diagonal: bool) -> str:
    frac = value / row_total if row_total else 0.0
    hue = 140 if diagonal else 0
    light = 100 - int(55 * frac)
    return f"hsl({hue}, 65%, {light}%)"


def title_for(image_dir: str | None) -> str:
    """The report's title for a model trained on `image_dir` (retrain and export agree)."""
    from pathlib import Path

    return f"imgtool retrain: {Path(image_dir).name}" if image_dir else "imgtool retrain"


def _exports_section(metrics: dict[str, Any]) -> str:
    """The single-file exports (model.tflite, model-MODE.tflite): size and test accuracy
    next to the float model's."""
    exports = [e for e in metrics.get("exports") or [] if "bytes" in e]
    if not exports:
        return ""
    rows = [
        "<h2>Exported .tflite files</h2><div class='scroll'><table><tr><th>file</th><th>quantize</th><th>size</th>"
        "<th>test accuracy</th><th>float model</th></tr>"
    ]
    for e in exports:
        acc = "unknown" if e.get("test_accuracy") is None else f"{e['test_accuracy']:.1%}"
        ref = "" if e.get("float_test_accuracy") is None else f"{e['float_test_accuracy']:.1%}"
        rows.append(
            f'<tr><td class="name">{esc(str(e["file"]))}</td><td>{esc(str(e["quantize"]))}</td>'
            f"<td>{e['bytes'] / 1e6:.2f} MB</td><td>{acc}</td><td>{ref}</td></tr>"
        )
    rows.append("</table></div>")
    return "".join(rows)


def render(
    metrics: dict[str, Any],
    misclassified: list[dict[str, Any]] | None,
    title: str,
    generated: _dt.datetime | None = None,
) -> str:
    """The page. `misclassified`: the test photos predicted wrong (None: not recorded,
    as in a model folder written before metrics.json kept them)."""
    test = metrics.get("test") or {}
    classes = list(metrics.get("classes") or test.get("classes") or [])
    when = (generated or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    parts = [page_head(title)]
    parts.append(_summary(metrics, test))
    parts.append(_per_class(test, classes))
    parts.append(_confusion(test, classes))
    parts.append(_head_section(metrics))
    parts.append(_calibration_section(metrics))
    parts.append(_exports_section(metrics))
    parts.append(_misclassified(misclassified))
    parts.append(
        suspects_section(
            metrics.get("suspects") or [],
            "Check these labels",
            "The training photos the out-of-fold predictions most reject: the probability "
            "given to their folder's class, and the class they look like.",
        )
    )
    parts.append(leakage_section(metrics.get("near_duplicates") or {}))
    parts.append(run_section(metrics, when))
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
        out.append(
            "<p>Baseline: always answering the most frequent class, "
            f'<b class="cls">{esc(str(base["class"]))}</b>, '
            f"scores {pct(base['accuracy'])} on the same photos.</p>"
        )
    if acc is not None and 0 < n < SMALL_TEST_SET:
        lo_hi = wilson_interval(round(acc * n), n)
        assert lo_hi is not None
        out.append(
            f'<p class="caveat"><b>Small test set.</b> With only {n} test photos, one photo moves accuracy by '
            f"{1 / n:.1%}; the 95% confidence interval (Wilson) for the accuracy is "
            f"<b>{lo_hi[0]:.1%} – {lo_hi[1]:.1%}</b>. Differences between runs within that range are noise; "
            "add photos for a firmer figure.</p>"
        )
    counts = metrics.get("counts") or {}
    total = sum(sum(v.values()) for v in counts.values() if isinstance(v, dict))
    out.append(
        f'<p class="muted">backbone <span class="path">{esc(str(metrics.get("backbone", "")))}</span>; '
        f"{total} photos in "
        f"{len(metrics.get('classes') or [])} classes</p>"
    )
    return "".join(out)


def _per_class(test: dict[str, Any], classes: list[str]) -> str:
    per_class = test.get("per_class") or {}
    if not per_class or not test.get("count"):  # no test photos: every row would be empty
        return ""
    cm = test.get("confusion_matrix")
    rows = [
        "<h2>Per class, on the test photos</h2><div class='scroll'><table class='names'>"
        "<tr><th class='name'>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>"
        "<th aria-label='recall, as a bar'></th></tr>"
    ]
    for i, c in enumerate(classes):
        pc = per_class.get(c) or {}
        p, r = pc.get("precision"), pc.get("recall")
        f1 = pc.get("f1") if "f1" in pc else f1_score(p, r)
        correct = f"{cm[i][i]}/" if cm and i < len(cm) else ""
        width = int(160 * (r or 0))
        rows.append(
            f'<tr><td class="name">{esc(c)}</td><td>{pct(p)}</td><td>{pct(r)}</td><td>{pct(f1)}</td>'
            f'<td class="muted">{correct}{pc.get("support", 0)}</td>'
            f'<td><div class="bar"><span style="width:{width}px"></span></div></td></tr>'
        )
    rows.append(
        "</table></div><p class='muted'>precision: of the photos predicted as the class, the share "
        "that were; recall: of the class's photos, the share found; F1: their harmonic mean.</p>"
    )
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
        f'<th class="col" title="{esc(c)}" scope="col">{esc(c) if short else j + 1}</th>' for j, c in enumerate(names)
    )
    out = [
        "<h2>Confusion matrix</h2><p class='muted'>rows: true class, columns: predicted"
        + ("" if short else " (numbered as the rows; hover a number for its name)")
        + "</p>"
        f"<div class='scroll'><table class='cm'><tr><th></th>{head}</tr>"
    ]
    for i, row in enumerate(cm):
        c = names[i] if i < len(names) else str(i + 1)
        total = sum(row)
        cells = "".join(
            f'<td{" class=zero" if v == 0 else ""} style="background:{_cell_colour(v, total, i == j)}" '
            f'title="true {esc(c)}, predicted {esc(names[j] if j < len(names) else str(j + 1))}: {v}">'
            f"{v}</td>"
            for j, v in enumerate(row)
        )
        label = esc(c) if short else f"<b>{i + 1}</b> {esc(c)}"
        out.append(f'<tr><th class="row" scope="row" title="{esc(c)}">{label}</th>{cells}</tr>')
    out.append("</table></div>")
    return "".join(out)


def _top_confusions(cm: list[list[int]], names: list[str], n: int = TOP_CONFUSIONS) -> str:
    """With many classes: the most frequent mistakes (true -> predicted), most first; ties
    in class order."""

    def name(i: int) -> str:
        return names[i] if i < len(names) else str(i + 1)

    pairs = sorted(
        ((v, i, j) for i, row in enumerate(cm) for j, v in enumerate(row) if i != j and v),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    out = [
        f"<h2>Most frequent confusions</h2><p class='muted'>{len(names)} classes: too many for a matrix "
        f"({len(names)}&times;{len(names)} cells); metrics.json has it in full.</p>"
    ]
    if not pairs:
        out.append("<p>None: every test photo was classified right.</p>")
        return "".join(out)
    shown = pairs[:n]
    out.append("<div class='scroll'><ol class='confusions'>")  # a name longer than the page scrolls, unbroken
    for v, i, j in shown:
        out.append(
            f'<li><span class="right">{esc(name(i))}</span> predicted as '
            f'<span class="wrong">{esc(name(j))}</span>: {v} photo{"" if v == 1 else "s"}</li>'
        )
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
            facts.append(f"L2 {num(head['l2'])}")
        if head.get("epochs") is not None:
            facts.append(f"{head['epochs']} epochs")
        if head.get("cv_folds"):
            cv = f"{head['cv_folds']}-fold cross-validation"
            if head.get("cv_accuracy") is not None:
                cv += f": accuracy {pct(head['cv_accuracy'])}"
                if head.get("cv_accuracy_std") is not None:
                    cv += f" ± {pct(head['cv_accuracy_std'])}"
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
                out.append(
                    f"<tr{' class=chosen' if chosen else ''}><td>{num(c.get('l2'))}{' ✓' if chosen else ''}"
                    f"</td><td>{pct(c.get('cv_accuracy'))}</td>"
                    f"<td>{'–' if loss is None else f'{loss:.4f}'}</td></tr>"
                )
            out.append("</table></div>")
    else:
        bits = [
            f"{k.replace('_', ' ')} {num(opts[k])}"
            for k in ("epochs", "learning_rate", "l2", "label_smoothing")
            if opts.get(k) is not None
        ]
        out.append("<p>Trained with fixed settings" + (": " + ", ".join(bits) if bits else "") + ".</p>")
    curve = curve_data(metrics)
    if curve is not None:
        out.append(svg_curve(*curve, chosen=(head or {}).get("l2") if curve[0] == "L2" else None))
    return "".join(out)


def _misclassified(misclassified: list[dict[str, Any]] | None) -> str:
    if misclassified is None:
        return (
            "<h2>Misclassified test photos</h2><p class='muted'>Not recorded (this model folder was written by "
            "an older imgtool).</p>"
        )
    out = [f"<h2>Misclassified test photos ({len(misclassified)})</h2>"]
    if not misclassified:
        out.append("<p>None.</p>")
        return "".join(out)
    if len(misclassified) > MAX_THUMBNAILS:
        out.append(
            f"<p class='muted'>The first {MAX_THUMBNAILS} are shown; metrics.json lists all {len(misclassified)}.</p>"
        )
    out.append('<div class="grid">')
    for m in misclassified[:MAX_THUMBNAILS]:
        src = thumb(m["path"])
        img = f'<img src="{src}" alt="">' if src else '<div class="muted">(unreadable)</div>'
        out.append(
            f'<figure>{img}<figcaption><span class="right" title="{esc(m["true"])}">true: '
            f'{esc(m["true"])}</span><span class="wrong" title="{esc(m["predicted"])}">predicted: '
            f"{esc(m['predicted'])} ({m['score']:.0%})</span>"
            f'<span class="muted">{esc(m["rel"])}</span></figcaption></figure>'
        )
    out.append("</div>")
    return "".join(out)


def _calibration_section(metrics: dict[str, Any]) -> str:
    from imgtool.numbers.calibration import plain_sentence

    cal = metrics.get("calibration")
    if not isinstance(cal, dict):
        return (
            ""
            if not metrics.get("head")
            else (
                "<h2>Calibration</h2><p class='muted'>This model's scores are not "
                "calibrated (trained before imgtool calibrated them).</p>"
            )
        )
    out = ["<h2>Calibration</h2>"]
    t = cal.get("temperature")
    out.append(
        f"<p>The scores are divided by a temperature T = <b>{num(t)}</b> (fitted on the out-of-fold "
        f"predictions): the expected calibration error went from {num(cal.get('ece_before'))} to "
        f"<b>{num(cal.get('ece_after'))}</b> (10 bins, out of fold)."
    )
    sentence = plain_sentence(cal.get("reliability_after") or [])
    if sentence:
        out.append(f" In plain words: {esc(sentence)}.")
    out.append("</p>")
    opens = metrics.get("open_set") or {}
    if opens.get("min_score") is not None:
        out.append(
            f"<p>Suggested <code>--min-score</code>: <b>{opens['min_score']:.4g}</b> - out of fold, the photos "
            f"scored at least that were right {pct(opens.get('precision'))} of the time, and "
            f"{pct(opens.get('accepted'))} of the photos were. <code>imgtool classify -m MODEL "
            "--min-score auto</code> uses it.</p>"
        )
    out.append(svg_reliability(cal.get("reliability_before") or [], cal.get("reliability_after") or []))
    return "".join(out)
