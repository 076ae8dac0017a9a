"""DESIGN §2 boundary 3: the worker is thin glue.

Its modules reach the core only through the pipeline's entry points and the torch-free
vocabularies (spec, records, errors, queues, data roots); they import no model, constraint,
attack, optimiser or training module, and call no ``backward``/``step``: training logic lives in
``tscnc`` and nowhere else.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What the glue may use of the core: the pipeline (its entry points) and torch-free vocabularies.
ALLOWED_CORE = {"tscnc.pipeline", "tscnc.spec", "tscnc.records", "tscnc.errors", "tscnc.queues",
                "tscnc.dataroots"}
# torch is allowed only for probing the host (device name, memory, thread count).
TORCH_OK = {"torch"}
TRAINING_CALLS = {"backward", "zero_grad", "step", "train", "eval"}


def _imports(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [node.module]
            if node.module == "tscnc":        # `from tscnc import pipeline`
                out += [f"tscnc.{a.name}" for a in node.names]
    return out


def test_worker_reaches_the_core_only_through_the_pipeline_and_vocabularies() -> None:
    offenders = []
    for path in sorted((ROOT / "worker").glob("*.py")):
        for name in _imports(ast.parse(path.read_text())):
            top = name.split(".")[0]
            core = top == "tscnc" and name != "tscnc" and name not in ALLOWED_CORE
            if core or (top == "torch" and name not in TORCH_OK):
                offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_worker_runs_no_training_step_itself() -> None:
    offenders = []
    for path in sorted((ROOT / "worker").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in TRAINING_CALLS):
                offenders.append(f"{path.name}:{node.lineno} .{node.func.attr}()")
    assert offenders == []


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    """The scan is live: a module that imports a model and steps an optimiser is caught."""
    tree = ast.parse("from tscnc.models import build\nimport torch.optim\nopt.step()\n")
    names = _imports(tree)
    assert "tscnc.models" in names and "torch.optim" in names
    calls = [n.func.attr for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    assert set(calls) & TRAINING_CALLS
