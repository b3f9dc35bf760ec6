"""Feature files and ensembles."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_blobs
from reference import ensemble

from featbench.errors import ConfigError, DataError, UnknownNameError
from featbench.inputs.features import load_features
from featbench.plugins.losses import SmoothedHinge
from featbench.plugins.sea import SeA
from featbench.training.grid import expand_grid, hparams_for, parse_hp_args


def save(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_ensemble_normalises_each_block_then_the_concatenation(tmp_path):
    a = make_blobs(d=6, seed=0)
    b = dict(a)
    rng = np.random.default_rng(0)
    for s in ("train", "test"):
        b[f"{s}_x"] = rng.random((len(a[f"{s}_y"]), 4)) * 7  # not normalised, other scale
    fs = load_features([save(tmp_path, "a.npz", **a), save(tmp_path, "b.npz", **b)])
    assert fs.dim == 10 and fs.name == "a+b"
    assert np.allclose(np.linalg.norm(fs.train_x, axis=1), 1, atol=1e-6)
    # each block carries norm 1/sqrt(2)
    assert np.allclose(np.linalg.norm(fs.train_x[:, :6], axis=1), 2 ** -0.5, atol=1e-6)
    assert np.allclose(np.linalg.norm(fs.train_x[:, 6:], axis=1), 2 ** -0.5, atol=1e-6)
    single = [load_features([save(tmp_path, n, **d)]) for n, d in (("a2.npz", a), ("b2.npz", b))]
    assert np.allclose(ensemble(single).train_x, fs.train_x)


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.pop("test_y"), "missing key"),
    (lambda d: d.update(train_x=d["train_x"][:, :, None]), "expected \\(n, d\\)"),
    (lambda d: d["train_x"].__setitem__((0, 0), np.nan), "NaN or Inf"),
    (lambda d: d.update(train_y=d["train_y"][:-1]), "rows but train_y has"),
    (lambda d: d.update(train_y=d["train_y"] - 1), "negative labels"),
    (lambda d: d.update(train_y=d["train_y"] + 0.5), "non-integer"),
    (lambda d: d.update(train_y=np.where(d["train_y"] == 1, 2, d["train_y"])), "not contiguous"),
    (lambda d: d.update(test_y=np.where(d["test_y"] == 0, 9, d["test_y"])), "never seen in training"),
    (lambda d: d.update(test_x=d["test_x"][:, :5]), "features but train_x has"),
    (lambda d: d.update(train_x=d["train_x"][:0], train_y=d["train_y"][:0]), "empty"),
])
def test_bad_feature_files_are_explained(tmp_path, mutate, match):
    data = make_blobs()
    mutate(data)
    with pytest.raises(DataError, match=match):
        load_features([save(tmp_path, "bad.npz", **data)])


def test_ensemble_members_must_agree(tmp_path):
    a = make_blobs(seed=0)
    b = make_blobs(seed=1)
    with pytest.raises(DataError, match="disagree on train labels"):
        load_features([save(tmp_path, "a.npz", **a), save(tmp_path, "b.npz", **b)])
    c = make_blobs(seed=0, n_train=100)
    with pytest.raises(DataError, match="number of train rows"):
        load_features([save(tmp_path, "a.npz", **a), save(tmp_path, "c.npz", **c)])


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    data = make_blobs()
    data["train_y"] = np.array([object()] * len(data["train_y"]), dtype=object)
    with pytest.raises(DataError, match="cannot read"):
        load_features([save(tmp_path, "obj.npz", **data)])


def test_hp_parsing_and_grid_expansion():
    assert parse_hp_args(["lr=1.6", "eta=0,0.4,0.8"]) == {"lr": [1.6], "eta": [0, 0.4, 0.8]}
    for bad in ("lr", "lr=", "=1", "lr=1,", "lr=1,1"):
        with pytest.raises(ConfigError):
            parse_hp_args([bad])
    assert parse_hp_args(["lr=a"]) == {"lr": ["a"]}  # a word may be a choice-valued option: checked by its HParam
    params = hparams_for(SmoothedHinge, SeA)
    configs = expand_grid(params, {"lr": [1, 2], "eta": [0, 0.8]})
    assert len(configs) == 4 and {c["alpha"] for c in configs} == {0.01}
    assert [(c["lr"], c["eta"]) for c in configs] == [(1, 0), (1, 0.8), (2, 0), (2, 0.8)]
    with pytest.raises(UnknownNameError, match="did you mean 'eta'"):
        expand_grid(params, {"etaa": [1]})
    for name, value, match in (("lr", "a", "lr='a' is not a number"), ("lr", -1, "lr must be > 0"), ("alpha", -0.1, "alpha must be >= 0"), ("lamda", 0, "lamda must be > 0")):
        with pytest.raises(ConfigError, match=match):
            expand_grid(params, {name: [value]})
