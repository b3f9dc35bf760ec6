"""BYOL: TF SAME padding, and the Haiku checkpoint converter on a file built to the release's layout."""

from __future__ import annotations

import collections
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from featbench.errors import DataError
from featbench.inputs import safe_pickle
from featbench.inputs.convert import convert_byol, torch_module_name
from featbench.plugins.backbones_resnet import same_pad, tf_same_padding


def test_same_pad_matches_tensorflow_rule():
    assert same_pad(224, 7, 2) == (2, 3)  # the 7x7 stem: TF pads less before than after
    assert same_pad(112, 3, 2) == (0, 1)  # the max-pool
    assert same_pad(56, 1, 2) == (0, 0)  # 1x1 stride-2 shortcut
    assert same_pad(56, 3, 1) == (1, 1)  # stride 1: symmetric, as PyTorch's padding=1
    assert same_pad(7, 3, 2) == (1, 1)


@pytest.mark.parametrize("size,asymmetric", [(32, True), (45, True), (33, False)])
def test_tf_same_resnet_equals_timm_same_layers(size, asymmetric):
    """Our in-place SAME conversion equals timm's reference Conv2dSame / MaxPool2dSame layers."""
    import torchvision
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.pool2d_same import MaxPool2dSame

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    ref = torchvision.models.resnet18(weights=None).eval()
    ref.load_state_dict(model.state_dict())
    tf_same_padding(model)
    c = ref.conv1
    ref.conv1 = Conv2dSame(3, 64, 7, stride=2, bias=False)
    ref.conv1.weight = c.weight
    ref.maxpool = MaxPool2dSame(3, stride=2)
    for layer in (ref.layer2, ref.layer3, ref.layer4):
        old = layer[0].conv1
        new = Conv2dSame(old.in_channels, old.out_channels, 3, stride=2, bias=False)
        new.weight = old.weight
        layer[0].conv1 = new  # resnet18: the stride sits on the block's first 3x3 conv
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)
        stock = torchvision.models.resnet18(weights=None).eval()
        stock.load_state_dict(ref.state_dict())
        # SAME differs from PyTorch's symmetric padding exactly when some layer pads asymmetrically
        # (33 -> 17 -> 9 -> 5 -> 3 pads symmetrically everywhere)
        assert torch.allclose(model(x), stock(x), atol=1e-5) != asymmetric


# ---- a checkpoint in the release's layout -----------------------------------------------------------


def _flat_reduce(self):
    return (type(self), (dict(self),))


def _array_reduce(self):
    return (type(self), (self.value,))


