"""`imgtool beam`: the pipelines on the real fixtures, offline, with the local runner.

Run in .venv-beam (`make test-beam`); tests/conftest.py leaves this folder out where
apache_beam is not installed."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.beam.interrupting import interrupt_once_writing
from tests.conftest import ROOT, invoke, run

pytestmark = pytest.mark.beam

CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


@pytest.fixture
def photos(fixtures: Path, tmp_path: Path) -> Path:
    """The ImageNet photos, a broken file and a hidden file, in a folder and a sub-folder."""
    d = tmp_path / "photos"
    shutil.copytree(fixtures / "imagenet" / "images", d, ignore=shutil.ignore_patterns("*.txt"))
    (d / "more").mkdir()
    shutil.move(d / "parrot.jpg", d / "more" / "parrot.jpg")
    (d / "broken.jpg").write_bytes(b"this is not a JPEG")
    (d / ".hidden.jpg").write_bytes(b"skipped: hidden")
    (d / "notes.txt").write_text("not an image name")
    return d


def _records(prefix: Path, suffix: str = ".jsonl") -> list[dict]:
    out = []
    for shard in sorted(glob.glob(f"{prefix}-*{suffix}")):
        out += [json.loads(line) for line in Path(shard).read_text().splitlines()]
    return sorted(out, key=lambda r: r["path"])


def _classify_in_process(model: str, paths: list[str], k: int = 5) -> list[dict]:
    from imgtool.inference.classifier import Classifier
    from imgtool.models.resolve import resolve

    clf = Classifier(resolve(model))
    return sorted((r.to_dict() for r in clf.classify(paths, top_k=k)), key=lambda r: r["path"])


# ---------------------------------------------------------------- classify


def test_classify_same_records_as_imgtool_classify(mobilenet: str, photos: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "out" / "labels"
    res = invoke(
        "beam", "classify", "-m", mobilenet, "-i", str(photos), "-o", str(prefix), "--", "--direct_num_workers=2"
    )
    assert res.exit_code == 1, res.output  # the broken file: exit 1, its record written
    got = _records(prefix)
    want = _classify_in_process(mobilenet, [str(photos)])
    assert [r["path"] for r in got] == sorted(
        str(p)
        for p in [
            photos / "broken.jpg",
            photos / "cat.bmp",
            photos / "grace_hopper.bmp",
            photos / "more" / "parrot.jpg",
            photos / "sunflower.bmp",
        ]
    )
    assert got == want  # same labels, scores, indices and errors as `imgtool classify`
    broken = next(r for r in got if r["path"].endswith("broken.jpg"))
    assert broken == {
        "path": str(photos / "broken.jpg"),
        "error": "not an image Pillow can read (unknown or corrupt format)",
    }
    top1 = {Path(r["path"]).name: r["predictions"][0]["label"] for r in got if "predictions" in r}
    assert top1 == {
        "cat.bmp": "Egyptian cat",
        "grace_hopper.bmp": "military uniform",
        "parrot.jpg": "macaw",
        "sunflower.bmp": "daisy",
    }
    assert "5 photos classified, 1 failed" in res.stderr
    # the model was staged beside the output, named by its sha256
    import hashlib

    digest = hashlib.sha256(Path(mobilenet).read_bytes()).hexdigest()
    assert (tmp_path / "out" / ".imgtool-beam-staging" / f"{digest}.tflite").is_file()


def test_classify_flowers_scores_are_the_models_probabilities(mobilenet: str, fixtures: Path, tmp_path: Path) -> None:
    """On flower photos the quantized outputs sum to as little as 0.86, so a per-batch
    "looks like probabilities" guess would softmax them a second time; Beam decides once
    from the graph (it ends in SOFTMAX) and reports the model's own probabilities, with
    imgtool's top-k order and rounding."""
    from imgtool.data.images import decode
    from imgtool.inference.classifier import Classifier, Result
    from imgtool.models.resolve import resolve

    src = tmp_path / "daisies"
    src.mkdir()
    for f in sorted((fixtures / "flowers-mini" / "daisy").iterdir())[:24]:
        shutil.copy(f, src / f.name)
    res = invoke(
        "beam", "classify", "-m", mobilenet, "-i", str(src), "-o", str(tmp_path / "o"), "--", "--direct_num_workers=2"
    )
    assert res.exit_code == 0, res.output
    got = _records(tmp_path / "o")
    clf = Classifier(resolve(mobilenet))
    paths = sorted(str(p) for p in src.iterdir())
    raw = clf.engine.run(np.stack([decode(p, (224, 224)) for p in paths]))
    clf.scores(np.stack([decode(paths[0], (224, 224))]))  # aligns the labels as classify does
    want = [Result(p, clf.top_k(raw[i], 5)).to_dict() for i, p in enumerate(paths)]
    assert got == want
    assert min(raw.sum(axis=1)) < 0.9  # the case a per-batch guess gets wrong


