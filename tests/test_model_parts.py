"""The parts resolve.py is built from: parsed references, the typed entry.json and
imgtool-model.json records, the agreement measure, and Model's repair hook."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgtool.core.errors import ModelError, UsageError
from imgtool.models import entries, refs, retrained
from imgtool.models.catalog import ModelConfig
from imgtool.models.convert import VERIFY_TOLERANCE, Agreement, agreement
from imgtool.models.recipe import Recipe


def test_references_parse_to_their_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    catalog = {"mobilenet_v2", "inception_v3"}
    assert refs.parse("catalog:mobilenet_v2", catalog) == refs.Ref(
        "catalog:mobilenet_v2", "catalog", name="mobilenet_v2"
    )
    assert refs.parse("mobilenet_v2", catalog) == refs.Ref("mobilenet_v2", "catalog", name="mobilenet_v2")
    assert refs.parse("hub:google/x/1", catalog).url == "https://tfhub.dev/google/x/1?tf-hub-format=compressed"
    assert refs.parse("kaggle:a/b/c/d/1", catalog).url == "https://www.kaggle.com/api/v1/models/a/b/c/d/1/download"
    assert (
        refs.parse("https://www.kaggle.com/models/a/b/c/d/2", catalog).url
        == "https://www.kaggle.com/api/v1/models/a/b/c/d/2/download"
    )
    assert refs.parse("https://example.test/m.tflite", catalog) == refs.Ref(
        "https://example.test/m.tflite", "url", url="https://example.test/m.tflite"
    )
    (tmp_path / "m.tflite").write_bytes(b"x")
    assert refs.parse("m.tflite", catalog) == refs.Ref("m.tflite", "path", path=Path("m.tflite"))
    (tmp_path / "mobilenet_v2").mkdir()
    with pytest.raises(
        UsageError,
        match=r"both a catalog model and a path here; write catalog:mobilenet_v2 or "
        r"\./mobilenet_v2 to choose",
    ):
        refs.parse("mobilenet_v2", catalog)
    assert refs.parse("./mobilenet_v2", catalog).kind == "path"
    with pytest.raises(ModelError, match=r"unknown model 'mobilenet_v3'.*\(did you mean mobilenet_v2\?\)"):
        refs.parse("mobilenet_v3", catalog)
    assert refs.key_for("https://example.test/m.tflite", "url") == refs.key_for("https://example.test/m.tflite", "url")
    assert refs.key_for("a", "url") != refs.key_for("b", "url") and refs.key_for("a", "url").startswith("url-")


def test_entry_record_round_trips_and_keeps_what_it_does_not_know() -> None:
    data = {
        "key": "url-1",
        "name": "m",
        "created": 1.5,
        "url": "https://e.test/m.tflite",
        "sha256": "ab",
        "format": "tflite",
        "file": "model.tflite",
        "source": 0,
        "config": {"format": "tflite"},
        "files": {"source/model.tflite": 10, "entry.json": 0},
        "conversions": {
            "model": {
                "ok": True,
                "size": 7,
                "max_diff": 0.0,
                "input_size": [224, 224],
                "converted": 2.0,
                "later": "kept",
            }
        },
        "from_a_later_version": {"x": 1},
    }
    record = entries.EntryRecord.from_dict(data)
    assert record.source == 0 and record.files == {"source/model.tflite": 10, "entry.json": 0}
    assert record.conversions["model"] == entries.Conversion(
        ok=True, converted=2.0, input_size=[224, 224], max_diff=0.0, size=7, extra={"later": "kept"}
    )
    assert record.extra == {"from_a_later_version": {"x": 1}}
    out = record.to_dict()
    assert out["from_a_later_version"] == {"x": 1} and "local" not in out and "graph" not in out
    assert out["conversions"] == {
        "model": {"later": "kept", "ok": True, "converted": 2.0, "input_size": [224, 224], "max_diff": 0.0, "size": 7}
    }
    assert entries.EntryRecord.from_dict(out) == record
    old = entries.EntryRecord.from_dict({"key": "k", "format": "savedmodel"})  # from before sources
    assert old.source is None and old.files == {} and old.conversions == {}
    assert entries.Conversion.from_dict({"ok": False, "error": "no"}).to_dict() == {"ok": False, "error": "no"}


def test_entry_ok_names_a_missing_or_changed_file(tmp_path: Path) -> None:
    entry = tmp_path / "e"
    entry.mkdir()
    assert entries.entry_ok(entry) == (False, "no record")
    (entry / "entry.json").write_text("{}")
    assert entries.entry_ok(entry) == (False, "no record")
    (entry / "m.tflite").write_bytes(b"12345")
    entries.write_record(entry, entries.EntryRecord(key="k", files={"m.tflite": 5}))
    assert entries.entry_ok(entry) == (True, "")
    (entry / "m.tflite").write_bytes(b"123")
    assert entries.entry_ok(entry) == (False, "m.tflite is truncated or changed (3 bytes, expected 5)")
    (entry / "m.tflite").unlink()
    assert entries.entry_ok(entry) == (False, "m.tflite is missing")


def test_a_damaged_entry_record_is_fetched_again_and_still_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGTOOL_HOME", str(tmp_path))
    from imgtool.core import store

    entry = store.models_dir() / "k"
    entry.mkdir(parents=True)
    (entry / "entry.json").write_text(json.dumps({"key": "k", "name": "m", "files": {"m.tflite": "5"}}))
    assert entries.read_record(entry) is None
    assert entries.entry_ok(entry) == (False, "entry.json is damaged: files is {'m.tflite': '5'}, of the wrong type")
    (listed,) = entries.cached_entries()
    assert (listed.key, listed.ok, listed.problem) == ("k", False, entries.entry_ok(entry)[1])
    assert entries.remove("k") == ["k"] and not entry.exists()


def test_retrained_record_reads_old_folders_and_keeps_unknown_keys(tmp_path: Path) -> None:
    record = retrained.RetrainedRecord(
        backbone=retrained.BackboneRecord(
            ref="mobilenet_v2", input_size=[224, 224], value_range=[-1.0, 1.0], file="backbone.tflite"
        ),
        classes=["a", "b"],
        image_dir="/photos",
        imgtool="0.1.0",
        extra={"newer": 1},
    )
    retrained.write(tmp_path, record)
    data = json.loads((tmp_path / "imgtool-model.json").read_text())
    assert data["format"] == "imgtool-retrained" and data["version"] == 1 and data["newer"] == 1
    assert data["backbone"] == {
        "ref": "mobilenet_v2",
        "input_size": [224, 224],
        "value_range": [-1.0, 1.0],
        "file": "backbone.tflite",
    }
    assert "training_photos" not in data
    back = retrained.read(tmp_path)
    assert back == record and back.input_size == (224, 224) and back.value_range == (-1.0, 1.0)
    # a folder from an earlier version: no head/labels/exports keys, no value range
    (tmp_path / "imgtool-model.json").write_text(
        json.dumps(
            {
                "backbone": {
                    "ref": "x",
                    "input_size": [299, 299],
                    "file": "backbone.pb",
                    "tensors": ["Mul:0", "pool_3:0"],
                },
                "classes": ["a"],
            }
        )
    )
    old = retrained.read(tmp_path)
    assert (old.head, old.labels, old.exports, old.value_range) == ("head.npz", "labels.txt", {}, None)
    assert old.backbone.tensors == ["Mul:0", "pool_3:0"]
    assert retrained.recorded_image_dir(tmp_path) is None
    (tmp_path / "imgtool-model.json").write_text('{"image_dir": "/else"}')
    assert retrained.recorded_image_dir(tmp_path) == "/else"
    with pytest.raises(retrained.DamagedRecord, match="backbone is missing"):
        retrained.read(tmp_path)  # no backbone: a damaged record
    assert retrained.read_or_none(tmp_path) is None


def test_a_damaged_retrained_folder_is_one_clear_model_error(tmp_path: Path) -> None:
    (tmp_path / "imgtool-model.json").write_text(
        json.dumps({"backbone": {"ref": "x", "input_size": [224]}, "classes": []})
    )
    with pytest.raises(ModelError, match=r"^m: damaged retrained model \(imgtool-model.json: .*\); retrain it again$"):
        retrained.load_model("m", tmp_path, "classify")


def test_agreement_is_exact() -> None:
    want = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], np.float32)
    got = np.array([[0.1, 0.6, 0.3], [0.2, 0.5, 0.3]], np.float32)
    check = agreement(got, want)
    assert check.max_diff == pytest.approx(0.3, abs=1e-7) and check.scale == pytest.approx(0.7, abs=1e-7)
    assert check.top1 == 0.5
    assert agreement(want, want) == Agreement(0.0, float(np.float32(0.7)), 1.0)
    assert agreement(got[:1], want) == Agreement(float("inf"), 1.0, None)  # different shapes never agree
    assert not Agreement(float("inf"), 1.0, None).within()
    assert (
        Agreement(VERIFY_TOLERANCE * 2, 2.0, 1.0).within() and not Agreement(VERIFY_TOLERANCE * 2.1, 2.0, 1.0).within()
    )
    assert Agreement(VERIFY_TOLERANCE, 0.5, 1.0).within() and not Agreement(VERIFY_TOLERANCE * 1.1, 0.5, 1.0).within()


def test_model_engine_never_repairs_a_users_file_and_asks_the_hook_for_a_cached_one(
    tmp_path: Path, fixtures: Path
) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    calls: list[Path | None] = []

    def repair(model: Recipe) -> bool:
        calls.append(model.tflite)
        shutil.copyfile(fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite", bad)
        return True

    mine = Recipe(ref="bad.tflite", config=ModelConfig(name="bad", format="tflite"), tflite=bad, repair=repair)
    with pytest.raises(ModelError):
        mine.engine()  # no entry: the user's own file
    assert calls == []
    cached = Recipe(ref="m", config=ModelConfig(name="m", format="tflite"), tflite=bad, entry=tmp_path, repair=repair)
    engine = cached.engine()
    assert calls == [bad] and engine.input_size == (224, 224)

    bad.write_bytes(b"broken again")
    gave_up = Recipe(
        ref="m",
        config=ModelConfig(name="m", format="tflite"),
        tflite=bad,
        entry=tmp_path,
        repair=lambda m: setattr(m, "tflite", None) or False,
    )
    with pytest.raises(ModelError, match=r"^m: nothing runnable was found$"):
        gave_up.engine()  # no TF source to fall back on
