"""The layers of docs/architecture.md, kept by tests: imports only go down (or sideways without
cycles), function-level imports included; modules stay small; old import paths keep working."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

#: The stage folders, lowest first: a module may import its own folder and the folders below it.
FOLDERS = ["core", "models", "data", "index", "concepts", "segment", "evaluation", "train", "app", "bench", "cli"]
#: Modules allowed directly in src/reco.
ROOT_MODULES = {"reco"}
MAX_LINES = 350


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "reco").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom | ast.Import, known) -> set[str]:
    """The reco modules an import statement loads (``from . import x`` names submodule x if it is one)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.split(".")[0] == "reco"} & known
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "reco":
        return set()
    found = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known}
    return found or ({target} & known)


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        edges = set()
        for node in ast.walk(tree):  # every import, also those inside functions
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _resolve(name, path.name == "__init__.py", node, known)
        graph[name] = edges - {name}
    return graph


def folder_of(module: str) -> str | None:
    """The stage folder of a module (None for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    # reco.cli.segment imports the predictor loader only inside a function
    assert "reco.segment.load" in graph["reco.cli.segment"]
    assert "reco.index.store" in graph["reco.index.build"]  # `from . import store`


def test_every_module_lives_in_a_stage_folder():
    modules = _modules()
    loose = sorted(m for m in modules if folder_of(m) is None and m not in ROOT_MODULES)
    loose += sorted(m for m in modules if folder_of(m) is not None and folder_of(m) not in FOLDERS)
    assert loose == []
    assert sorted(p.name for p in (SRC / "reco").glob("*.py")) == ["__init__.py"]


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_cycle_detection_finds_a_planted_cycle():
    graph = import_graph()
    graph["reco.concepts.coseg"] = graph["reco.concepts.coseg"] | {"reco.concepts.builder"}
    assert any("reco.concepts.coseg" in c and "reco.concepts.builder" in c for c in _cycles(graph))


def _folder_edges(graph) -> set[tuple[str, str]]:
    return {(folder_of(m), folder_of(d)) for m, deps in graph.items() for d in deps
            if folder_of(m) and folder_of(d) and folder_of(m) != folder_of(d)}


def test_imports_only_go_down_the_stage_folders():
    rank = {f: i for i, f in enumerate(FOLDERS)}
    upward = sorted(f"{m} imports {d}" for m, deps in import_graph().items() for d in deps
                    if folder_of(m) and folder_of(d) and rank[folder_of(d)] > rank[folder_of(m)])
    assert upward == []


def test_no_two_folders_import_each_other():
    edges = _folder_edges(import_graph())
    assert sorted((a, b) for a, b in edges if (b, a) in edges) == []
    assert ("train", "evaluation") not in edges and ("evaluation", "train") not in edges


def test_folder_checks_catch_a_planted_upward_import():
    graph = import_graph()
    graph["reco.evaluation.run"] = graph["reco.evaluation.run"] | {"reco.train.loop"}
    graph["reco.train.loop"] = graph["reco.train.loop"] | {"reco.evaluation.run"}
    edges = _folder_edges(graph)
    assert ("evaluation", "train") in edges and ("train", "evaluation") in edges


def test_no_module_is_over_the_size_limit():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_importing_the_index_does_not_import_concept_building():
    code = "import sys, reco.index; print(sorted(m for m in sys.modules if m.startswith('reco.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "reco.index.image_index" in loaded
    assert not [m for m in eval(loaded) if m.startswith(("reco.concepts", "reco.segment"))]


def test_importing_reco_is_cheap():
    code = "import sys, reco; print(sorted(m for m in sys.modules if m.startswith(('reco.', 'torch'))))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["Segmenter", "ImageIndex", "load_predictor", "ConceptBank", "build_bank",
                                  "save_prediction", "SegmentSettings", "BankSettings"])
def test_the_top_level_names_resolve(name):
    import reco

    assert getattr(reco, name).__module__.startswith("reco.")