def test_glob_input_and_top_k(mobilenet: str, photos: Path, tmp_path: Path) -> None:
    # Beam's globs: `**` is any characters, `/` included, so DIR/**/*.jpg needs a sub-folder
    res = invoke("beam", "classify", "-m", mobilenet, "-i", str(photos / "**" / "*.jpg"), "-o", str(tmp_path / "s"))
    assert res.exit_code == 0 and [Path(r["path"]).name for r in _records(tmp_path / "s")] == ["parrot.jpg"]
    prefix = tmp_path / "g" / "g"
    res = invoke(
        "beam",
        "classify",
        "-m",
        mobilenet,
        "-i",
        str(photos / "**.jpg"),
        "-o",
        str(prefix),
        "-k",
        "2",
        "--",
        "--direct_num_workers=1",
        f"--temp_location={tmp_path / 'temp'}",
    )
    got = _records(prefix)  # every depth; .hidden.jpg skipped
    import hashlib

    staged = (
        tmp_path / "temp" / "imgtool-models" / (hashlib.sha256(Path(mobilenet).read_bytes()).hexdigest() + ".tflite")
    )
    assert staged.read_bytes() == Path(mobilenet).read_bytes()  # --temp_location, not beside the output
    assert not (tmp_path / "g" / ".imgtool-beam-staging").exists()
    assert [Path(r["path"]).name for r in got] == ["broken.jpg", "parrot.jpg"]
    assert res.exit_code == 1
    assert len(got[1]["predictions"]) == 2 and got[1]["predictions"][0]["label"] == "macaw"


def test_per_thread_interpreters_and_same_results_as_one_thread(mobilenet: str, fixtures: Path, tmp_path: Path) -> None:
    """RunInference loads one InterpreterPool per process (shared.Shared); inside it each
    worker thread has its own interpreter (a shared one gave wrong rows,
    apache/beam#23853). Results are identical with 1 and 2 threads; Beam's own
    RunInference counters count every photo."""
    from imgtool.beam import launcher, pipelines

    launcher.register_by_value()
    runs = {}
    for n in (1, 2):
        options = launcher.pipeline_options([f"--direct_num_workers={n}"])
        spec = launcher.prepare_model(mobilenet, "classify", str(tmp_path / "stage"))
        prefix = tmp_path / f"t{n}"
        r = pipelines.run_classify(options, spec, str(fixtures / "flowers-mini"), str(prefix), batch_size=4)
        assert r.photos == 250 and r.failed == 0
        assert 1 <= r.interpreters <= n  # one per thread that ran a batch, never one per bundle
        assert r.inference["num_inferences"] == 250  # Beam's RunInference metrics
        runs[n] = _records(prefix)
    assert runs[1] == runs[2] and len(runs[1]) == 250


