"""The "This run" list at the foot of report.html: the date, the imgtool version, the
backbone, and the options of metrics.json as a person writes them on a command line
(`--test-percent 10`, `--flip-left-right on`), then the photos per split."""

from __future__ import annotations

from typing import Any

from imgtool.training.page_parts import esc

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


def run_section(metrics: dict[str, Any], when: str) -> str:
    from imgtool.core.version import __version__

    version = metrics.get("imgtool") or __version__
    rows: list[tuple[str, str]] = [
        ("date", when),
        ("imgtool", str(version)),
        ("backbone", str(metrics.get("backbone", ""))),
    ]
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
