"""The trainer's fast paths against its generic path: whole trajectories, chunking, storage, device-side checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_blobs

from featbench.api import Augmented, FeatureAugmenter, Targets
from featbench.errors import ConfigError
from featbench.plugins.baseline import NoAugmentation
from featbench.plugins.losses import CrossEntropy, SmoothedHinge
from featbench.plugins.sea import SeA
from featbench.training.cudagraph import epoch_graphs, graph_safe
from featbench.training.grid import expand_grid, hparams_for
from featbench.training.storage import head_bytes, place_features, plan_chunk
from featbench.training.trainer import TrainSettings, matmul_precision, small_batches, train_heads

DATA = make_blobs(n_train=230, d=40, C=5, seed=3, spread=0.8)  # 230 = 3 * 64 + 38: a partial last batch


def sea_configs():
    values = {"lr": [0.5, 2.0], "wd": [0.0, 1e-3], "lamda": [0.1, 1.0], "delta": [0.0, 1.0],
              "eta": [0.0, 0.8], "alpha": [0.0, 0.02]}
    configs = expand_grid(hparams_for(SmoothedHinge, SeA), values)
    return configs[::5]  # 13 spread-out configurations


def train(aug, configs, loss=None, data=DATA, **kw):
    settings = TrainSettings(**{"epochs": 3, "batch_size": 64, "seed": 2, **kw})
    return train_heads(data["train_x"], data["train_y"], 5, aug, loss or SmoothedHinge(), configs, settings)


class CountingSeA(SeA):
    fused_steps = 0

    def fused_gradients(self, batch):
        CountingSeA.fused_steps += 1
        return super().fused_gradients(batch)


# float32: two summation orders of the same math, 12 steps apart; SeA's sharp projection softmax amplifies the
# rounding (over seeds 0-5 the largest deviation is 1e-6 to 1e-5 of the weights' scale, seed 2 the largest).
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 2e-5)])
@pytest.mark.parametrize("aug", [CountingSeA, NoAugmentation])
def test_fast_trajectories_equal_the_generic_autograd_path(aug, dtype, tol):
    configs = sea_configs() if aug is CountingSeA else expand_grid(hparams_for(SmoothedHinge, aug), {"lr": [0.5, 4.0], "delta": [0, 1]})
    CountingSeA.fused_steps = 0
    fast = train(aug, configs, dtype=dtype)
    assert CountingSeA.fused_steps == (12 if aug is CountingSeA else 0)  # 3 epochs x 4 batches, all fused
    generic = train(aug, configs, dtype=dtype, fast=False)
    assert CountingSeA.fused_steps == (12 if aug is CountingSeA else 0)  # the generic path never fuses
    assert fast.weight.dtype == getattr(torch, dtype)
    scale = generic.weight.abs().amax()
    assert float((fast.weight - generic.weight).abs().max()) <= tol * float(scale)


def test_cross_entropy_fast_path_equals_generic():
    configs = [dict(lr=1.0, wd=1e-4), dict(lr=3.0, wd=0.0)]
    fast = train(NoAugmentation, configs, loss=CrossEntropy(), dtype="float64")
    generic = train(NoAugmentation, configs, loss=CrossEntropy(), dtype="float64", fast=False)
    assert torch.allclose(fast.weight, generic.weight, atol=1e-12)


def test_fused_k_stack_equals_single_fused_runs_in_float64():
    configs = sea_configs()
    stack = train(SeA, configs, dtype="float64")
    for k in (0, 5, 12):
        single = train(SeA, [configs[k]], dtype="float64")
        assert torch.allclose(stack.weight[k], single.weight[0], atol=1e-12)


def test_chunked_grid_equals_one_stack_and_reports_all_heads_per_epoch():
    configs = sea_configs()
    seen = []
    whole = train(SeA, configs, dtype="float64")
    chunked = train_heads(DATA["train_x"], DATA["train_y"], 5, SeA, SmoothedHinge(), configs,
                          TrainSettings(epochs=3, batch_size=64, seed=2, dtype="float64", heads_per_chunk=4),
                          on_epoch_end=lambda e, w: seen.append(tuple(w.shape)))
    assert torch.allclose(whole.weight, chunked.weight, atol=1e-12)
    assert seen == [(len(configs), 5, 40)] * 3


def test_memory_plan_fits_the_budget():
    persistent, transient = head_bytes(100, 8192, 256, 4, fused=True)
    assert persistent == 2 * 100 * 8192 * 4
    k = plan_chunk(1728, persistent, transient, budget=60 << 30)
    assert 1 <= k <= 1728 and 1728 * persistent + k * transient <= 60 << 30
    assert plan_chunk(10, persistent, transient, budget=1 << 40) == 10
    assert plan_chunk(10, persistent, transient, budget=0) == 1
    assert plan_chunk(1728, persistent, transient, budget=1 << 40, cap_bytes=20 * persistent) == 20


def test_float16_memmap_trains_like_the_same_values_in_memory(tmp_path):
    """A half-precision memmap is gathered batch by batch (zero copy) and trains exactly like float32."""
    x16 = DATA["train_x"].astype(np.float16)
    path = tmp_path / "x.f16"
    mm = np.memmap(path, dtype=np.float16, mode="w+", shape=x16.shape)
    mm[:] = x16
    mm.flush()
    ro = np.memmap(path, dtype=np.float16, mode="r", shape=x16.shape)
    seen = {}

    class Spy(SeA):
        def __init__(self, run):
            super().__init__(run)
            seen["dtype"], seen["ptr"] = run.train_x.dtype, run.train_x.data_ptr()

    configs = sea_configs()[:4]
    data16 = {**DATA, "train_x": ro}
    data32 = {**DATA, "train_x": x16.astype(np.float32)}
    from_disk = train(Spy, configs, data=data16)
    in_memory = train(SeA, configs, data=data32)
    assert torch.equal(from_disk.weight, in_memory.weight)
    assert seen["dtype"] == torch.float16 and seen["ptr"] == ro.ctypes.data  # the memmap itself, not a copy


def test_storage_options_round_the_features_only():
    configs = sea_configs()[:3]
    bf16 = train(SeA, configs, storage="bfloat16")
    rounded = {**DATA, "train_x": torch.as_tensor(DATA["train_x"]).bfloat16().float().numpy()}
    assert torch.equal(bf16.weight, train(SeA, configs, data=rounded).weight)
    x = place_features(DATA["train_x"], "cpu", "float32", "float16")
    assert x.dtype == torch.float16 and torch.equal(x.float(), torch.as_tensor(DATA["train_x"]).half().float())
    with pytest.raises(ConfigError):
        place_features(DATA["train_x"], "cpu", "float32", "float8")


def test_bf16_matmul_on_cpu_is_close_and_restores_the_flag():
    configs = sea_configs()[:4]
    before = torch.backends.mkldnn.matmul.fp32_precision
    bf16 = train(SeA, configs, matmul="bf16")
    assert torch.backends.mkldnn.matmul.fp32_precision == before
    fp32 = train(SeA, configs)
    assert float((bf16.weight - fp32.weight).abs().max()) < 0.05 * float(fp32.weight.abs().max())
    with pytest.raises(ConfigError):
        with matmul_precision("tf32", torch.device("cpu")):
            pass


def test_divergence_is_detected_on_the_device_after_the_epoch():
    configs = [dict(lr=1.0, wd=0.0, lamda=0.1, delta=0.0, eta=0.8, alpha=0.01), dict(lr=1e38, wd=0.0, lamda=0.1, delta=0.0, eta=0.8, alpha=0.01)]
    res = train(SeA, configs)
    assert res.diverged == (False, True) and torch.isfinite(res.weight).all()
    assert torch.equal(res.weight[1], torch.zeros_like(res.weight[1]))
    assert torch.allclose(res.weight[0], train(SeA, configs[:1]).weight[0], atol=1e-6)


@pytest.mark.parametrize("n,b,m", [(230, 64, 2), (129, 64, 2), (128, 64, 2), (5, 64, 2), (1, 64, 2), (300, 1, 2), (10, 3, 4)])
def test_small_batch_count(n, b, m):
    sizes = [min(b, n - s) for s in range(0, n, b)]
    assert small_batches(n, b, m) == sum(s < m for s in sizes)


def test_augmenters_without_a_fast_path_keep_working_unchanged():
    """An augmenter with only ``augment`` and a differentiable logit adjustment takes the autograd path."""

    class Shift(FeatureAugmenter):
        def augment(self, batch):
            return Augmented(batch.x, Targets.hard(batch.y), logit_adjust=lambda z, w: z + 0.1 * (w ** 2).sum(-1).unsqueeze(1))

    configs = [dict(lr=0.5, wd=0.0, lamda=0.1, delta=0.0)]
    assert torch.allclose(train(Shift, configs, dtype="float64").weight, train(Shift, configs, dtype="float64", fast=False).weight)


def test_cuda_graphs_are_opt_in_and_only_for_safe_augmenters():
    class Grows(SeA):
        def on_epoch_start(self, epoch, weight):
            return None

    assert graph_safe(SeA.__new__(SeA)) and graph_safe(NoAugmentation.__new__(NoAugmentation))
    assert not graph_safe(Grows.__new__(Grows))
    assert epoch_graphs([], TrainSettings(), torch.device("cpu")) is None
    with pytest.raises(ConfigError):
        train(SeA, sea_configs()[:1], cuda_graphs=True)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 2e-5)])
def test_every_builtin_augmenter_trains_the_same_on_the_fast_and_the_generic_path(dtype, tol):
    """Generated from the registry: each built-in augmenter's default path (fused or closed-form weight
    gradient) against its generic autograd path, two settings of its own hyper-parameters in one stack."""
    from method_utils import VARIATIONS, configs_for, unit_blobs

    from featbench.manager import load_plugins

    host = load_plugins(entry_points=[], local_modules=(), disabled=())
    augmenters = {e.name: e.obj for e in host.augmenters if e.provider.dist == "featbench"}
    assert sorted(augmenters) == sorted(VARIATIONS)
    x, y = unit_blobs(n=70, d=12, C=3, seed=1)
    for name, aug in augmenters.items():
        a, b = VARIATIONS[name]
        configs = configs_for(aug, None, {**a, "lr": 1.0}, {**b, "lr": 0.5, "wd": 1e-4})
        runs = [train_heads(x, y, 3, aug, SmoothedHinge(), configs, TrainSettings(epochs=3, batch_size=32, dtype=dtype, fast=f))
                for f in (True, False)]
        scale = float(runs[1].weight.abs().max())
        assert float((runs[0].weight - runs[1].weight).abs().max()) <= tol * scale, name
