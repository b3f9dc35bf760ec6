"""The import rules of pyproject.toml's [tool.importlinter] contracts (layers cli -> run -> bench -> training
-> inputs; bench never imports reporting or cli; reporting never imports training or cli; executors never
import the driver; built-in plugins use only featbench.api and featbench.errors), checked by lint-imports.

``featbench`` is installed from ``core/`` with ``featbench.plugins`` mapped to ``plugins/``, a layout the
import graph builder cannot follow, so the check runs on a copy laid out as the installed package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytest.importorskip("importlinter")


def _package(tmp_path) -> str:
    """``tmp_path/featbench``: core/ with plugins/ as its ``plugins`` subpackage; returns tmp_path."""
    pkg = tmp_path / "featbench"
    ignore = shutil.ignore_patterns("__pycache__", "*.yaml")
    shutil.copytree(os.path.join(ROOT, "core"), pkg, ignore=ignore)
    shutil.copytree(os.path.join(ROOT, "plugins"), pkg / "plugins", ignore=ignore)
    return str(tmp_path)


def lint_imports(path: str) -> subprocess.CompletedProcess:
    code = "import sys; from importlinter.cli import lint_imports_command; sys.argv = ['lint-imports', '--no-cache']; lint_imports_command()"
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_the_import_contracts_hold(tmp_path):
    result = lint_imports(_package(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 6 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module,line,contract", [
    ("bench/plan.py", "from ..reporting import tables", "bench imports neither reporting nor cli"),
    ("plugins/sea.py", "from featbench.training import trainer", "built-in plugins use only featbench.api and featbench.errors"),
])
def test_a_violation_breaks_its_contract(tmp_path, module, line, contract):
    root = _package(tmp_path)
    with open(os.path.join(root, "featbench", module), "a") as f:
        f.write(f"\n{line}  # a deliberate violation\n")
    result = lint_imports(root)
    assert result.returncode == 1
    assert f"{contract} BROKEN" in result.stdout
