"""docs/reliability.md stays true: the corpus table is the one tests/support/corpus.py generates,
and every test it cites exists."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT
from tests.support.corpus import build_corpus, expected_counts, markdown_table

DOC = ROOT / "docs" / "reliability.md"


def test_corpus_table_is_the_generated_one(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    cases = build_corpus(tmp_path / "c")
    rows = markdown_table(cases).splitlines()
    # unreadable_permissions: its outcome and note depend on who runs the tests (root or not)
    missing = [r for r in rows if r not in text and not r.startswith("| `unreadable_permissions`")]
    assert missing == [], "regenerate the table: python -m tests.support.corpus DIR"
    counts = expected_counts(cases)
    if not any(c.name == "unreadable_permissions" and c.outcome == "error" for c in cases):
        assert f"{len(cases)} cases: " + ", ".join(f"{n} {k}" for k, n in counts.items()) in text


def test_every_cited_test_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    defined = set()
    for p in (ROOT / "tests").glob("test_*.py"):
        defined.add(p.stem)
        defined |= set(re.findall(r"^def (test_\w+)", p.read_text(encoding="utf-8"), re.M))
    cited = set(re.findall(r"\btest_[a-z0-9_]+(?![\w*])", text))  # not the glob test_reliability_*.py
    assert cited - defined == set()
    assert len(cited) > 20


def test_bugs_found_are_listed_as_fixed() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Bugs found", 1)[1]
    for name in ("png_corrupt_idat", "fifo"):
        assert f"`{name}`" in section
    assert "xfail" not in text
