"""Build what the benchmarks need, offline, and cache it outside the repository.

Two layers, each keyed by a version string so a stale build is never reused:

    ~/.cache/imgtool-bench/                         ($IMGTOOL_BENCH_CACHE overrides)
      models-<MODELS_KEY>/                          built by TensorFlow, ~15-30 s
        inception_v3/            classification SavedModel (TF Hub layout)
        inception_v3_fv/         feature-vector SavedModel (TF Hub layout)
        inception_v3.tar.gz      the same, packed as TF Hub's ?tf-hub-format=compressed
        inception_v3_fv.tar.gz
        READY
      home-<HOME_KEY>/                              an IMGTOOL_HOME filled by imgtool itself
        models/inception_v3/...                     via `imgtool models download --features`
        READY                                       from a 127.0.0.1 LoopbackServer

MODELS_KEY covers the generator (tests/support/modelgen.py's source of the Inception builder)
and the TensorFlow/tf_keras versions; HOME_KEY adds imgtool's version and the source of
the modules that download and convert (resolve.py, tfutil.py, download.py, store.py),
so an edit there re-runs the real download+conversion path once.

Run as a script (`python benchmarks/build.py OUT_DIR`) it builds the SavedModels and
tarballs into OUT_DIR; run.py does that in a child process so the benchmark driver never
imports TensorFlow itself.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Bump to invalidate every cached build (e.g. when this file's layout changes).
BENCH_BUILD_VERSION = "1"

FIXTURES = Path(os.environ.get("IMGTOOL_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def cache_root() -> Path:
    env = os.environ.get("IMGTOOL_BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "imgtool-bench"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def models_key() -> str:
    from tests.support import modelgen  # cheap: TensorFlow is imported inside its functions

    src = inspect.getsource(modelgen.make_inception_v3_savedmodel) + inspect.getsource(
        modelgen._reinit_variance_preserving) + inspect.getsource(modelgen.make_hub_tarball)
    return (f"v{BENCH_BUILD_VERSION}-tf{_version('tensorflow')}-tfk{_version('tf_keras')}-"
            f"{_digest(src)}")


def home_key() -> str:
    srcs = [(ROOT / "imgtool" / f).read_text(encoding="utf-8") for f in
            ("resolve.py", "tfutil.py", "download.py", "store.py", "catalog.py")]
    return f"{models_key()}-imgtool{_version('imgtool')}-litert{_version('ai-edge-litert')}-{_digest(*srcs)}"


def _prune(keep: Path, prefix: str, log=print) -> None:  # noqa: ANN001
    """Drop other cached builds of this kind (a key changes when its inputs change, so
    they are stale) and leftovers of interrupted builds older than an hour."""
    for p in keep.parent.glob(f"{prefix}*"):
        if p != keep and p.is_dir():
            log(f"removing the stale benchmark build {p}")
            shutil.rmtree(p, ignore_errors=True)
    for p in keep.parent.glob(f".{prefix}*"):
        if p.is_dir() and time.time() - p.stat().st_mtime > 3600:
            shutil.rmtree(p, ignore_errors=True)


def _build_savedmodels(out: Path) -> None:
    """(child process) Build both Inception v3 SavedModels and their hub tarballs."""
    from tests.support import modelgen

    for name, kind in (("inception_v3", "classification"), ("inception_v3_fv", "feature_vector")):
        t0 = time.perf_counter()
        modelgen.make_inception_v3_savedmodel(out / name, kind=kind)
        modelgen.make_hub_tarball(out / name, out / f"{name}.tar.gz")
        print(f"built {name} ({kind}) in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


def ensure_models(python: str, rebuild: bool = False, log=print) -> Path:  # noqa: ANN001
    d = cache_root() / f"models-{models_key()}"
    if (d / "READY").is_file() and not rebuild:
        return d
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.", dir=d.parent))
    log(f"building the Inception v3 SavedModels into {d} (TensorFlow, ~15-60 s; cached afterwards)")
    t0 = time.perf_counter()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([python, str(Path(__file__).resolve()), str(tmp)], env=env, cwd=str(ROOT))
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"building the benchmark models failed (exit {proc.returncode})")
    (tmp / "READY").write_text(json.dumps({"built": time.time(), "seconds": time.perf_counter() - t0}))
    if d.exists():
        shutil.rmtree(d)
    os.replace(tmp, d)
    _prune(d, "models-", log)
    return d


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for every child: no user imgtool settings, no proxies, loopback only."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("IMGTOOL_") and k.lower() not in
           ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "pythondontwritebytecode")}
    # Bytecode is cached (as after any normal install), but outside the repository:
    # imgtool/ gets no __pycache__ of ours, and the benchmark does not time compiling it.
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               IMGTOOL_NO_PROGRESS="1", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPYCACHEPREFIX=str(cache_root() / "pycache"))
    if "IMGTOOL_FIXTURES" in os.environ:
        env["IMGTOOL_FIXTURES"] = os.environ["IMGTOOL_FIXTURES"]
    env.update(extra or {})
    return env


def ensure_home(imgtool: str, models: Path, rebuild: bool = False, log=print) -> tuple[Path, dict]:  # noqa: ANN001
    """An IMGTOOL_HOME where the real `imgtool models download` path (HTTP download from
    a loopback server, extraction, conversion to .tflite, verification) put both models."""
    d = cache_root() / f"home-{home_key()}"
    if (d / "READY").is_file() and not rebuild:
        return d, json.loads((d / "READY").read_text())
    from tests.support.httpserver import LoopbackServer

    labels = FIXTURES / "imagenet" / "imagenet_labels.txt"  # 1001 lines, background first
    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.", dir=d.parent))
    home = tmp / "home"
    try:
        with LoopbackServer() as srv:
            cls_url = srv.add("/hub/inception_v3.tar.gz", (models / "inception_v3.tar.gz").read_bytes())
            fv_url = srv.add("/hub/inception_v3_fv.tar.gz", (models / "inception_v3_fv.tar.gz").read_bytes())
            lab_url = srv.add("/data/ImageNetLabels.txt", labels.read_bytes(), content_type="text/plain")
            # The built-in records, with only the URLs moved to the loopback server.
            records = {
                "inception_v3": {"format": "savedmodel", "urls": [cls_url], "input_size": [299, 299],
                                 "value_range": [0.0, 1.0], "output": "logits",
                                 "labels": {"format": "lines", "urls": [lab_url]},
                                 "features": "inception_v3_feature_vector"},
                "inception_v3_feature_vector": {"format": "savedmodel", "urls": [fv_url],
                                                "input_size": [299, 299], "value_range": [0.0, 1.0],
                                                "output": "features"},
            }
            catalog = tmp / "catalog.json"
            catalog.write_text(json.dumps({"models": records}))
            env = clean_env({"IMGTOOL_HOME": str(home), "IMGTOOL_CATALOG": str(catalog),
                             "IMGTOOL_TIMEOUT": "120"})
            log("filling a benchmark IMGTOOL_HOME with `imgtool models download --features` from "
                f"{srv.url} (download + conversion, once; ~30-90 s)")
            t0 = time.perf_counter()
            proc = subprocess.run([imgtool, "models", "download", "--features"], env=env, cwd=str(tmp),
                                  capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"`imgtool models download --features` failed (exit {proc.returncode}):\n"
                                 f"{proc.stderr}")
            hits = {p: srv.hits(p) for p in ("/hub/inception_v3.tar.gz", "/hub/inception_v3_fv.tar.gz",
                                             "/data/ImageNetLabels.txt")}
        entries = {}
        for key in ("inception_v3", "inception_v3_feature_vector"):
            rec = json.loads((home / "models" / key / "entry.json").read_text())
            conv = rec.get("conversions", {}).get("model", {})
            if not conv.get("ok"):
                raise SystemExit(f"{key}: conversion to .tflite failed: {conv}")
            entries[key] = {"tflite_bytes": conv.get("size"), "max_diff": conv.get("max_diff")}
        info = {"download_and_convert_seconds": round(seconds, 2), "server_hits": hits, "entries": entries,
                "stderr": proc.stderr.strip().splitlines()[-6:]}
        shutil.rmtree(home / "tmp", ignore_errors=True)
        shutil.rmtree(home / "locks", ignore_errors=True)
        (home / "READY").write_text(json.dumps(info, indent=2))
        if d.exists():
            shutil.rmtree(d)
        os.replace(home, d)
        _prune(d, "home-", log)
        return d, info
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: build.py OUT_DIR")
    _build_savedmodels(Path(sys.argv[1]))
