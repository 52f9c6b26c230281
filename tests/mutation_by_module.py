"""Mutation testing one module at a time (docs/testing.md, "Mutation testing").

mutmut runs, per mutant, every selected test that reached the mutated function in its stats
pass, in a new pytest session. With the whole selection, a function such as
`scores.metadata_kind` is reached by 58 tests of several modules, and a survivor runs them
all. Here each module is mutated from its own copy of the committed tree (`git archive
HEAD`), with `only_mutate` cut to it and the test selection cut to its own library tests
(`TESTS`), so each mutant runs a few seconds of tests at most:

    IMGTOOL_FIXTURES=$PWD/../shared/fixtures IMGTOOL_TEST_MODEL_CACHE=/tmp/imgtool-test-models \\
        nice -n 19 .venv/bin/python -m tests.mutation_by_module [--work DIR] [MODULE ...]

Each module's copy is DIR/MODULE (default /tmp/imgtool-mutation); its verdicts stay there, so a
rerun goes on where the last one stopped. `mutmut results --all true` of each module is
written to DIR/MODULE/results.txt and the counts are printed.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_FEATURES = [
    f"tests/test_features.py::{name}"
    for name in (
        "test_walk_order_is_the_folder_scan_order",
        "test_read_shards_orders_rows_and_lists_failures",
        "test_training_set_splits_like_a_folder_run",
        "test_inconsistent_shards_are_refused",
        "test_missing_damaged_and_foreign_shards",
        "test_retrain_source_usage_errors",
    )
]

# each module's own library tests (heavy ones are deselected by pytest_add_cli_args)
TESTS: dict[str, list[str]] = {
    "numbers/scores": ["tests/test_scores.py"],
    "inference/classifier": ["tests/test_classify_real.py", "tests/test_scores.py"],
    "data/labels": ["tests/test_label_fit.py"],
    "data/distortions": ["tests/test_distort.py", "tests/test_retrain_wiring.py"],
    "numbers/metrics": ["tests/test_metrics.py", "tests/test_report.py"],
    "runtime/bottlenecks": ["tests/test_retrain_wiring.py", *_FEATURES],
    "training/evaluation": ["tests/test_evaluate.py"],
    "data/images": ["tests/test_images.py", "tests/test_distort.py"],
    "data/folders": ["tests/test_splits.py", *_FEATURES],
    "data/splits": ["tests/test_splits.py", *_FEATURES],
    "numbers/calibration": ["tests/test_calibration.py"],
    "numbers/findings": ["tests/test_audit.py"],
    "training/fitting": ["tests/test_train.py", "tests/test_tflite_export.py"],
    "training/l2_search": ["tests/test_train.py"],
    "runtime/engine": ["tests/test_scores.py", "tests/test_retrain_wiring.py"],
    "training/retraining": ["tests/test_retrain_wiring.py", "tests/test_retrain_checks.py"],
    "training/retrain_metrics": ["tests/test_retrain_wiring.py", "tests/test_retrain_checks.py"],
    "training/report": ["tests/test_report.py"],
    "training/run_facts": ["tests/test_report.py"],
    "training/audit_page": ["tests/test_report.py"],
    "training/tflite_model": ["tests/test_tflite_export.py"],
    "tflite/head": ["tests/test_tflite_export.py", "tests/test_tflite_formats.py"],
    "training/export_checks": ["tests/test_tflite_export.py"],
}

# a line of `mutmut results --all true`: `    imgtool.x.y__mutmut_3: survived`
_STATUS_LINE = re.compile(r"^\s*(imgtool\.\S+): (.+)$")


def _array(name: str, items: list[str]) -> str:
    return f"{name} = [\n" + "".join(f'    "{item}",\n' for item in items) + "]\n"


def _configure(pyproject: str, module: str) -> str:
    """[tool.mutmut] of `pyproject` with only `module` mutated and only its tests selected."""
    for name, items in (
        ("only_mutate", [f"imgtool/{module}.py"]),
        ("pytest_add_cli_args_test_selection", TESTS[module]),
    ):
        pyproject, n = re.subn(rf"^{name} = \[\n(?:.*\n)*?\]\n", _array(name, items), pyproject, count=1, flags=re.M)
        if n != 1:
            raise SystemExit(f"pyproject.toml: no `{name} = [` array in [tool.mutmut] to replace")
    return pyproject


def _copy(module: str, work: Path) -> Path:
    """DIR/MODULE: the committed tree (made once; kept for the verdicts) with its config cut."""
    tree = work / module.replace("/", ".")
    if not (tree / "pyproject.toml").is_file():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        config = tree / "pyproject.toml"
        config.write_text(_configure(config.read_text(), module))
    return tree


def counts(results: str) -> collections.Counter[str]:
    """Status -> number of mutants in `mutmut results --all true` output."""
    return collections.Counter(m.group(2).strip() for m in map(_STATUS_LINE.match, results.splitlines()) if m)


def run(module: str, work: Path) -> collections.Counter[str]:
    tree = _copy(module, work)
    mutmut = str(Path(sys.executable).parent / "mutmut")
    subprocess.run([mutmut, "run", "--max-children", "1"], cwd=tree, check=False)
    results = subprocess.run([mutmut, "results", "--all", "true"], cwd=tree, capture_output=True, text=True).stdout
    (tree / "results.txt").write_text(results)
    return counts(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/imgtool-mutation"))
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"default: all, in this order: {' '.join(TESTS)}")
    args = parser.parse_args()
    unknown = sorted(set(args.modules) - set(TESTS))
    if unknown:
        raise SystemExit(f"not a mutated module: {', '.join(unknown)} (one of: {', '.join(TESTS)})")
    if not os.path.isabs(os.environ.get("IMGTOOL_FIXTURES", "")):
        raise SystemExit(
            "set IMGTOOL_FIXTURES to the absolute path of the shared fixtures "
            "(mutmut runs the tests from mutants/, where the default does not resolve)"
        )
    for module in args.modules or TESTS:
        found = run(module, args.work)
        print(f"{module}: " + ", ".join(f"{status} {n}" for status, n in sorted(found.items())), flush=True)


if __name__ == "__main__":
    main()
