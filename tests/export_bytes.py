"""Are two imgtool trees' exports byte-identical? A refactoring check of the TFLite layer:
the same photos, backbone and seed must give the same model.tflite bytes.

    python -m tests.export_bytes build IMGTOOL OUT      retrain with IMGTOOL into OUT
    python -m tests.export_bytes compare OUT_A OUT_B    exit 1 unless every file is the same

`build` retrains, once per --quantize choice (none, dynamic, float16, int8), on:
  - flowers-mini with the shared MobileNet V1 embedding extractor (uint8: the head is
    appended to the backbone's flatbuffer, float or uint8);
  - generated colour photos with the generated TF MLP feature vector of tests/support/modelgen.py
    (float: TFLiteConverter, then the metadata), and with --no-export (float: the head
    appended to the converted backbone's flatbuffer; int8 is refused there).
Its inputs (the generated backbone and photos) are made once under OUT/../inputs, so both
trees read the same files at the same paths; each tree gets its own IMGTOOL_HOME (no cache
is shared). `compare` compares every .tflite and head.npz, byte for byte."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FIXTURES = Path(os.environ.get("IMGTOOL_FIXTURES", ROOT.parent / "shared" / "fixtures"))
EMBEDDER = FIXTURES / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
QUANTIZE = ("none", "dynamic", "float16", "int8")


def _inputs(root: Path) -> tuple[Path, Path]:
    """(the generated TF backbone, the colour photos), made once (as tests/test_tflite_export.py makes them)."""
    from tests.support import modelgen

    backbone, photos = root / "mlp_feature_vector", root / "colours"
    if not backbone.is_dir():
        modelgen.make_hub_mlp_feature_vector(backbone)
    if not photos.is_dir():
        modelgen.make_colour_folders(photos)
    return backbone, photos


def build(imgtool: str, out: Path) -> None:
    backbone, colours = _inputs(out.parent / "inputs")
    env = {
        **os.environ,
        "IMGTOOL_HOME": str(out / "home"),
        "IMGTOOL_NO_PROGRESS": "1",
        "IMGTOOL_OFFLINE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    runs = [
        ("flowers", FIXTURES / "flowers-mini", EMBEDDER, []),
        ("tf", colours, backbone, ["--epochs", "100", "--learning-rate", "0.01"]),
        ("tf-no-export", colours, backbone, ["--epochs", "100", "--learning-rate", "0.01", "--no-export"]),
    ]
    for name, photos, model, extra in runs:
        for q in QUANTIZE:
            dest = out / f"{name}-{q}"
            cmd = [
                imgtool,
                "retrain",
                str(photos),
                "-m",
                str(model),
                "-o",
                str(dest),
                "--quantize",
                q,
                "--seed",
                "0",
                "--force",
                *extra,
            ]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            print(f"{dest.name}: exit {res.returncode}", file=sys.stderr)
            if res.returncode:
                print(res.stderr[-2000:], file=sys.stderr)


def compare(a: Path, b: Path) -> int:
    names = sorted(
        {p.relative_to(a) for p in a.glob("*/*") if p.suffix in (".tflite", ".npz") and p.parent.name != "home"}
        | {p.relative_to(b) for p in b.glob("*/*") if p.suffix in (".tflite", ".npz") and p.parent.name != "home"}
    )
    bad = 0
    for rel in names:
        if not (a / rel).is_file() or not (b / rel).is_file():
            print(f"{rel}: missing in {a if not (a / rel).is_file() else b}")
            bad += 1
        elif not filecmp.cmp(a / rel, b / rel, shallow=False):
            print(f"{rel}: DIFFERENT")
            bad += 1
        else:
            print(f"{rel}: identical ({(a / rel).stat().st_size:,} bytes)")
    print(f"{len(names) - bad} of {len(names)} files identical")
    return 1 if bad or not names else 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "build":
        build(argv[1], Path(argv[2]).resolve())
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        return compare(Path(argv[1]), Path(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
