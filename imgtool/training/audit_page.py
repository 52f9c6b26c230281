"""The audit page (`imgtool audit --report`): an audit's findings (AuditResult.to_dict())
as a self-contained page in report.html's style: suspect labels, duplicates, outliers,
problems."""

from __future__ import annotations

from typing import Any

from imgtool.training.page_parts import esc, figure, groups_section, page_head, pct, suspects_section


def render_audit(result: dict[str, Any], title: str) -> str:
    """The audit (AuditResult.to_dict()) as a self-contained page, in the report's style."""
    s = result.get("summary") or {}
    parts = [page_head(title)]
    cv = s.get("cv_accuracy")
    parts.append(
        f"<p>{s.get('photos', 0)} photos in {len(s.get('classes') or [])} classes"
        + (f"; cross-validated accuracy {pct(cv)}" if cv is not None else "")
        + f'.</p><p class="muted">backbone {esc(str(s.get("backbone", "")))}; '
        f"{len(result.get('suspects') or [])} suspects, {len(result.get('duplicates') or [])} duplicate "
        f"groups, {len(result.get('outliers') or [])} outliers, {len(result.get('problems') or [])} "
        "problems</p>"
    )
    parts.append(
        suspects_section(
            result.get("suspects") or [],
            "Suspect labels",
            "Photos whose folder's class the out-of-fold predictions reject, most suspicious first.",
        )
    )
    parts.append(
        groups_section(
            result.get("duplicates") or [],
            "Duplicates",
            "Byte-identical or near-identical photos. Across classes: a label conflict; across "
            "train and test: leakage.",
        )
    )
    outliers = result.get("outliers") or []
    if outliers:
        parts.append(
            f"<h2>Outliers ({len(outliers)})</h2><p class='muted'>Photos far from every other photo: "
            "likely of no class at all.</p><div class='grid'>"
        )
        parts += [
            figure(
                o["path"],
                f'{esc(o["label"])} · similarity {o["score"]:.2f}<br><span class="muted">{esc(o["rel"])}</span>',
            )
            for o in outliers
        ]
        parts.append("</div>")
    problems = result.get("problems") or []
    if problems:
        parts.append(
            f"<h2>Problems ({len(problems)})</h2><ul>"
            + "".join(f"<li><b>{esc(p['kind'])}</b>: {esc(p['message'])}</li>" for p in problems)
            + "</ul>"
        )
    if not (result.get("suspects") or result.get("duplicates") or outliers or problems):
        parts.append("<p>Nothing found.</p>")
    parts.append("</body></html>\n")
    return "".join(parts)