def test_the_pool_gives_each_thread_its_own_interpreter(mobilenet: str, tmp_path: Path) -> None:
    import threading

    from imgtool.beam import launcher
    from imgtool.beam.worker import LiteRTModelHandler

    spec = launcher.prepare_model(mobilenet, "classify", str(tmp_path / "stage"))
    pool = LiteRTModelHandler(spec).load_model()
    seen: dict[int, list[object]] = {}  # the engines themselves: a dead thread's id() could be reused

    def work() -> None:
        seen[threading.get_ident()] = [pool.engine() for _ in range(3)]

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(all(e is v[0] for e in v) for v in seen.values())  # a thread keeps its interpreter
    assert len({id(v[0]) for v in seen.values()}) == 3 == pool.built  # threads never share one


def test_handler_counts_pixel_bytes_without_pickling(
    mobilenet: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    from imgtool.beam import launcher
    from imgtool.beam.worker import LiteRTModelHandler

    spec = launcher.prepare_model(mobilenet, "classify", str(tmp_path / "stage"))
    handler = LiteRTModelHandler(spec, batch_size=3)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 3, "max_batch_size": 3}
    batch = [("a.jpg", np.zeros((224, 224, 3), np.uint8)), ("b.jpg", np.ones((224, 224, 3), np.uint8))]

    def no_pickle(*a, **k):  # noqa: ANN202
        raise AssertionError("get_num_bytes pickled the batch")

    monkeypatch.setattr(pickle, "dumps", no_pickle)
    assert handler.get_num_bytes(batch) == 2 * 224 * 224 * 3
    assert not handler.share_model_across_processes()


def test_a_batch_the_model_fails_on_gives_each_photo_an_error_record(
    mobilenet: str, photos: Path, tmp_path: Path
) -> None:
    """RunInference's dead-letter output: a batch the model raises on (here, inputs of the
    wrong size) becomes one error record per photo; the run still ends and counts them."""
    from dataclasses import replace

    from imgtool.beam import launcher, pipelines

    launcher.register_by_value()
    spec = launcher.prepare_model(mobilenet, "classify", str(tmp_path / "stage"))
    wrong = replace(spec, input_size=(200, 200))  # decoded to 200x200, the model takes 224x224
    r = pipelines.run_classify(
        launcher.pipeline_options(["--direct_num_workers=1"]), wrong, str(photos), str(tmp_path / "x"), batch_size=2
    )
    got = _records(tmp_path / "x")
    assert r.photos == 5 and r.failed == 5 and len(got) == 5  # each photo one record
    assert got[0] == {
        "path": str(photos / "broken.jpg"),
        "error": "not an image Pillow can read (unknown or corrupt format)",
    }
    for rec in got[1:]:
        assert set(rec) == {"path", "error"}
        assert rec["error"].startswith("the model failed on this photo's batch (")
        assert "Dimension mismatch" in rec["error"] and "\n" not in rec["error"]
    assert r.inference.get("num_inferences", 0) == 0  # Beam counted no inference that succeeded


def test_workers_copy_a_staged_model_once_and_verify_it(
    mobilenet: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A staged model on a remote filesystem (here a test scheme served from a folder) is
    copied to the worker's local disk once, checked against its sha256, shared by threads."""
    import hashlib
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    from apache_beam.io.localfilesystem import LocalFileSystem

    from imgtool.beam import worker

    bucket = tmp_path / "bucket"
    bucket.mkdir()
    shutil.copy(mobilenet, bucket / "m.tflite")
    opened: list[str] = []

    class RemoteFS(LocalFileSystem):
        @classmethod
        def scheme(cls) -> str:
            return "imgtooltest"

        def open(self, path, *args, **kwargs):  # noqa: ANN001, ANN201
            opened.append(path)
            return super().open(str(bucket / path.split("://", 1)[1]), *args, **kwargs)

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "local"))
    (tmp_path / "local").mkdir()
    digest = hashlib.sha256(Path(mobilenet).read_bytes()).hexdigest()
    with ThreadPoolExecutor(4) as pool:
        paths = set(pool.map(lambda _: worker.local_copy("imgtooltest://m.tflite", digest, ".tflite"), range(4)))
    want = tmp_path / "local" / "imgtool-beam-models" / f"{digest}.tflite"
    assert paths == {str(want)} and want.read_bytes() == Path(mobilenet).read_bytes()
    n = len(opened)
    assert 1 <= n <= 4  # threads racing before the first rename may each copy; the bytes are the same
    assert worker.local_copy("imgtooltest://m.tflite", digest, ".tflite") == str(want)
    assert len(opened) == n  # once it is there, never again
    with pytest.raises(RuntimeError, match="staged model changed"):
        worker.local_copy("imgtooltest://m.tflite", "0" * 64, ".tflite")
    assert sorted(p.name for p in want.parent.iterdir()) == [want.name]  # no partial copy kept


