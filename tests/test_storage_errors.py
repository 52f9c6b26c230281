"""Writes that fail for reasons a user must fix: a full disk / file-size limit
(`prlimit --fsize`), a read-only IMGTOOL_HOME, unreadable photos, an unwritable output
parent. Each ends in one `Error:` line and exit 4 (or, for the bottleneck cache, one
warning and a run that still succeeds), never a traceback, and never a half-written or
lost model folder.

The tests run as root, where permissions do not apply, so the permission cases run in a
child that drops to uid/gid 65534 (nobody) with os.setresuid. It drops *after* importing
what the run needs: the interpreter's own library may live where nobody cannot read
(here /root/.pyenv, mode 0700), and a lazy import failing after the drop would test that,
not imgtool. `setpriv` cannot be used for the same reason (it execs the interpreter as
nobody)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IMGTOOL, invoke, run

NOBODY = 65534

DROP_TO_NOBODY = textwrap.dedent("""
    import os, sys
    import imgtool.cli.main, imgtool.training.retraining, imgtool.inference.classifier, imgtool.training.evaluation, imgtool.training.model_folder, imgtool.training.report
    import imgtool.runtime.bottlenecks, imgtool.data.folders, imgtool.training.fitting, imgtool.numbers.metrics, imgtool.data.images, imgtool.runtime.engine
    import imgtool.models.resolve, imgtool.core.store, imgtool.data.labels, imgtool.core.output, imgtool.models.catalog, imgtool.models.download
    import numpy, PIL.Image, ai_edge_litert.interpreter, tqdm, platformdirs, filelock, requests
    import json, tempfile, zipfile, html, base64, concurrent.futures.thread, hashlib, shutil, importlib.readers, difflib
    import imgtool.runtime.facts
    import encodings.idna, encodings.cp437, encodings.ascii, encodings.latin_1, email.utils, http.client, urllib3
    PIL.Image.init()
    imgtool.models.catalog.load_catalog()
    os.setgroups([])
    os.setresgid({uid}, {uid}, {uid})
    os.setresuid({uid}, {uid}, {uid})
    assert os.geteuid() == {uid} and os.getegid() == {uid}
    sys.argv = ["imgtool", *sys.argv[1:]]
    imgtool.cli.main.main()
