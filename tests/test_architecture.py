"""The layers of docs/architecture.md, kept by tests: imports only go down (or sideways without
cycles), function-level imports included; modules stay small; old import paths keep working."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Lowest layer first; a module belongs to the layer of its longest matching prefix.
LAYERS = [
    ("foundation", ["reco", "reco.errors", "reco.paths", "reco.device", "reco.config", "reco.imageio",
                    "reco.geometry", "reco.retrieval", "reco.metrics", "reco.rephrase", "reco.samples",
                    "reco.presets", "reco.processes"]),
    ("models", ["reco.models", "reco.inputs", "reco.prompts", "reco.crf"]),
    ("coseg/concepts", ["reco.coseg", "reco.prototypes", "reco.concepts", "reco.data", "reco.viz"]),
    ("index", ["reco.index"]),
    ("building", ["reco.building"]),
    ("segment", ["reco.prediction", "reco.segmenter", "reco.engine", "reco.outputs", "reco.output_plan", "reco.predictor",
                 "reco.train.model", "reco.train.segmenter"]),
    ("eval/train", ["reco.evaluation", "reco.train"]),
    ("front ends", ["reco.cli", "reco.web", "reco.web_page", "reco.demo", "reco.bench"]),
    ("old import paths", ["reco.archive", "reco.protocol", "reco.segment", "reco.concept_builder", "reco.labelled",
                          "reco.evaluate", "reco.plus"]),
]
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


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or (p != "reco" and module.startswith(p + "."))) and len(p) > best:
                best, rank = len(p), i
    assert rank is not None, f"{module} is in no layer of LAYERS (add it, and to docs/architecture.md)"
    return rank


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
    assert "reco.predictor" in graph["reco.cli.segment"]
    assert "reco.index.store" in graph["reco.index.build"]  # `from . import store`


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_cycle_detection_finds_a_planted_cycle():
    graph = import_graph()
    graph["reco.coseg"] = graph["reco.coseg"] | {"reco.building.builder"}
    assert any("reco.coseg" in c and "reco.building.builder" in c for c in _cycles(graph))


def test_imports_only_go_down_the_layers():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
              for m, deps in sorted(import_graph().items()) for d in sorted(deps) if layer_of(d) > layer_of(m)]
    assert upward == []


def test_no_module_is_over_the_size_limit():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_importing_the_index_does_not_import_concept_building():
    code = "import sys, reco.index; print(sorted(m for m in sys.modules if m.startswith('reco.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "reco.index.image_index" in loaded
    for module in ("reco.coseg", "reco.building", "reco.concepts", "reco.segmenter"):
        assert f"'{module}'" not in loaded


def test_importing_reco_is_cheap():
    code = "import sys, reco; print(sorted(m for m in sys.modules if m.startswith(('reco.', 'torch'))))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.parametrize("old, new, name", [
    ("reco.segment", "reco.segmenter", "Segmenter"),
    ("reco.segment", "reco.prediction", "window_boxes"),
    ("reco.concept_builder", "reco.building", "ConceptBankBuilder"),
    ("reco.concept_builder", "reco.retrieval", "Hit"),
    ("reco.archive", "reco.inputs", "square_input"),
    ("reco.protocol", "reco.geometry", "centre_crop"),
    ("reco.evaluate", "reco.evaluation", "run_eval"),
    ("reco.labelled", "reco.building.labelled", "labelled_concepts"),
    ("reco.plus.segment", "reco.train.segmenter", "ReCoPlusSegmenter"),
    ("reco.plus.train", "reco.train.config", "load_train_config"),
    ("reco.plus.train", "reco.train.loop", "train"),
    ("reco.plus.pseudo_label", "reco.train.pseudo_label", "make_pseudo_labels"),
    ("reco.plus.model", "reco.train.model", "build_reco_plus"),
    ("reco", "reco.segmenter", "Segmenter"),
    ("reco", "reco.index.image_index", "ImageIndex"),
    ("reco", "reco.predictor", "load_predictor"),
])
def test_old_import_paths_are_aliases(old, new, name):
    import importlib

    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)
