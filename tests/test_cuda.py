"""The CUDA path: the central trainer, protocol, extraction and executor tests, run on a GPU.

Every test here is marked ``cuda`` and skipped when ``torch.cuda.is_available()`` is false (so CI, which has
no GPU, only collects them); ``python -m pytest -m cuda`` runs them on a GPU machine, and
``benchmarks/gpu_check.py`` does so first. Nothing here downloads anything: the backbone is a torchvision
ResNet-18 with random weights. Data is tiny (seconds per test).

Tolerances, stated once: K heads together vs K single runs, CUDA graphs vs eager: ``max|dW| <= 1e-4 * max|W|``
(float32 rounding: cuBLAS may pick other kernels for other shapes, and SeA's sharp softmax amplifies
the last bits; a wrong step differs by O(1)); CUDA vs CPU: the same chosen configuration and test
accuracy within ``CPU_TOLERANCE_POINTS``; tf32 matmul and bf16 feature storage vs fp32: every
configuration's test top-1 within 0.1 point (the issue's bound) on a 4,000-example test set; extraction
under AMP (float16) vs the CPU's float32: cosine >= 0.999 per row.
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import pytest
import torch
from conftest import make_blobs

from featbench.plugins.baseline import NoAugmentation
from featbench.plugins.losses import SmoothedHinge
from featbench.plugins.sea import SeA
from featbench.training import metrics
from featbench.training.grid import expand_grid, hparams_for
from featbench.training.trainer import TrainSettings, predict, train_heads

# FEATBENCH_CUDA_TESTS_DEVICE=cpu runs the test code itself on the CPU (``gpu_check.py --tiny --device cpu`` does, so
# a stale test is caught before GPU time is spent on it); the tests that only mean something on CUDA are then skipped.
DEVICE = os.environ.get("FEATBENCH_CUDA_TESTS_DEVICE", "cuda")
ON_CUDA = DEVICE.startswith("cuda")
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(), reason="needs a CUDA device")]
needs_cuda = pytest.mark.skipif(not ON_CUDA, reason="only meaningful on a CUDA device")
CPU_TOLERANCE_POINTS = 0.5  # CUDA vs CPU test accuracy, in points (2 of the 400 test examples; validation: twice that)


@functools.lru_cache(maxsize=1)
def builtin_augmenters() -> dict[str, type]:
    from featbench.manager import load_plugins

    host = load_plugins(entry_points=[], local_modules=(), disabled=())
    return {e.name: e.obj for e in host.augmenters if e.provider.dist == "featbench"}


def sea_grid():
    """Eight SeA configurations: eta = 0 and eta > 0 heads (the fused step's index path), alpha = 0 (one-hot) and > 0."""
    return expand_grid(hparams_for(SmoothedHinge, SeA), {"lr": [0.5, 2.0], "eta": [0.0, 0.8], "alpha": [0.0, 0.02]})


def close(a, b, rel: float = 1e-4) -> bool:
    return float((a - b).abs().max()) <= rel * float(b.abs().max())


def train(aug, configs, data, **settings):
    s = TrainSettings(**{"epochs": 3, "batch_size": 32, "seed": 1, "device": DEVICE, **settings})
    return train_heads(data["train_x"], data["train_y"], int(data["train_y"].max()) + 1, aug, SmoothedHinge(), configs, s)


SMALL = make_blobs(n_train=150, n_test=100, d=24, C=4, seed=2, spread=0.7)  # 150 = 4 * 32 + 22: a short last batch


@pytest.mark.parametrize("name", sorted(builtin_augmenters()))
def test_k_heads_together_equal_k_single_runs_on_cuda(name):
    from method_utils import VARIATIONS, configs_for

    aug = builtin_augmenters()[name]
    a, b = VARIATIONS[name]
    configs = configs_for(aug, None, {**a, "lr": 1.0}, {**b, "lr": 0.5}, {**b, "lr": 2.0, "wd": 1e-4})
    stack = train(aug, configs, SMALL)
    assert stack.weight.device.type == "cpu" and torch.isfinite(stack.weight).all()
    for k, cfg in enumerate(configs):
        single = train(aug, [cfg], SMALL)
        assert close(stack.weight[k], single.weight[0]), (name, cfg, float((stack.weight[k] - single.weight[0]).abs().max()))


def test_cuda_and_cpu_choose_the_same_configuration_and_agree_on_test_accuracy():
    from reference import run_cell

    from featbench.inputs.features import FeatureSet

    data = make_blobs(n_train=300, n_val=200, n_test=400, d=32, C=4, seed=4, spread=0.9)
    fs = FeatureSet(name="blobs", train_x=data["train_x"], train_y=data["train_y"], val_x=data["val_x"], val_y=data["val_y"],
                    test_x=data["test_x"], test_y=data["test_y"], num_classes=4)
    params = hparams_for(SmoothedHinge, SeA)
    configs = expand_grid(params, {"lr": [0.01, 0.5], "eta": [0.0, 0.8], "alpha": [0.05]})  # on the CPU: best 17 points ahead
    cells = {dev: run_cell(fs, "sea", SeA, "hinge", SmoothedHinge(), params, configs,
                           TrainSettings(epochs=4, batch_size=32, seed=7, device=dev)) for dev in ("cpu", DEVICE)}
    cpu, gpu = cells["cpu"], cells[DEVICE]
    assert gpu.hp == cpu.hp
    assert abs(gpu.value - cpu.value) <= CPU_TOLERANCE_POINTS, (gpu.value, cpu.value)
    assert np.allclose(gpu.val_scores, cpu.val_scores, atol=2 * CPU_TOLERANCE_POINTS)  # 2 of the 200 validation examples


@pytest.mark.parametrize("aug", [SeA, NoAugmentation])
@pytest.mark.parametrize("heads_per_chunk", [0, 3])
def test_cuda_graphs_equal_eager_execution(aug, heads_per_chunk):
    configs = sea_grid() if aug is SeA else expand_grid(hparams_for(SmoothedHinge, aug), {"lr": [0.5, 2.0], "delta": [0, 1]})
    eager = train(aug, configs, SMALL, epochs=5, heads_per_chunk=heads_per_chunk)
    graphs = train(aug, configs, SMALL, epochs=5, heads_per_chunk=heads_per_chunk, cuda_graphs=ON_CUDA)
    assert close(graphs.weight, eager.weight), float((graphs.weight - eager.weight).abs().max())
    assert np.array_equal(predict(graphs.weight, SMALL["test_x"]), predict(eager.weight, SMALL["test_x"]))


def test_cuda_graphs_freeze_a_diverging_head_like_eager():
    ok = dict(lr=1.0, wd=0.0, lamda=0.1, delta=0.0, eta=0.8, alpha=0.01)
    configs = [ok, {**ok, "lr": 1e38}]
    graphs = train(SeA, configs, SMALL, epochs=5, cuda_graphs=ON_CUDA)  # on the CPU: the test code, eager
    eager = train(SeA, configs, SMALL, epochs=5)
    assert graphs.diverged == eager.diverged == (False, True) and torch.isfinite(graphs.weight).all()
    assert close(graphs.weight[0], eager.weight[0])
    # Against a one-head run the stack's shapes differ, so cuBLAS may pick other kernels; at alpha = 0.01 SeA's
    # sharp softmax amplifies those last bits (measured on an H200: 1.4e-4 relative after 5 epochs).
    assert close(graphs.weight[0], train(SeA, [ok], SMALL, epochs=5).weight[0], rel=1e-3)


MEDIUM = make_blobs(n_train=4000, n_test=4000, d=256, C=20, seed=5, spread=1.6)


@needs_cuda
@pytest.mark.parametrize("variant", [dict(matmul="tf32"), dict(storage="bfloat16"), dict(storage="float16")])
def test_reduced_precision_stays_within_a_tenth_of_a_point_of_fp32(variant):
    configs = expand_grid(hparams_for(SmoothedHinge, SeA), {"lr": [0.1, 0.5], "eta": [0.0, 0.8]})
    settings = dict(epochs=10, batch_size=256)
    base = train(SeA, configs, MEDIUM, **settings)
    reduced = train(SeA, configs, MEDIUM, **settings, **variant)
    acc = [metrics.top1(predict(r.weight, MEDIUM["test_x"]), MEDIUM["test_y"]) for r in (base, reduced)]
    assert 50 < float(acc[0].min()) < 99.9  # a problem where rounding could show
    assert float(np.abs(acc[1] - acc[0]).max()) <= 0.1, (variant, acc)


@needs_cuda
def test_features_already_on_the_device_are_used_in_place():
    from featbench.training.storage import place_features

    x = torch.as_tensor(SMALL["train_x"]).half().to(DEVICE)
    placed = place_features(x, DEVICE)
    assert placed.data_ptr() == x.data_ptr() and placed.dtype == torch.float16
    x32 = torch.as_tensor(SMALL["train_x"]).to(DEVICE)
    assert place_features(x32, f"{DEVICE}:{torch.cuda.current_device()}").data_ptr() == x32.data_ptr()


@needs_cuda
def test_matmul_precision_is_restored_after_training():
    before = torch.backends.cuda.matmul.fp32_precision
    train(SeA, sea_grid()[:2], SMALL, matmul="tf32")
    assert torch.backends.cuda.matmul.fp32_precision == before


@needs_cuda
def test_softmaxes_on_cuda_are_torch_softmax():
    from featbench.directions import fast_softmax, softmax_without_subnormals

    scores = torch.randn(8, 256, 10, device=DEVICE) * 300  # sharp enough to make subnormals on a CPU
    plain = torch.softmax(scores, -1)
    assert torch.equal(softmax_without_subnormals(scores), plain) and torch.equal(fast_softmax(scores), plain)


def graph_safe_builtins() -> list[str]:
    from featbench.training.cudagraph import graph_safe

    names = [n for n, cls in builtin_augmenters().items() if graph_safe(cls.__new__(cls))]
    assert {"none", "sea"} <= set(names)
    return sorted(names)


@needs_cuda
@pytest.mark.parametrize("cuda_graphs", [False, True])
@pytest.mark.parametrize("name", graph_safe_builtins())
def test_no_host_synchronisation_inside_an_epoch(name, cuda_graphs):
    """Whole epochs (batches, steps, the device-side divergence check, the next permutation's transfer) run
    under ``set_sync_debug_mode("error")``: any synchronising call raises. With CUDA graphs the window
    starts after the capture (``torch.cuda.graph`` itself synchronises), covering replays."""
    aug = builtin_augmenters()[name]
    from method_utils import VARIATIONS, configs_for

    a, b = VARIATIONS[name]
    configs = configs_for(aug, None, {**a, "lr": 1.0}, {**b, "lr": 0.5}, {**b, "lr": 2.0, "eta": 0.0} if "eta" in b else b)
    first, last = (1, 3) if cuda_graphs else (0, 2)  # error mode from the end of epoch `first` to the end of `last`
    watched = []

    def on_epoch_end(epoch, weight):
        if epoch == first:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        elif epoch == last:
            torch.cuda.set_sync_debug_mode("default")
        elif first < epoch < last:
            watched.append(epoch)

    try:
        res = train_heads(SMALL["train_x"], SMALL["train_y"], 4, aug, SmoothedHinge(), configs,
                          TrainSettings(epochs=last + 2, batch_size=32, device=DEVICE, cuda_graphs=cuda_graphs), on_epoch_end)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert watched and torch.isfinite(res.weight).all()


def test_extraction_on_cuda_matches_the_cpu_features():
    import torchvision
    from reference import extract_array

    from featbench.inputs.datasets import ArrayImages
    from featbench.inputs.extract import ExtractSettings

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    model.fc = torch.nn.Identity()
    model.eval()
    pixels = np.random.default_rng(0).integers(0, 256, size=(20, 64, 64, 3), dtype=np.uint8)
    source = ArrayImages(pixels, np.arange(20) % 2)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

    def transform(img):
        return (torch.as_tensor(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1) - mean) / std

    def run(device, amp=True):
        return extract_array(model, source, transform, ExtractSettings(batch_size=8, device=device, workers=0, progress=False, amp=amp))

    cpu = torch.as_tensor(run("cpu"))
    for amp in (True, False):
        gpu = torch.as_tensor(run(DEVICE, amp))
        assert gpu.shape == cpu.shape == (20, 512) and torch.isfinite(gpu).all()
        cos = torch.nn.functional.cosine_similarity(gpu, cpu, dim=1)
        assert float(cos.min()) >= 0.999, (amp, float(cos.min()))
        assert float((gpu - cpu).abs().max()) <= (2e-2 if amp else 5e-3) * float(cpu.abs().max()), amp


@needs_cuda
def test_a_ray_run_with_half_a_gpu_per_task_equals_the_local_run(tmp_path):
    pytest.importorskip("ray", reason="the Ray run needs Ray: pip install 'featbench[ray]'")
    from cli_util import cli_env, featbench
    from runner_util import make_features

    path = make_features(str(tmp_path / "f.npz"), seed=3, n_train=120, n_test=80, dim=8, classes=3)
    common = ["run", "--features", path, "--aug", "none,sea", "--hp", "lr=0.5,2", "--hp", "eta=0.4,0.8", "--epochs", "3",
              "--batch-size", "32", "--seeds", "2", "--stack-size", "2", "--device", "cuda", "--format", "json", "--quiet"]
    env = cli_env()  # no RAY_ADDRESS: a new local cluster, which sees this machine's GPU
    local = featbench(*common, "--out", str(tmp_path / "local"), env=env)
    ray_run = featbench(*common, "--out", str(tmp_path / "ray"), "--executor", "ray", "--ray-gpus", "0.5", env=env, timeout=600)
    assert local.returncode == 0, local.stderr
    assert ray_run.returncode == 0, ray_run.stderr
    results = [json.loads(p.stdout)["results"] for p in (local, ray_run)]
    assert [(r["augmenter"], r["values"], r["hp"]) for r in results[0]] == [(r["augmenter"], r["values"], r["hp"]) for r in results[1]]
    assert json.loads(ray_run.stdout)["versions"]["device"].startswith("cuda")
    assert os.path.isfile(tmp_path / "ray" / "featbench.sqlite")
