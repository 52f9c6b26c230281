"""Reliability, part 8 (issue 15, an attack from outside): what imgtool writes, and where.

One path check (imgtool/core/store.py) for everything written under IMGTOOL_HOME or beside a
user's folder: catalog names are one plain path component; retrain's -o never is or
holds the image folder or IMGTOOL_HOME; export's -o is never a device, FIFO or link, and
an unrelated file is replaced only with --force; a symbolic link is refused the same way
by both; a name too long is exit 2 before the work. Model folders copy a user's own
backbone (hard links only for files the cache owns); a full disk while writing
model.tflite is exit 4 with the previous folder unchanged; replace_dir is one atomic
swap under a lock on the parent, and what a killed run left is restored or removed by
the next; cache files honour the umask; one pruner for the export cache.

Full disks are real: a small tmpfs where this machine lets us mount one, and
`prlimit --fsize` sized to fail at the step in question either way.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import IMGTOOL, invoke, run
from tests.support.httpserver import LoopbackServer
from tests.test_storage_errors import (  # noqa: F401 - shared_tmp is a fixture
    DROP_TO_NOBODY,
    _leftovers,
    _one_error_line,
    _photos,
    _snapshot,
    run_as_nobody,
    shared_tmp,
)


def _env(**extra: str) -> dict[str, str]:
    """This test's environment (its IMGTOOL_HOME), read when called."""
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **extra}


# ---------------------------------------------------------------- helpers


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, int], Path]]:
    """mount(name, bytes) -> a fresh tmpfs of that size; skipped where mounting is refused."""
    mounted: list[Path] = []

    def mount(name: str, size: int) -> Path:
        d = tmp_path / name
        d.mkdir()
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True, text=True
        )
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()}); the prlimit variant covers it")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _retrain(
    data: Path,
    model: str,
    out: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    limit: int | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    argv = [IMGTOOL, "retrain", str(data), "-m", model, "-o", str(out), *extra]
    if limit is not None:
        argv = ["prlimit", f"--fsize={limit}", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=_env(**(env or {})))


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---------------------------------------------------------------- item 1: a full disk while writing model.tflite


@pytest.mark.parametrize("how", ["tmpfs", "prlimit"])
def test_full_disk_writing_model_tflite_is_exit_4_and_the_previous_folder_is_unchanged(
    how: str, fixtures: Path, embedder: str, tmp_path: Path, tmpfs: Callable[[str, int], Path]
) -> None:
    """The backbone (3.25 MB) fits, model.tflite (the backbone + the head) does not. Before,
    export_for_retrain swallowed the error: exit 0, "model.tflite export skipped", and
    the previous folder (with its model.tflite) was replaced by one without."""
    data = _photos(fixtures, tmp_path / "flowers")
    bb = Path(embedder).stat().st_size
    bn = ["--bottleneck-dir", str(tmp_path / "bn")]
    if how == "tmpfs":
        probe = tmp_path / "probe"
        assert _retrain(data, embedder, probe, "-q", *bn).returncode == 0
        # room for the previous folder and the new one's backbone, not for its model.tflite
        disk = tmpfs("disk", _du(probe) + bb + 400_000)
        out, limit = disk / "model", None
    else:
        out, limit = tmp_path / "model", bb + 2000  # backbone.tflite (a copy) fits, model.tflite (+ 8 kB head) not
    first = _retrain(data, embedder, out, "-q", *bn)
    assert first.returncode == 0, first.stderr
    before = _snapshot(out)
    assert "model.tflite" in before
    full = _retrain(data, embedder, out, "--seed", "5", *bn, limit=limit)
    assert full.returncode == 4, full.stderr
    line = _one_error_line(full.stderr)
    cause = "no space left on the device" if how == "tmpfs" else "file too large"
    assert line.startswith(f"Error: cannot write the model folder {out} ({out}/model.tflite): {cause}"), line
    assert line.endswith("; the previous model is unchanged")
    assert "export skipped" not in full.stderr and "replacing the previous model" not in full.stderr
    assert _snapshot(out) == before
    assert _leftovers(out.parent, "model") == []
    if how == "tmpfs":
        assert sorted(p.name for p in out.parent.iterdir()) == ["model"]


