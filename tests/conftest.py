"""Shared fixtures. Installed third-party plugins are kept out of the suite (entry points off) and plugin
errors are raised (strict), except in the tests that exercise exactly those paths."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from featbench.testing import make_blobs  # noqa: F401 - the tests import it from here

# Before torch loads OpenMP: idle threads sleep instead of spinning. On a busy 2-core machine (other jobs
# running) spinning made small forward passes ~30x slower (resnet18, batch 2: 1.5 s vs 0.05 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("FEATBENCH_DISABLE_ENTRY_POINTS", "1")
os.environ.setdefault("FEATBENCH_STRICT_PLUGINS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))  # reference_sea.py
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def blobs():
    return make_blobs()


@pytest.fixture
def feature_file(tmp_path):
    path = tmp_path / "blobs.npz"
    np.savez(path, **make_blobs())
    return str(path)


@pytest.fixture
def host():
    from featbench.manager import load_plugins

    return load_plugins(entry_points=[])
