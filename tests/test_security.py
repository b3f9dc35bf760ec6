"""No checkpoint, cache or data file is ever unpickled with code execution, and downloads are verified.

* a scan of featbench's own source: every ``torch.load`` passes ``weights_only=True``, every ``np.load``
  ``allow_pickle=False``; pickle is only used by the allow-list unpickler (``featbench.inputs.safe_pickle``);
  no unsafe YAML loader, no dill/joblib/cloudpickle/marshal/shelve;
* in a featbench process, even a plugin's ``torch.load(weights_only=False)`` is refused;
* a download whose SHA-256 differs from registry.yaml is refused and not installed.
(The malicious ``.pth``, ``.pkl`` and ``.npz`` inputs of the CLI are cases of ``test_bad_input``.)
"""

from __future__ import annotations

import ast
import hashlib
import os
import pickle

import pytest
import yaml

from featbench.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNPICKLER = os.path.join("core", "inputs", "safe_pickle.py")  # the allow-list unpickler: the one place pickle may be used
FORBIDDEN_MODULES = {"dill", "joblib", "cloudpickle", "marshal", "shelve"}


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else "<not a constant>"
    return None


def unsafe_loads(source: str, path: str) -> list[str]:
    """Every place in ``source`` that could unpickle with code execution, as ``path:line: what``."""
    bad = []
    pickle_ok = path.endswith(UNPICKLER)
    for node in ast.walk(ast.parse(source)):
        where = f"{path}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for n in names:
                if n.split(".")[0] in FORBIDDEN_MODULES:
                    bad.append(f"{where}: imports {n}")
                if n.split(".")[0] == "pickle" and isinstance(node, ast.ImportFrom) and not pickle_ok:
                    bad.append(f"{where}: from pickle import ...")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in ("pickle", "_pickle", "cPickle") and node.attr in ("load", "loads", "Unpickler") and not pickle_ok:
                bad.append(f"{where}: pickle.{node.attr}")
            if node.value.id == "yaml" and node.attr in ("load", "unsafe_load", "full_load", "load_all", "unsafe_load_all"):
                bad.append(f"{where}: yaml.{node.attr}")
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        func = node.func
        owner = ast.unparse(func.value)
        if func.attr == "load" and owner == "torch" and _kw(node, "weights_only") is not True:
            bad.append(f"{where}: torch.load without weights_only=True")
        if func.attr in ("load_state_dict_from_url", "get_state_dict") and _kw(node, "weights_only") is not True:
            bad.append(f"{where}: {func.attr} without weights_only=True")
        if func.attr == "load" and owner in ("np", "numpy") and _kw(node, "allow_pickle") is not False:
            bad.append(f"{where}: np.load without allow_pickle=False")
    return bad


def _sources():
    for top in ("core", "plugins"):
        for dirpath, _, names in os.walk(os.path.join(ROOT, top)):
            for n in names:
                if n.endswith(".py"):
                    path = os.path.join(dirpath, n)
                    with open(path, encoding="utf-8") as f:
                        yield os.path.relpath(path, ROOT), f.read()


def test_the_scanner_finds_every_kind_of_unsafe_load():
    snippet = """
import dill
import pickle
from pickle import loads
import numpy as np
import torch, yaml
torch.load(p)
torch.load(p, weights_only=False)
torch.load(p, map_location="cpu", weights_only=True)
pickle.load(f)
np.load(p)
np.load(p, allow_pickle=True)
np.load(p, allow_pickle=False)
yaml.load(text)
yaml.safe_load(text)
enum.get_state_dict(progress=True)
"""
    found = [line.split(": ", 1)[1] for line in unsafe_loads(snippet, "x.py")]
    assert sorted(found) == sorted([
        "imports dill", "from pickle import ...", "torch.load without weights_only=True", "torch.load without weights_only=True",
        "pickle.load", "np.load without allow_pickle=False", "np.load without allow_pickle=False", "yaml.load",
        "get_state_dict without weights_only=True"])
    assert unsafe_loads("import pickle\nclass U(pickle.Unpickler): pass\n", UNPICKLER) == []


