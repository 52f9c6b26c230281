"""`imgtool retrain --features`: reading `imgtool beam features` shards (no Beam needed),
and the packaging that keeps Beam out of the main install."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

from imgtool.core.errors import DatasetError, UsageError
from imgtool.data import folders, splits
from imgtool.training.shards import dataset_root, read_shards, training_set, walk_order
from tests.conftest import ROOT, invoke

pq = pytest.importorskip("pyarrow.parquet")
import pyarrow as pa  # noqa: E402

SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("class", pa.string()),
        ("sha256", pa.string()),
        ("features", pa.list_(pa.float32())),
        ("backbone", pa.string()),
        ("source", pa.string()),
        ("error", pa.string()),
    ]
)


def _row(rel: str, vec: list[float] | None, backbone: str = "bb", error: str | None = None) -> dict:
    return {
        "path": rel,
        "class": rel.split("/")[0],
        "sha256": f"sha-{rel}",
        "features": vec,
        "backbone": backbone,
        "source": f"gs://bucket/data/{rel}",
        "error": error,
    }


def _write(path: Path, rows: list[dict]) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)


def test_walk_order_is_the_folder_scan_order(tmp_path: Path) -> None:
    rels = [
        "b/z.jpg",
        "a/sub/x.jpg",
        "a/c.jpg",
        "a/a.jpg",
        "a/sub/deeper/y.jpg",
        "a/sub/b.jpg",
        "b/a b.jpg",
        "a/Z.jpg",
        "a/sub2/q.jpg",
    ]
    for rel in rels:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    _, files = folders.scan(tmp_path)
    scanned = [f.rel for f in files]
    assert sorted(rels, key=walk_order) == scanned
    assert scanned == [
        "a/Z.jpg",
        "a/a.jpg",
        "a/c.jpg",
        "a/sub/b.jpg",
        "a/sub/x.jpg",
        "a/sub/deeper/y.jpg",
        "a/sub2/q.jpg",
        "b/a b.jpg",
        "b/z.jpg",
    ]


def test_read_shards_orders_rows_and_lists_failures(tmp_path: Path) -> None:
    _write(
        tmp_path / "p-00000-of-00002.parquet",
        [
            _row("b/2.jpg", [3.0, 4.0]),
            _row("a/x/1.jpg", [1.0, 2.0]),
            _row("a/bad.jpg", None, error="corrupt image (truncated)"),
        ],
    )
    _write(tmp_path / "p-00001-of-00002.parquet", [_row("a/0.jpg", [5.0, 6.5]), _row("b/1.jpg", [7.0, 8.0])])
    s = read_shards(str(tmp_path / "p-*.parquet"))
    assert s.classes == ["a", "b"]
    assert [f.rel for f in s.files] == ["a/0.jpg", "a/x/1.jpg", "b/1.jpg", "b/2.jpg"]
    assert [f.label for f in s.files] == [0, 0, 1, 1]
    assert s.files[0].path == "gs://bucket/data/a/0.jpg"
    assert s.shas == ["sha-a/0.jpg", "sha-a/x/1.jpg", "sha-b/1.jpg", "sha-b/2.jpg"]
    assert s.matrix.dtype == np.float32
    assert s.matrix.tolist() == [[5.0, 6.5], [1.0, 2.0], [7.0, 8.0], [3.0, 4.0]]
    assert s.failed == [("gs://bucket/data/a/bad.jpg", "corrupt image (truncated)")]
    assert s.backbone == "bb" and len(s.shards) == 2
    assert dataset_root(str(tmp_path / "p-*.parquet")) == "gs://bucket/data"


def test_training_set_splits_like_a_folder_run(tmp_path: Path) -> None:
    rels = [f"{c}/{i:02d}.jpg" for c in ("cats", "dogs") for i in range(12)]
    _write(tmp_path / "s-00000-of-00001.parquet", [_row(r, [float(i), 1.0]) for i, r in enumerate(rels)])
    classes, samples, x, shas, failed = training_set(str(tmp_path / "s-00000-of-00001.parquet"), "bb", 10.0, 10.0)
    photos = [folders.Photo(f"gs://bucket/data/{r}", r, 0 if r.startswith("cats") else 1) for r in rels]
    want = splits.assign_splits(photos, 2, 10.0, 10.0)
    assert classes == ["cats", "dogs"] and samples == want and failed == []
    assert x[:, 0].tolist() == [float(i) for i in range(24)]
    assert shas == {f"gs://bucket/data/{r}": f"sha-{r}" for r in rels}  # every photo's content key
    with pytest.raises(UsageError, match="made with another backbone"):
        training_set(str(tmp_path / "s-*.parquet"), "other", 10.0, 10.0)


@pytest.mark.parametrize(
    "rows,other,match",
    [
        ([_row("a/1.jpg", [1.0])], [_row("a/1.jpg", [1.0])], "appears twice"),
        ([_row("a/1.jpg", [1.0])], [_row("b/1.jpg", [1.0], backbone="bb2")], "mix 2 backbones"),
        ([_row("a/1.jpg", [1.0])], [_row("b/1.jpg", [1.0, 2.0])], "different widths"),
    ],
)
def test_inconsistent_shards_are_refused(tmp_path: Path, rows: list, other: list, match: str) -> None:
    _write(tmp_path / "x-0.parquet", rows)
    _write(tmp_path / "x-1.parquet", other)
    with pytest.raises(DatasetError, match=match):
        read_shards(str(tmp_path / "x-*.parquet"))


def test_missing_damaged_and_foreign_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="no such shard files"):
        read_shards(str(tmp_path / "none-*.parquet"))
    (tmp_path / "d-0.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UsageError, match="is not a readable Parquet file"):
        read_shards(str(tmp_path / "d-*.parquet"))
    pq.write_table(pa.table({"path": ["a/1.jpg"]}), tmp_path / "f-0.parquet")
    with pytest.raises(UsageError, match="not an `imgtool beam features` shard \\(no column 'class'\\)"):
        read_shards(str(tmp_path / "f-*.parquet"))
    with pytest.raises(UsageError, match="only local shards"):
        read_shards("gs://bucket/x-*.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(UsageError, match=r"pyarrow, which is not installed; pip install 'imgtool-ml\[parquet\]'"):
        read_shards(str(tmp_path / "f-*.parquet"))


@pytest.mark.heavy
def test_retrain_from_shards_equals_folder_run(fixtures: Path, tmp_path: Path) -> None:
    """Shards holding the vectors imgtool computes itself train the same head as the
    folder (the Beam-made shards are checked the same way in tests/beam)."""
    from imgtool.data.images import decode
    from imgtool.runtime import bottlenecks
    from imgtool.runtime.engine import LiteRTEngine

    embedder = fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
    data = tmp_path / "data"
    for c in ("daisy", "roses", "tulips"):
        (data / c).mkdir(parents=True)
        for f in sorted((fixtures / "flowers-mini" / c).iterdir())[:8]:
            shutil.copy(f, data / c / f.name)
    engine = LiteRTEngine(embedder)
    ident = bottlenecks.backbone_id(embedder, engine.input_size, None)
    _, files = folders.scan(data)
    rows = [
        {
            "path": rel,
            "class": rel.split("/")[0],
            "sha256": bottlenecks.file_sha256(p),
            "features": engine.run(decode(p, engine.input_size)[None])[0].tolist(),
            "backbone": ident,
            "source": p,
            "error": None,
        }
        for p, rel in ((f.path, f.rel) for f in files)
    ]
    rows.reverse()  # shard order means nothing
    _write(tmp_path / "f-00000-of-00002.parquet", rows[:10])
    _write(tmp_path / "f-00001-of-00002.parquet", rows[10:])
    a = invoke("retrain", str(data), "-m", str(embedder), "-o", str(tmp_path / "A"), "-f", "json", "--epochs", "20")
    b = invoke(
        "retrain",
        "--features",
        str(tmp_path / "f-*.parquet"),
        "-m",
        str(embedder),
        "-o",
        str(tmp_path / "B"),
        "-f",
        "json",
        "--epochs",
        "20",
    )
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    with np.load(tmp_path / "A" / "head.npz") as ha, np.load(tmp_path / "B" / "head.npz") as hb:
        assert ha["weights"].shape == (1024, 3)
        assert np.allclose(ha["weights"], hb["weights"], rtol=0, atol=1e-7)
        assert np.allclose(ha["bias"], hb["bias"], rtol=0, atol=1e-7)
    ma, mb = json.loads(a.stdout), json.loads(b.stdout)
    assert ma["counts"] == mb["counts"] and ma["test"] == mb["test"]
    cls = invoke("classify", "-m", str(tmp_path / "B"), "-f", "jsonl", "-k", "1", files[0].path)
    assert json.loads(cls.stdout)["predictions"][0]["label"] == "daisy"


def test_retrain_source_usage_errors(tmp_path: Path) -> None:
    cases = [
        ((), "give IMAGE_DIR (one sub-folder per class), or --features"),
        ((str(tmp_path), "--features", "x-*.parquet", "-o", str(tmp_path / "o")), "not both"),
        (("--features", "x-*.parquet"), "--features needs -o/--output"),
        (("--features", "x-*.parquet", "-o", str(tmp_path / "o"), "--flip-left-right"), "distortions need the photos"),
        (("--features", str(tmp_path / "x-*.parquet"), "-o", str(tmp_path / "o")), "no such shard files"),
    ]
    for args, msg in cases:
        res = invoke("retrain", *args)
        assert res.exit_code == 2, (args, res.output)
        assert res.stderr.strip().splitlines()[-1].startswith("Error: ") and msg in res.stderr


@pytest.mark.skipif(importlib.util.find_spec("apache_beam") is not None, reason="apache_beam is installed here")
def test_beam_commands_without_beam_say_how_to_install(tmp_path: Path) -> None:
    res = invoke("beam", "classify", "-i", str(tmp_path), "-o", str(tmp_path / "x"))
    assert res.exit_code == 2
    assert res.stderr.startswith("Error: apache-beam is not installed") and "make install-beam" in res.stderr
    assert "Error" not in invoke("beam", "--help").stderr


def test_import_imgtool_and_cli_help_load_no_beam() -> None:
    code = (
        "import sys, imgtool, imgtool.cli.main\n"
        "from click.testing import CliRunner\n"
        "assert CliRunner().invoke(imgtool.cli.main.cli, ['beam', '--help']).exit_code == 0\n"
        "print([m for m in sys.modules if m.split('.')[0] in ('apache_beam', 'pyarrow')])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


TF_ONLY = ("tensorflow", "tf-keras", "tensorflow-hub", "tensorboard", "setuptools")


def _name(req: str) -> str:
    for sep in "=<>!~[; ":
        req = req.split(sep)[0]
    return req.strip().lower()


def test_requirements_files_follow_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    # .venv-beam: the light dependencies, Beam with its aws extra (the s3:// tests), the test tools
    want = [
        d
        for d in project["dependencies"] + extras["aws"] + extras["test"] + extras["beam-test"]
        if _name(d) not in TF_ONLY
    ]
    lines = [
        ln.strip()
        for ln in (ROOT / "requirements-beam.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert sorted(lines) == sorted(set(want))
    worker = {
        _name(ln)
        for ln in (ROOT / "requirements-worker.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    assert worker == {"numpy", "pillow", "ai-edge-litert"}
    assert "imgtool.beam" in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    make = (ROOT / "Makefile").read_text()
    assert "pip install -q --no-deps -e ." in make and "tests/beam" in make
    assert "make test-beam" in (ROOT / ".ci" / "run").read_text()
    assert os.access(ROOT / ".ci" / "run", os.R_OK)
