"""Downloads, the cache, conversion and both label schemes, against a loopback server
serving generated models in the real archive formats (TF Hub .tar.gz, the 2015 .tgz)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

import imgtool
from imgtool.core.errors import Call, DownloadError, ModelError
from tests.conftest import invoke
from tests.support import modelgen
from tests.support.httpserver import LoopbackServer

pytestmark = pytest.mark.slow

LABELS = ["background"] + [f"label {i}" for i in range(1, 1001)]
SIZE = 32


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("built")
    cls = modelgen.make_hub_classifier(d / "cls", size=SIZE)
    feat = modelgen.make_hub_feature_vector(d / "feat", size=SIZE)
    out = {
        "cls_dir": cls,
        "feat_dir": feat,
        "cls_tgz": modelgen.make_hub_tarball(cls, d / "cls.tar.gz"),
        "feat_tgz": modelgen.make_hub_tarball(feat, d / "feat.tar.gz"),
        "graph_tgz": modelgen.make_2015_archive(d / "inception-2015-12-05.tgz", size=SIZE),
    }
    for colour, rgb in {"red": (250, 5, 5), "green": (5, 250, 5), "blue": (5, 5, 250)}.items():
        Image.new("RGB", (64, 48), rgb).save(d / f"{colour}.jpg", quality=95)
        out[colour] = d / f"{colour}.jpg"
    return out


def _catalog(tmp_path: Path, srv: LoopbackServer, built: dict[str, Path], sha: str | None = None) -> Path:
    """A catalog file that points the default model names at the loopback server."""
    srv.add("/hub/cls.tar.gz", built["cls_tgz"].read_bytes())
    srv.add("/hub/feat.tar.gz", built["feat_tgz"].read_bytes())
    srv.add("/data/ImageNetLabels.txt", ("\n".join(LABELS) + "\n").encode())
    srv.add("/models/inception-2015-12-05.tgz", built["graph_tgz"].read_bytes())
    records = {
        "inception_v3": {
            "format": "savedmodel",
            "urls": [srv.url + "/hub/cls.tar.gz"],
            "sha256": sha,
            "input_size": [SIZE, SIZE],
            "value_range": [0, 1],
            "output": "logits",
            "labels": {"urls": [srv.url + "/data/ImageNetLabels.txt"]},
            "features": "inception_v3_feature_vector",
        },
        "inception_v3_feature_vector": {
            "format": "savedmodel",
            "urls": [srv.url + "/hub/feat.tar.gz"],
            "input_size": [SIZE, SIZE],
            "value_range": [0, 1],
            "output": "features",
        },
        "inception_v3_2015": {
            "format": "graphdef",
            "urls": [srv.url + "/models/inception-2015-12-05.tgz"],
            "graph": "classify_image_graph_def.pb",
            "input_tensor": "Mul:0",
            "output_tensor": "softmax:0",
            "feature_tensor": "pool_3:0",
            "input_size": [SIZE, SIZE],
            "value_range": [-1, 0.9921875],
            "output": "probabilities",
            "features": "inception_v3_2015",
            "labels": {
                "format": "imagenet2015",
                "label_map": "imagenet_2012_challenge_label_map_proto.pbtxt",
                "synsets": "imagenet_synset_to_human_label_map.txt",
            },
        },
    }
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"models": records}))
    return path


@pytest.fixture
def served(tmp_path: Path, http_server: LoopbackServer, built: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IMGTOOL_CATALOG", str(_catalog(tmp_path, http_server, built)))
    return http_server


def _top1(stdout: str) -> dict[str, tuple[str, int]]:
    out = {}
    for line in stdout.splitlines():
        r = json.loads(line)
        if "predictions" in r:
            out[Path(r["path"]).stem] = (r["predictions"][0]["label"], r["predictions"][0]["index"])
    return out


def test_default_model_downloads_converts_caches_and_classifies(
    served: LoopbackServer, built: dict, isolated_home: Path
) -> None:
    args = ["classify", "-f", "jsonl", str(built["red"]), str(built["green"]), str(built["blue"])]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert _top1(first.stdout) == {"red": ("label 1", 1), "green": ("label 2", 2), "blue": ("label 3", 3)}
    assert "Converting inception_v3" in first.stderr
    entry = isolated_home / "models" / "inception_v3"
    record = json.loads((entry / "entry.json").read_text())
    assert record["conversions"]["model"]["ok"] is True
    assert record["conversions"]["model"]["max_diff"] < 1e-4
    assert (entry / "model.tflite").stat().st_size == record["conversions"]["model"]["size"]
    assert served.hits("/hub/cls.tar.gz") == 1 and served.last_query("/hub/cls.tar.gz") == ""
    # a second run, as a fresh process: no download, no conversion, no TensorFlow import
    code = (
        "import sys; from click.testing import CliRunner; from imgtool.cli.main import cli;"
        f"r = CliRunner().invoke(cli, {args!r}); print(r.exit_code, 'tensorflow' in sys.modules);"
        "print(r.stdout, end='')"
    )
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    status, rest = second.stdout.split("\n", 1)
    assert status == "0 False"
    assert _top1(rest) == _top1(first.stdout)
    assert served.hits("/hub/cls.tar.gz") == 1


def test_2015_graph_labels_map_through_synsets(served: LoopbackServer, built: dict) -> None:
    result = invoke(
        "classify", "-m", "inception_v3_2015", "-f", "jsonl", str(built["red"]), str(built["green"]), str(built["blue"])
    )
    assert result.exit_code == 0, result.output
    expected = {c: (modelgen.GRAPH2015_LABELS[i], i) for c, i in modelgen.CLASSIFIER_IDS.items()}
    assert _top1(result.stdout) == expected
    labels = invoke("labels", "-m", "inception_v3_2015").stdout.splitlines()
    assert len(labels) == modelgen.GRAPH2015_SOFTMAX_SIZE
    assert labels[1] == f"1\t{modelgen.GRAPH2015_LABELS[1]}"
    assert labels[0] == "0\t(unused id 0)"


def test_hub_url_and_handle_forms(http_server: LoopbackServer, built: dict) -> None:
    url = http_server.add("/google/x/classification/5", built["cls_tgz"].read_bytes())
    res = invoke("classify", "-m", url, "--input-size", "32,32", "-f", "jsonl", str(built["blue"]))
    assert res.exit_code == 0, res.output
    # no labels anywhere: class numbers, and one warning saying how to fix it
    assert _top1(res.stdout) == {"blue": ("class 3", 3)}
    assert "pass --labels FILE" in res.stderr


def _top1_of(results: list) -> dict[str, tuple[str, int]]:  # noqa: ANN001
    """The library's results as `_top1` reads the CLI's jsonl."""
    return {Path(r.path).stem: (r.predictions[0].label, r.predictions[0].index) for r in results if r.predictions}


def test_checksum_mismatch_is_exit_3_and_nothing_cached(
    tmp_path: Path, http_server: LoopbackServer, built: dict, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    monkeypatch.setenv("IMGTOOL_CATALOG", str(_catalog(tmp_path, http_server, built, sha="0" * 64)))
    with pytest.raises(DownloadError) as info:
        imgtool.load_model()
    assert info.value.exit_code == 3 and "checksum mismatch" in str(info.value)
    assert str(info.value).startswith("could not download inception_v3")
    assert not (isolated_home / "models" / "inception_v3").exists()
    assert not any((isolated_home / "tmp").iterdir())
    result = invoke("classify", str(built["red"]))  # the CLI's words: one progress line, then the error
    assert result.exit_code == 3
    said = result.stderr.strip().splitlines()
    assert len(said) == 2 and said[-1].startswith("Error: could not download inception_v3"), said
    assert "checksum mismatch" in said[-1] and said[-1].endswith(
        "or use -m mobilenet_v2_quant, which ships with imgtool"
    )
    good = hashlib.sha256(built["cls_tgz"].read_bytes()).hexdigest()
    monkeypatch.setenv("IMGTOOL_CATALOG", str(_catalog(tmp_path, http_server, built, sha=good)))
    assert imgtool.load_model().ref == "inception_v3"


@pytest.mark.parametrize("fault", ["truncate", "drop", "500", "404", "stall", "redirect_loop", "overlong"])
def test_failed_download_is_clean_and_next_attempt_succeeds(
    fault: str, served: LoopbackServer, built: dict, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGTOOL_TIMEOUT", "1")
    monkeypatch.setenv("IMGTOOL_RETRIES", "1")
    served.set_fault("/hub/cls.tar.gz", fault)
    with pytest.raises(ModelError) as info:  # DownloadError, or the archive is corrupt
        imgtool.load_model()
    assert info.value.exit_code == 3 and "inception_v3" in str(info.value) and "\n" not in str(info.value)
    assert not (isolated_home / "models" / "inception_v3" / "entry.json").exists()
    assert [p.name for p in (isolated_home / "tmp").iterdir()] == []
    served.set_fault("/hub/cls.tar.gz", None)
    assert _top1_of(imgtool.classify([built["red"]])) == {"red": ("label 1", 1)}


def test_connection_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, built: dict) -> None:
    monkeypatch.setenv("IMGTOOL_RETRIES", "1")
    with pytest.raises(DownloadError, match="connection refused") as info:
        imgtool.load_model(LoopbackServer.refused_url("/m.tar.gz"))
    assert info.value.exit_code == 3


def test_offline_fails_fast_then_works_from_cache(
    served: LoopbackServer, built: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGTOOL_OFFLINE", "1")
    with pytest.raises(ModelError) as info:
        imgtool.load_model()
    assert info.value.exit_code == 3 and "IMGTOOL_OFFLINE" in str(info.value)
    assert Call("download_model", "inception_v3") in info.value.text.parts
    res = invoke("classify", str(built["red"]))  # the CLI names the command instead
    assert res.exit_code == 3
    assert "IMGTOOL_OFFLINE" in res.stderr and "imgtool models download inception_v3" in res.stderr
    assert served.hits("/hub/cls.tar.gz") == 0
    monkeypatch.delenv("IMGTOOL_OFFLINE")
    assert imgtool.download_model().cached
    monkeypatch.setenv("IMGTOOL_OFFLINE", "1")
    assert _top1_of(imgtool.classify([built["red"]])) == {"red": ("label 1", 1)}
    assert served.hits("/hub/cls.tar.gz") == 1


def test_two_processes_download_once(
    tmp_path: Path, http_server: LoopbackServer, built: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGTOOL_CATALOG", str(_catalog(tmp_path, http_server, built)))
    http_server.add("/hub/cls.tar.gz", built["cls_tgz"].read_bytes(), chunk_size=4096, delay_per_chunk=0.01)
    from tests.conftest import IMGTOOL

    procs = [
        subprocess.Popen(
            [IMGTOOL, "classify", "-f", "jsonl", str(built["green"])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all(_top1(o[0]) == {"green": ("label 2", 2)} for o in outs)
    assert http_server.hits("/hub/cls.tar.gz") == 1
    assert sum("Downloading inception_v3 from" in o[1] for o in outs) == 1


def _evil_tar(members: list[tuple[str, bytes | None, str | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
    return buf.getvalue()


@pytest.mark.parametrize(
    "members",
    [
        [("../escape.txt", b"x", None)],
        [("/abs/escape.txt", b"x", None)],
        [("link", None, "/etc/passwd"), ("saved_model.pb", b"x", None)],
        [("sub/link", None, "../../outside")],
    ],
    ids=["dotdot", "absolute", "abs-symlink", "relative-symlink-out"],
)
def test_unsafe_archives_are_refused(
    members: list, http_server: LoopbackServer, built: dict, isolated_home: Path, tmp_path: Path
) -> None:
    url = http_server.add("/evil.tar.gz", _evil_tar(members))
    with pytest.raises(ModelError, match="unsafe archive refused") as info:
        imgtool.load_model(url)
    assert info.value.exit_code == 3
    assert not (isolated_home / "escape.txt").exists() and not (isolated_home / "models" / "abs").exists()
    assert (
        not any(p.name == "entry.json" for p in (isolated_home / "models").rglob("*"))
        if (isolated_home / "models").exists()
        else True
    )


def test_corrupt_archive(http_server: LoopbackServer, built: dict) -> None:
    url = http_server.add("/corrupt.tar.gz", b"\x1f\x8b\x08\x00garbage" * 10)
    with pytest.raises(ModelError, match=r"not a readable \.tar\.gz archive") as info:
        imgtool.load_model(url)
    assert info.value.exit_code == 3


def test_damaged_cache_entry_is_refetched(
    served: LoopbackServer, built: dict, isolated_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert imgtool.download_model().cached
    entry = isolated_home / "models" / "inception_v3"
    victim = entry / "source" / "saved_model.pb"
    victim.write_bytes(victim.read_bytes()[:100])
    caplog.set_level("INFO", logger="imgtool")
    assert _top1_of(imgtool.classify([built["red"]])) == {"red": ("label 1", 1)}
    assert "cached model inception_v3 is damaged (source/saved_model.pb is truncated" in caplog.text
    assert served.hits("/hub/cls.tar.gz") == 2
    # a converted .tflite that no longer loads is converted again, with one line
    caplog.clear()
    (entry / "model.tflite").write_bytes(b"\0" * 10)
    assert _top1_of(imgtool.classify([built["red"]])) == {"red": ("label 1", 1)}
    assert "is damaged; converting again" in caplog.text


def test_failed_conversion_falls_back_to_tensorflow(
    served: LoopbackServer, built: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgtool.runtime import tfutil

    def broken_convert(source: Path, size: tuple[int, int], dest: Path):  # the Keras-3 failure seen here
        real = tfutil.load_callable(source, None, size)
        dest.write_bytes(b"TFL3" + bytes(300_000))
        return real

    monkeypatch.setattr(tfutil, "convert_savedmodel", broken_convert)
    res = invoke("classify", "-f", "jsonl", str(built["red"]), str(built["blue"]))
    assert res.exit_code == 0, res.output
    assert _top1(res.stdout) == {"red": ("label 1", 1), "blue": ("label 3", 3)}
    assert res.stderr.count(".tflite conversion failed") == 1
    assert res.stderr.count("running inception_v3 in TensorFlow") == 1
    assert "disagrees with TensorFlow" in res.stderr or "not a loadable .tflite" in res.stderr


def test_local_savedmodel_pb_and_quantized_tflite(tmp_path: Path, built: dict) -> None:
    res = invoke("classify", "-m", str(built["cls_dir"]), "-f", "jsonl", str(built["green"]))
    assert res.exit_code == 0 and _top1(res.stdout)["green"][1] == 2
    with tarfile.open(built["graph_tgz"]) as tar:
        tar.extractall(tmp_path / "g", filter="data")
    res = invoke(
        "classify",
        "-m",
        str(tmp_path / "g" / "classify_image_graph_def.pb"),
        "--input-size",
        "32,32",
        "-f",
        "jsonl",
        str(built["blue"]),
    )
    assert res.exit_code == 0, res.output
    assert _top1(res.stdout)["blue"] == (modelgen.GRAPH2015_LABELS[3], 3)
    q = modelgen.make_tflite_classifier(tmp_path / "q.tflite", size=SIZE, quantized=True, labels=LABELS)
    res = invoke("classify", "-m", str(q), "-f", "jsonl", str(built["red"]), str(built["blue"]))
    assert _top1(res.stdout) == {"red": ("label 1", 1), "blue": ("label 3", 3)}


def test_models_commands(served: LoopbackServer, isolated_home: Path) -> None:
    assert invoke("models", "path").stdout.strip() == str(isolated_home)
    assert invoke("models", "download", "inception_v3_2015").exit_code == 0
    listing = json.loads(invoke("models", "list", "-f", "json").stdout)
    cached = {m["name"]: m["cached"] for m in listing}
    assert cached["inception_v3_2015"] is True and cached["inception_v3"] is False
    assert invoke("models", "path", "inception_v3_2015").stdout.strip() == str(
        isolated_home / "models" / "inception_v3_2015"
    )
    assert invoke("models", "remove", "inception_v3_2015").exit_code == 0
    assert not (isolated_home / "models" / "inception_v3_2015").exists()
    assert invoke("models", "remove", "inception_v3_2015").exit_code == 3


def test_ambiguous_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, built: dict) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inception_v3").mkdir()
    res = invoke("classify", "-m", "inception_v3", str(built["red"]))
    assert res.exit_code == 2 and "catalog:inception_v3 or ./inception_v3" in res.stderr


def _colour_dataset(root: Path, per_class: int = 6) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    for name, rgb in {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            arr = np.clip(np.array(rgb) + rng.normal(0, 25, size=(40, 40, 3)), 0, 255).astype("uint8")
            Image.fromarray(arr).save(root / name / f"{name}_{i}.png")
    return root


def test_retrain_on_tf_backbone_exports_savedmodel_and_tflite_that_agree(
    served: LoopbackServer, tmp_path: Path
) -> None:
    """The default backbone (inception_v3 -> its feature_vector twin), fetched from the
    loopback server as a TF Hub archive, converted, and exported both ways."""
    import numpy as np

    data = _colour_dataset(tmp_path / "colours")
    out = tmp_path / "colours-model"
    res = invoke("retrain", str(data), "-o", str(out), "--epochs", "100", "--learning-rate", "0.01", "-f", "json")
    assert res.exit_code == 0, res.output
    assert served.hits("/hub/feat.tar.gz") == 1 and served.hits("/hub/cls.tar.gz") == 0
    m = json.loads(res.stdout)
    assert m["test"]["accuracy"] == 1.0 and m["backbone"] == "inception_v3"
    meta = json.loads((out / "imgtool-model.json").read_text())
    assert meta["exports"]["saved_model"] == "saved_model"
    (export,) = json.loads((out / "metrics.json").read_text())["exports"]
    assert export["file"] == "model.tflite" and export["method"] == "tensorflow"
    assert export["max_prob_diff_vs_imgtool"] < 1e-4 and export["top1_agreement_vs_imgtool"] == 1.0
    # an identical second run reuses the TF export instead of paying for TensorFlow again
    again = invoke("retrain", str(data), "-o", str(tmp_path / "again"), "--epochs", "100", "--learning-rate", "0.01")
    assert again.exit_code == 0 and "Reusing the SavedModel export" in again.stderr
    assert "Reusing the .tflite conversion of an identical earlier run" in again.stderr
    assert "tensorflow" not in again.stderr.lower()
    assert (tmp_path / "again" / "model.tflite").is_file()
    skipped = invoke("retrain", str(data), "-o", str(tmp_path / "plain"), "--no-export", "--epochs", "3")
    assert skipped.exit_code == 0 and not (tmp_path / "plain" / "saved_model").exists()
    # the model folder keeps working after the cache is cleared
    assert invoke("models", "remove", "all").exit_code == 0
    photos = sorted(str(p) for p in data.rglob("*.png"))
    cls = invoke("classify", "-m", str(out), "-f", "jsonl", "-k", "3", *photos)
    assert cls.exit_code == 0, cls.output
    ours = {}
    for line in cls.stdout.splitlines():
        r = json.loads(line)
        ours[r["path"]] = {p["label"]: p["score"] for p in r["predictions"]}
        assert max(ours[r["path"]], key=ours[r["path"]].get) == Path(r["path"]).parent.name
    from imgtool.data import images
    from imgtool.data.labels import embedded_tflite_labels
    from imgtool.training.export_checks import engine_for

    assert embedded_tflite_labels(out / "model.tflite") == ["blue", "green", "red"]
    batch = np.stack([images.decode(p, (SIZE, SIZE)) for p in photos])
    lite = engine_for(out / "model.tflite").run(batch)  # the value range from its metadata
    import tensorflow as tf

    serving = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    tf_out = serving(images=tf.constant(batch.astype("float32")))
    tf_probs = tf_out["probabilities"].numpy()
    assert [c.decode() for c in tf_out["top_class"].numpy()] == [Path(p).parent.name for p in photos]
    ours_arr = np.array([[ours[p][c] for c in ["blue", "green", "red"]] for p in photos])
    assert np.max(np.abs(lite - tf_probs)) < 1e-4
    assert np.max(np.abs(ours_arr - tf_probs)) < 1e-4


def test_retrain_on_2015_graph_pool3(served: LoopbackServer, tmp_path: Path) -> None:
    data = _colour_dataset(tmp_path / "colours")
    res = invoke(
        "retrain",
        str(data),
        "-m",
        "inception_v3_2015",
        "-o",
        str(tmp_path / "m"),
        "--epochs",
        "100",
        "--learning-rate",
        "0.01",
        "-f",
        "json",
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["test"]["accuracy"] == 1.0
    record = json.loads((Path(os.environ["IMGTOOL_HOME"]) / "models" / "inception_v3_2015" / "entry.json").read_text())
    assert record["conversions"]["features"]["ok"] is True


def test_second_url_is_a_mirror(
    tmp_path: Path, http_server: LoopbackServer, built: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = http_server.add("/mirror/cls.tar.gz", built["cls_tgz"].read_bytes())
    bad = http_server.add("/gone/cls.tar.gz", b"", fault="404")
    record = {
        "format": "savedmodel",
        "urls": [bad, good],
        "input_size": [SIZE, SIZE],
        "value_range": [0, 1],
        "output": "logits",
    }
    (tmp_path / "c.json").write_text(json.dumps({"models": {"mirrored": record}}))
    monkeypatch.setenv("IMGTOOL_CATALOG", str(tmp_path / "c.json"))
    res = invoke("classify", "-m", "mirrored", "-f", "jsonl", str(built["green"]))
    assert res.exit_code == 0, res.output
    assert _top1(res.stdout)["green"][1] == 2
    assert http_server.hits("/gone/cls.tar.gz") == 1 and http_server.hits("/mirror/cls.tar.gz") == 1
    http_server.set_fault("/mirror/cls.tar.gz", "404")
    invoke("models", "remove", "mirrored")
    res = invoke("classify", "-m", "mirrored", str(built["green"]))
    assert res.exit_code == 3 and "(tried 2 URLs; the last said)" in res.stderr


def test_local_graph_classify_then_retrain_uses_pool3(tmp_path: Path, built: dict) -> None:
    """The same local .pb converted for softmax:0 (classify) and pool_3:0 (retrain): two
    conversions, never one reused for the other."""
    import numpy as np

    with tarfile.open(built["graph_tgz"]) as tar:
        tar.extractall(tmp_path / "g", filter="data")
    pb = str(tmp_path / "g" / "classify_image_graph_def.pb")
    assert invoke("classify", "-m", pb, "--input-size", "32,32", str(built["red"])).exit_code == 0
    data = _colour_dataset(tmp_path / "colours")
    res = invoke("retrain", str(data), "-m", pb, "--input-size", "32,32", "-o", str(tmp_path / "m"), "--epochs", "5")
    assert res.exit_code == 0, res.output
    weights = np.load(tmp_path / "m" / "head.npz")["weights"]
    assert weights.shape == (modelgen.GRAPH2015_POOL3_DIM, 3)