# ---------------------------------------------------------------- item 2: a user's backbone is copied, the cache's linked


def test_model_folder_copies_a_users_backbone_and_links_only_what_the_cache_owns(
    fixtures: Path, embedder: str, tmp_path: Path, http_server: LoopbackServer, isolated_home: Path
) -> None:
    data = _photos(fixtures, tmp_path / "flowers")
    own = tmp_path / "emb.tflite"
    shutil.copyfile(embedder, own)
    out = tmp_path / "m"
    assert invoke("retrain", str(data), "-m", str(own), "-o", str(out), "-q").exit_code == 0
    assert (out / "backbone.tflite").stat().st_ino != own.stat().st_ino
    photo = str(sorted((data / "daisy").iterdir())[0])
    before = invoke("classify", "-m", str(out), "-f", "jsonl", photo)
    assert before.exit_code == 0
    # `cp other.tflite emb.tflite` rewrites the file in place (same inode)
    with open(own, "r+b") as fh:
        fh.write((fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite").read_bytes())
        fh.truncate()
    after = invoke("classify", "-m", str(out), "-f", "jsonl", photo)
    assert after.exit_code == 0, after.output
    assert after.stdout == before.stdout  # the model folder did not change with it
    assert (out / "backbone.tflite").read_bytes() == Path(embedder).read_bytes()

    # a backbone the cache owns (downloaded) is still linked: same file system, never rewritten in place
    url = http_server.add("/emb.tflite", Path(embedder).read_bytes())
    linked = tmp_path / "m2"
    assert invoke("retrain", str(data), "-m", url, "-o", str(linked), "-q").exit_code == 0
    [cached] = (isolated_home / "models").glob("url-*/source/model.tflite")
    assert (linked / "backbone.tflite").stat().st_ino == cached.stat().st_ino


# ---------------------------------------------------------------- item 3: -o never holds the photos (or IMGTOOL_HOME)


def test_an_output_holding_the_image_folder_or_the_cache_is_refused_even_with_force(
    fixtures: Path, embedder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = tmp_path / "photos"
    data = _photos(fixtures, photos / "flowers", 3)
    held = _photos(fixtures, tmp_path / "held" / "test", 1)
    home = tmp_path / "cache" / "home"
    home.mkdir(parents=True)
    monkeypatch.setenv("IMGTOOL_HOME", str(home))
    before = _snapshot(tmp_path)
    for out, says in (
        (photos, f"contains the image folder ({data})"),
        (data, f"is the image folder ({data})"),
        (tmp_path / "cache", f"contains IMGTOOL_HOME ({home})"),
        (tmp_path / "held", f"contains a photo folder ({held})"),
    ):
        res = invoke("retrain", str(data), "-m", embedder, "-o", str(out), "--force", "--test-dir", str(held))
        assert res.exit_code == 2, res.output
        assert res.stderr.splitlines()[-1] == (
            f"Error: --output {out} {says}; replacing it would delete them: choose another path"
        ), res.stderr
    assert _snapshot(tmp_path) == before and home.is_dir()


# ---------------------------------------------------------------- item 4: catalog names are never paths


def test_catalog_names_that_are_not_plain_names_are_refused_before_any_path_is_made(
    tmp_path: Path, http_server: LoopbackServer, fixtures: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "a" / "home"
    monkeypatch.setenv("IMGTOOL_HOME", str(home))
    victims = [tmp_path / "thesis.docx", tmp_path / "thesis.pdf", tmp_path / "thesis.backup" / "ch1.tex"]
    for v in victims:
        v.parent.mkdir(parents=True, exist_ok=True)
        v.write_text("years of work")
    url = http_server.add("/m.tflite", (fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite").read_bytes())
    for name in ("../../thesis", "/abs/thesis", ".hidden", "a/b"):
        catalog = tmp_path / "catalog.json"
        catalog.write_text(json.dumps({"models": {name: {"format": "tflite", "urls": [url]}}}))
        res = run("models", "download", name, env={"IMGTOOL_CATALOG": str(catalog), "IMGTOOL_HOME": str(home)})
        assert res.returncode == 3, res.stderr
        assert _one_error_line(res.stderr) == (
            f"Error: catalog {catalog}: record name {name!r} cannot be used: it must be 1 to 128 letters, digits, "
            "'.', '_', '+' or '-', starting with a letter or digit; rename the record"
        )
    assert all(v.read_text() == "years of work" for v in victims)
    assert http_server.hits("/m.tflite") == 0

    from imgtool.core import locks, store
    from imgtool.core.errors import UsageError

    for bad in ("..", "../x", "x/y", "/x", "", ".x", "a\0b", "x" * 129):
        with pytest.raises(UsageError):
            store.entry_dir(bad)
        with pytest.raises(UsageError), locks.lock(bad):
            pass
    assert store.entry_dir("inception_v3") == home / "models" / "inception_v3"


# ---------------------------------------------------------------- item 5: export -o


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, fixtures: Path) -> Path:
    d = tmp_path_factory.mktemp("export")
    data = _photos(fixtures, d / "flowers", 4)
    out = d / "m"
    res = _retrain(
        data,
        str(fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"),
        out,
        "-q",
        env={"IMGTOOL_HOME": str(d / "home")},
    )
    assert res.returncode == 0, res.stderr
    return out


def test_export_output_is_never_a_device_fifo_or_link_and_replaces_an_unrelated_file_only_with_force(
    model_dir: Path, tmp_path: Path
) -> None:
    dev = tmp_path / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.tflite"
    link.symlink_to(tmp_path / "elsewhere.tflite")
    for target, says in (
        (dev, "is not a regular file (a device, FIFO or socket); it is never replaced: give a file path"),
        (fifo, "is not a regular file (a device, FIFO or socket); it is never replaced: give a file path"),
        (
            link,
            f"is a symbolic link (to {tmp_path / 'elsewhere.tflite'}); it is not followed or "
            "replaced: give the path it points to, or another path",
        ),
    ):
        for force in ([], ["--force"]):
            res = invoke("export", str(model_dir), "-o", str(target), *force)
            assert res.exit_code == 2, res.output
            assert res.stderr.splitlines()[-1] == f"Error: --output {target} {says}"
    assert stat.S_ISCHR(os.lstat(dev).st_mode) and stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink()
    assert not (tmp_path / "elsewhere.tflite").exists()

    notes = tmp_path / "notes.tflite"
    notes.write_text("not a model")
    res = invoke("export", str(model_dir), "-o", str(notes))
    assert res.exit_code == 2
    assert res.stderr.splitlines()[-1] == (
        f"Error: --output {notes} exists and is not a file imgtool wrote; choose "
        "another path, remove it, or pass --force to replace it"
    )
    assert notes.read_text() == "not a model"
    assert invoke("export", str(model_dir), "-o", str(notes), "--force").exit_code == 0
    assert notes.read_bytes()[4:8] == b"TFL3"
    again = invoke("export", str(model_dir), "-o", str(notes))  # an export of ours: replaced without --force
    assert again.exit_code == 0, again.output


# ---------------------------------------------------------------- items 7 and 29: crash-safe, concurrent-safe swaps


def _swap_many(final: str, n: int, q: multiprocessing.Queue) -> None:
    from imgtool.core import store

    try:
        for i in range(n):
            staging = Path(final).with_name(f".{Path(final).name}.partial-{os.getpid()}")
            staging.mkdir()
            token = f"{os.getpid()}-{i}"
            for name in ("a", "b", "c"):
                (staging / name).write_text(token)
            store.replace_dir(staging, Path(final))
        q.put("ok")
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        q.put(repr(err))


def test_two_processes_replacing_one_folder_take_turns(tmp_path: Path) -> None:
    """Before, the second writer saw the folder gone (renamed aside by the first), put its
    own in place, and the first one's rename failed with "Directory not empty" - and so
    did putting the previous copy back."""
    final = tmp_path / "out"
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_swap_many, args=(str(final), 40, q)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == ["ok"] * 3
    tokens = {(final / n).read_text() for n in ("a", "b", "c")}
    assert len(tokens) == 1  # one whole copy, not a mix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


KILL_MID_SWAP = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from imgtool.core import store
    store._exchange = lambda a, b: False  # a file system without an atomic swap: two renames
    real, calls = os.replace, []
    def replace(a, b):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # between the two renames
        return real(a, b)
    os.replace = replace
    final = Path(sys.argv[1])
    staging = final.with_name(f".{final.name}.partial-{os.getpid()}")
    staging.mkdir()
    (staging / "imgtool-model.json").write_text("{}")
    store.replace_dir(staging, final)
""")


def test_a_run_killed_between_the_renames_is_recovered_by_the_next(
    fixtures: Path, embedder: str, tmp_path: Path
) -> None:
    data = _photos(fixtures, tmp_path / "flowers", 3)
    out = tmp_path / "model"
    assert _retrain(data, embedder, out, "-q").returncode == 0
    before = _snapshot(out)
    killed = subprocess.run([sys.executable, "-c", KILL_MID_SWAP, str(out)], capture_output=True, env=_env())
    assert killed.returncode == -signal.SIGKILL
    left = _leftovers(tmp_path, "model")
    assert not out.exists() and sorted(n.split("-")[0] for n in left) == [".model.old", ".model.partial"]

    from imgtool.core import store

    assert store.clean_stale(tmp_path, ".model.")  # what the next run does first: the previous model is back
    assert _snapshot(out) == before and _leftovers(tmp_path, "model") == []

    subprocess.run([sys.executable, "-c", KILL_MID_SWAP, str(out)], capture_output=True, env=_env())
    again = _retrain(data, embedder, out, "-q", "--seed", "3")  # the next retrain: recovers, then replaces
    assert again.returncode == 0, again.stderr
    assert (out / "model.tflite").is_file() and _leftovers(tmp_path, "model") == []


def test_leftovers_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    from imgtool.core import store

    dead, live = _dead_pid(), os.getpid()
    names = [
        f".m.partial-{dead}",
        f".m.old-{dead}",
        f".m.partial-{live}",
        f".model.tflite.{dead}.tmp",
        f".entry.json.{dead}.1a2b3c4d.tmp",
        f".entry.json.{live}.1a2b3c4d.tmp",
        f"k.{dead}.incomplete",
        f"k.{dead}.staging",
        f"tf.{dead}.0badc0de.scratch",
        "m",
        "notes.tmp",
        ".m.partial-x",
    ]
    for n in names:
        if n.endswith(("staging", "scratch")) or "partial" in n or "old" in n or n == "m":
            (tmp_path / n).mkdir()
            (tmp_path / n / "f").write_text(n)
        else:
            (tmp_path / n).write_text(n)
    store.clean_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".m.partial-{live}", f".entry.json.{live}.1a2b3c4d.tmp", "m", "notes.tmp", ".m.partial-x"]
    )
    assert (tmp_path / "m" / "f").read_text() == "m"  # m existed: the dead run's .old copy was only removed
    (tmp_path / "m").rename(tmp_path / f".m.old-{dead}")
    store.clean_stale(tmp_path, ".m.")
    assert (tmp_path / "m" / "f").read_text() == "m"  # m was missing: its .old copy is put back


def test_two_retrains_to_one_output_both_succeed(fixtures: Path, embedder: str, tmp_path: Path) -> None:
    data = _photos(fixtures, tmp_path / "flowers", 4)
    out = tmp_path / "model"
    procs = [
        subprocess.Popen(
            [IMGTOOL, "retrain", str(data), "-m", embedder, "-o", str(out), "-q", "--seed", str(s)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for s in (1, 2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert invoke("classify", "-m", str(out), str(sorted((data / "daisy").iterdir())[0])).exit_code == 0
    assert _leftovers(tmp_path, "model") == []


def test_a_symlinked_output_is_refused_and_left_alone(fixtures: Path, embedder: str, tmp_path: Path) -> None:
    data = _photos(fixtures, tmp_path / "flowers", 3)
    real = tmp_path / "v1"
    assert invoke("retrain", str(data), "-m", embedder, "-o", str(real), "-q").exit_code == 0
    before = _snapshot(real)
    link = tmp_path / "current"
    link.symlink_to("v1")
    for force in ([], ["--force"]):
        res = invoke("retrain", str(data), "-m", embedder, "-o", str(link), *force)
        assert res.exit_code == 2, res.output
        assert res.stderr.splitlines()[-1] == (
            f"Error: --output {link} is a symbolic link (to v1); it is not followed "
            "or replaced: give the path it points to, or another path"
        )
    assert link.is_symlink() and os.readlink(link) == "v1" and _snapshot(real) == before


# ---------------------------------------------------------------- item 13: cache files honour the umask


def test_a_cache_filled_by_root_is_usable_by_another_user(
    fixtures: Path, shared_tmp: Path, http_server: LoopbackServer
) -> None:
    url = http_server.add("/m.tflite", (fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite").read_bytes())
    home = shared_tmp / "home"
    data = _photos(fixtures, shared_tmp / "flowers", 3)
    env = {"IMGTOOL_HOME": str(home)}
    old = os.umask(0o022)
    try:
        assert run("models", "download", url, "-q", env=env).returncode == 0
        emb = str(fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
        assert run("retrain", str(data), "-m", emb, "-o", str(shared_tmp / "m"), "-q", env=env).returncode == 0
    finally:
        os.umask(old)
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "entry.json" for p in files) and any(p.suffix == ".f32" for p in files)
    assert [str(p) for p in files if stat.S_IMODE(p.stat().st_mode) & 0o044 != 0o044] == []
    photo = str(sorted((data / "daisy").iterdir())[0])
    for offline in ("1", "0"):
        res = run_as_nobody("classify", "-m", url, "-k", "1", photo, env={**env, "IMGTOOL_OFFLINE": offline})
        assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------- item 23: IMGTOOL_HOME that is not a folder


def test_imgtool_home_that_is_a_file_is_exit_2_at_start(tmp_path: Path) -> None:
    f = tmp_path / "home"
    f.write_text("")
    for value, why in ((f, "it is not a folder"), (f / "sub", f"{f} is not a folder")):
        for argv in (["labels"], ["models", "list"], ["classify", str(tmp_path)]):
            res = run(*argv, env={"IMGTOOL_HOME": str(value)})
            assert res.returncode == 2, res.stderr
            assert res.stderr == (
                f"Error: IMGTOOL_HOME={str(value)!r} is not valid: it takes a directory for the "
                f"model, bottleneck and export caches ({why}); fix or unset it\n"
            )
    from imgtool.core import settings
    from imgtool.core.errors import SettingError

    with pytest.raises(SettingError):
        settings.parse({"IMGTOOL_HOME": str(f)})
    assert settings.parse({"IMGTOOL_HOME": str(tmp_path / "new" / "home")}).home == tmp_path / "new" / "home"


# ---------------------------------------------------------------- item 25: names too long


def test_a_name_too_long_is_exit_2_before_the_work(
    fixtures: Path, embedder: str, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _photos(fixtures, tmp_path / "flowers", 3)
    long = "x" * 250
    res = invoke("retrain", str(data), "-m", embedder, "-o", str(tmp_path / long))
    assert res.exit_code == 2, res.output
    assert res.stderr.splitlines()[-1].startswith(
        f"Error: --output {tmp_path / long}: the name is too long (250 bytes in one part"
    )
    assert "Computing" not in res.stderr and "Fitting" not in res.stderr
    folder = _photos(fixtures, tmp_path / "p" / long, 3)  # its default output, `<name>-model`, cannot be made
    monkeypatch.chdir(tmp_path)
    res = invoke("retrain", str(folder), "-m", embedder)
    assert res.exit_code == 2, res.output
    assert "the name is too long (256 bytes in one part" in res.stderr.splitlines()[-1]
    res = invoke("export", str(model_dir), "-o", str(tmp_path / f"{long}.tflite"))
    assert res.exit_code == 2 and "the name is too long" in res.stderr.splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flowers", "p"]


# ---------------------------------------------------------------- item 27: one pruner for the export cache


def test_the_export_cache_pruner_skips_its_special_folders(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from imgtool.models.catalog import ModelConfig
    from imgtool.models.recipe import Recipe
    from imgtool.runtime import tfutil
    from imgtool.training import model_folder
    from imgtool.training.fitting import Head

    root = isolated_home / "exports"
    for special, name in (("tflite", "abc.tflite"), ("checks", "abc.json")):
        (root / special).mkdir(parents=True)
        (root / special / name).write_text("kept")
        os.utime(root / special, (1, 1))  # older than every export

    def fake_export(backbone_dir, size, vr, w, b, classes, saved_model_dir):  # noqa: ANN001, ANN202
        saved_model_dir.mkdir(parents=True)
        (saved_model_dir / "saved_model.pb").write_bytes(w.tobytes())

    monkeypatch.setattr(tfutil, "export_classifier", fake_export)
    src = tmp_path / "sm"
    src.mkdir()
    backbone = Recipe(ref="sm", config=ModelConfig(name="sm", format="savedmodel"), tf_source=src)
    for i in range(5):
        staging = tmp_path / f"s{i}"
        staging.mkdir()
        head = Head(np.full((4, 2), i, np.float32), np.zeros(2, np.float32))
        model_folder._tf_exports(staging, backbone, (8, 8), head, ["a", "b"], "ident")
        time.sleep(0.02)
    kept = sorted(p.name for p in root.iterdir())
    assert "tflite" in kept and "checks" in kept and len(kept) == 2 + model_folder.EXPORT_CACHE_KEEP
    assert (root / "tflite" / "abc.tflite").read_text() == "kept" and (root / "checks" / "abc.json").is_file()


# ---------------------------------------------------------------- item 31: a full disk names the file


def test_a_full_disk_during_export_names_the_file(
    model_dir: Path, tmp_path: Path, tmpfs: Callable[[str, int], Path]
) -> None:
    disk = tmpfs("small", 1_000_000)  # model.tflite is 3.3 MB
    target = disk / "flowers.tflite"
    res = run("export", str(model_dir), "-o", str(target))
    assert res.returncode == 4, res.stderr
    assert _one_error_line(res.stderr) == (
        f"Error: cannot write the export {target}: no space left on the device; "
        "free some space or choose another --output"
    )
    assert list(disk.iterdir()) == []
    target = tmp_path / "flowers.tflite"
    res = subprocess.run(
        ["prlimit", "--fsize=1000000", IMGTOOL, "export", str(model_dir), "-o", str(target)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert res.returncode == 4
    assert _one_error_line(res.stderr).startswith(f"Error: cannot write the export {target}: file too large")
    assert not target.exists()


def test_a_cache_that_cannot_be_made_names_the_cache(fixtures: Path, http_server: LoopbackServer) -> None:
    """As a user whose HOME is /nonexistent (nobody), with IMGTOOL_HOME unset: before,
    "/nonexistent: permission denied; free some space, fix the permissions or write elsewhere"."""
    url = http_server.add("/m.tflite", (fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite").read_bytes())
    env = {k: v for k, v in _env().items() if k not in ("IMGTOOL_HOME", "XDG_CACHE_HOME")}
    env["HOME"] = "/nonexistent"
    res = subprocess.run(
        [sys.executable, "-c", DROP_TO_NOBODY, "models", "download", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 4, res.stderr
    assert _one_error_line(res.stderr) == (
        "Error: cannot write the model cache (/nonexistent): permission denied; "
        "make it writable or set IMGTOOL_HOME to a writable folder with space"
    )
