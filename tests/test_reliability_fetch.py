"""Reliability, part 9 (issue 15, an attack from outside): downloads and archives.

A server that trickles a byte a second fails within about IMGTOOL_TIMEOUT (a minimum
rate, not only a read timeout); malformed responses (two Content-Length headers that
disagree, Content-Encoding: gzip on bytes that are not) are exit 3 in one line; archive
bombs (a 1 MB tar.gz that unpacks to 1.2 GB, an archive of 10,001 files) are refused
on their headers, before anything is written; a .tflite download is stored once (it
needs its size once in IMGTOOL_HOME, not twice); a TF conversion killed midway leaves
nothing in the system's temporary folder, and the next run removes what it left.

Every server is a tests.support.httpserver.LoopbackServer on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import run
from tests.support.httpserver import LoopbackServer
from tests.test_models_remote import _top1, built, served  # noqa: F401 - fixtures
from tests.test_reliability_writes import _one_error_line, tmpfs  # noqa: F401 - tmpfs is a fixture

pytestmark = pytest.mark.slow

ROUTE = "/hub/cls.tar.gz"  # the default model (inception_v3) in test_models_remote's _catalog()
ENTRY = "inception_v3"


def _nothing_cached(home: Path) -> bool:
    tmp = home / "tmp"
    return not (home / "models" / ENTRY / "entry.json").exists() and (not tmp.exists() or not any(tmp.iterdir()))


# ---------------------------------------------------------------- item 16: a trickle fails


def test_a_server_trickling_a_byte_a_second_fails_within_the_timeout(
    http_server: LoopbackServer, fixtures: Path, isolated_home: Path
) -> None:
    """Before, every byte reset the read timeout: 300 bytes at 1 byte/s took 300 s, and a
    bigger file never ended."""
    body = (fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite").read_bytes()[:300]
    url = http_server.add("/slow.tflite", body, chunk_size=1, delay_per_chunk=1.0)
    parrot = str(fixtures / "imagenet" / "images" / "parrot.jpg")
    t0 = time.monotonic()
    res = run("classify", "-m", url, parrot, env={"IMGTOOL_TIMEOUT": "3", "IMGTOOL_RETRIES": "1"}, timeout=120)
    took = time.monotonic() - t0
    assert res.returncode == 3, res.stderr
    line = _one_error_line(res.stderr)
    assert line.startswith(f"Error: could not download {url}: {url}: the server sent ")
    assert line.endswith(": slower than 1024 bytes/s (set IMGTOOL_TIMEOUT to average over longer)")
    assert took < 30, took  # ~3 s of trickle, plus the start of the process
    print(f"trickle: failed after {took:.1f} s (IMGTOOL_TIMEOUT=3, one attempt)")
    assert not list((isolated_home / "models").glob("*/entry.json"))


def test_a_slow_but_steady_download_is_not_cut(http_server: LoopbackServer, fixtures: Path) -> None:
    model = (fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite").read_bytes()
    url = http_server.add("/steady.tflite", model, chunk_size=256 * 1024, delay_per_chunk=0.25)  # ~1 MB/s, ~3.5 s
    res = run(
        "classify",
        "-m",
        url,
        "-k",
        "1",
        "-f",
        "jsonl",
        str(fixtures / "imagenet" / "images" / "parrot.jpg"),
        env={"IMGTOOL_TIMEOUT": "1", "IMGTOOL_RETRIES": "1"},
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["predictions"][0]["label"] == "macaw"


# ---------------------------------------------------------------- item 22: malformed responses


@pytest.mark.parametrize(
    "fault,headers,says",
    [
        (
            "double_length",
            {},
            "the server's response is malformed (Content-Length contained multiple unmatching "
            "values (3610798, 3610799)); try another URL or mirror",
        ),
        (
            None,
            {"Content-Encoding": "gzip"},
            "the server's response is malformed (its body is not the 'gzip' data its "
            "Content-Encoding says); try another URL or mirror",
        ),
    ],
    ids=["two-lengths", "gzip-on-raw-bytes"],
)
def test_a_malformed_response_is_exit_3_in_one_line(
    fault: str | None, headers: dict, says: str, fixtures: Path, http_server: LoopbackServer, isolated_home: Path
) -> None:
    model = (fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite").read_bytes()
    url = http_server.add("/m.tflite", model, fault=fault, headers=headers)
    res = run("classify", "-m", url, str(fixtures / "imagenet" / "images" / "parrot.jpg"), env={"IMGTOOL_RETRIES": "1"})
    assert res.returncode == 3, res.stderr
    assert _one_error_line(res.stderr) == f"Error: could not download {url}: {url}: {says}"
    assert not list((isolated_home / "models").glob("*/entry.json")) and not any((isolated_home / "tmp").iterdir())


# ---------------------------------------------------------------- item 8: archive bombs


def _member(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    return info.tobuf(tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512)


def _model_members(folder: Path) -> bytes:
    out = b""
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out += _member(str(p.relative_to(folder)), p.read_bytes())
    return out


def size_bomb(model_dir: Path, unpacked: int) -> bytes:
    """A real model, then one member of `unpacked` zero bytes, as a tar.gz of about 1 kB
    per MB: gzip members of 1 MiB of zeros, concatenated (a valid gzip stream)."""
    mib = 1 << 20
    assert unpacked % mib == 0
    info = tarfile.TarInfo("variables/padding.bin")
    info.size, info.mode, info.mtime = unpacked, 0o644, 0
    zeros = gzip.compress(b"\0" * mib, 9)
    return (
        gzip.compress(_model_members(model_dir) + info.tobuf(tarfile.GNU_FORMAT))
        + zeros * (unpacked // mib)
        + gzip.compress(b"\0" * 10240)
    )


def count_bomb(model_dir: Path, members: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(model_dir, arcname=".")
        for i in range(members):
            info = tarfile.TarInfo(f"assets/{i:06d}")
            tar.addfile(info, io.BytesIO(b""))
    return buf.getvalue()


def test_an_archive_that_unpacks_past_the_cap_is_refused_before_writing(
    served: LoopbackServer,
    built: dict,
    isolated_home: Path,
    tmp_path: Path,
    tmpfs: Callable[[str, int], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1.2 GB from 1.3 MB. IMGTOOL_HOME is a 64 MB tmpfs: before, extraction filled it
    (exit 4, "no space left"); now the headers are read first and nothing is written."""
    from imgtool.models import archives

    bomb = size_bomb(built["cls_dir"], 1200 << 20)
    assert len(bomb) < 2_000_000
    served.add(ROUTE, bomb)
    home = tmpfs("home", 64 << 20)
    monkeypatch.setenv("IMGTOOL_HOME", str(home))
    res = run("models", "download", ENTRY)
    assert res.returncode == 3, res.stderr
    assert _one_error_line(res.stderr) == (
        f"Error: {ENTRY}: archive refused: it unpacks to more than "
        f"{archives.MAX_EXTRACT_BYTES / 1e6:,.0f} MB (the cap for a model "
        "archive); the download is not a model (or not one imgtool takes)"
    )
    assert _nothing_cached(home)
    served.add(ROUTE, built["cls_tgz"].read_bytes())  # a real model of the same archive kind still installs
    assert run("models", "download", ENTRY, "-q").returncode == 0


