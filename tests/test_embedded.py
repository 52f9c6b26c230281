"""The two models that ship inside the package: they work offline with an empty cache,
are never downloaded nor copied into the cache, cannot be removed, are checked against
their pinned sha256 once per file identity, and are named when another catalog model
cannot be had."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import imgtool
from imgtool.core import store
from imgtool.models import shipped
from imgtool.models.catalog import load_catalog
from tests.conftest import invoke, run

CLASSIFIER, FEATURES = "mobilenet_v2_quant", "mobilenet_v1_embedding"


def _model_files(home: Path) -> list[Path]:
    """Anything under IMGTOOL_HOME that could be a model (there must be none)."""
    return [p for p in home.rglob("*") if p.is_file() and (p.suffix == ".tflite" or p.stat().st_size > 1_000_000)]


def test_catalog_pins_the_files_that_ship(fixtures: Path) -> None:
    catalog = load_catalog()
    embedded = {n: c for n, c in catalog.items() if c.embedded}
    assert set(embedded) == {CLASSIFIER, FEATURES}
    assert embedded[CLASSIFIER].purpose == "classifier" and embedded[FEATURES].purpose == "features"
    # the very files of the shared fixtures, unmodified
    originals = {
        CLASSIFIER: fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite",
        FEATURES: fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
    }
    for name, cfg in embedded.items():
        path = shipped.embedded_dir() / cfg.embedded
        assert store.sha256_file(path) == cfg.sha256 == store.sha256_file(originals[name])
        assert path.stat().st_size == cfg.size
        assert not cfg.urls and not cfg.sources
    assert "Apache License" in (shipped.embedded_dir() / "LICENSE").read_text()
    origin = (shipped.embedded_dir() / "ORIGIN.md").read_text()
    for cfg in embedded.values():
        assert cfg.embedded in origin and cfg.sha256 in origin


def test_offline_with_an_empty_cache_classify_retrain_classify(
    photos: Path, flowers: Path, tmp_path: Path, isolated_home: Path
) -> None:
    env = {"IMGTOOL_OFFLINE": "1"}
    res = run("classify", "-m", CLASSIFIER, "-k", "1", "-f", "jsonl", str(photos / "cat.bmp"), env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["predictions"][0]["label"] == "Egyptian cat"
    labels = run("labels", "-m", CLASSIFIER, "--search", "macaw", env=env)
    assert labels.returncode == 0 and labels.stdout == "89\tmacaw\n", labels.stderr
    data = tmp_path / "flowers"
    for c in ("daisy", "roses"):
        (data / c).mkdir(parents=True)
        for f in sorted((flowers / c).iterdir())[:8]:
            shutil.copy(f, data / c / f.name)
    out = tmp_path / "flowers-model"
    trained = run("retrain", str(data), "-m", FEATURES, "-o", str(out), "--test-percent", "0", env=env)
    assert trained.returncode == 0, trained.stderr
    again = run("classify", "-m", str(out), "-k", "1", "-f", "jsonl", str(data / "roses"), env=env)
    assert again.returncode == 0, again.stderr
    assert [json.loads(line)["predictions"][0]["label"] for line in again.stdout.splitlines()] == ["roses"] * 8
    assert not (isolated_home / "models").exists()  # nothing was downloaded or copied into the cache
    assert _model_files(isolated_home) == []


def test_models_list_marks_them_embedded_and_every_catalog_model_has_a_purpose() -> None:
    res = invoke("models", "list", "-f", "json")
    assert res.exit_code == 0, res.output
    records = {r["name"]: r for r in json.loads(res.stdout) if r["kind"] == "catalog"}
    assert set(records) == set(load_catalog())
    assert {n for n, r in records.items() if r["embedded"]} == {CLASSIFIER, FEATURES}
    assert {n: r["purpose"] for n, r in records.items()} == {
        "inception_v3": "classifier",
        "inception_v3_feature_vector": "features",
        "inception_v3_2015": "classifier",
        "mobilenet_v2": "classifier",
        "mobilenet_v2_feature_vector": "features",
        CLASSIFIER: "classifier",
        FEATURES: "features",
    }
    assert records[CLASSIFIER]["cached"] is False and records[CLASSIFIER]["bytes"] == 3610798
    text = invoke("models", "list").stdout
    assert any(line.startswith(CLASSIFIER) and " embedded " in line for line in text.splitlines())


def test_they_cannot_be_removed_and_remove_all_leaves_them(photos: Path, isolated_home: Path) -> None:
    for name in (CLASSIFIER, FEATURES):
        res = invoke("models", "remove", name)
        assert res.exit_code == 2
        assert res.stderr == (
            f"Error: {name} ships with imgtool (inside the package, not in the cache) and cannot be removed\n"
        )
    with pytest.raises(imgtool.UsageError, match="cannot be removed"):
        imgtool.remove_models(["bottlenecks", CLASSIFIER])
    gone = invoke("models", "remove", "all")
    assert gone.exit_code == 0, gone.output
    for name in (CLASSIFIER, FEATURES):
        assert imgtool.model_path(name).is_file()
    res = run("classify", "-m", CLASSIFIER, "-k", "1", str(photos / "parrot.jpg"), env={"IMGTOOL_OFFLINE": "1"})
    assert res.returncode == 0 and "macaw" in res.stdout, res.stderr
    download = invoke("models", "download", CLASSIFIER)
    assert download.exit_code == 0 and "ships with imgtool, nothing to download" in download.stderr


def test_the_default_model_unavailable_names_the_embedded_one(
    photos: Path, flowers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGTOOL_OFFLINE", "1")
    res = invoke("classify", str(photos / "cat.bmp"))
    assert res.exit_code == 3
    assert res.stderr.startswith("Error: model inception_v3 is not in the cache")
    assert res.stderr.endswith(f"; or use -m {CLASSIFIER}, which ships with imgtool\n")
    retrain = invoke("retrain", str(flowers))
    assert retrain.exit_code == 3
    assert retrain.stderr.endswith(f"; or use -m {FEATURES}, which ships with imgtool\n"), retrain.stderr
    with pytest.raises(imgtool.ModelError, match=rf"or use `model='{CLASSIFIER}'`, which ships with imgtool$"):
        imgtool.load_model()


def test_no_network_names_the_embedded_one(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not offline by setting, but the download fails (here: nothing listens on the port)."""
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps(
            {
                "models": {
                    "inception_v3": {
                        "format": "savedmodel",
                        "urls": ["http://127.0.0.1:9/inception_v3.tar.gz"],
                        "output": "logits",
                    }
                }
            }
        )
    )
    monkeypatch.setenv("IMGTOOL_CATALOG", str(catalog))
    monkeypatch.setenv("IMGTOOL_RETRIES", "1")
    res = invoke("classify", str(photos / "cat.bmp"))
    assert res.exit_code == 3
    assert res.stderr.startswith("Error: could not download inception_v3: http://127.0.0.1:9/"), res.stderr
    assert res.stderr.endswith(f"; or use -m {CLASSIFIER}, which ships with imgtool\n")


