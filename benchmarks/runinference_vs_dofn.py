# One-off measurement script kept for the record (issue 18 item 5): needs the pre-RunInference tree
# extracted to /tmp/i18-old (git archive 74e5643 imgtool models | tar -x -C /tmp/i18-old).
"""One-off: the old DoFn (commit before RunInference) vs RunInference vs imgtool classify,
interleaved, on N photos; 1 and 2 worker threads; wall, CPU, peak RSS; start-up on 1 photo."""
import json, os, statistics, sys
from pathlib import Path
sys.path.insert(0, "/work/i18")
from benchmarks.run import run_child

FIX = Path("/work/shared/fixtures")
MODEL = FIX / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite"
BEAM = "/work/i18/.venv-beam/bin/python"
IMGTOOL = "/work/i18/.venv/bin/imgtool"
ws = Path("/tmp/i18-bench/ws"); ws.mkdir(exist_ok=True)
import shutil
for d in ws.iterdir():
    if d.name not in ("many", "one", "home"):
        shutil.rmtree(d)
N_COPIES = int(sys.argv[1]) if len(sys.argv) > 1 else 2
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
many = ws / "many"
if not many.exists():
    many.mkdir()
    for i in range(N_COPIES):
        for f in (FIX / "flowers-mini").rglob("*.jpg"):
            os.link(f, many / f"{i}-{f.parent.name}-{f.name}")
one = ws / "one"
if not one.exists():
    one.mkdir(); os.link(FIX / "imagenet/images/cat.bmp", one / "cat.bmp")
n = len(list(many.iterdir()))
env = dict(os.environ, IMGTOOL_HOME=str(ws / "home"), IMGTOOL_NO_PROGRESS="1", TF_CPP_MIN_LOG_LEVEL="2")
old_env = dict(env, PYTHONPATH="/tmp/i18-old")
res = {}
def beam(variant, src, workers, i):
    out = ws / f"{variant}-{workers}-{i}-{src.name}"
    e = old_env if variant == "dofn" else env
    r = run_child([BEAM, "-m", "imgtool.beam", "classify", "-m", str(MODEL), "-i", str(src), "-o", str(out / "x"),
                   "-q", "--", f"--direct_num_workers={workers}"], e, ws, check=False)
    if r.rc not in (0,):
        raise SystemExit(r.stderr[-2000:])
    recs = sum(len(p.read_text().splitlines()) for p in out.glob("x-*.jsonl"))
    assert recs == len(list(src.iterdir())), recs
    return r
def cli(src):
    r = run_child([IMGTOOL, "classify", "-m", str(MODEL), "-f", "jsonl", str(src)], env, ws)
    return r
for i in range(RUNS):
    for workers in (1, 2):
        for variant in ("dofn", "runinference"):
            r = beam(variant, many, workers, i)
            res.setdefault(f"{variant}_{workers}", []).append((n / r.wall, r.rss_mib, r.cpu))
        c = cli(many)
        res.setdefault(f"classify_{workers}", []).append((n / c.wall, c.rss_mib, c.cpu))
    for variant in ("dofn", "runinference"):
        r = beam(variant, one, 1, i)
        res.setdefault(f"startup_{variant}", []).append(r.wall)
        res.setdefault(f"startup_cpu_{variant}", []).append(r.cpu)
summary = {}
for k, v in res.items():
    if k.startswith("startup"):
        summary[k] = {"median_s": statistics.median(v), "all": v}
    else:
        summary[k] = {"img_s": statistics.median(x[0] for x in v), "rss_mib": statistics.median(x[1] for x in v),
                      "img_per_cpu_s": statistics.median(n / x[2] for x in v), "cpu_s": [round(x[2], 2) for x in v],
                      "all_img_s": [round(x[0], 1) for x in v], "all_rss": [round(x[1], 1) for x in v]}
for w in (1, 2):
    summary[f"ratios_{w}"] = {
        "runinference/dofn": statistics.median(a[0] / b[0] for a, b in zip(res[f"runinference_{w}"], res[f"dofn_{w}"])),
        "runinference/classify": statistics.median(a[0] / b[0] for a, b in zip(res[f"runinference_{w}"], res[f"classify_{w}"])),
        "dofn/classify": statistics.median(a[0] / b[0] for a, b in zip(res[f"dofn_{w}"], res[f"classify_{w}"])),
        "per_cpu runinference/dofn": statistics.median(b[2] / a[2] for a, b in zip(res[f"runinference_{w}"], res[f"dofn_{w}"])),
        "per_cpu runinference/classify": statistics.median(b[2] / a[2] for a, b in zip(res[f"runinference_{w}"], res[f"classify_{w}"])),
        "per_cpu dofn/classify": statistics.median(b[2] / a[2] for a, b in zip(res[f"dofn_{w}"], res[f"classify_{w}"])),
    }
summary["photos"] = n
summary["load"] = os.getloadavg()
print(json.dumps(summary, indent=1))