def test_worker_runs_without_imgtool_or_tensorflow(mobilenet: str, fixtures: Path, tmp_path: Path) -> None:
    """The worker's steps (Decode, the ModelHandler RunInference loads and calls, the
    records), pickled as the launcher ships them, run in a Python where imgtool and
    TensorFlow cannot be imported: workers need numpy, Pillow, LiteRT (and Beam) only."""
    from apache_beam.internal import pickler

    from imgtool.beam import launcher
    from imgtool.beam.worker import ClassifyFailed, ClassifyRecord, DecodeForClassify, LiteRTModelHandler

    launcher.register_by_value()
    spec = launcher.prepare_model(mobilenet, "classify", str(tmp_path / "stage"))
    from imgtool.beam import pipelines

    blob = tmp_path / "steps.pickle"
    blob.write_bytes(
        pickler.dumps((DecodeForClassify(spec), LiteRTModelHandler(spec, 2), ClassifyRecord(spec, 3), ClassifyFailed()))
    )
    # the listing's filters travel the same way
    (tmp_path / "filter.pickle").write_bytes(
        pickler.dumps(lambda p: pipelines.is_image_name(p) and not pipelines._hidden_below(p, "/r"))
    )
    (tmp_path / "label.pickle").write_bytes(pickler.dumps(pipelines.labelled))
    photo = str(fixtures / "imagenet" / "images" / "cat.bmp")
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("imgtool", "tensorflow"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        sys.path = [p for p in sys.path if p not in ("", {str(ROOT)!r})]
        from apache_beam.internal import pickler
        from apache_beam.pvalue import TaggedOutput
        decode, handler, record, failed = pickler.loads(open({str(blob)!r}, "rb").read())
        out, ok = [], []
        for path in ({photo!r}, "/nonexistent.jpg"):
            for x in decode.process(path):
                (out.append(x.value) if isinstance(x, TaggedOutput) else ok.append(x))
        model = handler.load_model()
        for result in handler.run_inference(ok, model):
            out += list(record.process(result))
        out += list(failed.process((ok, (ValueError, "ValueError('boom')", []))))
        keep = pickler.loads(open("filter.pickle", "rb").read())
        assert [keep(p) for p in ("/r/a/b.JPG", "/r/.x/b.jpg", "/r/a/b.txt")] == [True, False, False]
        label = pickler.loads(open("label.pickle", "rb").read())
        assert label("/r/roses/x/y.jpg", "/r") == ("/r/roses/x/y.jpg", "roses/x/y.jpg", "roses")
        assert label("/r/stray.jpg", "/r") is None
        assert not any(m.startswith(("imgtool", "tensorflow")) for m in sys.modules), sorted(sys.modules)
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out[0]["path"] == "/nonexistent.jpg" and out[0]["error"].startswith("cannot read (")
    assert out[1]["path"] == photo
    assert [p["label"] for p in out[1]["predictions"]] == ["Egyptian cat", "tabby, tabby cat", "tiger cat"]
    assert out[2] == {"path": photo, "error": "the model failed on this photo's batch (ValueError('boom'))"}


# ---------------------------------------------------------------- features and retrain


def test_features_then_retrain_equals_folder_retrain(embedder: str, fixtures: Path, tmp_path: Path) -> None:
    data = tmp_path / "flowers"
    shutil.copytree(fixtures / "flowers-mini", data)
    (data / "roses" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    (data / "stray.jpg").write_bytes((fixtures / "imagenet" / "images" / "parrot.jpg").read_bytes())  # no class
    prefix = tmp_path / "shards" / "flowers"
    res = invoke(
        "beam",
        "features",
        "-m",
        embedder,
        "-i",
        str(data),
        "-o",
        str(prefix),
        "--batch-size",
        "16",
        "--",
        "--direct_num_workers=2",
    )
    assert res.exit_code == 1, res.output  # the broken photo
    import pyarrow.parquet as pq

    rows = [r for s in sorted(glob.glob(f"{prefix}-*.parquet")) for r in pq.read_table(s).to_pylist()]
    assert len(rows) == 251
    from imgtool.runtime import bottlenecks

    by_path = {r["path"]: r for r in rows}
    broken = by_path["roses/broken.jpg"]
    assert broken["error"] == "not an image Pillow can read (unknown or corrupt format)" and broken["features"] is None
    assert broken["sha256"] == bottlenecks.file_sha256(str(data / "roses" / "broken.jpg"))
    one = sorted((data / "daisy").iterdir())[0]
    row = by_path[f"daisy/{one.name}"]
    assert row["class"] == "daisy" and row["sha256"] == bottlenecks.file_sha256(str(one))
    assert row["source"] == str(one) and len(row["features"]) == 1024 and row["error"] is None
    # the same vector `imgtool retrain` computes for its bottleneck cache
    from imgtool.data.images import decode
    from imgtool.runtime.engine import LiteRTEngine

    want = LiteRTEngine(Path(embedder)).run(decode(str(one), (224, 224))[None])[0]
    assert np.array_equal(np.array(row["features"], dtype=np.float32), want)
    assert {r["backbone"] for r in rows} == {bottlenecks.backbone_id(Path(embedder), (224, 224), None)}

    folder = tmp_path / "folder-model"
    shards = tmp_path / "features-model"
    a = invoke("retrain", str(data), "-m", embedder, "-o", str(folder), "-f", "json")
    b = invoke("retrain", "--features", f"{prefix}-*.parquet", "-m", embedder, "-o", str(shards), "-f", "json")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    with np.load(folder / "head.npz") as ha, np.load(shards / "head.npz") as hb:
        assert np.allclose(ha["weights"], hb["weights"], rtol=0, atol=1e-7)
        assert np.allclose(ha["bias"], hb["bias"], rtol=0, atol=1e-7)
    ma, mb = json.loads(a.stdout), json.loads(b.stdout)
    assert ma["counts"] == mb["counts"] and ma["test"] == mb["test"] and ma["classes"] == CLASSES
    assert [s["path"] for s in mb["skipped"]] == [str(data / "roses" / "broken.jpg")]
    assert (shards / "backbone.tflite").is_file() and "Training from feature shards" in b.stderr

    # the retrained folder (backbone.tflite + head.npz) classifies on Beam as it does locally
    photos = [str(sorted((data / c).iterdir())[1]) for c in CLASSES]
    cdir = tmp_path / "few"
    cdir.mkdir()
    for p in photos:
        shutil.copy(p, cdir / Path(p).name)
    res = invoke("beam", "classify", "-m", str(shards), "-i", str(cdir), "-o", str(tmp_path / "c" / "x"), "-k", "5")
    assert res.exit_code == 0, res.output
    got = _records(tmp_path / "c" / "x")
    want = _classify_in_process(str(shards), [str(cdir)])
    assert [[p["label"] for p in r["predictions"]] for r in got] == [
        [p["label"] for p in r["predictions"]] for r in want
    ]
    for g, w in zip(got, want):
        assert np.allclose([p["score"] for p in g["predictions"]], [p["score"] for p in w["predictions"]], atol=2e-6)


def test_features_shards_of_another_backbone_are_refused(embedder: str, fixtures: Path, tmp_path: Path) -> None:
    data = tmp_path / "d"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for f in sorted((fixtures / "flowers-mini" / ("daisy" if c == "a" else "roses")).iterdir())[:3]:
            shutil.copy(f, data / c / f.name)
    prefix = tmp_path / "s"
    assert invoke("beam", "features", "-m", embedder, "-i", str(data), "-o", str(prefix)).exit_code == 0
    other = tmp_path / "other-extractor.tflite"  # another feature extractor (other bytes: another identity)
    other.write_bytes(Path(embedder).read_bytes() + b"\0" * 16)
    res = invoke("retrain", "--features", f"{prefix}-*.parquet", "-m", str(other), "-o", str(tmp_path / "m"))
    assert res.exit_code == 2
    assert "made with another backbone" in res.stderr and not (tmp_path / "m").exists()


# ---------------------------------------------------------------- the model's output kind, failures


def test_output_kind_is_classifys_decision_from_the_model(mobilenet: str, embedder: str, tmp_path: Path) -> None:
    from imgtool.beam import launcher
    from imgtool.beam.worker import ModelSpec
    from imgtool.core.errors import UsageError

    spec = launcher.prepare_model(mobilenet, "classify", str(tmp_path / "stage"))
    assert spec.output == "probabilities"  # its metadata and its last op (SOFTMAX) say so
    assert len(spec.labels) == 1001 and spec.labels[0] == "background"
    with pytest.raises(UsageError, match="is a feature extractor"):  # pooled 1x1x1x1024, no labels
        launcher.prepare_model(embedder, "classify", str(tmp_path / "stage"))
    with pytest.raises(ValueError, match="output must be one of"):
        ModelSpec("m.tflite", "0" * 64, (224, 224), None, "scores")


def test_a_failure_inside_the_pipeline_is_one_line(mobilenet: str, photos: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from imgtool.beam import launcher, pipelines
    from imgtool.core.errors import PipelineError

    launcher.register_by_value()
    spec = launcher.prepare_model(mobilenet, "classify", str(tmp_path / "stage"))
    gone = replace(spec, model_uri=str(tmp_path / "stage" / "vanished.tflite"))  # a worker cannot fetch it
    with pytest.raises(PipelineError) as info:
        pipelines.run_classify(
            launcher.pipeline_options(["--direct_num_workers=1"]), gone, str(photos), str(tmp_path / "x")
        )
    msg = str(info.value)
    assert msg.startswith("the Beam pipeline failed: ") and "\n" not in msg and info.value.exit_code == 1
    assert not list(tmp_path.glob("x-*"))
    assert not list(tmp_path.glob("beam-temp-*"))  # the writer's temporary folder is removed too


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_no_shards(mobilenet: str, fixtures: Path, tmp_path: Path, sig: int) -> None:
    big = tmp_path / "big"
    for i in range(8):  # 2,000 photos (hard links): far longer than the wait below
        for f in (fixtures / "flowers-mini").rglob("*.jpg"):
            (big / f"c{i}").mkdir(parents=True, exist_ok=True)
            os.link(f, big / f"c{i}" / f"{f.parent.name}-{f.name}")
    out = tmp_path / "out"
    code, err, _ = interrupt_once_writing(
        ["classify", "-m", mobilenet, "-i", str(big), "-o", str(out / "x"), "--", "--direct_num_workers=1"],
        out,
        sig,
        wait_s=30,
    )
    assert code == 130, err
    assert err.strip().splitlines() == [
        "Interrupted; the local run stopped and wrote no shards (its temporary files were removed)."
    ]
    # no bound on `took`: a wall-clock bound failed on a loaded machine. The run stopping is the
    # exit code and the empty output (a run that ignored the signal would finish its 2,000
    # photos within the helper's 120 s and write its shards)
    assert not list(out.glob("x-*")) and not list(out.glob("beam-temp-*"))


# ---------------------------------------------------------------- refusals


def test_unknown_beam_options_are_refused(mobilenet: str, photos: Path, tmp_path: Path) -> None:
    for extra, named in (
        (["--direct_num_workrs=2"], "'--direct_num_workrs=2' (did you mean --direct_num_workers?)"),
        (["-k", "3"], "'-k'"),
        (["--runner=FnApiRunner", "stray"], "'stray'"),
    ):
        res = invoke("beam", "classify", "-m", mobilenet, "-i", str(photos), "-o", str(tmp_path / "x"), "--", *extra)
        assert res.exit_code == 2, res.output
        assert res.stderr.strip().splitlines() == [
            f"Error: unknown Beam option {named}; everything after `--` goes to "
            "Beam's PipelineOptions, and Beam would silently ignore it"
        ]
    res = invoke(
        "beam",
        "classify",
        "-m",
        mobilenet,
        "-i",
        str(photos),
        "-o",
        str(tmp_path / "x"),
        "--",
        "--direct_num_workers=many",
    )
    assert res.exit_code == 2 and "bad Beam option" in res.stderr and "invalid int value" in res.stderr
    assert not list(tmp_path.glob("x-*"))
    # a stray word before `--` is imgtool's own usage error
    res = invoke("beam", "classify", "-m", mobilenet, "-i", str(photos), "-o", str(tmp_path / "x"), "oops")
    assert res.exit_code == 2 and "unexpected extra argument" in res.stderr


def test_existing_output_is_refused_unless_overwrite(mobilenet: str, photos: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "o"
    old = tmp_path / "o-00003-of-00004.jsonl"
    old.write_text("precious\n")
    res = invoke("beam", "classify", "-m", mobilenet, "-i", str(photos), "-o", str(prefix))
    assert res.exit_code == 2
    assert "1 file(s) already match" in res.stderr and "--overwrite" in res.stderr
    assert old.read_text() == "precious\n" and len(list(tmp_path.glob("o-*"))) == 1
    os.utime(old, (1, 1))  # written long before this run
    res = invoke(
        "beam",
        "classify",
        "-m",
        mobilenet,
        "-i",
        str(photos),
        "-o",
        str(prefix),
        "--overwrite",
        "--",
        "--direct_num_workers=1",
    )
    assert res.exit_code == 1  # the broken photo
    assert not old.exists()  # not rewritten by this run: removed after it succeeded
    assert [p.name for p in tmp_path.glob("o-*")] == ["o-00000-of-00001.jsonl"]
    assert len(_records(prefix)) == 5


def test_a_model_that_is_not_a_classifier_or_missing(embedder: str, photos: Path, tmp_path: Path) -> None:
    res = invoke("beam", "classify", "-m", str(tmp_path / "nope.tflite"), "-i", str(photos), "-o", str(tmp_path / "x"))
    assert res.exit_code == 3 and res.stderr.startswith("Error: ")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage")
    res = invoke("beam", "classify", "-m", str(bad), "-i", str(photos), "-o", str(tmp_path / "x"))
    assert res.exit_code == 3 and "not a loadable .tflite" in res.stderr
    res = invoke("beam", "features", "-m", embedder, "-i", str(photos / "cat.bmp"), "-o", str(tmp_path / "x"))
    assert res.exit_code == 2 and "not a folder" in res.stderr


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="TensorFlow is installed here")
def test_a_model_needing_conversion_without_tensorflow(photos: Path, tmp_path: Path, isolated_home: Path) -> None:
    """.venv-beam has no TensorFlow: a SavedModel cannot be converted there. It says how
    to convert it once with the main install, and records no failed conversion in the
    cache both installs share (that would make the main install run it in TF for good)."""
    saved = tmp_path / "sm"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\x08\x01")
    res = invoke("beam", "classify", "-m", str(saved), "-i", str(photos), "-o", str(tmp_path / "x"))
    assert res.exit_code == 3
    assert res.stderr.strip().splitlines() == [
        f"Error: {saved} needs a one-time conversion to .tflite, which needs TensorFlow, and this Python has none; "
        f"run `imgtool models download {saved}` with the main install (same IMGTOOL_HOME) first"
    ]
    records = [json.loads(p.read_text()) for p in isolated_home.rglob("entry.json")]
    assert records and all("conversions" not in r for r in records)


# ---------------------------------------------------------------- entry points and imports


def test_installed_command_and_python_dash_m(mobilenet: str, photos: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(photos / "cat.bmp", one / "cat.bmp")
    a = run("beam", "classify", "-m", mobilenet, "-i", str(one), "-o", str(tmp_path / "a"), "-k", "1")
    b = subprocess.run(
        [
            sys.executable,
            "-m",
            "imgtool.beam",
            "classify",
            "-m",
            mobilenet,
            "-i",
            str(one),
            "-o",
            str(tmp_path / "b"),
            "-k",
            "1",
            "--",
            "--direct_num_workers=1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    for proc in (a, b):
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert _records(tmp_path / "a")[0]["predictions"][0]["label"] == "Egyptian cat"
    assert _records(tmp_path / "a") == _records(tmp_path / "b")
    c = run("beam", "classify", "-m", mobilenet, "-i", str(one), "-o", str(tmp_path / "a"))
    assert c.returncode == 2 and c.stderr.startswith("Error: --output")


def test_plain_cli_and_import_imgtool_never_import_beam() -> None:
    script = (
        "import sys, imgtool, imgtool.cli.main, imgtool.beam, imgtool.beam.cli\n"
        "from click.testing import CliRunner\n"
        "assert CliRunner().invoke(imgtool.cli.main.cli, ['beam', 'classify', '--help']).exit_code == 0\n"
        "assert CliRunner().invoke(imgtool.cli.main.cli, ['--help']).exit_code == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('apache_beam', 'pyarrow', 'tensorflow')))"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_worker_top_k_ties_go_to_the_lower_index(mobilenet: str, fixtures: Path) -> None:
    """The worker's own top-k (workers may run without imgtool's classifier) keeps the rule of
    Classifier.top_k: best first, ties to the lower index. Planted change this catches: the old
    argpartition + stable sort ([89, 700, 5, 984, 985] on the vector below)."""
    from imgtool.beam.worker import top_k
    from imgtool.data.images import decode
    from imgtool.inference.classifier import Classifier
    from imgtool.models.resolve import resolve

    def by_rule(scores: np.ndarray, k: int) -> list[int]:
        return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))[:k]

    labels = tuple(f"label {i}" for i in range(1001))
    scores = np.zeros(1001, np.float32)
    scores[[89, 5, 700]] = 0.9, 0.05, 0.05
    top = top_k(scores, 5, labels)
    assert [p["index"] for p in top] == [89, 5, 700, 0, 1]
    assert [p["label"] for p in top] == ["label 89", "label 5", "label 700", "label 0", "label 1"]
    clf = Classifier(resolve(mobilenet))
    paths = [
        *sorted((fixtures / "imagenet" / "images").iterdir()),
        *sorted((fixtures / "flowers-mini" / "daisy").iterdir())[:23],
    ]
    raw = clf.scores(np.stack([decode(str(p), (224, 224)) for p in paths]))
    for row in raw:
        assert [p["index"] for p in top_k(row, 5, tuple(clf.labels))] == by_rule(row, 5)
