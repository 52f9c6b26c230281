"""Cluster paths: s3:// input and output end to end against moto's S3 server, started by
the test on 127.0.0.1 (boto talks to nothing else: the endpoint is given, credentials are
dummies, config files and the instance metadata service are off); every filesystem
without its extra and every unknown runner is one usage line before anything is staged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import invoke

pytestmark = pytest.mark.beam


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch):
    """A fresh moto S3 server on 127.0.0.1 and a boto3 client for it."""
    pytest.importorskip("moto")
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    assert host == "127.0.0.1"
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="photos")
    try:
        yield endpoint, client
    finally:
        server.stop()


def _s3_flags(endpoint: str) -> list[str]:
    return [
        f"--s3_endpoint_url={endpoint}",
        "--s3_access_key_id=testing",
        "--s3_secret_access_key=testing",
        "--s3_region_name=us-east-1",
        "--direct_num_workers=2",
    ]


def test_s3_input_and_output_end_to_end(s3, mobilenet: str, photos: Path, tmp_path: Path) -> None:
    endpoint, client = s3
    names = sorted(p.name for p in photos.iterdir())
    for n in names:
        client.upload_file(str(photos / n), "photos", f"in/sub/{n}")
    client.put_object(Bucket="photos", Key="in/broken.jpg", Body=b"not a JPEG")
    res = invoke(
        "beam",
        "classify",
        "-m",
        mobilenet,
        "-i",
        "s3://photos/in/",
        "-o",
        "s3://photos/out/labels",
        "-k",
        "3",
        "--",
        *_s3_flags(endpoint),
    )
    assert res.exit_code == 1, res.output  # the broken photo; its record is written
    assert "Traceback" not in res.stderr and "5 photos classified, 1 failed" in res.stderr
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="photos", Prefix="out/")["Contents"])
    shards = [k for k in keys if k.startswith("out/labels-") and k.endswith(".jsonl")]
    assert shards and not [k for k in keys if "beam-temp" in k]
    import hashlib

    digest = hashlib.sha256(Path(mobilenet).read_bytes()).hexdigest()
    assert f"out/.imgtool-beam-staging/{digest}.tflite" in keys  # staged through S3, read back by the worker
    got = sorted(
        (
            json.loads(line)
            for k in shards
            for line in client.get_object(Bucket="photos", Key=k)["Body"].read().decode().splitlines()
        ),
        key=lambda r: r["path"],
    )
    from imgtool.inference.classifier import Classifier
    from imgtool.models.resolve import resolve

    want = {
        Path(r.path).name: r.to_dict()
        for r in Classifier(resolve(mobilenet)).classify([str(photos / n) for n in names], top_k=3)
    }
    assert [r["path"] for r in got] == ["s3://photos/in/broken.jpg"] + [f"s3://photos/in/sub/{n}" for n in names]
    assert got[0]["error"] == "not an image Pillow can read (unknown or corrupt format)"
    for r in got[1:]:
        assert r["predictions"] == want[r["path"].rsplit("/", 1)[1]]["predictions"]  # the records classify gives
    # the existing-output check reads S3 too (it needs the options before any Pipeline exists)
    again = invoke(
        "beam",
        "classify",
        "-m",
        mobilenet,
        "-i",
        "s3://photos/in/",
        "-o",
        "s3://photos/out/labels",
        "--",
        *_s3_flags(endpoint),
    )
    assert again.exit_code == 2 and "already match s3://photos/out/labels-*" in again.stderr


def test_s3_features_from_and_to_s3(s3, embedder: str, flowers: Path, tmp_path: Path) -> None:
    endpoint, client = s3
    for c in ("daisy", "roses"):
        for f in sorted((flowers / c).iterdir())[:3]:
            client.upload_file(str(f), "photos", f"flowers/{c}/{f.name}")
    res = invoke(
        "beam",
        "features",
        "-m",
        embedder,
        "-i",
        "s3://photos/flowers/",
        "-o",
        "s3://photos/feat/f",
        "--",
        *_s3_flags(endpoint),
    )
    assert res.exit_code == 0, res.output
    import io

    import pyarrow.parquet as pq

    keys = [o["Key"] for o in client.list_objects_v2(Bucket="photos", Prefix="feat/f-")["Contents"]]
    rows = [
        r
        for k in keys
        for r in pq.read_table(io.BytesIO(client.get_object(Bucket="photos", Key=k)["Body"].read())).to_pylist()
    ]
    assert sorted(r["class"] for r in rows) == ["daisy"] * 3 + ["roses"] * 3
    assert all(len(r["features"]) == 1024 and r["error"] is None for r in rows)


def _blocked(script: str, blocked: tuple[str, ...], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run `imgtool beam ...` in a child where the given top-level modules cannot be
    imported: a Python without that extra."""
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r} or name.startswith("google.cloud"):
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, Block())
        from imgtool.beam.cli import main
        main({script!r}.split())
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize(
    ("src", "out", "extra", "module"),
    [
        ("s3://b/in/", "{tmp}/o", "aws", "boto3"),
        ("{photos}", "gs://b/out/x", "gcp", "google.cloud.storage"),
        ("{photos}", "azfs://acct/c/x", "azure", "azure.storage.blob"),
        ("hdfs://nn/in/", "{tmp}/o", "hadoop", "hdfs"),
    ],
)
def test_a_scheme_without_its_extra_is_one_usage_line(
    src: str, out: str, extra: str, module: str, mobilenet: str, photos: Path, tmp_path: Path
) -> None:
    src, out = (x.format(tmp=tmp_path, photos=photos) for x in (src, out))
    proc = _blocked(f"classify -m {mobilenet} -i {src} -o {out}", ("boto3", "azure", "hdfs"), tmp_path)
    assert proc.returncode == 2, proc.stderr
    what, path = ("--input", src) if "://" in src else ("--output", out)
    scheme = path.split("://")[0]
    assert proc.stderr.splitlines() == [
        f"Error: {what} {path}: {scheme}:// needs Beam's {extra} extra ({module} is not installed in this Python); "
        f"pip install 'imgtool-ml[{extra}]'"
    ]
    assert not list(tmp_path.rglob("*.tflite"))  # nothing staged