def release_classes(monkeypatch):
    """Stand-ins importable under the names the release's pickle refers to: BYOL's state NamedTuple,
    Haiku's FlatMapping (pickled as FlatMapping(plain dict)) and an old jax DeviceArray (the rng)."""
    for name in ("byol", "byol.byol_experiment", "haiku", "haiku._src", "haiku._src.data_structures", "jax",
                 "jax.interpreters", "jax.interpreters.xla"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    state = collections.namedtuple("_ByolExperimentState", "online_params target_params online_state target_state opt_state",
                                   module="byol.byol_experiment")
    flat = type("FlatMapping", (dict,), {"__reduce__": _flat_reduce, "__module__": "haiku._src.data_structures"})
    array = type("DeviceArray", (), {"__init__": lambda self, v: setattr(self, "value", v), "__reduce__": _array_reduce,
                                     "__module__": "jax.interpreters.xla"})
    for mod, obj in (("byol.byol_experiment", state), ("haiku._src.data_structures", flat), ("jax.interpreters.xla", array)):
        setattr(sys.modules[mod], obj.__name__, obj)
    return state, flat, array


def haiku_layout(sd, FlatMapping):
    """torchvision resnet50 tensors -> Haiku ResNet50 params/state as BYOL names them."""
    params, state = {}, {}
    root = "res_net50/~/"

    def haiku_name(tv):
        if tv == "conv1":
            return root + "initial_conv"
        if tv == "bn1":
            return root + "initial_batchnorm"
        if tv == "fc":
            return "classifier"
        layer, block, rest = tv.split(".", 2)
        g, b = int(layer[5:]) - 1, int(block)
        prefix = f"{root}block_group_{g}/~/block_{b}/~/"
        if rest.startswith("downsample"):
            return prefix + ("shortcut_conv" if rest.endswith("0") else "shortcut_batchnorm")
        return prefix + (f"conv_{int(rest[4:]) - 1}" if rest.startswith("conv") else f"batchnorm_{int(rest[2:]) - 1}")

    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        module, leaf = k.rsplit(".", 1)
        v = v.numpy()
        h = haiku_name(module)
        if leaf in ("running_mean", "running_var"):
            avg = v.reshape(1, 1, 1, -1)
            state[f"{h}/~/{'mean_ema' if leaf == 'running_mean' else 'var_ema'}"] = FlatMapping(
                average=avg, hidden=avg.copy(), counter=np.array(1000, np.int32))
            continue
        is_bn = "bn" in module or module.endswith("downsample.1")
        if is_bn:
            params.setdefault(h, {})["scale" if leaf == "weight" else "offset"] = v.reshape(1, 1, 1, -1)
        elif module == "fc":
            params.setdefault(h, {})["w" if leaf == "weight" else "b"] = v.T.copy() if leaf == "weight" else v
        else:
            params.setdefault(h, {})["w"] = v.transpose(2, 3, 1, 0).copy()  # OIHW -> HWIO
    params["projector/~/linear"] = {"w": np.ones((2048, 16), np.float32), "b": np.zeros(16, np.float32)}
    params["predictor/~/linear_1"] = {"w": np.ones((16, 16), np.float32)}
    state["projector/~/batch_norm/~/mean_ema"] = FlatMapping(average=np.zeros((1, 16), np.float32))
    return FlatMapping({k: FlatMapping(v) for k, v in params.items()}), FlatMapping(state)


def release_pickle(monkeypatch) -> tuple[dict, bytes]:
    """A seeded torchvision ResNet-50 state dict and the bytes of BYOL's release pickle holding it."""
    import torchvision

    ByolState, FlatMapping, DeviceArray = release_classes(monkeypatch)
    torch.manual_seed(5)
    src = torchvision.models.resnet50(weights=None).state_dict()
    params, state = haiku_layout(src, FlatMapping)
    ckpt = {"experiment_state": ByolState(params, params, state, state, ()), "step": 1000, "rng": DeviceArray(np.zeros(2, np.uint32))}
    return src, pickle.dumps(ckpt, protocol=2)  # dill.dump(..., protocol=2) in the release


def test_byol_pickle_converts_to_exactly_the_source_weights(monkeypatch, tmp_path):
    src, data = release_pickle(monkeypatch)
    pkl = tmp_path / "pretrain_res50x1.pkl"
    pkl.write_bytes(data)
    out = tmp_path / "byol.pth"
    sd = convert_byol(str(pkl), str(out))
    loaded = torch.load(out, weights_only=True)
    want = {k: v for k, v in src.items() if not k.endswith("num_batches_tracked")}
    assert set(loaded) == set(want) == set(sd)
    assert all(torch.equal(loaded[k], want[k]) for k in want)


def test_converter_rejects_other_pickles(tmp_path):
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps({"weights": np.zeros(3)}, protocol=2))
    with pytest.raises(DataError, match="experiment_state"):
        convert_byol(str(p), str(tmp_path / "o.pth"))


def test_safe_pickle_runs_no_code_from_the_file(monkeypatch):
    class Boom:
        def __reduce__(self):
            import os

            return (os.system, ("echo should-not-run",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        safe_pickle.loads(pickle.dumps(Boom(), protocol=2))
    ByolState, _, _ = release_classes(monkeypatch)
    rec = safe_pickle.loads(pickle.dumps(ByolState({}, {}, {}, {}, ()), protocol=2))
    assert isinstance(rec, safe_pickle.Record) and len(rec.args) == 5  # never instantiated for real


def test_module_name_mapping():
    assert torch_module_name("res_net50/~/block_group_3/~/block_2/~/conv_2") == "layer4.2.conv3"
    assert torch_module_name("res_net50/~/block_group_0/~/block_0/~/shortcut_batchnorm") == "layer1.0.downsample.1"
    assert torch_module_name("res_net50/~/initial_batchnorm") == "bn1"
    assert torch_module_name("projector/~/linear") is None