def _tampered_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The embedded folder copied, for a test to change its files."""
    copy = tmp_path / "embedded"
    shutil.copytree(shipped.embedded_dir(), copy)
    monkeypatch.setattr(shipped, "embedded_dir", lambda: copy)
    monkeypatch.setattr(shipped, "_verified", set())
    return copy


def test_a_damaged_file_is_refused(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = _tampered_copy(tmp_path, monkeypatch)
    target = copy / load_catalog()[CLASSIFIER].embedded
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the hash can tell
    target.write_bytes(bytes(data))
    with pytest.raises(
        imgtool.ModelError,
        match=r"mobilenet_v2_quant: the model file that ships with imgtool is "
        r"damaged \(.*: sha256 [0-9a-f]{12}\.\.\., expected 7aad0c74c5e3\.\.\.\)"
        r"; reinstall imgtool-ml",
    ):
        imgtool.load_model(CLASSIFIER)
    target.write_bytes(bytes(data[:-10]))
    res = invoke("classify", "-m", CLASSIFIER, str(photos / "cat.bmp"))
    assert res.exit_code == 3 and "3610788 bytes, expected 3610798" in res.stderr
    target.unlink()
    with pytest.raises(imgtool.ModelError, match="the model file that ships with imgtool is missing"):
        imgtool.load_model(CLASSIFIER)


def test_the_hash_is_computed_once_per_file_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    copy = _tampered_copy(tmp_path, monkeypatch)
    hashed: list[str] = []
    real = store.sha256_file
    monkeypatch.setattr(store, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    cfg = load_catalog()[CLASSIFIER]
    assert shipped.path(cfg) == copy / cfg.embedded and hashed == [cfg.embedded]
    shipped.path(cfg)
    assert hashed == [cfg.embedded]  # this process remembers
    monkeypatch.setattr(shipped, "_verified", set())  # a new process: the note in IMGTOOL_HOME remembers
    shipped.path(cfg)
    assert hashed == [cfg.embedded]
    assert (isolated_home / shipped.VERIFIED_FILE).is_file()
    monkeypatch.setattr(shipped, "_verified", set())
    st = (copy / cfg.embedded).stat()
    os.utime(copy / cfg.embedded, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # the file changed
    shipped.path(cfg)
    assert hashed == [cfg.embedded] * 2
    # a read-only note costs a hash per process, nothing else
    monkeypatch.setattr(shipped, "_verified", set())
    monkeypatch.setattr(store, "atomic_write_bytes", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "no")))
    (isolated_home / shipped.VERIFIED_FILE).unlink()
    assert shipped.path(cfg) == copy / cfg.embedded and hashed == [cfg.embedded] * 3


@pytest.mark.parametrize("file", ["../catalog.py", "/etc/passwd", ".hidden", ""])
def test_an_embedded_record_names_a_file_in_the_package_only(
    file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps({"models": {"mine": {"format": "tflite", "embedded": file, "sha256": "0" * 64, "size": 1}}})
    )
    monkeypatch.setenv("IMGTOOL_CATALOG", str(catalog))
    res = invoke("classify", "-m", "mine", "photo.jpg")
    assert res.exit_code == 3
    assert (
        res.stderr
        == f"Error: catalog record 'mine': embedded must name a file in imgtool/models/embedded/ (got {file!r})\n"
    )


def test_retraining_on_the_embedded_classifier_points_at_the_embedded_extractor(flowers: Path) -> None:
    res = invoke("retrain", str(flowers), "-m", CLASSIFIER)
    assert res.exit_code == 2
    assert res.stderr == (
        f"Error: --model {CLASSIFIER} is a classifier, not a feature extractor (the catalog records "
        "its output as probabilities and names no feature-vector twin); give a feature-vector model "
        f"(e.g. {FEATURES}, which ships with imgtool, a *_feature_vector catalog model, or an "
        "embedding extractor .tflite)\n"
    )
