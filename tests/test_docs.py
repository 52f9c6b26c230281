"""Every command has help with an example, and the README documents it (sqlite-utils' habit)."""

from __future__ import annotations

import re

import click
import pytest

from imgtool.cli import cli
from tests.conftest import ROOT, invoke

README = (ROOT / "README.md").read_text()


def _commands() -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in cli.commands.items():
        if isinstance(cmd, click.Group):
            out += [(f"{name} {sub}", c) for sub, c in cmd.commands.items()]
        else:
            out.append((name, cmd))
    return out


@pytest.mark.parametrize("name,cmd", _commands(), ids=[n for n, _ in _commands()])
def test_every_command_has_help_and_is_in_the_readme(name: str, cmd: click.Command) -> None:
    assert cmd.help and len(cmd.help) > 20
    result = invoke(*name.split(), "--help")
    assert result.exit_code == 0
    pages = [README] + [p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))]
    assert any(f"imgtool {name}" in page for page in pages), f"neither README nor docs/ shows `imgtool {name}`"


def test_readme_starts_with_the_two_setup_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    assert [ln.split("#")[0].strip() for ln in first_block.group(1).strip().splitlines()] == ["make install", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make install" in ci and "make test" in ci


def test_exit_codes_documented_in_help_and_readme() -> None:
    help_text = invoke("classify", "--help").stdout
    for code in ("0", "1", "2", "3", "4"):
        assert re.search(rf"^\s+{code}\s+\w", help_text, re.M)
        assert f"| {code} |" in README


def test_catalog_models_are_in_the_readme() -> None:
    from imgtool.catalog import load_catalog

    for name in load_catalog():
        if not name.endswith("_feature_vector"):
            assert f"`{name}`" in README


def _environment_section() -> str:
    start = README.index("## Environment")
    return README[start:README.index("\n## ", start + 1)]


def test_every_environment_variable_is_documented() -> None:
    from imgtool import settings

    section = _environment_section()
    for name in settings.VARIABLES:
        assert f"`{name}" in section, f"README's environment section does not document {name}"


def test_environment_is_read_only_in_settings() -> None:
    """Every variable read goes through imgtool/settings.py (checked once, documented)."""
    from imgtool import settings

    pattern = re.compile(r"os\.environ\.get|os\.getenv|os\.environ\[|envvar=")
    for path in sorted((ROOT / "imgtool").glob("*.py")):
        if path.name == "settings.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            assert not pattern.search(line), f"{path.name}:{n} reads the environment: {line.strip()}"
    mentioned = set(re.findall(r"\bIMGTOOL_[A-Z_]+\b", "".join(p.read_text() for p in (ROOT / "imgtool").glob("*.py"))))
    assert mentioned <= set(settings.VARIABLES), mentioned - set(settings.VARIABLES)