def test_featbench_source_never_unpickles_unsafely():
    scanned, bad = 0, []
    for path, source in _sources():
        scanned += 1
        bad += unsafe_loads(source, path)
    assert scanned > 40 and bad == []


class Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_even_a_plugins_weights_only_false_is_refused_inside_featbench(tmp_path, capsys):
    import torch

    marker = str(tmp_path / "PWNED")
    torch.save({"w": torch.zeros(1), "evil": Evil(marker)}, tmp_path / "evil.pth")
    plugin = tmp_path / "loader.py"
    plugin.write_text("import torch\nfrom featbench import hookimpl\n\n@hookimpl\ndef register_losses(registry):\n"
                      f"    torch.load({str(tmp_path / 'evil.pth')!r}, weights_only=False)\n")
    assert main(["-p", str(plugin), "plugins"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "featbench_local_loader" in err and "UnpicklingError" in err and "Traceback" not in err
    assert not os.path.exists(marker)
    assert os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD") != "1"  # main() put the environment back


def test_safe_pickle_refuses_code_in_a_byol_pickle(tmp_path, capsys):
    marker = str(tmp_path / "PWNED")
    with open(tmp_path / "pretrain_res50x1.pkl", "wb") as f:
        pickle.dump({"experiment_state": Evil(marker)}, f, protocol=2)
    assert main(["convert", "byol", str(tmp_path / "pretrain_res50x1.pkl"), str(tmp_path / "out.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing posix.system" in err and "never executes code from pickles" in err
    assert not os.path.exists(marker) and not os.path.exists(tmp_path / "out.pth")


@pytest.fixture
def registry_with(tmp_path):
    """A copy of the packaged registry.yaml whose backbone S downloads ``url`` and expects ``sha256``."""
    from featbench.config import registry_path

    def make(url: str, sha256: str) -> str:
        with open(registry_path()) as f:
            reg = yaml.safe_load(f)
        reg["backbones"]["S"].update(url=url, file="downloaded-S.pth", sha256=sha256)
        path = tmp_path / f"registry-{sha256[:8]}.yaml"
        path.write_text(yaml.safe_dump(reg))
        return str(path)

    return make


@pytest.fixture
def served(tmp_path):
    """The base URL of an HTTP server of ``tmp_path`` (a catalog may only download over http(s))."""
    from http_util import serve_directory

    with serve_directory(str(tmp_path)) as base:
        yield base


def test_a_download_with_the_wrong_hash_is_refused_and_not_installed(tmp_path, capsys, registry_with, served):
    payload = b"not the weights registry.yaml describes"
    (tmp_path / "remote.pth").write_bytes(payload)
    actual = hashlib.sha256(payload).hexdigest()
    expected = "0676ba61" + "0" * 56
    cache = tmp_path / "cache"
    url = f"{served}/remote.pth"
    code = main(["--registry", registry_with(url, expected), "extract", "--quiet",
                 "--backbones", "S", "--dataset", "digits", "--cache-dir", str(cache)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"has SHA-256 {actual}, but registry.yaml expects {expected}; it was deleted" in err
    assert f"downloaded from {url}" in err and "--weights S=FILE" in err
    assert os.listdir(cache / "weights") == []  # nothing installed, nothing half-downloaded
    assert not os.path.exists(cache / "features") or os.listdir(cache / "features") == []

    from featbench.config import load_registry
    from featbench.inputs.weights import locate, registry_backbones

    # the same file with its real hash is installed (what the refusal protects)
    good = registry_with(url, actual)
    source = next(s for name, _, s, _, _ in registry_backbones(load_registry(good), "resnet50") if name == "S")
    path = locate("S", source, str(cache))
    assert os.path.basename(path) == "downloaded-S.pth" and open(path, "rb").read() == payload
