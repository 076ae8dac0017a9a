"""DESIGN §2 boundaries 1 and 2 for the core: light imports, no web stack in tscnc."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("fastapi", "starlette", "celery", "redis", "backend", "worker")


def _loaded_after(stmt: str) -> set[str]:
    code = f"import sys\n{stmt}\nprint(','.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return {m.split(".")[0] for m in out.stdout.strip().split(",")}


@pytest.mark.parametrize("stmt", ["import tscnc", "import tscnc.spec", "import tscnc.records",
                                  "import tscnc.errors"])
def test_light_modules_load_neither_torch_nor_web_stack(stmt: str) -> None:
    loaded = _loaded_after(stmt)
    assert "torch" not in loaded
    assert not loaded & set(FORBIDDEN)


def test_full_core_loads_no_web_stack() -> None:
    loaded = _loaded_after("import tscnc.pipeline, tscnc.cli, tscnc.cli_run, tscnc.report")
    assert "torch" in loaded  # the check itself is live
    assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)


def test_no_source_file_in_tscnc_imports_the_web_stack() -> None:
    offenders = []
    for path in (ROOT / "tscnc").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
