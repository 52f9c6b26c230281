"""`imgtool models list/remove` know the bottleneck, export and results caches too; removing
from an empty cache is not an error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import imgtool
from imgtool.api_store import Removed
from imgtool.core.errors import ModelNotFoundError
from imgtool.models import caches
from tests.conftest import invoke


@pytest.fixture
def retrained(fixtures: Path, tmp_path: Path, isolated_home: Path) -> Path:
    """A real retrain on 2 x 4 photos: fills IMGTOOL_HOME/bottlenecks."""
    for c in ("daisy", "roses"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for f in sorted((fixtures / "flowers-mini" / c).iterdir())[:4]:
            shutil.copy(f, tmp_path / "data" / c / f.name)
    embedder = fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
    assert imgtool.retrain(tmp_path / "data", model=embedder, output=tmp_path / "m").output == tmp_path / "m"
    return isolated_home


def _fake_export(home: Path, key: str, size: int) -> None:
    """An entry in the layout export._tf_exports keeps (exports/<key>/{exports.json,
    model.tflite, saved_model/})."""
    d = home / "exports" / key
    (d / "saved_model").mkdir(parents=True)
    (d / "saved_model" / "saved_model.pb").write_bytes(b"p" * size)
    (d / "model.tflite").write_bytes(b"t" * size)
    (d / "exports.json").write_text("{}")


def _caches() -> dict[str, caches.CacheInfo]:
    return {c.name: c for c in imgtool.list_caches()}


def test_remove_all_on_an_empty_cache_is_fine(isolated_home: Path) -> None:
    for names in (["all"], ["bottlenecks"], ["exports"], ["results"], ["bottlenecks", "exports", "results"]):
        assert imgtool.remove_models(names) == []
    res = invoke("models", "remove", "all")
    assert (res.exit_code, res.stdout, res.stderr) == (0, "", "nothing cached\n")


def test_help_names_the_caches() -> None:
    text = invoke("models", "remove", "--help").stdout
    assert "imgtool models remove bottlenecks exports" in text and "imgtool models remove all" in text
    assert "imgtool models remove results" in text
    assert "bottlenecks, exports, results" in invoke("models", "--help").stdout


def test_unknown_model_is_still_exit_3(isolated_home: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not in the cache: no_such_model"):
        imgtool.remove_models(["no_such_model"])
    res = invoke("models", "remove", "no_such_model")
    assert res.exit_code == 3 and "not in the cache: no_such_model" in res.stderr


def test_caches_are_listed_with_sizes_and_removed(retrained: Path) -> None:
    home = retrained
    _fake_export(home, "a" * 24, 1000)
    _fake_export(home, "b" * 24, 500)
    listed = _caches()
    bott, exp = listed["bottlenecks"], listed["exports"]
    assert bott.path == home / "bottlenecks"
    assert bott.entries == 8  # one feature vector per photo
    assert bott.bytes == sum(p.stat().st_size for p in (home / "bottlenecks").rglob("*") if p.is_file())
    assert bott.bytes > 8 * 1024 * 4  # 1024 float32 features each
    checks = sum(p.stat().st_size for p in (home / "exports" / "checks").glob("*.json"))  # the retrain's export checks
    assert checks > 0
    assert (exp.path, exp.bytes, exp.entries) == (home / "exports", (2000 + 2) + (1000 + 2) + checks, 2)
    # the CLI's listing: the same numbers, as json and as text
    rows = {r["name"]: r for r in json.loads(invoke("models", "list", "-f", "json").stdout)}
    assert rows["exports"] == {
        "name": "exports",
        "kind": "cache",
        "cached": True,
        "path": str(home / "exports"),
        "bytes": exp.bytes,
        "entries": 2,
    }
    assert rows["bottlenecks"]["entries"] == 8 and rows["bottlenecks"]["kind"] == "cache"
    text = invoke("models", "list").stdout
    from imgtool.models.caches import human_size

    assert "exports" in text and human_size(exp.bytes) in text
    assert "(2 entries; `imgtool models remove exports`)" in text

    res = invoke("models", "remove", "exports")
    assert res.exit_code == 0 and res.stderr == f"removed the exports cache ({human_size(exp.bytes)}, 2 entries)\n"
    assert not (home / "exports").exists() and (home / "bottlenecks").is_dir()
    assert _caches()["exports"].bytes == 0

    assert imgtool.remove_models(["bottlenecks"]) == [Removed("bottlenecks", "cache", bott.bytes, 8)]
    assert not (home / "bottlenecks").exists()

    (record,) = (home / "results").glob("*.json")  # the retrain's record of its inputs
    size = record.stat().st_size
    results = _caches()["results"]
    assert (results.path, results.bytes, results.entries) == (home / "results", size, 1)
    rows = {r["name"]: r for r in json.loads(invoke("models", "list", "-f", "json").stdout)}
    assert rows["results"] == {
        "name": "results",
        "kind": "cache",
        "cached": True,
        "path": str(home / "results"),
        "bytes": size,
        "entries": 1,
    }
    res = invoke("models", "remove", "results")
    assert res.exit_code == 0 and res.stderr == f"removed the results cache ({human_size(size)}, 1 entries)\n"
    assert not (home / "results").exists()
    assert list((home / "tmp").iterdir()) == []  # renamed away, then deleted
    gone = _caches()["bottlenecks"]
    assert (gone.path, gone.bytes, gone.entries) == (home / "bottlenecks", 0, 0)
    rows = {r["name"]: r for r in json.loads(invoke("models", "list", "-f", "json").stdout)}
    assert rows["bottlenecks"] == {
        "name": "bottlenecks",
        "kind": "cache",
        "cached": False,
        "path": str(home / "bottlenecks"),
        "bytes": 0,
        "entries": 0,
    }


def test_remove_all_takes_models_and_caches(retrained: Path, http_server, tmp_path: Path) -> None:
    home = retrained
    _fake_export(home, "c" * 24, 10)
    from tests.support import modelgen

    model = modelgen.make_tflite_classifier(tmp_path / "m.tflite", size=8)
    url = http_server.add("/m.tflite", model.read_bytes())
    info = imgtool.download_model(url)
    assert info.cached and info.kind == "other" and info.key is not None and info.key.startswith("url-")
    assert [p.name for p in (home / "models").iterdir()] == [info.key]
    res = invoke("models", "remove", "all")  # the CLI's words for each removal
    assert res.exit_code == 0, res.output
    said = res.stderr.splitlines()
    assert [line.split(" (")[0] for line in said] == [
        "removed the bottlenecks cache",
        "removed the exports cache",
        "removed the results cache",
        f"removed {info.key}",
    ]
    assert list((home / "models").iterdir()) == []
    assert not (home / "bottlenecks").exists() and not (home / "exports").exists() and not (home / "results").exists()
    assert imgtool.remove_models(["all"]) == []


def test_human_size() -> None:
    assert [caches.human_size(n) for n in (0, 999, 1000, 1_234_567, 5_000_000_000)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "1.2 MB",
        "5.0 GB",
    ]
