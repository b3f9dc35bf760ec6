"""Hostile input through the real command line (``python -m featbench`` in a subprocess).

Every case must fail with exit status 2, print exactly one line ``featbench: error: PROBLEM (FIX)`` on
stderr naming the problem and the fix, show no traceback, and leave no output behind: no ``--out``
directory, no results store, no file in the feature cache, no file created by a malicious pickle.
Most cases are caught before torch is imported (well under a second each); the checkpoint cases build
timm's tiny random ``test_resnet``.
"""

from __future__ import annotations

import os
import pickle
import subprocess

import numpy as np
import pytest
from cli_util import assert_clean_error, cache_debris, cli_env, featbench, files_under
from conftest import make_blobs

MARKER = "PWNED"  # what the malicious pickles would create, next to themselves


class Evil:
    """Unpickling this runs ``touch <dir>/PWNED``."""

    def __init__(self, directory: str):
        self.directory = directory

    def __reduce__(self):
        return (os.system, (f"touch {os.path.join(self.directory, MARKER)}",))


def _npz(path, **change):
    """A small valid feature file (60 train / 30 test rows, 8 features, 3 classes) with ``change`` applied
    (a value of None removes the key)."""
    arrays = make_blobs(n_train=60, n_test=30, d=8, C=3)
    for k, v in change.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v(arrays) if callable(v) else v
    np.savez(path, **arrays)


