"""Every command has help with an example, and the README documents it (sqlite-utils' habit);
the README is a product page (quick start first, at most 250 lines) linking the docs/ pages."""

from __future__ import annotations

import re

import click
import pytest

from imgtool.cli.main import cli
from tests.conftest import ROOT, invoke
from tests.support import clidoc

README = (ROOT / "README.md").read_text()


def _commands() -> list[tuple[str, click.Command]]:
    """Every command below `imgtool` that is not a group, as `--help` lists them (the lazily
    loaded `beam` group's included)."""
    return [(" ".join(path[1:]), cmd) for path, cmd, _ in clidoc.walk(cli) if not isinstance(cmd, click.Group)]


@pytest.mark.parametrize("name,cmd", _commands(), ids=[n for n, _ in _commands()])
def test_every_command_has_help_and_is_in_the_readme(name: str, cmd: click.Command) -> None:
    assert cmd.help and len(cmd.help) > 20
    result = invoke(*name.split(), "--help")
    assert result.exit_code == 0
    pages = [README] + [p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))]
    assert any(f"imgtool {name}" in page for page in pages), f"neither README nor docs/ shows `imgtool {name}`"


def _sh_blocks(text: str) -> list[list[str]]:
    """Each ```sh block's commands, comments stripped."""
    return [
        [ln.split("#")[0].strip() for ln in block.strip().splitlines() if ln.split("#")[0].strip()]
        for block in re.findall(r"```sh\n(.*?)```", text, re.S)
    ]


def test_readme_is_a_product_page_that_starts_with_an_offline_quick_start() -> None:
    """The first screen: install, classify with the embedded classifier, retrain with the
    embedded extractor, classify with the result (tests/test_doc_examples.py runs them)."""
    from imgtool.models.catalog import embedded_names, load_catalog

    assert len(README.splitlines()) <= 250
    assert README.index("## Quick start") < README.index("```")  # the first thing shown is the quick start
    catalog = load_catalog()
    [classifier], [features] = embedded_names(catalog, "classifier"), embedded_names(catalog, "features")
    assert _sh_blocks(README)[0] == [
        "pip install .",
        f"imgtool classify -m {classifier} photo.jpg",
        f"imgtool retrain flowers/ -m {features} -o flowers-model",
        "imgtool classify -m flowers-model photo.jpg",
    ]
    assert "pip install imgtool-ml" in README.split("## Install")[0]
    assert "MCUboot" in README and "`imgtool` command" in README
    # the test command stays `make test`, in a Development section at the end, and CI runs it
    development = README.split("\n## Development\n", 1)[1]
    assert "\n## " not in development and _sh_blocks(development)[0] == ["make install", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make install" in ci and "make test" in ci


#: `pip install imgtool`, `pip install 'imgtool[beam]'`, `pip install --no-deps imgtool`: not imgtool-ml
BAD_HINT = re.compile(r"""pip install\s+(?:-\S+\s+)*['"]?imgtool(?:\[|['"\s`]|$)""")


def test_the_bad_hint_pattern_sees_the_old_hints() -> None:
    for old in (
        "pip install 'imgtool[beam]' in",
        "`pip install imgtool`",
        "pip install --no-deps imgtool",
        'pip install "imgtool[parquet]"',
    ):
        assert BAD_HINT.search(old), old
    for good in ("pip install 'imgtool-ml[beam]'", "pip install --no-deps imgtool-ml", "pip install -e ."):
        assert not BAD_HINT.search(good), good


def test_install_hints_name_our_distribution() -> None:
    """`pip install imgtool` installs MCUboot's tool: every hint names imgtool-ml."""
    import tomllib

    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"] == "imgtool-ml"
    texts = [p for p in [*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md"), *(ROOT / "imgtool").rglob("*.py")]]
    for path in texts:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            assert not re.search(BAD_HINT, line), f"{path.name}:{n}: {line.strip()}"


#: Pages other branches add (issue 17: calibration, audit). Empty this once they are
#: merged: from then on every link must resolve.
PAGES_FROM_OTHER_BRANCHES: set[str] = set()


def test_every_link_between_the_pages_resolves() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = set()
    for page in pages:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            path = (page.parent / target).resolve()
            if not path.exists():
                missing.add(str(path.relative_to(ROOT)))
    assert missing <= PAGES_FROM_OTHER_BRANCHES, missing - PAGES_FROM_OTHER_BRANCHES
    linked = set(re.findall(r"\]\((docs/[^)#]+)", README))
    assert {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} <= linked  # the README links every page


def test_exit_codes_documented_in_help_and_readme() -> None:
    help_text = invoke("classify", "--help").stdout
    for code in ("0", "1", "2", "3", "4"):
        assert re.search(rf"^\s+{code}\s+\w", help_text, re.M)
        assert f"| {code} |" in README


def test_every_catalog_model_is_in_the_models_page() -> None:
    from imgtool.models.catalog import load_catalog

    page = (ROOT / "docs" / "models.md").read_text()
    table = page.split("## The catalog", 1)[1].split("\n## ", 1)[0]
    for name, cfg in load_catalog().items():
        row = next((ln for ln in table.splitlines() if ln.startswith(f"| `{name}` |")), None)
        assert row is not None, f"docs/models.md's catalog table does not list {name}"
        assert f"| {cfg.purpose} |" in row
        assert ("ships with imgtool" in row) == bool(cfg.embedded)


def _environment_section() -> str:
    start = README.index("## Environment")
    return README[start : README.index("\n## ", start + 1)]


def test_every_environment_variable_is_documented() -> None:
    from imgtool.core import settings

    section = _environment_section()
    for name in settings.VARIABLES:
        assert f"`{name}" in section, f"README's environment section does not document {name}"


def test_environment_is_read_only_in_settings() -> None:
    """Every variable read goes through imgtool/core/settings.py (checked once, documented)."""
    from imgtool.core import settings

    pattern = re.compile(r"os\.environ\.get|os\.getenv|os\.environ\[|envvar=")
    for path in sorted((ROOT / "imgtool").glob("*.py")):
        if path.name == "settings.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            assert not pattern.search(line), f"{path.name}:{n} reads the environment: {line.strip()}"
    mentioned = set(re.findall(r"\bIMGTOOL_[A-Z_]+\b", "".join(p.read_text() for p in (ROOT / "imgtool").glob("*.py"))))
    assert mentioned <= set(settings.VARIABLES), mentioned - set(settings.VARIABLES)