def test_an_unknown_scheme_and_a_near_one(mobilenet: str, photos: Path, tmp_path: Path) -> None:
    res = invoke("beam", "classify", "-m", mobilenet, "-i", str(photos), "-o", "az://acct/c/x")
    assert res.exit_code == 2
    assert res.stderr.splitlines() == [
        "Error: --output az://acct/c/x: Beam has no filesystem for az:// "
        "(did you mean azfs://?) (schemes: gs://, s3://, azfs://, hdfs://, or a local path)"
    ]
    res = invoke("beam", "classify", "-m", mobilenet, "-i", "ftp://host/photos/", "-o", str(tmp_path / "x"))
    assert res.exit_code == 2 and "Beam has no filesystem for ftp://" in res.stderr


def test_an_unknown_runner_is_one_usage_line_before_staging(mobilenet: str, photos: Path, tmp_path: Path) -> None:
    res = invoke(
        "beam", "classify", "-m", mobilenet, "-i", str(photos), "-o", str(tmp_path / "x"), "--", "--runner=FnApiRuner"
    )
    assert res.exit_code == 2
    assert res.stderr.splitlines() == [
        "Error: unknown Beam runner 'FnApiRuner' (did you mean FnApiRunner?); runners: BundleBasedDirectRunner, "
        "DataflowRunner, DirectRunner, FlinkRunner, FnApiRunner, KafkaStreamsRunner, PortableRunner, PrismRunner, "
        "SparkRunner, SwitchingDirectRunner"
    ]
    assert not (tmp_path / ".imgtool-beam-staging").exists()
    for ok in (
        "--runner=fnapirunner",
        "--runner=FnApi",
        "--runner=apache_beam.runners.portability.fn_api_runner.FnApiRunner",
    ):
        from imgtool.beam import launcher

        launcher.check_runner(launcher.pipeline_options([ok]))  # Beam's own spellings pass


def test_dataflow_without_the_gcp_extra(mobilenet: str, photos: Path, tmp_path: Path) -> None:
    proc = _blocked(
        f"classify -m {mobilenet} -i {photos} -o {tmp_path}/x -- --runner=DataflowRunner", ("boto3",), tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "Error: --runner=DataflowRunner needs Beam's gcp extra, not installed in this "
        "Python; pip install 'imgtool-ml[gcp]'"
    ]