def _set(key, index, value):
    def change(arrays):
        a = arrays[key].copy()
        a[index] = value
        return a
    return change


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A directory of hostile files: feature files, suites, plugins and checkpoints."""
    d = tmp_path_factory.mktemp("hostile")
    p = str(d)
    _npz(d / "ok.npz")
    _npz(d / "missing_key.npz", test_y=None)
    _npz(d / "rank3.npz", train_x=lambda a: a["train_x"].reshape(60, 2, 4))
    _npz(d / "labels_2d.npz", train_y=lambda a: a["train_y"].reshape(60, 1))
    _npz(d / "nan.npz", train_x=_set("train_x", (3, 2), np.nan))
    _npz(d / "inf.npz", test_x=_set("test_x", (1, 0), np.inf))
    _npz(d / "zero_rows.npz", train_x=np.zeros((0, 8), np.float32), train_y=np.zeros(0, np.int64))
    _npz(d / "short_y.npz", train_y=lambda a: a["train_y"][:-1])
    _npz(d / "short_member.npz", train_x=lambda a: a["train_x"][:50], train_y=lambda a: a["train_y"][:50])
    _npz(d / "other_labels.npz", train_y=lambda a: np.roll(a["train_y"], 1))
    _npz(d / "negative.npz", train_y=_set("train_y", 0, -1))
    _npz(d / "fractional.npz", train_y=lambda a: a["train_y"] + 0.5)
    _npz(d / "gap.npz", train_y=lambda a: np.where(a["train_y"] == 1, 3, a["train_y"]),
         test_y=lambda a: np.where(a["test_y"] == 1, 3, a["test_y"]))
    _npz(d / "unseen.npz", test_y=_set("test_y", 0, 3))
    _npz(d / "one_class.npz", train_y=np.zeros(60, np.int64), test_y=np.zeros(30, np.int64))
    _npz(d / "dims.npz", test_x=np.ones((30, 5), np.float32))
    _npz(d / "val_x_only.npz", val_x=np.ones((10, 8), np.float32))
    np.savez(d / "object.npz", **{**make_blobs(n_train=60, n_test=30, d=8, C=3), "train_x": np.empty((60, 8), dtype=object)})
    (d / "text.npz").write_bytes(b"train_x,train_y\n0.1,1\n")
    (d / "truncated.npz").write_bytes((d / "ok.npz").read_bytes()[:700])
    with open(d / "evil.npz", "wb") as f:  # a pickle dressed up as a feature file
        pickle.dump({"train_x": Evil(p)}, f)

    (d / "syntax.yaml").write_text("aug: [none, sea\nepochs: 2\n")
    (d / "list.yaml").write_text("- none\n- sea\n")
    (d / "typo.yaml").write_text("aug: [none]\nepoch: 2\nfeatures: [ok.npz]\n")
    (d / "words.yaml").write_text("aug: [none]\nepochs: many\nfeatures: [ok.npz]\n")
    (d / "hp_list.yaml").write_text("aug: [none]\nhp: [lr, 1]\nfeatures: [ok.npz]\n")
    (d / "suite_dir").mkdir()

    (d / "raises.py").write_text("from featbench import hookimpl\n\n@hookimpl\ndef register_augmenters(registry):\n"
                                 "    raise RuntimeError('boom in registration')\n")
    (d / "wrong_type.py").write_text("from featbench import hookimpl\n\n@hookimpl\ndef register_augmenters(registry):\n"
                                     "    registry.add('bad_aug', 42)\n")
    (d / "returns.py").write_text("from featbench import hookimpl\nfrom featbench.plugins.sea import SeA\n\n@hookimpl\n"
                                  "def register_augmenters(registry):\n    return {'sea2': SeA}\n")
    (d / "misspelt.py").write_text("from featbench import hookimpl\n\n@hookimpl\ndef register_augmenterz(registry):\n    pass\n")
    (d / "syntax.py").write_text("def oops(:\n")

    import timm
    import torch

    sd = timm.create_model("test_resnet", num_classes=0).state_dict()
    torch.save({k: v for k, v in sd.items() if k != "layer1.0.conv2.weight"}, d / "missing_key.pth")
    torch.save({**sd, "extra.weight": torch.zeros(3)}, d / "unexpected_key.pth")
    torch.save(timm.create_model("test_vit", num_classes=0).state_dict(), d / "vit.pth")
    torch.save({**sd, "conv1.0.weight": torch.zeros(8, 3, 3, 3)}, d / "narrow.pth")
    torch.save({"state_dict": sd, "evil": Evil(p)}, d / "evil.pth")
    with open(d / "evil.pkl", "wb") as f:
        pickle.dump(Evil(p), f)
    (d / "truncated.pth").write_bytes((d / "unexpected_key.pth").read_bytes()[:5000])
    torch.save([t for t in sd.values()], d / "list.pth")
    os.makedirs(d / "cache_with_bad_S" / "weights")
    torch.save(sd, d / "cache_with_bad_S" / "weights" / "resnet50-0676ba61.pth")  # registry.yaml: sha256 0676ba61...
    (d / "a_file").write_text("")
    (d / "bad_store").mkdir()
    (d / "bad_store" / "featbench.sqlite").write_text("not a database")
    return d


FEAT = ["run", "--epochs", "1", "--aug", "none,sea", "--features"]
IMG = ["extract", "--quiet", "--backbones", "timm:test_resnet", "--dataset", "digits", "--image-size", "32"]
CKPT = [*IMG, "--weights"]

# (argv, words naming the problem, words of the fix); {d} = the hostile directory, {out} / {cache} = where
# the command must not leave anything
CASES = [
    # ---- feature files
    pytest.param([*FEAT, "{d}/missing_key.npz"], ("missing_key.npz", "missing key(s) test_y"), ("needs train_x, train_y, test_x, test_y",), id="npz-missing-key"),
    pytest.param([*FEAT, "{d}/rank3.npz"], ("train_x has shape (60, 2, 4)", "expected (n, d)"), ("one feature vector per row",), id="npz-x-rank-3"),
    pytest.param([*FEAT, "{d}/labels_2d.npz"], ("train_y has shape (60, 1)",), ("shape (n,)",), id="npz-y-rank-2"),
    pytest.param([*FEAT, "{d}/nan.npz", "--quiet"], ("train_x has 1 row(s) with NaN or Inf",), ("re-extract",), id="npz-nan"),
    pytest.param([*FEAT, "{d}/inf.npz", "--quiet"], ("test_x has 1 row(s) with NaN or Inf",), ("drop those rows",), id="npz-inf"),
    pytest.param([*FEAT, "{d}/zero_rows.npz"], ("train_x is empty (shape (0, 8))",), ("at least one row",), id="npz-zero-rows"),
    pytest.param([*FEAT, "{d}/short_y.npz"], ("train_x has 60 rows but train_y has 59",), ("one label per row",), id="npz-x-y-rows"),
    pytest.param([*FEAT, "{d}/ok.npz,{d}/short_member.npz"], ("ensemble members disagree on the number of train rows", "60", "50"),
                 ("same images in the same order",), id="ensemble-rows"),
    pytest.param([*FEAT, "{d}/ok.npz,{d}/other_labels.npz"], ("ensemble members disagree on train labels",),
                 ("same images in the same order",), id="ensemble-labels"),
    pytest.param([*FEAT, "{d}/negative.npz"], ("negative labels (min -1)",), ("0..C-1",), id="labels-negative"),
    pytest.param([*FEAT, "{d}/fractional.npz"], ("non-integer labels",), ("as integers",), id="labels-non-integer"),
    pytest.param([*FEAT, "{d}/gap.npz"], ("not contiguous 0..3 (missing [1])",), ("return_inverse",), id="labels-not-contiguous"),
    pytest.param([*FEAT, "{d}/unseen.npz"], ("test has class 3, never seen in training",), ("must appear in train_y",), id="test-class-unseen"),
    pytest.param([*FEAT, "{d}/one_class.npz"], ("single class",), ("at least 2 classes",), id="labels-one-class"),
    pytest.param([*FEAT, "{d}/dims.npz"], ("test_x has 5 features but train_x has 8",), ("same backbone",), id="train-test-dims"),
    pytest.param([*FEAT, "{d}/val_x_only.npz"], ("only one of val_x / val_y",), ("both or neither",), id="npz-val-x-only"),
    pytest.param([*FEAT, "{d}/object.npz"], ("train_x has dtype object",), ("float features",), id="npz-object-array"),
    pytest.param([*FEAT, "{d}/text.npz"], ("text.npz is not an .npz feature file",), ("numpy.savez",), id="npz-is-text"),
    pytest.param([*FEAT, "{d}/truncated.npz"], ("truncated.npz: not a readable .npz file",), ("truncated",), id="npz-truncated"),
    pytest.param([*FEAT, "{d}/evil.npz"], ("is a Python pickle", "never unpickles"), ("numpy.savez",), id="npz-is-a-pickle"),
    pytest.param([*FEAT, "{d}/nowhere.npz"], ("feature file not found", "nowhere.npz"), ("pass --features PATH.npz",), id="npz-not-found"),
    # ---- unknown names: the closest valid ones are suggested and the valid ones listed
    pytest.param([*FEAT, "{d}/ok.npz", "--aug", "seaa"], ("unknown augmenter 'seaa'",), ("did you mean 'sea'", "valid: adv"), id="unknown-augmenter"),
    pytest.param([*FEAT, "{d}/ok.npz", "--loss", "hinj"], ("unknown loss 'hinj'",), ("did you mean 'hinge'", "valid: ce"), id="unknown-loss"),
    pytest.param([*FEAT, "{d}/ok.npz", "--hp", "etta=1"], ("unknown hyper-parameter 'etta'",), ("did you mean 'eta'", "valid: alpha"), id="unknown-hparam"),
    pytest.param([*FEAT, "{d}/ok.npz", "--grid", "papr"], ("unknown grid 'papr'",), ("did you mean 'paper'",), id="unknown-grid"),
    pytest.param(["run", "--backbones", "timm:test_resnet", "--dataset", "digitz"], ("unknown dataset 'digitz'",),
                 ("did you mean 'digits'", "valid: aircraft"), id="unknown-dataset"),
    pytest.param(["run", "--backbones", "resnet50", "--dataset", "digits"], ("unknown backbone 'resnet50'",),
                 ("timm:resnet50", "torchvision:resnet50", "valid: B, C, M, S"), id="unknown-backbone"),
    pytest.param(["run", "--config", "{d}/typo.yaml"], ("unknown setting", "'epoch'"), ("did you mean 'epochs'",), id="unknown-yaml-setting"),
    # ---- invalid hyper-parameter values
    pytest.param([*FEAT, "{d}/ok.npz", "--hp", "lr=-1"], ("lr=-1.0 is out of range",), ("lr must be > 0",), id="lr-negative"),
    pytest.param([*FEAT, "{d}/ok.npz", "--aug", "mixup", "--hp", "alpha=0"], ("alpha=0.0 is out of range",), ("alpha must be > 0",), id="alpha-zero"),
    pytest.param([*FEAT, "{d}/ok.npz", "--hp", "lr=nan"], ("lr=nan is not finite",), ("finite number",), id="lr-nan"),
    pytest.param([*FEAT, "{d}/ok.npz", "--hp", "lr=fast"], ("lr='fast' is not a number",), ("lr=1.6",), id="lr-not-a-number"),
    pytest.param([*FEAT, "{d}/ok.npz", "--batch-size", "0"], ("--batch-size 0 must be at least 1",), ("--batch-size 256",), id="batch-size-0"),
    pytest.param(["run", "--epochs", "0", "--features", "{d}/ok.npz"], ("--epochs 0 must be at least 1",), ("--epochs 100",), id="epochs-0"),
    pytest.param(["run", "--epochs", "ten"], ("argument --epochs: invalid int value: 'ten'",), ("featbench run --help",), id="epochs-not-int"),
    # ---- malformed --hp and YAML
    pytest.param([*FEAT, "{d}/ok.npz", "--hp", "lr"], ("malformed --hp 'lr'",), ("NAME=VALUE",), id="hp-no-equals"),
    pytest.param([*FEAT, "{d}/ok.npz", "--hp", "lr=1,,2"], ("malformed --hp 'lr=1,,2': an empty value",), ("without empty items",), id="hp-empty-value"),
    pytest.param([*FEAT, "{d}/ok.npz", "--hp", "lr=1", "--hp", "lr=2"], ("--hp lr is given twice",), ("one --hp NAME=V1,V2",), id="hp-twice"),
    pytest.param(["run", "--config", "{d}/syntax.yaml"], ("syntax.yaml is not valid YAML: line 2, column 7", "expected ',' or ']'"), ("fix the YAML syntax",), id="yaml-syntax"),
    pytest.param(["run", "--config", "{d}/list.yaml"], ("does not hold a mapping of settings",), ("aug: [none, sea]",), id="yaml-not-a-mapping"),
    pytest.param(["run", "--config", "{d}/words.yaml"], ("epochs must be a whole number, not 'many'",), ("epochs: 2",), id="yaml-wrong-type"),
    pytest.param(["run", "--config", "{d}/hp_list.yaml"], ("hp must be a mapping",), ("hp: {lr: [0.5, 2]",), id="yaml-hp-list"),
    pytest.param(["run", "--config", "{d}/suite_dir"], ("suite file", "is a directory"), ("--config PATH.yaml",), id="yaml-is-a-directory"),
    pytest.param([*CKPT, "timm:test_resnet={d}/evil.pth", "--cache-dir", "{cache}"],
                 ("evil.pth: refused to load", "pickles the Python object posix.system", "weights_only=True", "arbitrary code"),
                 ("only if you trust the file", "--weights NAME="), id="ckpt-malicious-object"),
    # ---- where output goes
    pytest.param([*FEAT, "{d}/ok.npz", "--out", "{d}/a_file"], ("cannot write to --out", "a_file: File exists"),
                 ("choose a writable directory",), id="out-is-a-file"),
    pytest.param([*FEAT, "{d}/ok.npz", "--out", "{d}/a_file/run"], ("cannot write to --out", "Not a directory"),
                 ("choose a writable directory",), id="out-under-a-file"),
    pytest.param([*IMG, "--cache-dir", "{d}/a_file/cache"], ("cannot write the feature cache", "Not a directory"),
                 ("choose another location",), id="cache-under-a-file"),
    pytest.param(["report", "{d}/bad_store"], ("featbench.sqlite is not a readable featbench results store",),
                 ("move the damaged file away",), id="store-not-a-database"),
    # ---- plugins (strict mode, as in CI; the warning of the default mode is tested below)
    pytest.param(["-p", "{d}/raises.py", "plugins"], ("featbench_local_raises", "RuntimeError: boom in registration"),
                 ("fix or uninstall the plugin",), id="plugin-raises"),
    pytest.param(["-p", "{d}/wrong_type.py", "plugins"], ("augmenter 'bad_aug' is an int instance, not a subclass",),
                 ("derived from featbench.api.FeatureAugmenter",), id="plugin-wrong-type"),
    pytest.param(["-p", "{d}/returns.py", "plugins"], ("register_augmenters returned a dict",), ("call registry.add(name, obj)",),
                 id="plugin-returns-value"),
    pytest.param(["-p", "{d}/misspelt.py", "plugins"], ("unknown hook(s) register_augmenterz",), ("register_augmenters",),
                 id="plugin-misspelt-hook"),
    pytest.param(["-p", "{d}/syntax.py", "plugins"], ("SyntaxError",), ("fix the plugin",), id="plugin-syntax-error"),
    pytest.param(["-p", "{d}/nowhere.py", "plugins"], ("cannot load plugin module", "no such file"), ("path to a .py file",),
                 id="plugin-not-found"),
]


# More checkpoints: the same checks, through main() in this process (each subprocess would spend ~10 s
# importing torch, timm and scikit-learn on a 2-core machine).
CHECKPOINT_CASES = [
    pytest.param([*CKPT, "timm:test_resnet={d}/missing_key.pth", "--cache-dir", "{cache}"],
                 ("does not fit the model", "missing 1 key(s) [layer1.0.conv2.weight]"), ("right file for this backbone",), id="ckpt-missing-key"),
    pytest.param([*CKPT, "timm:test_resnet={d}/unexpected_key.pth", "--cache-dir", "{cache}"],
                 ("does not fit the model", "unexpected 1 key(s) [extra.weight]"), ("right file for this backbone",), id="ckpt-unexpected-key"),
    pytest.param([*CKPT, "timm:test_resnet={d}/vit.pth", "--cache-dir", "{cache}"],
                 ("does not fit the model", "missing 75 key(s)", "unexpected 78 key(s)"), ("another architecture (0 of the model's 75 keys found)",),
                 id="ckpt-other-architecture"),
    pytest.param([*CKPT, "timm:test_resnet={d}/narrow.pth", "--cache-dir", "{cache}"],
                 ("1 tensor(s) of the checkpoint have the wrong shape", "conv1.0.weight (8, 3, 3, 3) vs (16, 3, 3, 3)"),
                 ("another architecture or width",), id="ckpt-wrong-shape"),
    pytest.param([*CKPT, "timm:test_resnet={d}/evil.pkl", "--cache-dir", "{cache}"],
                 ("evil.pkl: refused to load", "plain Python pickle, not a torch checkpoint", "weights_only=True"),
                 ("only if you trust the file",), id="ckpt-plain-pickle"),
    pytest.param([*CKPT, "timm:test_resnet={d}/truncated.pth", "--cache-dir", "{cache}"],
                 ("truncated.pth: not a valid checkpoint",), ("truncated or damaged (not a complete zip archive)",),
                 id="ckpt-truncated"),
    pytest.param([*CKPT, "timm:test_resnet={d}/list.pth", "--cache-dir", "{cache}"],
                 ("the checkpoint holds a list, not a state dict",), ("torch.save(model.state_dict(), PATH)",), id="ckpt-not-a-state-dict"),
    pytest.param([*CKPT, "timm:test_resnet={d}/nowhere.pth", "--cache-dir", "{cache}"], ("nowhere.pth: no such file",),
                 ("timm:test_resnet=random",), id="ckpt-not-found"),
    pytest.param(["extract", "--quiet", "--backbones", "S", "--dataset", "digits", "--cache-dir", "{d}/cache_with_bad_S"],
                 ("backbone S:", "resnet50-0676ba61.pth has SHA-256", "but registry.yaml expects 0676ba61"),
                 ("delete it and fetch it again", "--weights S=FILE"), id="ckpt-hash-mismatch"),
]


@pytest.mark.parametrize("argv,problem,fix", CASES)
def test_hostile_input_is_one_clear_line_and_leaves_nothing(bad, tmp_path, argv, problem, fix):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [a.format(d=bad, out=out, cache=cache) for a in argv]
    if args[0] == "run" and "--out" not in args:
        args += ["--out", str(out)]
    before = files_under(str(bad))
    proc = featbench(*args, cwd=str(tmp_path))
    assert_clean_error(proc, problem, fix)
    assert not out.exists(), files_under(str(out))  # no run directory, no results store
    assert cache_debris(str(cache)) == [] and files_under(str(cache / "features")) == []
    assert not (bad / MARKER).exists(), "a pickle ran code"
    assert files_under(str(bad)) == before  # nothing written next to the inputs either


@pytest.mark.parametrize("argv,problem,fix", CHECKPOINT_CASES)
def test_bad_checkpoint_is_one_clear_line_and_leaves_nothing(bad, tmp_path, capsys, argv, problem, fix):
    from featbench.cli import main

    cache = tmp_path / "cache"
    args = [a.format(d=bad, cache=cache) for a in argv]
    code = main(args)
    out, err = capsys.readouterr()
    assert_clean_error(subprocess.CompletedProcess(args, code, out, err), problem, fix)
    assert files_under(str(cache / "features")) == []
    assert not (bad / MARKER).exists(), "a pickle ran code"


def test_debug_shows_the_traceback(bad, tmp_path):
    proc = featbench("--debug", "run", "--features", str(bad / "negative.npz"), cwd=str(tmp_path))
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "DataError: " in proc.stderr


def test_a_broken_plugin_is_a_warning_without_strict_mode(bad, tmp_path):
    proc = featbench("-p", str(bad / "raises.py"), "run", "--features", str(bad / "ok.npz"), "--aug", "none", "--epochs", "1",
                     "--quiet", "--format", "csv-wide", cwd=str(tmp_path), env=cli_env(FEATBENCH_STRICT_PLUGINS="0"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "featbench: warning: plugin 'featbench_local_raises' (distribution '(local -p module)') failed: RuntimeError: boom in "
        "registration; continuing without it (--strict-plugins makes this an error)"]
    assert proc.stdout.splitlines()[0] == "augmenter,ok,Avg"


def test_a_failed_run_in_an_existing_directory_keeps_what_was_there(bad, tmp_path):
    """Bad input in a second run of a directory: the first run's results stay, the failed run leaves no record."""
    out = str(tmp_path / "run")
    first = featbench("run", "--features", str(bad / "ok.npz"), "--aug", "none", "--epochs", "1", "--quiet", "--out", out)
    assert first.returncode == 0, first.stderr
    before = {n: open(os.path.join(out, n), "rb").read() for n in ("results.json", "table.txt")}
    proc = featbench("run", "--features", str(bad / "nan.npz"), "--aug", "none", "--epochs", "1", "--quiet", "--out", out)
    assert_clean_error(proc, ("NaN or Inf",))
    assert {n: open(os.path.join(out, n), "rb").read() for n in before} == before
    from featbench.bench.store import Store

    with Store(out, create=False) as store:
        assert store.integrity_ok() and [r.status for r in store.runs()] == ["finished"] and store.count_configs() == 1
    assert sorted(os.listdir(out)) == ["featbench.sqlite", "results.json", "table.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_output_directory(bad, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        proc = featbench("run", "--features", str(bad / "ok.npz"), "--epochs", "1", "--out", str(locked / "run"))
        assert_clean_error(proc, ("cannot write to --out", "Permission denied"), ("choose a writable directory",))
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("damage", ["bit-flip", "truncate"])
def test_a_damaged_cache_file_is_detected_and_recomputed(tmp_path, capsys, damage):
    """A flipped bit in x.npy or a truncated y.npy fails its SHA-256: one warning line, the entry is
    recomputed, and the features are the same as before."""
    from featbench.cli import main
    from featbench.inputs.cache import FeatureCache

    cache = tmp_path / "cache"
    args = ["extract", "--quiet", "--backbones", "timm:test_resnet", "--dataset", "digits", "--image-size", "32",
            "--workers", "0", "--cache-dir", str(cache)]
    assert main(args) == 0
    capsys.readouterr()
    entries = sorted(p.parent for p in (cache / "features").glob("*/*/meta.json"))
    before = {e.name: np.array(FeatureCache(str(cache)).load(e.name).x) for e in entries}
    target = entries[0] / ("x.npy" if damage == "bit-flip" else "y.npy")
    data = bytearray(target.read_bytes())
    if damage == "bit-flip":
        data[-7] ^= 0x04
    else:
        del data[-9:]
    target.write_bytes(bytes(data))
    assert main(args) == 0
    out, err = capsys.readouterr()
    name = "x.npy" if damage == "bit-flip" else "y.npy"
    assert err.splitlines() == [f"featbench: warning: feature cache entry {entries[0]} is corrupt ({name} checksum mismatch); "
                                "deleting it and recomputing"]
    assert out.count("extracted ") == 1 and "nothing (all cached)" not in out  # that split, and only it, was recomputed
    after = {e.name: np.array(FeatureCache(str(cache)).load(e.name).x) for e in entries}
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in before)
