"""The default download cannot rot quietly: a catalog record's later sources (another
format, its own settings and pins), Kaggle's redirect + zip + credentials, pinned label
files, and the 2015 graph's batch-1 reshape on many photos. All on loopback."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgtool.models import archives, download
from tests.conftest import invoke, run
from tests.support import modelgen
from tests.support.httpserver import LoopbackServer

pytestmark = pytest.mark.slow

SIZE = 32
LABELS = ["background"] + [f"label {i}" for i in range(1, 1001)]
HUB = "/tfhub/google/imagenet/inception_v3/classification/5"
KAGGLE = "/api/v1/models/google/inception-v3/tensorFlow2/classification/2/download"
SLIM = "/download.tensorflow.org/models/inception_v3_2016_08_28_frozen.pb.tar.gz"
COLOURS = {
    "red": (250, 5, 5),
    "green": (5, 250, 5),
    "blue": (5, 5, 250),
    "brown": (150, 90, 40),
    "grey": (120, 130, 110),
}


def _zip_dir(root: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(root).as_posix())
    return buf.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | bytes]:
    d = tmp_path_factory.mktemp("sources")
    cls = modelgen.make_hub_classifier(d / "cls", size=SIZE)
    out: dict[str, Path | bytes] = {
        "hub_tgz": modelgen.make_hub_tarball(cls, d / "cls.tar.gz"),
        "hub_zip": _zip_dir(cls),
        "slim_tgz": modelgen.make_slim_frozen_archive(d / "slim.tar.gz", size=SIZE),
        "graph2015": modelgen.make_2015_archive(d / "inception-2015-12-05.tgz", size=SIZE),
    }
    photos = d / "photos"
    photos.mkdir()
    for name, rgb in COLOURS.items():
        Image.new("RGB", (64, 48), rgb).save(photos / f"{name}.png")
    out["photos"] = photos
    return out


def _photos(built: dict) -> list[str]:
    return sorted(str(p) for p in Path(built["photos"]).iterdir())


def _results(stdout: str) -> dict[str, list[tuple[str, int, float]]]:
    out = {}
    for line in stdout.splitlines():
        r = json.loads(line)
        out[Path(r["path"]).stem] = [(p["label"], p["index"], p["score"]) for p in r["predictions"]]
    return out


def _inception_catalog(
    tmp_path: Path, srv: LoopbackServer, built: dict, *, slim_sha: str | None = None, kaggle_url: str | None = None
) -> Path:
    """inception_v3 as the shipped catalog has it (hub, kaggle, then the slim frozen graph
    with its own settings and pins), pointed at loopback."""
    slim = Path(built["slim_tgz"]).read_bytes()
    srv.add(HUB, Path(built["hub_tgz"]).read_bytes())
    if kaggle_url is None:
        kaggle_url = srv.add(KAGGLE, b"", fault="404")
    srv.add(SLIM, slim)
    labels = ("\n".join(LABELS) + "\n").encode()
    srv.add("/data/ImageNetLabels.txt", labels)
    shipped = json.loads((Path(__file__).parent.parent / "imgtool" / "models" / "catalog.json").read_text())
    record = shipped["models"]["inception_v3"]
    record["urls"] = [srv.url + HUB, kaggle_url]
    record["input_size"] = [SIZE, SIZE]
    source = record["sources"][0]
    source.update(url=srv.url + SLIM, sha256=slim_sha or hashlib.sha256(slim).hexdigest(), size=len(slim))
    record["labels"].update(
        urls=[srv.url + "/data/ImageNetLabels.txt"], sha256=hashlib.sha256(labels).hexdigest(), size=len(labels)
    )
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"models": {"inception_v3": record}}))
    return path


def test_shipped_catalog_pins_the_byte_stable_files() -> None:
    from imgtool.models.catalog import load_catalog

    cat = load_catalog()
    for name in ("inception_v3", "mobilenet_v2"):
        assert cat[name].labels.sha256 == "536feacc519de3d418de26b2effb4d75694a8c4c0063e36499a46fa8061e2da9"
        assert cat[name].labels.size == 10484
    urls = [(u, c) for u, c in cat["inception_v3"].candidates()]
    assert [u.split("/")[2] for u, _ in urls] == ["tfhub.dev", "www.kaggle.com", "storage.googleapis.com"]
    third = urls[2][1]
    assert urls[2][0] == (
        "https://storage.googleapis.com/download.tensorflow.org/models/inception_v3_2016_08_28_frozen.pb.tar.gz"
    )
    assert (third.format, third.sha256, third.size) == (
        "graphdef",
        "7045b72a954af4dce36346f478610acdccbf149168fa25c78e54e32f0c723d6d",
        88668554,
    )
    assert (third.graph, third.input_tensor, third.output_tensor) == (
        "inception_v3_2016_08_28_frozen.pb",
        "input:0",
        "InceptionV3/Predictions/Softmax:0",
    )
    assert (third.input_size, third.value_range, third.output) == ((299, 299), (-1.0, 1.0), "probabilities")
    assert third.labels == cat["inception_v3"].labels and third.features == "inception_v3_feature_vector"
    first = urls[0][1]
    assert (first.format, first.output, first.value_range, first.sha256, first.input_tensor) == (
        "savedmodel",
        "logits",
        (0.0, 1.0),
        None,
        None,
    )


def test_source_settings_are_not_inherited_across_formats() -> None:
    from imgtool.models.catalog import ModelConfig

    cfg = ModelConfig.from_dict(
        "m",
        {
            "format": "graphdef",
            "urls": ["u1"],
            "sha256": "a" * 64,
            "size": 5,
            "graph": "g.pb",
            "input_tensor": "Mul:0",
            "output_tensor": "softmax:0",
            "value_range": [-1, 1],
            "output": "probabilities",
            "sources": [
                {"url": "u2", "format": "savedmodel", "value_range": [0, 1], "output": "logits"},
                {"url": "u3", "output_tensor": "other:0"},
            ],
        },
    )
    (u1, c1), (u2, c2), (u3, c3) = cfg.candidates()
    assert (u1, c1.sha256, c1.size, c1.graph) == ("u1", "a" * 64, 5, "g.pb")
    assert (u2, c2.format, c2.sha256, c2.size, c2.graph, c2.input_tensor) == (
        "u2",
        "savedmodel",
        None,
        None,
        None,
        None,
    )
    assert (c2.value_range, c2.output, c2.urls, c2.sources) == ((0.0, 1.0), "logits", ("u2",), ())
    assert (u3, c3.format, c3.graph, c3.input_tensor, c3.output_tensor, c3.sha256) == (
        "u3",
        "graphdef",
        "g.pb",
        "Mul:0",
        "other:0",
        None,
    )
    from imgtool.core.errors import ModelError

    with pytest.raises(ModelError, match=r"sources\[0\] has unknown fields: urls"):
        ModelConfig.from_dict("m", {"format": "tflite", "sources": [{"url": "x", "urls": []}]})
    with pytest.raises(ModelError, match=r"sources\[0\] needs a \"url\""):
        ModelConfig.from_dict("m", {"format": "tflite", "sources": [{"format": "tflite"}]})


def test_third_source_of_another_format_gives_the_same_labels_top1_and_scores(
    tmp_path: Path, http_server: LoopbackServer, built: dict, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    monkeypatch.setenv("IMGTOOL_CATALOG", str(_inception_catalog(tmp_path, http_server, built)))
    photos = _photos(built)
    first = invoke("classify", "-f", "jsonl", "-k", "3", *photos)
    assert first.exit_code == 0, first.output
    assert http_server.hits(HUB) == 1 and http_server.hits(SLIM) == 0
    hub = _results(first.stdout)
    assert [hub[c][0][:2] for c in ("red", "green", "blue")] == [("label 1", 1), ("label 2", 2), ("label 3", 3)]
    assert invoke("models", "remove", "all").exit_code == 0

    http_server.set_fault(HUB, "404")  # TF Hub gone, Kaggle gone: the frozen graph
    second = invoke("classify", "-f", "jsonl", "-k", "3", *photos)
    assert second.exit_code == 0, second.output
    assert http_server.hits(HUB) == 2 and http_server.hits(KAGGLE) == 1 and http_server.hits(SLIM) == 1
    slim = _results(second.stdout)
    assert slim.keys() == hub.keys()
    for name in hub:
        assert [p[:2] for p in slim[name]] == [p[:2] for p in hub[name]], name
        assert np.allclose([p[2] for p in slim[name]], [p[2] for p in hub[name]], atol=1e-4), name

    entry = isolated_home / "models" / "inception_v3"
    record = json.loads((entry / "entry.json").read_text())
    assert record["source"] == 2 and record["url"] == http_server.url + SLIM
    assert record["format"] == "graphdef" and record["graph"] == modelgen.SLIM_GRAPH
    cfg = record["config"]
    assert (cfg["format"], cfg["output"], cfg["value_range"], cfg["input_tensor"], cfg["output_tensor"]) == (
        "graphdef",
        "probabilities",
        [-1.0, 1.0],
        modelgen.SLIM_INPUT,
        modelgen.SLIM_OUTPUT,
    )
    assert record["conversions"]["model"]["ok"] is True

    # resolved from the cache, the model is the source that was used
    from imgtool.models.resolve import resolve

    model = resolve("inception_v3")
    assert (model.config.format, model.config.output, model.config.value_range) == (
        "graphdef",
        "probabilities",
        (-1.0, 1.0),
    )
    assert model.labels == LABELS and model.tflite == entry / "model.tflite"
    # and so is it in a fresh process, offline
    code = (
        "from imgtool.models.resolve import resolve; m = resolve('inception_v3');"
        "print(m.config.output, m.config.value_range, m.config.input_tensor)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "IMGTOOL_OFFLINE": "1"}
    )
    assert proc.stdout.strip() == "probabilities (-1.0, 1.0) input:0", proc.stderr
    third = run("classify", "-f", "jsonl", "-k", "3", *photos, env={"IMGTOOL_OFFLINE": "1"})
    assert third.returncode == 0 and _results(third.stdout) == slim
    assert http_server.hits(SLIM) == 1
    # a catalog that no longer lists that URL: the entry's recorded config still holds
    moved = json.loads(Path(os.environ["IMGTOOL_CATALOG"]).read_text())
    moved["models"]["inception_v3"]["sources"][0]["url"] = http_server.url + "/moved.tar.gz"
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    monkeypatch.setenv("IMGTOOL_CATALOG", str(tmp_path / "moved.json"))
    model = resolve("inception_v3")
    assert (model.config.format, model.config.output, model.config.value_range, model.config.output_tensor) == (
        "graphdef",
        "probabilities",
        (-1.0, 1.0),
        modelgen.SLIM_OUTPUT,
    )


def test_a_source_failing_its_pin_is_passed_over_and_named(
    tmp_path: Path, http_server: LoopbackServer, built: dict, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    monkeypatch.setenv("IMGTOOL_CATALOG", str(_inception_catalog(tmp_path, http_server, built, slim_sha="0" * 64)))
    http_server.set_fault(HUB, "404")
    res = run("classify", _photos(built)[0])
    assert res.returncode == 3
    err = res.stderr.strip().splitlines()[-1]
    assert err.startswith("Error: could not download inception_v3 (tried 3 URLs; the last said): ")
    assert SLIM in err and "checksum mismatch" in err
    assert not (isolated_home / "models" / "inception_v3").exists()
    assert list((isolated_home / "tmp").iterdir()) == []


def test_pinned_size_is_checked(tmp_path: Path, http_server: LoopbackServer, isolated_home: Path) -> None:
    url = http_server.add("/labels.txt", b"a\nb\n")
    dest = tmp_path / "labels.txt"
    with pytest.raises(download.DownloadError) as err:
        download.fetch([url], dest, size=5, what="labels")
    assert str(err.value) == (
        f"could not download labels: {url}: received 4 bytes, the catalog pins 5; the file was "
        "changed or cut short — nothing was cached"
    )
    assert not dest.exists()
    assert download.fetch([url], dest, size=4, sha256=hashlib.sha256(b"a\nb\n").hexdigest()) == url
    assert dest.read_bytes() == b"a\nb\n"


# ---------------------------------------------------------------- Kaggle


@pytest.mark.parametrize(
    "url,expected",
    [
        ("https://www.kaggle.com/api/v1/models/x/download", True),
        ("https://kaggle.com/x", True),
        ("https://WWW.Kaggle.COM/x", True),
        ("https://storage.kaggle.com/x", True),
        ("http://www.kaggle.com/x", False),  # never in clear text
        ("https://evilkaggle.com/x", False),
        ("https://kaggle.com.evil.org/x", False),
        ("https://storage.googleapis.com/kaggle-models/x", False),
        ("https://user@kaggle.com.evil.org/x", False),
    ],
)
def test_is_kaggle(url: str, expected: bool) -> None:
    assert download.is_kaggle(url) is expected


@pytest.fixture
def storage() -> LoopbackServer:
    """A second loopback server on another port: the signed storage URL Kaggle redirects to."""
    with LoopbackServer() as srv:
        yield srv


def _play_kaggle(monkeypatch: pytest.MonkeyPatch, kaggle: LoopbackServer) -> None:
    monkeypatch.setattr(download, "KAGGLE_HOSTS", (f"127.0.0.1:{kaggle.port}",))
    monkeypatch.setattr(download, "CREDENTIAL_SCHEMES", ("https", "http"))


@pytest.mark.parametrize("archive", ["hub_zip", "hub_tgz"])
def test_kaggle_redirect_zip_or_tar_and_credentials_only_to_kaggle(
    archive: str,
    tmp_path: Path,
    http_server: LoopbackServer,
    storage: LoopbackServer,
    built: dict,
    monkeypatch: pytest.MonkeyPatch,
    isolated_home: Path,
) -> None:
    body = built[archive] if isinstance(built[archive], bytes) else Path(built[archive]).read_bytes()
    signed = storage.add("/kaggle-models/abc/download.tar.gz", body)  # the name says tar.gz, whatever it is
    kaggle_url = http_server.add(KAGGLE, b"", fault="redirect", headers={"Location": signed + "?X-Goog-Signature=s1g"})
    monkeypatch.setenv("IMGTOOL_CATALOG", str(_inception_catalog(tmp_path, http_server, built, kaggle_url=kaggle_url)))
    http_server.set_fault(HUB, "404")
    _play_kaggle(monkeypatch, http_server)
    monkeypatch.setenv("KAGGLE_USERNAME", "ann")
    monkeypatch.setenv("KAGGLE_KEY", "s3cret")
    res = invoke("classify", "-f", "jsonl", *_photos(built))
    assert res.exit_code == 0, res.output
    assert [_results(res.stdout)[c][0][:2] for c in ("red", "green", "blue")] == [
        ("label 1", 1),
        ("label 2", 2),
        ("label 3", 3),
    ]
    assert http_server.hits(KAGGLE) == 1 and storage.hits("/kaggle-models/abc/download.tar.gz") == 1
    assert http_server.hits(SLIM) == 0
    sent = http_server.last_headers(KAGGLE)
    assert sent["Authorization"] == "Basic " + base64.b64encode(b"ann:s3cret").decode()
    assert not any(k.lower() == "authorization" for k in storage.last_headers("/kaggle-models/abc/download.tar.gz"))
    assert storage.last_query("/kaggle-models/abc/download.tar.gz") == "X-Goog-Signature=s1g"
    record = json.loads((isolated_home / "models" / "inception_v3" / "entry.json").read_text())
    assert record["source"] == 1 and record["config"]["output"] == "logits"
    assert (isolated_home / "models" / "inception_v3" / "source" / "saved_model.pb").is_file()


def test_no_credentials_without_the_variables_or_to_other_hosts(
    tmp_path: Path, http_server: LoopbackServer, storage: LoopbackServer, built: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = storage.add("/blob", Path(built["hub_tgz"]).read_bytes())
    start = http_server.add("/k", b"", fault="redirect", headers={"Location": target})
    _play_kaggle(monkeypatch, http_server)
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    download.fetch([start], tmp_path / "a")
    assert "Authorization" not in http_server.last_headers("/k")
    # with credentials, but the first host is not Kaggle: nobody gets them
    monkeypatch.setenv("KAGGLE_USERNAME", "ann")
    monkeypatch.setenv("KAGGLE_KEY", "s3cret")
    monkeypatch.setattr(download, "KAGGLE_HOSTS", ("kaggle.com",))
    download.fetch([start], tmp_path / "b")
    assert "Authorization" not in http_server.last_headers("/k")
    assert "Authorization" not in storage.last_headers("/blob")
    assert (tmp_path / "b").read_bytes() == Path(built["hub_tgz"]).read_bytes()


def test_redirect_loop_is_still_named(http_server: LoopbackServer, tmp_path: Path) -> None:
    url = http_server.add("/loop", b"", fault="redirect_loop")
    with pytest.raises(download.DownloadError, match="too many redirects"):
        download.fetch([url], tmp_path / "x")
    assert http_server.hits("/loop") == download.MAX_REDIRECTS + 1


def _zip(members: list[tuple[str, bytes, int | None]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    "members,why",
    [
        ([("../escape.txt", b"x", None)], "points outside the archive"),
        ([("/abs/escape.txt", b"x", None)], "points outside the archive"),
        ([("a/../../escape.txt", b"x", None)], "points outside the archive"),
        ([("link", b"/etc/passwd", 0o120777), ("saved_model.pb", b"x", None)], "is a symbolic link"),
        ([("fifo", b"", 0o010644)], "is not a regular file"),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink", "fifo"],
)
def test_unsafe_zip_is_refused(members: list, why: str, tmp_path: Path) -> None:
    archive = tmp_path / "download"  # no name to go by
    archive.write_bytes(_zip(members))
    from imgtool.core.errors import ModelError

    with pytest.raises(ModelError) as err:
        archives.extract_archive(archive, tmp_path / "out", what="m")
    assert str(err.value).startswith("m: unsafe archive refused (member ") and why in str(err.value)
    assert not (tmp_path / "escape.txt").exists() and list((tmp_path / "out").iterdir()) == []


def test_archive_kind_by_bytes(tmp_path: Path, built: dict) -> None:
    (tmp_path / "a.tar.gz").write_bytes(Path(built["hub_tgz"]).read_bytes()[:100])
    (tmp_path / "b.tar.gz").write_bytes(built["hub_zip"][:100])
    (tmp_path / "c.zip").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(20))
    assert [archives.archive_kind(tmp_path / n) for n in ("a.tar.gz", "b.tar.gz", "c.zip")] == ["tar", "zip", "tflite"]
    (tmp_path / "bad").write_bytes(b"PK\x03\x04 not really a zip")
    from imgtool.core.errors import ModelError

    with pytest.raises(ModelError, match=r"^m: not a readable \.zip archive"):
        archives.extract_archive(tmp_path / "bad", tmp_path / "out", what="m")


# ---------------------------------------------------------------- the 2015 graph: batch 1


def _graph2015_catalog(tmp_path: Path, srv: LoopbackServer, built: dict) -> Path:
    srv.add("/models/inception-2015-12-05.tgz", Path(built["graph2015"]).read_bytes())
    shipped = json.loads((Path(__file__).parent.parent / "imgtool" / "models" / "catalog.json").read_text())
    record = shipped["models"]["inception_v3_2015"]
    record.update(urls=[srv.url + "/models/inception-2015-12-05.tgz"], input_size=[SIZE, SIZE])
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"models": {"inception_v3_2015": record}}))
    return path


def _many_photos(root: Path, per_class: int) -> Path:
    rng = np.random.default_rng(7)
    for name, rgb in {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            arr = np.clip(np.array(rgb) + rng.normal(0, 25, size=(40, 40, 3)), 0, 255).astype("uint8")
            Image.fromarray(arr).save(root / name / f"{name}_{i:02d}.png")
    return root


def test_generated_2015_graph_has_the_batch_1_reshape(built: dict) -> None:
    import tensorflow as tf

    with tarfile.open(built["graph2015"]) as tar:
        pb = tar.extractfile("classify_image_graph_def.pb").read()
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(pb)
    shape = next(n for n in gd.node if n.name == "pool_3/_reshape/shape")
    assert list(tf.make_ndarray(shape.attr["value"].tensor)) == [1, modelgen.GRAPH2015_POOL3_DIM]


@pytest.mark.parametrize("engine", ["tflite", "tensorflow"])
def test_2015_graph_classifies_and_retrains_on_many_photos(
    engine: str, tmp_path: Path, http_server: LoopbackServer, built: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGTOOL_CATALOG", str(_graph2015_catalog(tmp_path, http_server, built)))
    if engine == "tensorflow":  # the fallback when conversion fails: TF runs the batch-1 graph too
        from imgtool.runtime import tfutil

        def no_conversion(*args, **kwargs):
            raise RuntimeError("conversion disabled by the test")

        monkeypatch.setattr(tfutil, "convert_graphdef", no_conversion)
    data = _many_photos(tmp_path / "colours", per_class=12)
    res = invoke("classify", "-m", "inception_v3_2015", "-f", "jsonl", "-k", "1", "--batch-size", "8", str(data))
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 36
    for r in rows:
        want = modelgen.CLASSIFIER_IDS[Path(r["path"]).parent.name]
        assert (r["predictions"][0]["index"], r["predictions"][0]["label"]) == (want, modelgen.GRAPH2015_LABELS[want])
    if engine == "tensorflow":
        assert "running inception_v3_2015 in TensorFlow" in res.stderr
    # each photo's score alone equals its score among the others
    alone = invoke("classify", "-m", "inception_v3_2015", "-f", "jsonl", "-k", "1", rows[5]["path"])
    assert json.loads(alone.stdout)["predictions"] == rows[5]["predictions"]

    out = tmp_path / "model"
    res = invoke(
        "retrain",
        str(data),
        "-m",
        "inception_v3_2015",
        "-o",
        str(out),
        "--epochs",
        "100",
        "--learning-rate",
        "0.01",
        "-f",
        "json",
        "-q",
    )
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert m["train"]["count"] + m["validation"]["count"] + m["test"]["count"] == 36
    assert m["test"]["accuracy"] == 1.0
    head = np.load(out / "head.npz")
    assert head["weights"].shape == (modelgen.GRAPH2015_POOL3_DIM, 3)


def test_a_source_that_is_not_a_model_is_passed_over(
    tmp_path: Path, http_server: LoopbackServer, built: dict, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    """A URL that answers 200 with something else (an HTML error page, a broken archive)
    does not stop the next source from being tried."""
    page = http_server.add("/login.html", b"<html>please sign in</html>", content_type="text/html")
    good = http_server.add("/mirror/cls.tar.gz", Path(built["hub_tgz"]).read_bytes())
    record = {
        "format": "savedmodel",
        "urls": [page, good],
        "input_size": [SIZE, SIZE],
        "value_range": [0, 1],
        "output": "logits",
    }
    (tmp_path / "c.json").write_text(json.dumps({"models": {"m": record}}))
    monkeypatch.setenv("IMGTOOL_CATALOG", str(tmp_path / "c.json"))
    res = invoke("classify", "-m", "m", "-f", "jsonl", *_photos(built))
    assert res.exit_code == 0, res.output
    assert _results(res.stdout)["blue"][0][:2] == ("class 3", 3)
    saved = json.loads((isolated_home / "models" / "m" / "entry.json").read_text())
    assert (saved["source"], saved["url"]) == (1, good)
    http_server.set_fault("/mirror/cls.tar.gz", "404")
    invoke("models", "remove", "m")
    res = invoke("classify", "-m", "m", *_photos(built))
    assert res.exit_code == 3
    assert res.stderr.strip().splitlines()[-1] == (
        f"Error: could not download m (tried 2 URLs; the last said): {good}: server answered HTTP 404; "
        "check the model name or URL; or use -m mobilenet_v2_quant, which ships with imgtool"
    )
