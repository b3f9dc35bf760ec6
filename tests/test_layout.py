"""Packaging and layout: `core/` is `featbench`, `plugins/` is `featbench.plugins`, nothing else."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPORT_RE = re.compile(r"^\s*(from|import)\s+(core|plugins)(\.|\s|$)", re.M)


def _py_files():
    for top in ("core", "plugins", "tests", "benchmarks"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith(".py"):
                    yield os.path.join(dirpath, f)


def test_no_source_imports_core_or_plugins():
    offenders = [p for p in _py_files() if IMPORT_RE.search(open(p, encoding="utf-8").read())]
    assert offenders == []


def test_importing_featbench_never_creates_core_or_plugins_modules():
    code = "import featbench, featbench.cli, featbench.plugins, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('core', 'plugins')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_listing_plugins_imports_neither_torch_nor_timm_nor_ray():
    code = ("import sys; from featbench.manager import load_plugins; h = load_plugins(entry_points=[]); "
            "assert h.list_augmenters(); import featbench.cli, featbench.bench.driver, featbench.bench.spec; "
            "print(sorted(m for m in ('torch', 'timm', 'torchvision', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_registry_yaml_is_package_data():
    from featbench.config import load_registry, registry_path

    assert os.path.isfile(registry_path())
    assert "grids" in load_registry()


def test_wheel_contains_only_featbench_and_registry(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), ROOT],
                   check=True, capture_output=True)
    (wheel,) = [f for f in os.listdir(tmp_path) if f.endswith(".whl")]
    names = zipfile.ZipFile(tmp_path / wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"featbench"}
    assert "featbench/registry.yaml" in names
    assert "featbench/plugins/sea.py" in names
    data = zipfile.ZipFile(tmp_path / wheel).read("featbench/registry.yaml").decode()
    assert "grids:" in data  # a real file, not a dangling symlink
