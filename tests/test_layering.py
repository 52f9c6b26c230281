"""The package's import graph has no cycles (module-level and function-level imports both
count: a function-level import is still a dependency, only a later one).

`python tests/test_layering.py` prints the module map (who imports whom)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "imgtool"


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """{module: the imgtool modules it imports anywhere in its body}."""
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from imgtool import store` names a module; `from imgtool.x import f` names x
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("imgtool"):
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


# The layers, bottom first (docs/development.md): each sub-package of imgtool/ is one layer,
# and a module imports only from its own layer or a lower one; within a layer the cycle test
# keeps the order. The package docstrings say what each holds.
LAYERS: list[tuple[str, str]] = [
    ("core", "foundations with no domain: version, errors, safe reading, records, settings, formats, log, store"),
    ("tflite", "the .tflite and TFLite-metadata flatbuffers"),
    ("numbers", "score kinds, metrics, calibration, the optimiser, audit findings: numbers from outputs and data"),
    ("data", "labels, images, distortions, labelled folders and their split"),
    ("runtime", "TensorFlow, the engines, model-file facts, the bottleneck cache"),
    ("models", "getting a model: catalog, references, downloads, entries, conversion, the resolver"),
    ("inference", "classifying many inputs, here or packed for workers"),
    ("training", "retraining, the model folder and model.tflite, report, evaluation, audit"),
    ("api", "the public Python API (imgtool/__init__.py exports it lazily)"),
    ("front ends", "the command line, Beam and Spark"),
]
TOP_LEVEL = {
    "imgtool": "api",
    "imgtool.api": "api",
    "imgtool.api_store": "api",
    "imgtool.api_training": "api",
    "imgtool.__main__": "front ends",
    "imgtool.spark": "front ends",
}
FRONT_ENDS = {"cli", "beam"}


def layer_of(module: str) -> int:
    names = [name for name, _ in LAYERS]
    if module in TOP_LEVEL:
        return names.index(TOP_LEVEL[module])
    pkg = module.split(".")[1]
    if pkg in FRONT_ENDS:
        return names.index("front ends")
    if pkg in names:
        return names.index(pkg)
    raise AssertionError(f"{module} is in no layer: put it in a sub-package (LAYERS, and docs/development.md's list)")


def test_every_module_lives_in_a_layer_package():
    """The folder shows the layers: nothing but the API's face and the front ends at the top."""
    loose = sorted(
        p.name for p in PACKAGE.glob("*.py") if f"imgtool.{p.stem}" not in TOP_LEVEL and p.stem != "__init__"
    )
    assert loose == []


def test_find_cycle_sees_a_cycle_and_none_where_there_is_none():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_counts_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "imgtool"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from imgtool import b\n")
    (pkg / "b.py").write_text("import numpy\nfrom imgtool.sub.c import thing\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from .. import a\nfrom . import d\n")
    (pkg / "sub" / "d.py").write_text("")
    graph = import_graph(pkg)
    assert graph["imgtool.a"] == {"imgtool.b"}
    assert graph["imgtool.b"] == {"imgtool.sub.c"}
    assert graph["imgtool.sub.c"] == {"imgtool.a", "imgtool.sub.d"}
    assert find_cycle(graph) == ["imgtool.a", "imgtool.b", "imgtool.sub.c", "imgtool.a"]


def test_imgtool_has_no_import_cycle():
    graph = import_graph()
    assert graph.get("imgtool.models.resolve"), "the graph was not read"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{mod} ({LAYERS[layer_of(mod)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})"
        for mod, deps in sorted(import_graph().items())
        for dep in sorted(deps)
        if layer_of(dep) > layer_of(mod)
    ]
    assert upward == []


if __name__ == "__main__":
    for mod, deps in sorted(import_graph().items()):
        short = sorted(d.removeprefix("imgtool.") for d in deps)
        print(f"{mod.removeprefix('imgtool.') or 'imgtool'}: {', '.join(short) or '-'}")
    print("cycle:", find_cycle(import_graph()))


def test_every_module_is_in_the_development_page():
    page = (PACKAGE.parent / "docs" / "development.md").read_text()
    for module in import_graph():
        short = module.removeprefix("imgtool.")
        if module == "imgtool" or short.endswith("__main__"):
            continue
        if (PACKAGE / short.replace(".", "/") / "__init__.py").is_file():  # a sub-package: by its folder
            assert f"`imgtool/{short.replace('.', '/')}/`" in page, f"docs/development.md does not list {short}/"
            continue
        assert f"`{short.rsplit('.', 1)[-1]}.py`" in page, f"docs/development.md does not list {short}"


def test_functions_and_modules_stay_short():
    """Issue 20: no function over 60 lines (def to the end of its body) and no module over 400,
    so each piece can be read whole; split by job when one grows."""
    long_functions, long_modules = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 400:
            long_modules.append(f"{path.relative_to(PACKAGE.parent)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno:
                size = node.end_lineno - node.lineno + 1
                if size > 60:
                    long_functions.append(f"{path.relative_to(PACKAGE.parent)}: {node.name} is {size} lines")
    assert long_modules == [] and long_functions == []