""").format(uid=NOBODY)


def run_as_nobody(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", DROP_TO_NOBODY, *args], capture_output=True, text=True, env=full, timeout=300
    )


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder uid 65534 can reach (pytest's tmp_path is under a 0700 folder)."""
    d = Path(tempfile.mkdtemp(prefix="imgtool-storage-"))
    d.chmod(0o755)
    yield d
    for p in [d, *d.rglob("*")]:  # make everything removable again
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def embedder(fixtures: Path) -> str:
    return str(fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")


def _photos(fixtures: Path, dest: Path, per_class: int = 4, classes: tuple[str, ...] = ("daisy", "roses")) -> Path:
    for c in classes:
        (dest / c).mkdir(parents=True)
        for f in sorted((fixtures / "flowers-mini" / c).iterdir())[:per_class]:
            shutil.copy(f, dest / c / f.name)
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def _mkdir(path: Path, mode: int) -> Path:
    path.mkdir()
    path.chmod(mode)  # not mkdir(mode=...): the umask would take bits away
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(parent: Path, name: str) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, stderr
    return errors[0]


# ---------------------------------------------------------------- the file-size limit (EFBIG)


@pytest.mark.parametrize("limit", [6000, 3000], ids=["model-folder", "cache-and-model-folder"])
def test_file_size_limit_is_one_line_exit_4_and_the_previous_model_is_intact(
    limit: int, fixtures: Path, embedder: str, tmp_path: Path, isolated_home: Path
) -> None:
    """6000 bytes: a bottleneck entry (4128 bytes) fits, head.npz (8 KB) does not.
    3000 bytes: the cache cannot be written either - said once, the run goes on."""
    data = _photos(fixtures, tmp_path / "flowers")
    out = tmp_path / "model"
    first = run("retrain", str(data), "-m", embedder, "-o", str(out), "-q", "--bottleneck-dir", str(tmp_path / "bn0"))
    assert first.returncode == 0, first.stderr
    before = _snapshot(out)
    full = subprocess.run(
        [
            "prlimit",
            f"--fsize={limit}",
            IMGTOOL,
            "retrain",
            str(data),
            "-m",
            embedder,
            "-o",
            str(out),
            "--seed",
            "5",
            "--bottleneck-dir",
            str(tmp_path / "bn"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert full.returncode == 4, full.stderr  # not -SIGXFSZ: the CLI ignores the signal and gets EFBIG
    line = _one_error_line(full.stderr)
    assert line.startswith(f"Error: cannot write the model folder {out}")
    assert line.endswith(
        "file too large for the file-size limit (ulimit -f) or the file system; "
        "raise the limit or choose another --output; the previous model is unchanged"
    )
    cache_warnings = [ln for ln in full.stderr.splitlines() if "cannot write the bottleneck cache" in ln]
    if limit == 3000:
        assert len(cache_warnings) == 1, full.stderr  # once, not once per photo
        assert "file too large" in cache_warnings[0] and "--bottleneck-dir" in cache_warnings[0]
        assert not list((tmp_path / "bn").rglob("*.f32")) and not list((tmp_path / "bn").rglob("*.tmp"))
    else:
        assert cache_warnings == []
        assert len(list((tmp_path / "bn").rglob("*.f32"))) == 8
    assert _snapshot(out) == before
    assert _leftovers(tmp_path, "model") == []
    quiet = subprocess.run(
        ["prlimit", f"--fsize={limit}", IMGTOOL, "retrain", str(data), "-m", embedder, "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert quiet.returncode == 4 and quiet.stderr.splitlines() == [line]  # -q: the error is the only line


def test_file_size_limit_on_a_new_folder_leaves_nothing(fixtures: Path, embedder: str, tmp_path: Path) -> None:
    data = _photos(fixtures, tmp_path / "flowers", 3)
    res = subprocess.run(
        ["prlimit", "--fsize=6000", IMGTOOL, "retrain", str(data), "-m", embedder, "-o", str(tmp_path / "new"), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert res.returncode == 4
    assert _one_error_line(res.stderr).endswith("; nothing was written")
    assert not (tmp_path / "new").exists() and _leftovers(tmp_path, "new") == []


# ---------------------------------------------------------------- permissions (as uid 65534)


def test_read_only_home_unreadable_photo_and_classify(fixtures: Path, embedder: str, shared_tmp: Path) -> None:
    data = _photos(fixtures, shared_tmp / "flowers", 4, ("daisy", "roses", "tulips"))
    locked = sorted((data / "roses").iterdir())[0]
    locked.chmod(0o000)
    home = shared_tmp / "home"
    _mkdir(home, 0o555)  # owned by root: read-only for nobody
    outdir = shared_tmp / "out"
    _mkdir(outdir, 0o777)
    env = {"IMGTOOL_HOME": str(home)}
    res = run_as_nobody("retrain", str(data), "-m", embedder, "-o", str(outdir / "m"), "-f", "json", env=env)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert f"warning: skipping {locked}: cannot read (Permission denied)" in warnings
    cache = [w for w in warnings if "bottleneck cache" in w]
    assert len(cache) == 1 and f"cannot write the bottleneck cache {home / 'bottlenecks'}" in cache[0]
    assert "(permission denied)" in cache[0]
    assert list(home.iterdir()) == []  # nothing written into the read-only home
    m = json.loads(res.stdout)
    assert [s["path"] for s in m["skipped"]] == [str(locked)]
    assert sum(m["counts"]["roses"].values()) == 3 and sum(m["counts"]["daisy"].values()) == 4
    model = outdir / "m"
    assert (model / "imgtool-model.json").is_file()
    # classify needs nothing written: a retrained folder and a .tflite never cached
    photo = str(sorted((data / "daisy").iterdir())[0])
    for ref in (str(model), str(fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite")):
        cls = run_as_nobody("classify", "-m", ref, "-f", "jsonl", "-k", "1", photo, env=env)
        assert cls.returncode == 0, cls.stderr
        assert json.loads(cls.stdout)["predictions"][0]["label"]
    assert list(home.iterdir()) == []
    # an unreadable photo given to classify: one error line, exit 1
    bad = run_as_nobody("classify", "-m", str(model), str(locked), photo, env=env)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert any(ln.startswith(f"error: {locked}:") for ln in bad.stderr.splitlines())


def test_read_only_home_that_must_download_is_exit_4(fixtures: Path, shared_tmp: Path, http_server) -> None:  # noqa: ANN001
    url = http_server.add("/m.tflite", (fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite").read_bytes())
    home = shared_tmp / "home"
    _mkdir(home, 0o555)
    photo = shared_tmp / "p.jpg"
    shutil.copy(sorted((fixtures / "imagenet" / "images").iterdir())[0], photo)
    photo.chmod(0o644)
    res = run_as_nobody("classify", "-m", url, str(photo), env={"IMGTOOL_HOME": str(home)})
    assert res.returncode == 4, res.stderr
    line = _one_error_line(res.stderr)
    assert line.startswith(f"Error: cannot write the model cache ({home}/")
    assert line.endswith(": permission denied; make it writable or set IMGTOOL_HOME to a writable folder with space")
    assert list(home.iterdir()) == []


def test_unwritable_output_parent(fixtures: Path, embedder: str, shared_tmp: Path) -> None:
    data = _photos(fixtures, shared_tmp / "flowers", 3)
    parent = shared_tmp / "models"
    _mkdir(parent, 0o755)  # root's: nobody may not create anything in it
    old = parent / "m"
    home = shared_tmp / "home"
    _mkdir(home, 0o777)
    env = {"IMGTOOL_HOME": str(home)}
    assert run("retrain", str(data), "-m", embedder, "-o", str(old), "-q", env=env).returncode == 0
    before = _snapshot(old)
    for target, tail in (
        (parent / "new", "; nothing was written"),
        (parent / "deep" / "new", "; nothing was written"),
        (old, "; the previous model is unchanged"),
    ):
        res = run_as_nobody("retrain", str(data), "-m", embedder, "-o", str(target), env=env)
        assert res.returncode == 4, res.stderr
        assert _one_error_line(res.stderr) == (
            f"Error: cannot write the model folder {target} ({parent}): permission "
            f"denied; make it writable or choose another --output{tail}"
        )
    assert _snapshot(old) == before and sorted(p.name for p in parent.iterdir()) == ["m"]


# ---------------------------------------------------------------- the messages, and what is converted


@pytest.mark.parametrize(
    "code,cause,fix",
    [
        (errno.ENOSPC, "no space left on the device", "free some space or "),
        (errno.EDQUOT, "disk quota exceeded", "free some space or "),
        (errno.EFBIG, "file too large for the file-size limit (ulimit -f) or the file system", "raise the limit or "),
        (errno.EROFS, "read-only file system", ""),
        (errno.EACCES, "permission denied", "make it writable or "),
        (errno.EPERM, "operation not permitted", "make it writable or "),
    ],
)
def test_storage_error_messages(code: int, cause: str, fix: str) -> None:
    from imgtool.core import store
    from imgtool.core.errors import EXIT_STORAGE, ImgtoolError

    err = store.storage_error(OSError(code, os.strerror(code), "/x/y"), "the thing", "go elsewhere", note="; ok")
    assert str(err) == f"cannot write the thing (/x/y): {cause}; {fix}go elsewhere; ok"
    assert isinstance(err, ImgtoolError) and isinstance(err, OSError)
    assert err.exit_code == EXIT_STORAGE == 4 and err.errno == code and err.filename == "/x/y"


def test_which_errors_are_storage_errors(tmp_path: Path) -> None:
    from imgtool.core import store

    inside, outside = str(tmp_path / "a" / "b"), "/elsewhere/file"
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):  # only writes fail so
        assert store.is_storage_error(OSError(code, "x", outside), tmp_path)
        assert store.is_storage_error(OSError(code, "x"), tmp_path)
    for code in (errno.EACCES, errno.EPERM):  # reads fail so too: only under the folder being written
        assert store.is_storage_error(OSError(code, "x", inside), tmp_path)
        assert not store.is_storage_error(OSError(code, "x", outside), tmp_path)
        assert not store.is_storage_error(OSError(code, "x"), tmp_path)
    assert not store.is_storage_error(OSError(errno.EIO, "x", inside), tmp_path)
    assert not store.is_storage_error(FileNotFoundError(errno.ENOENT, "x", inside), tmp_path)
    assert not store.is_storage_error(ValueError("x"), tmp_path)


def test_disk_full_in_process_removes_staging(
    fixtures: Path, embedder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC itself (a real full disk needs a mount this sandbox cannot make): report.html
    fails to write half-way through the folder."""
    data = _photos(fixtures, tmp_path / "flowers", 3)
    real_write_text = Path.write_text

    def full(self: Path, text: str, *a, **k) -> int:
        if self.name == "report.html":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    res = invoke("retrain", str(data), "-m", embedder, "-o", str(tmp_path / "m"))
    assert res.exit_code == 4
    assert res.stderr.splitlines()[-1] == (
        f"Error: cannot write the model folder {tmp_path / 'm'}: no space left on "
        "the device; free some space or choose another --output; nothing was written"
    )
    assert not (tmp_path / "m").exists() and _leftovers(tmp_path, "m") == []


def test_full_disk_during_a_tf_export_fails_the_folder_other_export_errors_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from imgtool.models.catalog import ModelConfig
    from imgtool.models.recipe import Recipe
    from imgtool.training import model_folder
    from imgtool.training.fitting import Head

    src = tmp_path / "sm"
    src.mkdir()
    (src / "saved_model.pb").write_bytes(b"x")
    backbone = Recipe(ref="sm", config=ModelConfig(name="sm", format="savedmodel"), tf_source=src)
    head = Head(np.zeros((4, 2), np.float32), np.zeros(2, np.float32))
    metrics = {"classes": ["a", "b"]}

    def failing(exc: Exception):  # noqa: ANN202
        def _tf_exports(staging: Path, *a, **k):  # noqa: ANN202
            raise exc

        return _tf_exports

    monkeypatch.setattr(model_folder, "_tf_exports", failing(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError) as info:
        model_folder.write_model_dir(tmp_path / "s1", backbone, (8, 8), head, ["a", "b"], metrics, "<html>", tmp_path)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.setattr(model_folder, "_tf_exports", failing(ValueError("converter said no")))
    record = model_folder.write_model_dir(
        tmp_path / "s2", backbone, (8, 8), head, ["a", "b"], metrics, "<html>", tmp_path
    )
    assert record["exports"] == {"error": "converter said no"}


def test_a_write_failure_no_library_code_named_is_still_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's last net: an OSError of the write kinds that escapes is exit 4, one line."""
    from imgtool import api

    def full(*a, **k):  # noqa: ANN202
        raise OSError(errno.ENOSPC, "No space left on device", "/var/somewhere/file")

    monkeypatch.setattr(api, "_resolve", full)
    res = invoke("labels")
    assert res.exit_code == 4
    assert res.stderr == (
        "Error: /var/somewhere/file: no space left on the device; free some space, fix the "
        "permissions or write elsewhere\n"
    )

    def other(*a, **k):  # noqa: ANN202
        raise OSError(errno.EIO, "Input/output error", "/dev/sdz")

    monkeypatch.setattr(api, "_resolve", other)
    with pytest.raises(OSError):  # not a write failure a user can fix: not dressed up as one
        invoke("labels")


def test_model_folder_errors_name_the_output_not_the_staging_name(tmp_path: Path) -> None:
    from imgtool.training import model_folder

    out, staging = tmp_path / "m", tmp_path / ".m.partial-123"
    enospc = "no space left on the device; free some space or choose another `output`"  # the CLI says --output

    def msg(filename: str | None, existed: bool = False) -> str:
        return str(
            model_folder.write_error(OSError(errno.ENOSPC, "No space left on device", filename), out, staging, existed)
        )

    assert (
        msg(str(staging / "saved_model" / "variables" / "v.data"))
        == f"cannot write the model folder {out} ({out}/saved_model/variables/v.data): {enospc}; nothing was written"
    )
    assert msg(str(staging)) == f"cannot write the model folder {out} ({tmp_path}): {enospc}; nothing was written"
    assert (
        msg(str(out), existed=True) == f"cannot write the model folder {out}: {enospc}; the previous model is unchanged"
    )
    assert msg(None) == f"cannot write the model folder {out}: {enospc}; nothing was written"
    other = OSError(errno.EIO, "Input/output error", str(staging / "head.npz"))
    assert model_folder.write_error(other, out, staging, False) is other  # not ours to dress up
