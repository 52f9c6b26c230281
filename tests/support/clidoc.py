"""docs/cli.md, generated from the --help of every command (the click tree, `imgtool beam`
included: its commands import click only).

    .venv/bin/python -m tests.support.clidoc          rewrite docs/cli.md
    .venv/bin/python -m tests.support.clidoc --check  exit 1 if docs/cli.md is stale

The text is what `imgtool CMD --help` prints at a fixed width (WIDTH columns), without
colour, so the file is the same on every machine; tests/test_help.py fails when it is
stale. Never edit docs/cli.md by hand: change the help and run this."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]
CLI_MD = ROOT / "docs" / "cli.md"
WIDTH = 100  # the main CLI's max_content_width
REGENERATE = ".venv/bin/python -m tests.support.clidoc"


def walk(
    cmd: click.Command, path: tuple[str, ...] = ("imgtool",), parent: click.Context | None = None
) -> Iterator[tuple[tuple[str, ...], click.Command, click.Context]]:
    """(command path, command, its context) for the root and every command below it,
    hidden ones left out, in the order `--help` lists them."""
    ctx = click.Context(
        cmd,
        info_name=path[-1],
        parent=parent,
        terminal_width=WIDTH,
        max_content_width=WIDTH,
        help_option_names=["-h", "--help"],
        color=False,
    )
    yield path, cmd, ctx
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, (*path, name), ctx)


def help_text(cmd: click.Command, ctx: click.Context) -> str:
    return click.unstyle(cmd.get_help(ctx)).rstrip() + "\n"


def render() -> str:
    from imgtool.cli.main import cli

    out = [
        "# Command-line reference\n\n",
        "Every command's `--help`, as it prints it. Generated from the code by "
        f"`{REGENERATE}`; do not edit by hand (a test fails when this page is stale).\n",
    ]
    seen: dict[int, str] = {}
    for path, cmd, ctx in walk(cli):
        name = " ".join(path)
        if id(cmd) in seen:  # an alias (retrain-last-layer): one text, said once
            out.append(f"\n## {name}\n\nThe same command as `{seen[id(cmd)]}`.\n")
            continue
        seen[id(cmd)] = name
        out.append(f"\n## {name}\n\n```text\n{help_text(cmd, ctx)}```\n")
    out.append(tf_flags())
    return "".join(out)


def tf_flags() -> str:
    """The table every command answers a TensorFlow-script flag from (imgtool.cli.command.TF_FLAGS)."""
    from imgtool.cli.command import TF_FLAGS

    rows = [
        "\n## Coming from TensorFlow's retrain.py, label_image.py or classify_image.py\n\n"
        "Their flags are exit 2 with a pointer to what does the job here, in one line (`Error: --image_dir "
        "is a flag of TensorFlow's retrain.py; in imgtool: ...`):\n\n"
        "| flag | script | in imgtool |\n|---|---|---|\n"
    ]
    for flag, (script, instead) in TF_FLAGS.items():
        cell = instead.replace("|", "\\|")
        rows.append(f"| `{flag}` | {script} | {cell} |\n")
    return "".join(rows)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if CLI_MD.is_file() and CLI_MD.read_text(encoding="utf-8") == text:
            return 0
        print(f"{CLI_MD.relative_to(ROOT)} is stale: run `{REGENERATE}`", file=sys.stderr)
        return 1
    CLI_MD.write_text(text, encoding="utf-8")
    print(f"wrote {CLI_MD.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