def test_an_archive_of_too_many_files_is_refused(served: LoopbackServer, built: dict, isolated_home: Path) -> None:
    """Before: 10,001 files unpacked and listed in entry.json (200,001 took 113 s and left
    a 5.3 MB entry.json read on every later run)."""
    from imgtool.models import archives

    served.add(ROUTE, count_bomb(built["cls_dir"], archives.MAX_MEMBERS + 1))
    res = run("models", "download", ENTRY)
    assert res.returncode == 3, res.stderr
    assert _one_error_line(res.stderr) == (
        f"Error: {ENTRY}: archive refused: it holds more than "
        f"{archives.MAX_MEMBERS:,} files, more than any model needs; the "
        "download is not a model (or not one imgtool takes)"
    )
    assert _nothing_cached(isolated_home)


def test_an_archive_bigger_than_the_free_space_is_exit_4_before_writing(
    served: LoopbackServer, built: dict, tmpfs: Callable[[str, int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    served.add(ROUTE, size_bomb(built["cls_dir"], 200 << 20))  # under the cap, over the free space
    home = tmpfs("home", 32 << 20)
    monkeypatch.setenv("IMGTOOL_HOME", str(home))
    res = run("models", "download", ENTRY)
    assert res.returncode == 4, res.stderr
    line = _one_error_line(res.stderr)
    assert (
        line.startswith(f"Error: cannot write the model cache ({home}/tmp/{ENTRY}.")
        and "no space left on the device" in line
        and f"({ENTRY} unpacks to 210 MB, " in line
    ), line
    assert _nothing_cached(home)


# ---------------------------------------------------------------- item 32: a download is stored once


def test_a_tflite_download_needs_its_size_once(
    http_server: LoopbackServer, fixtures: Path, tmpfs: Callable[[str, int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """IMGTOOL_HOME a tmpfs of 1.4x the model: before, the download and its copy into the
    entry needed 2x (exit 4, "no space left")."""
    model = (fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite").read_bytes()
    url = http_server.add("/m.tflite", model)
    home = tmpfs("home", int(len(model) * 1.4))
    monkeypatch.setenv("IMGTOOL_HOME", str(home))
    res = run("classify", "-m", url, "-k", "1", "-f", "jsonl", str(fixtures / "imagenet" / "images" / "parrot.jpg"))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["predictions"][0]["label"] == "macaw"
    [cached] = home.glob("models/url-*/source/model.tflite")
    assert cached.read_bytes() == model and not any((home / "tmp").iterdir())


# ---------------------------------------------------------------- item 29: a conversion killed midway


def test_a_conversion_killed_midway_leaves_nothing_in_the_system_tmp_and_the_next_run_cleans_up(
    served: LoopbackServer, built: dict, isolated_home: Path, tmp_path: Path
) -> None:
    """TensorFlow's converter saves a temporary SavedModel (tempfile.mkdtemp): before, a
    SIGKILL left it in the system's temporary folder for good. Now it is under
    IMGTOOL_HOME/tmp, named with the PID, and removed by the next run, like a half-written
    conversion in the entry."""
    import signal
    import subprocess

    from tests.conftest import IMGTOOL
    from tests.test_reliability_writes import _dead_pid

    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(system_tmp)}
    proc = subprocess.Popen(
        [IMGTOOL, "models", "download", ENTRY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 240
    scratch: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        scratch = [p for p in (isolated_home / "tmp").glob("tf.*.scratch") if any(p.iterdir())]
        if scratch:
            break
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=30)
    assert scratch, "the converter never wrote into IMGTOOL_HOME/tmp"
    assert list(system_tmp.iterdir()) == []
    entry = isolated_home / "models" / ENTRY
    planted = entry / f".model.tflite.{_dead_pid()}.tmp"  # as a conversion killed while writing leaves it
    planted.write_bytes(b"half")
    again = run("classify", "-f", "jsonl", str(built["red"]), env={"TMPDIR": str(system_tmp)})
    assert again.returncode == 0, again.stderr
    assert _top1(again.stdout) == {"red": ("label 1", 1)}
    assert not planted.exists() and not any(p.exists() for p in scratch)
    assert [p.name for p in (isolated_home / "tmp").iterdir()] == [] and list(system_tmp.iterdir()) == []
    assert proc.returncode == -signal.SIGKILL
