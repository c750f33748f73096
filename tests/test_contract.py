"""The typed contract between a run and its readers: a strategy's family is what it declares, readers never
rebuild the dataset, and the package's imports run one way (no cycles)."""
from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest

from harness.config import compose
from harness.strategies.base import Prediction, Strategy
from tests.conftest import run, tiny_overrides

PACKAGE = Path(__file__).resolve().parents[1] / "harness"


def test_a_prompted_strategy_in_a_module_of_its_own_is_treated_as_prompted(tiny_csv, tmp_path):
    cfg = compose(["experiment=classic", *tiny_overrides(tiny_csv, tmp_path), "~strategies.embed_logreg",
                   "~strategies.embed_knn", "+strategies.cot={_target_: tests.cot_strategy.MajorityPrompt}"])
    path = run(cfg)
    results = pd.read_csv(path / "results.csv").set_index("strategy")
    assert results.loc["cot", "family"] == "prompted" and results.loc["tfidf_logreg", "family"] == "trained"
    evens = pd.read_csv(path / "break_even.csv")
    assert evens[["prompted", "trained"]].values.tolist() == [["cot", "tfidf_logreg"]]
    recommendation = (path / "report.md").read_text().split("## Recommendation")[1].split("##")[0]
    assert "cot (prompted) and tfidf_logreg (trained)" in recommendation


def test_a_strategy_must_declare_its_family():
    class Nameless(Strategy):
        def fit(self, train, services):
            return self

        def predict(self, items):
            yield from ()

    with pytest.raises(TypeError, match="must declare its family"):
        Nameless(name="x")
    assert Prediction(item_id="a", gold="x", pred="x").correct


def _imports(path: Path, modules: set[str]) -> set[str]:
    """harness modules a file imports, at module level or inside functions (not under `if TYPE_CHECKING:`).
    `from pkg import submodule` is an import of the submodule (the package's own __init__ runs first either way,
    as for every import)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING" for inner in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found & modules


def _graph() -> dict[str, set[str]]:
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {name: _imports(path, set(files)) - {name} for name, path in files.items()}


def test_nothing_in_the_package_imports_in_a_circle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_report_and_gate_never_rebuild_the_dataset():
    graph = _graph()
    readers = [name for name in graph if name.startswith(("harness.report", "harness.gate"))]
    assert readers
    for name in readers:
        assert "harness.data" not in graph[name], name
    via: dict[str, str] = {}
    todo = [name for name in readers if name.startswith("harness.report")]
    while todo:  # the report, transitively: it reads the run directory alone
        name = todo.pop()
        for nxt in graph[name]:
            if nxt not in via:
                via[nxt] = name
                todo.append(nxt)
    for banned in ("harness.data", "harness.run.runner"):
        chain = [banned]
        while chain[-1] in via and len(chain) < 20:
            chain.append(via[chain[-1]])
        assert banned not in via, " <- ".join(chain)
