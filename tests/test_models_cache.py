"""`imgtool models list/remove` know the bottleneck, export and results caches too; removing
from an empty cache is not an error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from imgtool import caches
from tests.conftest import invoke, run


@pytest.fixture
def retrained(fixtures: Path, tmp_path: Path, isolated_home: Path) -> Path:
    """A real retrain on 2 x 4 photos: fills IMGTOOL_HOME/bottlenecks."""
    for c in ("daisy", "roses"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for f in sorted((fixtures / "flowers-mini" / c).iterdir())[:4]:
            shutil.copy(f, tmp_path / "data" / c / f.name)
    embedder = fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
    res = invoke("retrain", "-q", str(tmp_path / "data"), "-m", str(embedder), "-o", str(tmp_path / "m"),
                 "--epochs", "2")
    assert res.exit_code == 0, res.output
    return isolated_home


def _fake_export(home: Path, key: str, size: int) -> None:
    """An entry in the layout export._tf_exports keeps (exports/<key>/{exports.json,
    model.tflite, saved_model/})."""
    d = home / "exports" / key
    (d / "saved_model").mkdir(parents=True)
    (d / "saved_model" / "saved_model.pb").write_bytes(b"p" * size)
    (d / "model.tflite").write_bytes(b"t" * size)
    (d / "exports.json").write_text("{}")


def _listing() -> dict[str, dict]:
    res = invoke("models", "list", "-f", "json")
    assert res.exit_code == 0
    return {r["name"]: r for r in json.loads(res.stdout)}


def test_remove_all_on_an_empty_cache_is_fine(isolated_home: Path) -> None:
    for args in (["all"], ["bottlenecks"], ["exports"], ["results"], ["bottlenecks", "exports", "results"]):
        res = invoke("models", "remove", *args)
        assert res.exit_code == 0, res.output
        assert res.stderr == "nothing cached\n"
    proc = run("models", "remove", "all")
    assert proc.returncode == 0 and proc.stderr == "nothing cached\n"


def test_help_names_the_caches() -> None:
    text = invoke("models", "remove", "--help").stdout
    assert "imgtool models remove bottlenecks exports" in text and "imgtool models remove all" in text
    assert "imgtool models remove results" in text
    assert "bottlenecks, exports, results" in invoke("models", "--help").stdout


def test_unknown_model_is_still_exit_3(isolated_home: Path) -> None:
    res = invoke("models", "remove", "no_such_model")
    assert res.exit_code == 3 and "not in the cache: no_such_model" in res.stderr


def test_caches_are_listed_with_sizes_and_removed(retrained: Path) -> None:
    home = retrained
    _fake_export(home, "a" * 24, 1000)
    _fake_export(home, "b" * 24, 500)
    rows = _listing()
    bott, exp = rows["bottlenecks"], rows["exports"]
    assert bott["kind"] == "cache" and bott["path"] == str(home / "bottlenecks")
    assert bott["entries"] == 8  # one feature vector per photo
    assert bott["bytes"] == sum(p.stat().st_size for p in (home / "bottlenecks").rglob("*") if p.is_file())
    assert bott["bytes"] > 8 * 1024 * 4  # 1024 float32 features each
    checks = sum(p.stat().st_size for p in (home / "exports" / "checks").glob("*.json"))  # the retrain's export checks
    assert checks > 0
    assert exp == {"name": "exports", "kind": "cache", "cached": True, "path": str(home / "exports"),
                   "bytes": (2000 + 2) + (1000 + 2) + checks, "entries": 2}
    text = invoke("models", "list").stdout
    from imgtool.caches import human_size

    assert "exports" in text and human_size(exp["bytes"]) in text
    assert "(2 entries; `imgtool models remove exports`)" in text

    res = invoke("models", "remove", "exports")
    assert res.exit_code == 0 and res.stderr == f"removed the exports cache ({human_size(exp['bytes'])}, 2 entries)\n"
    assert not (home / "exports").exists() and (home / "bottlenecks").is_dir()
    assert _listing()["exports"]["bytes"] == 0

    res = invoke("models", "remove", "bottlenecks")
    assert res.exit_code == 0 and "removed the bottlenecks cache" in res.stderr and "8 entries" in res.stderr
    assert not (home / "bottlenecks").exists()

    (record,) = (home / "results").glob("*.json")  # the retrain's record of its inputs
    size = record.stat().st_size
    assert _listing()["results"] == {"name": "results", "kind": "cache", "cached": True, "path": str(home / "results"),
                                     "bytes": size, "entries": 1}
    res = invoke("models", "remove", "results")
    assert res.exit_code == 0 and res.stderr == f"removed the results cache ({human_size(size)}, 1 entries)\n"
    assert not (home / "results").exists()
    assert list((home / "tmp").iterdir()) == []  # renamed away, then deleted
    assert _listing()["bottlenecks"] == {"name": "bottlenecks", "kind": "cache", "cached": False, "path": str(home / "bottlenecks"),
                                         "bytes": 0, "entries": 0}


def test_remove_all_takes_models_and_caches(retrained: Path, http_server, tmp_path: Path) -> None:
    home = retrained
    _fake_export(home, "c" * 24, 10)
    from tests import modelgen

    model = modelgen.make_tflite_classifier(tmp_path / "m.tflite", size=8)
    url = http_server.add("/m.tflite", model.read_bytes())
    assert invoke("models", "download", "-q", url).exit_code == 0
    assert len(list((home / "models").iterdir())) == 1
    res = invoke("models", "remove", "all")
    assert res.exit_code == 0, res.output
    assert "removed the bottlenecks cache" in res.stderr and "removed the exports cache" in res.stderr
    assert "removed the results cache" in res.stderr and "removed url-" in res.stderr
    assert list((home / "models").iterdir()) == []
    assert not (home / "bottlenecks").exists() and not (home / "exports").exists() and not (home / "results").exists()
    assert invoke("models", "remove", "all").stderr == "nothing cached\n"


def test_human_size() -> None:
    assert [caches.human_size(n) for n in (0, 999, 1000, 1_234_567, 5_000_000_000)] == \
        ["0 B", "999 B", "1.0 kB", "1.2 MB", "5.0 GB"]
