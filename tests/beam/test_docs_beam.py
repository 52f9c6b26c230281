"""Every command line in docs/scale-out.md parses: imgtool's options before `--`, and
Beam's after it, by the same check the commands use (an unknown option would exit 2)."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.beam

DOC = (ROOT / "docs" / "scale-out.md").read_text()


def _commands() -> list[list[str]]:
    out = []
    for block in re.findall(r"```sh\n(.*?)```", DOC, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "--help" in words:
                continue
            if (words and words[0].endswith("imgtool") and words[1] == "beam") or words[:3] == [
                "python",
                "-m",
                "imgtool.beam",
            ]:
                out.append(words)
    return out


def test_the_doc_shows_each_runner() -> None:
    runners = {w.split("=", 1)[1] for c in _commands() for w in c if w.startswith("--runner=")}
    assert runners == {"DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner"}
    assert len(_commands()) >= 7


@pytest.mark.parametrize("words", _commands(), ids=lambda w: " ".join(w)[:60])
def test_documented_command_parses(words: list[str]) -> None:
    from imgtool.beam import launcher
    from imgtool.beam.cli import beam

    args = words[words.index("beam") + 1 :] if "beam" in words else words[3:]
    sub, rest = args[0], args[1:]
    ctx = beam.commands[sub].make_context(sub, list(rest))
    flags = ctx.meta["beam_args"]
    options = launcher.pipeline_options(flags)  # raises UsageError on an option Beam does not know
    assert options.get_all_options()["runner"]
