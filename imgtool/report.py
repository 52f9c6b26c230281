"""report.html: a page a person would rather look at than read the numbers.

Self-contained (thumbnails inlined as data: URIs), so it survives being copied."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from imgtool import images


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


def render(metrics: dict[str, Any], misclassified: list[dict[str, Any]], title: str) -> str:
    test = metrics.get("test") or {}
    classes = metrics["classes"]
    esc = html.escape
    parts = [f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; padding: 0 1em; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 2em; }}
.big {{ font-size: 2.2em; font-weight: 600; }} .muted {{ color: #666; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 4px 8px; text-align: right; }}
th {{ font-weight: 600; }} td.name, th.name {{ text-align: left; }}
.cm td {{ min-width: 3em; text-align: center; border: 1px solid #fff; }}
.bar {{ background: #e8e8e8; width: 240px; height: 14px; position: relative; }}
.bar span {{ display: block; height: 100%; background: #3a7; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; width: 140px; font-size: 12px; }}
figure img {{ width: 140px; height: 140px; object-fit: cover; border-radius: 4px; }}
figcaption {{ overflow-wrap: anywhere; }}
.wrong {{ color: #b22; }} .right {{ color: #282; }}
</style></head><body>
<h1>{esc(title)}</h1>"""]
    acc = test.get("accuracy")
    val = (metrics.get("validation") or {}).get("accuracy")
    parts.append(f'<p><span class="big">{acc:.1%}</span> test accuracy on {test.get("count", 0)} held-out photos'
                 if acc is not None else "<p>No test images were held out.")
    if val is not None:
        parts.append(f' &middot; <span class="muted">validation {val:.1%}</span>')
    parts.append(f'</p><p class="muted">backbone {esc(str(metrics.get("backbone", "")))}; '
                 f'{sum(sum(c.values()) for c in metrics.get("counts", {}).values())} photos in '
                 f'{len(classes)} classes</p>')
    if test.get("confusion_matrix"):
        cm = test["confusion_matrix"]
        parts.append("<h2>Per-class accuracy (recall) on test photos</h2><table>")
        for i, c in enumerate(classes):
            pc = test["per_class"][c]
            r = pc["recall"]
            width = int(240 * (r or 0))
            parts.append(f'<tr><td class="name">{esc(c)}</td><td><div class="bar"><span style="width:{width}px"></span>'
                         f'</div></td><td>{"-" if r is None else f"{r:.0%}"}</td>'
                         f'<td class="muted">{cm[i][i]}/{pc["support"]}</td></tr>')
        parts.append("</table><h2>Confusion matrix</h2><p class='muted'>rows: true class, columns: predicted</p>"
                     "<table class='cm'><tr><th></th>" + "".join(f"<th>{esc(c)}</th>" for c in classes) + "</tr>")
        for i, c in enumerate(classes):
            total = sum(cm[i])
            cells = "".join(f'<td style="background:{_cell_colour(v, total, i == j)}">{v}</td>'
                            for j, v in enumerate(cm[i]))
            parts.append(f'<tr><th class="name">{esc(c)}</th>{cells}</tr>')
        parts.append("</table>")
    exports = [e for e in metrics.get("exports") or [] if "bytes" in e]
    if exports:
        parts.append("<h2>Exported .tflite files</h2><table><tr><th>file</th><th>quantize</th><th>size</th>"
                     "<th>test accuracy</th><th>float model</th></tr>")
        for e in exports:
            acc = "unknown" if e.get("test_accuracy") is None else f'{e["test_accuracy"]:.1%}'
            ref = "" if e.get("float_test_accuracy") is None else f'{e["float_test_accuracy"]:.1%}'
            parts.append(f'<tr><td class="name">{esc(str(e["file"]))}</td><td>{esc(str(e["quantize"]))}</td>'
                         f'<td>{e["bytes"] / 1e6:.2f} MB</td><td>{acc}</td><td>{ref}</td></tr>')
        parts.append("</table>")
    parts.append(f"<h2>Misclassified test photos ({len(misclassified)})</h2>")
    if not misclassified:
        parts.append("<p>None.</p>")
    else:
        parts.append('<div class="grid">')
        for m in misclassified:
            src = _thumb(m["path"])
            img = f'<img src="{src}" alt="">' if src else '<div class="muted">(unreadable)</div>'
            parts.append(f'<figure>{img}<figcaption><span class="right">true: {esc(m["true"])}</span><br>'
                         f'<span class="wrong">predicted: {esc(m["predicted"])}</span> ({m["score"]:.0%})<br>'
                         f'<span class="muted">{esc(m["rel"])}</span></figcaption></figure>')
        parts.append("</div>")
    parts.append("</body></html>\n")
    return "".join(parts)
