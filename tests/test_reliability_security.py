"""Reliability, part 6: security properties checked on the source and on the extractor.

* no pickle anywhere in imgtool/: no pickle/cPickle/dill/joblib/shelve/marshal, no
  allow_pickle=True, and every numpy.load passes allow_pickle=False (checked on the AST);
* every tar extraction passes filter="data"; no TLS verification is turned off;
* safe extraction, the members tests/test_models_remote.py does not already try
  (it has ../, absolute paths, absolute and relative symlinks out): hard links out of
  the target, device and FIFO members, a symlink used as a path step.
"""

from __future__ import annotations

import ast
import io
import re
import tarfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

SOURCES = sorted((ROOT / "imgtool").rglob("*.py"))


def _trees() -> list[tuple[Path, ast.AST]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"), filename=str(p))) for p in SOURCES]


def test_sources_found() -> None:
    assert len(SOURCES) > 10 and any(p.name == "resolve.py" for p in SOURCES)


# Beam serializes a pipeline's own code (its DoFns) with cloudpickle: written by the
# launcher, read by that job's workers, never a file, download or shard. imgtool/beam may
# name that mechanism (register_pickle_by_value, the pickle_library option), nothing else.
BEAM_PIPELINE_PICKLING = re.compile(r"cloudpickle|pickles?_by_value|pickle_library|(un)?pickl\w* by value", re.I)


def test_no_pickle_in_imgtool() -> None:
    allowed = re.compile(r"allow_pickle=False|no pickle")
    hits = []
    for p in SOURCES:
        beam = p.parent.name == "beam"
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            rest = allowed.sub("", line)
            if beam:
                rest = BEAM_PIPELINE_PICKLING.sub("", rest)
            if re.search(r"pickle|\bdill\b|joblib|\bshelve\b|\bmarshal\b", rest, re.I):
                hits.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
    assert hits == []


def test_no_pickle_imports() -> None:
    banned = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}
    found = []
    for p, tree in _trees():
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            found += [f"{p.name}:{node.lineno} imports {n}" for n in names if n in banned]
    assert found == []


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_every_numpy_load_refuses_pickles() -> None:
    loads, bad = [], []
    for p, tree in _trees():
        numpy_names = {"numpy"} | {
            a.asname
            for n in ast.walk(tree)
            if isinstance(n, ast.Import)
            for a in n.names
            if a.name == "numpy" and a.asname
        }
        bare = {
            a.asname or a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module == "numpy"
            for a in n.names
            if a.name == "load"
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            is_load = (
                isinstance(f, ast.Attribute)
                and f.attr == "load"
                and isinstance(f.value, ast.Name)
                and f.value.id in numpy_names
            ) or (isinstance(f, ast.Name) and f.id in bare)
            if is_load:
                loads.append(f"{p.name}:{node.lineno}")
                v = _keyword(node, "allow_pickle")
                if not (isinstance(v, ast.Constant) and v.value is False):
                    bad.append(f"{p.name}:{node.lineno}")
            v = _keyword(node, "allow_pickle")
            if isinstance(v, ast.Constant) and v.value is True:
                bad.append(f"{p.name}:{node.lineno}: allow_pickle=True")
    assert loads, "no np.load found: the check would prove nothing"
    assert bad == []


def test_every_tar_extraction_is_filtered_and_tls_is_verified() -> None:
    extractions, bad = [], []
    for p, tree in _trees():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if isinstance(f, ast.Attribute) and (
                f.attr == "extractall"
                or (f.attr == "extract" and isinstance(f.value, ast.Name) and "tar" in f.value.id.lower())
            ):
                extractions.append(f"{p.name}:{node.lineno}")
                v = _keyword(node, "filter")
                if not (isinstance(v, ast.Constant) and v.value == "data"):
                    bad.append(f"{p.name}:{node.lineno}: {node.func.attr} without filter='data'")
            v = _keyword(node, "verify")
            if isinstance(v, ast.Constant) and v.value is False:
                bad.append(f"{p.name}:{node.lineno}: verify=False")
    assert extractions
    assert bad == []


# ------------------------------------------------------------------ safe extraction


def _tar(tmp_path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
    return path


def _info(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


EVIL = {
    "hardlink-absolute": [_info("saved_model.pb", tarfile.LNKTYPE, "/etc/hostname")],
    "hardlink-dotdot": [("ok.txt", b"x"), _info("saved_model.pb", tarfile.LNKTYPE, "../../outside.txt")],
    "char-device": [_info("saved_model.pb", tarfile.CHRTYPE)],
    "block-device": [_info("sda", tarfile.BLKTYPE)],
    "fifo": [_info("saved_model.pb", tarfile.FIFOTYPE)],
    "symlink-then-write-through-it": [_info("sub", tarfile.SYMTYPE, ".."), ("sub/escaped.txt", b"x")],
    "dotdot-inside-name": [("a/b/../../../escaped.txt", b"x")],
}


@pytest.mark.parametrize("name", list(EVIL))
def test_unsafe_members_are_refused(name: str, tmp_path: Path) -> None:
    from imgtool.core.errors import ModelError
    from imgtool.models.archives import extract_archive

    archive = _tar(tmp_path, EVIL[name])
    target = tmp_path / "deep" / "target"
    with pytest.raises(ModelError, match="unsafe archive refused") as err:
        extract_archive(archive, target)
    assert "\n" not in str(err.value)
    assert err.value.exit_code == 3
    assert not (tmp_path / "deep" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    for p in target.rglob("*"):
        assert not p.is_char_device() and not p.is_block_device() and not p.is_fifo()
        assert p.resolve().is_relative_to(target.resolve()), p


def test_safe_archive_extracts(tmp_path: Path) -> None:
    """The control: an ordinary archive with a relative symlink inside the target is fine."""
    from imgtool.models.archives import extract_archive

    archive = _tar(tmp_path, [("m/saved_model.pb", b"pb"), _info("m/alias.pb", tarfile.SYMTYPE, "saved_model.pb")])
    extract_archive(archive, tmp_path / "t")
    assert (tmp_path / "t" / "m" / "alias.pb").read_bytes() == b"pb"
