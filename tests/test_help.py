"""Help that is true: every option of every command (the `imgtool beam` ones included) has
help; a command's help, epilog and option help name only options it has (an example line
`imgtool OTHER ...` is checked against OTHER); every epilog lists its exit codes, 130
among them; and docs/cli.md is the --help of today's code.

A command or option added later (by any branch) is walked too: it fails here until it has
help, which is the point."""

from __future__ import annotations

import re

import click
import pytest

from imgtool.cli.main import cli
from tests.conftest import invoke
from tests.support import clidoc

COMMANDS = [(" ".join(path), cmd, ctx) for path, cmd, ctx in clidoc.walk(cli)]
IDS = [name for name, _, _ in COMMANDS]
BY_NAME = {name: cmd for name, cmd, _ in COMMANDS}
# What follows a bare `--` on `imgtool beam` goes to Beam's PipelineOptions: Beam's options, not ours
BEAM_PIPELINE_OPTIONS = {"--runner"}

OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")
# `imgtool CMD ARGS`, up to a backtick, the line's end or the next `imgtool`
EXAMPLE = re.compile(r"\bimgtool((?: [a-z][a-z-]*)+)((?:(?!\bimgtool\b)[^`\n])*)")


def option_names(cmd: click.Command, ctx: click.Context) -> set[str]:
    names = set()
    for p in cmd.get_params(ctx):
        if isinstance(p, click.Option):
            names.update(p.opts)
            names.update(p.secondary_opts)
    return names


def texts(cmd: click.Command, ctx: click.Context) -> list[str]:
    """Everything a person reads in CMD's --help besides the generated usage line."""
    out = [cmd.help or "", cmd.epilog or ""]
    out += [p.help or "" for p in cmd.get_params(ctx) if isinstance(p, click.Option) and not p.hidden]
    return out


def command_of(words: str) -> tuple[str, click.Command] | None:
    """The longest command path in `imgtool WORDS...` (and what is left is arguments)."""
    parts = words.split()
    for n in range(len(parts), -1, -1):
        name = " ".join(["imgtool", *parts[:n]])
        if name in BY_NAME:
            return name, BY_NAME[name]
    return None


def misnamed_options(name: str, cmd: click.Command, ctx: click.Context) -> list[str]:
    """Options named in CMD's help that the command they are written for lacks."""
    bad = []
    own = option_names(cmd, ctx)
    for text in texts(cmd, ctx):
        text = re.sub(r"\\\n\s*", " ", text)  # an example continued on the next line (`\` at the end)
        for m in EXAMPLE.finditer(text):
            found = command_of(m.group(1))
            if found is None:
                continue
            other, other_cmd = found
            rest = m.group(1)[len(other) - len("imgtool") :] + m.group(2)
            args = rest.split(" -- ")[0]  # after a bare --: Beam's options
            theirs = option_names(other_cmd, click.Context(other_cmd, info_name=other))
            bad += [
                f"{opt} (in the example `{m.group(0).strip()}`)" for opt in OPTION.findall(args) if opt not in theirs
            ]
        prose = EXAMPLE.sub("", text)
        bad += [opt for opt in OPTION.findall(prose) if opt not in own and opt not in BEAM_PIPELINE_OPTIONS]
    return bad


@pytest.mark.parametrize("name,cmd,ctx", COMMANDS, ids=IDS)
def test_every_option_has_help(name: str, cmd: click.Command, ctx: click.Context) -> None:
    lacking = [
        p.opts[-1]
        for p in cmd.get_params(ctx)
        if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()
    ]
    assert lacking == [], f"`{name}`: options without help: {', '.join(lacking)} (give each a help= string)"


@pytest.mark.parametrize("name,cmd,ctx", COMMANDS, ids=IDS)
def test_help_names_only_options_the_command_has(name: str, cmd: click.Command, ctx: click.Context) -> None:
    bad = misnamed_options(name, cmd, ctx)
    assert bad == [], f"`{name} --help` names options that `{name}` lacks: {', '.join(bad)}"


@pytest.mark.parametrize(
    "name,cmd,ctx",
    [c for c in COMMANDS if not isinstance(c[1], click.Group)],
    ids=[i for i, c in zip(IDS, COMMANDS) if not isinstance(c[1], click.Group)],
)
def test_every_command_lists_its_exit_codes_130_among_them(name: str, cmd: click.Command, ctx: click.Context) -> None:
    epilog = cmd.epilog or ""
    assert "Exit codes:" in epilog, f"`{name}` has no exit codes in its epilog"
    codes = re.findall(r"^\s+(\d+)\s+\S", epilog.split("Exit codes:")[1], re.M)
    assert codes[0] == "0" and codes[-1] == "130", f"`{name}`: exit codes {codes}"
    assert codes == sorted(codes, key=int) and len(set(codes)) == len(codes)


def test_the_check_sees_a_foreign_option_and_a_missing_help() -> None:
    """The walk is not vacuous: a command naming another's option, an example with an
    option its command lacks, and an option without help are all caught."""

    @click.command(epilog="Exit codes:\n  0  ok\n  1  not -q\n  130  interrupted")
    @click.option("-q", "--quiet", is_flag=True)
    def cmd(quiet: bool) -> None:
        """Lists. Example: imgtool classify --min-accuracy 0.5 x.jpg; or imgtool classify --expect cat x.jpg
        (fine); exit 1 unless --expect."""

    ctx = click.Context(cmd, info_name="fake")
    bad = misnamed_options("imgtool fake", cmd, ctx)
    assert bad == ["--min-accuracy (in the example `imgtool classify --min-accuracy 0.5 x.jpg; or`)", "--expect"]
    lacking = [p.opts[-1] for p in cmd.get_params(ctx) if isinstance(p, click.Option) and not p.help]
    assert lacking == ["--quiet"]


def test_retrain_help_does_not_call_itself_its_own_alias() -> None:
    for name in ("retrain", "retrain-last-layer"):
        text = invoke(name, "--help").stdout
        assert f" {name} [OPTIONS] [IMAGE_DIR]" in text.splitlines()[0]
        assert "alias: retrain" not in text
        assert "`imgtool retrain` and `imgtool retrain-last-layer` are the same command" in " ".join(text.split())


def test_models_download_usage_shows_model_as_optional() -> None:
    text = invoke("models", "download", "--help").stdout
    assert text.splitlines()[0].endswith(" models download [OPTIONS] [MODEL]...")


def test_docs_cli_md_is_the_help_of_todays_code() -> None:
    generated = clidoc.render()
    on_disk = clidoc.CLI_MD.read_text(encoding="utf-8") if clidoc.CLI_MD.is_file() else ""
    assert on_disk == generated, f"docs/cli.md is stale: run `{clidoc.REGENERATE}` and commit it"
    for name in IDS:
        assert f"\n## {name}\n" in generated
    assert "\x1b[" not in generated  # no colour


def test_docs_cli_md_is_the_same_at_any_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    first = clidoc.render()
    monkeypatch.setenv("COLUMNS", "40")
    assert clidoc.render() == first
    blocks = re.findall(r"```text\n(.*?)```", first, re.S)
    assert len(blocks) == len({id(cmd) for _, cmd, _ in COMMANDS})  # one per command (an alias: a line)
    assert max(len(line) for block in blocks for line in block.splitlines()) <= clidoc.WIDTH
