"""What a user installs: the wheel ships the embedded models (with their licence), the
catalog and py.typed, stays under 10 MB, and installed without extras into a fresh venv
it runs `--version` and the README's quick start offline, with an empty IMGTOOL_HOME.

The fresh-venv test is marked `install` (deselected by `make test`; `make test-install`
and .ci/run run it): pip fetches the dependencies from the package index, or from its
cache when that is warm (then about a minute or three: TensorFlow is most of it)."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from tests.conftest import ROOT
from tests.test_doc_examples import check_quick_start_output, quick_start_commands, quick_start_folder

WHEEL_LIMIT = 10_000_000  # bytes
#: Package data every wheel must hold (paths inside the wheel).
MUST_SHIP = [
    "imgtool/py.typed",
    "imgtool/models/catalog.json",
    "imgtool/models/embedded/LICENSE",
    "imgtool/models/embedded/ORIGIN.md",
    "imgtool/models/embedded/mobilenet_v2_1.0_224_quant.tflite",
    "imgtool/models/embedded/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
]


def _package_data() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]


def test_the_package_data_lists_the_embedded_models_and_they_fit_the_limit() -> None:
    """The cheap form of the wheel check, for every `make test`."""
    from imgtool.models.catalog import load_catalog

    data = _package_data()
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"].get("package-dir", {})
    shipped = []
    for package, patterns in data.items():
        base = ROOT / dirs.get(package, package.replace(".", "/"))
        for pattern in patterns:
            found = sorted(base.glob(pattern))
            assert found, f"package data {package}:{pattern} matches no file"
            shipped += [f"{package.replace('.', '/')}/{p.relative_to(base)}" for p in found]
    assert sorted(MUST_SHIP) == sorted(set(MUST_SHIP) & set(shipped))
    embedded = [cfg.embedded for cfg in load_catalog().values() if cfg.embedded]
    assert all(f"imgtool/models/embedded/{name}" in shipped for name in embedded)
    total = sum((ROOT / "imgtool" / "models" / "embedded" / name).stat().st_size for name in embedded)
    assert total < WHEEL_LIMIT - 1_000_000  # the code and the catalog fit in the rest
    # no fixture photo ships: the only binary files are the two models
    binaries = [
        p
        for p in (ROOT / "imgtool").rglob("*")
        if p.is_file()
        and p.suffix not in (".py", ".md", ".json", "")
        and p.name not in ("py.typed", "LICENSE")
        and "__pycache__" not in p.parts
    ]
    assert sorted(p.name for p in binaries) == sorted(embedded)


def test_the_library_imports_nothing_from_the_test_extra() -> None:
    """tf-keras, pytest and friends are the test extra: a user's install has none of them."""
    import ast

    test_only = {"tf_keras", "keras", "pytest", "hypothesis", "playwright", "sklearn", "mutmut", "tensorboard"}
    for path in sorted((ROOT / "imgtool").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                assert mod.split(".")[0] not in test_only, f"{path.relative_to(ROOT)} imports {mod}"


def _copy_tree(dest: Path) -> Path:
    """The working tree as it is (uncommitted changes too), without venvs and build output."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv*", "__pycache__", "build", "dist", "*.egg-info", ".pytest_cache", ".hypothesis", "mutants"
    )
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    return dest


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _no_network_prefix() -> list[str]:
    """`unshare -n` (a network namespace with no interface) where it works, so the run
    cannot reach anything; else IMGTOOL_OFFLINE alone says so."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


@pytest.mark.install
def test_a_fresh_venv_without_extras_runs_the_quick_start_offline(fixtures: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    vpy, vbin = venv / "bin" / "python", venv / "bin"
    pip = [str(vpy), "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "install", "build"], timeout=600)
    source = _copy_tree(tmp_path / "src")
    _run([str(vpy), "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(source)], timeout=600)
    [wheel] = list((tmp_path / "dist").glob("imgtool_ml-*.whl"))
    assert wheel.stat().st_size < WHEEL_LIMIT, f"{wheel.name}: {wheel.stat().st_size} bytes"
    names = zipfile.ZipFile(wheel).namelist()
    assert set(MUST_SHIP) <= set(names), set(MUST_SHIP) - set(names)
    assert not fnmatch.filter(names, "*.jpg") and not fnmatch.filter(names, "*.bmp")
    assert not [n for n in names if n.startswith("tests/")]

    _run([*pip, "install", str(wheel)], timeout=1200)
    absent = _run(
        [
            str(vpy),
            "-c",
            "import importlib.util as u; print([m for m in ('tf_keras', 'tensorboard', "
            "'pytest', 'playwright', 'pyarrow', 'apache_beam') if u.find_spec(m)])",
        ]
    ).stdout.strip()
    assert absent == "[]"  # the test, summaries, parquet and beam extras are not installed

    work = quick_start_folder(fixtures, tmp_path / "work")  # not the checkout: imgtool comes from the venv
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{vbin}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "IMGTOOL_HOME": str(home),
        "IMGTOOL_OFFLINE": "1",
        "IMGTOOL_NO_PROGRESS": "1",
        "LANG": "C.UTF-8",
    }
    offline = _no_network_prefix()
    where = _run([*offline, str(vpy), "-c", "import imgtool; print(imgtool.__file__)"], cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv)
    version = _run([*offline, "imgtool", "--version"], cwd=work, env=env)
    from imgtool.core.version import __version__

    assert version.stdout == f"imgtool, version {__version__}\n"
    assert _run([*offline, str(vpy), "-m", "imgtool", "--version"], cwd=work, env=env).stdout == version.stdout
    outputs = [
        _run([*offline, "sh", "-c", command], cwd=work, env=env, timeout=600).stdout
        for command in quick_start_commands()
    ]
    check_quick_start_output(outputs)
    assert not (home / "models").exists()  # nothing downloaded, nothing copied into the cache
