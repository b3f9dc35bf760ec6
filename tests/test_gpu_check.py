"""benchmarks/gpu_check.py on the CPU (``--tiny --device cpu``): every phase that needs no CUDA runs, so a
broken script is caught here before GPU time is spent on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from cli_util import cli_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")


def test_tiny_cpu_walk_runs_every_phase_and_writes_the_figures(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, SCRIPT, "--tiny", "--device", "cpu", "--json", str(out)], cwd=tmp_path,
                          env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    figures = data["figures"]
    assert {f["phase"] for f in figures} == {"tests", "single", "reference", "grid", "main"}
    assert not [f for f in figures if f["status"] in ("error", "fail")], figures
    by_phase = {f["phase"]: f for f in figures}
    # no GPU: the test code runs on the CPU, the CUDA-only tests skip
    assert by_phase["tests"]["status"] == "pass" and not by_phase["tests"]["value"].startswith("0 passed")
    assert by_phase["main"]["status"] == "pass" and "on cpu" in by_phase["main"]["name"]
    grid = [f for f in figures if f["name"].startswith("full 1728-configuration grid")]
    assert len(grid) == 1 and grid[0]["value"] > 0 and grid[0]["target"] == "< 600 s"
    assert data["versions"]["torch"] and data["seed"] == 0 and data["size"]["n"] == 600 and data["paper_grid"]["size"] == 1728
    assert "phase" in proc.stdout and "status" in proc.stdout  # the table
    assert sorted(os.listdir(tmp_path)) == ["gpu_check.json"]  # nothing else written where it was run


def test_a_failing_phase_or_fast_option_is_recorded_and_the_figures_still_come(tmp_path):
    """An unknown phase fails alone; a fast option that raises (tf32 on a CPU) is recorded, turned off for the
    rest of the check, and the run repeated without it."""
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, SCRIPT, "--tiny", "--device", "cpu", "--json", str(out), "--phases", "bogus,single",
                           "--matmul", "tf32"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    figures = json.loads(out.read_text())["figures"]
    assert [(f["phase"], f["status"]) for f in figures] == [("bogus", "error"), ("single", "error"), ("single", "info"), ("single", "info")]
    assert "unknown phase" in figures[0]["value"]
    assert figures[1]["name"].startswith("matmul tf32 failed") and "not available on cpu" in figures[1]["value"]
    assert "fp32" in figures[2]["name"] and figures[2]["value"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_clear_line():
    proc = subprocess.run([sys.executable, SCRIPT, "--device", "cuda"], env=cli_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "no CUDA device" in proc.stderr and "--device cpu" in proc.stderr


def test_gpu_setup_lays_featbench_out_in_a_site_directory_without_pip(tmp_path):
    """The fallback of benchmarks/gpu_setup.sh for a machine without pip: featbench is importable from the site
    alone (package-dir mapping, registry.yaml, plugins) and nothing is written into the checkout."""
    site = tmp_path / "site"
    before = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True, text=True).stdout
    proc = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_setup.sh"), str(site)], capture_output=True, text=True,
                          env={**cli_env(), "FEATBENCH_SETUP_NO_PIP": "1", "PYTHON": sys.executable}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"from {site}/featbench" in proc.stdout and "augmenter  sea " in proc.stdout
    assert (site / "featbench" / "registry.yaml").is_file() and (site / "featbench" / "plugins" / "sea.py").is_file()
    assert (site / "featbench" / "training" / "trainer.py").is_file()
    after = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True, text=True).stdout
    assert after == before
