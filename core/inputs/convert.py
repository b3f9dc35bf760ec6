"""``featbench convert byol PKL OUT``: BYOL's JAX/Haiku release -> a torchvision ResNet-50 state dict.

The official ``pretrain_res50x1.pkl`` is a dill pickle (protocol 2) of ``{'experiment_state':
_ByolExperimentState(online_params, target_params, online_state, target_state, opt_state), 'step', 'rng'}``
whose parameters are Haiku containers of numpy arrays. It is read with :mod:`featbench.inputs.safe_pickle`,
so neither JAX, Haiku nor dill is needed and nothing in the file is executed.

Name mapping (Haiku -> torchvision): ``initial_conv`` -> ``conv1``, ``initial_batchnorm`` -> ``bn1``,
``block_group_G/~/block_B/~/conv_K`` -> ``layer{G+1}.B.conv{K+1}``, ``batchnorm_K`` -> ``bn{K+1}``,
``shortcut_conv`` / ``shortcut_batchnorm`` -> ``downsample.0`` / ``downsample.1``, ``classifier`` -> ``fc``
(the online linear probe, kept for an ImageNet sanity check). Conv weights HWIO -> OIHW, linear weights
transposed, BatchNorm ``scale``/``offset`` -> ``weight``/``bias`` and the ``mean_ema``/``var_ema`` averages
-> running statistics. Projector and predictor are dropped.

Padding trap: Haiku convolutions and the max-pool use TensorFlow SAME padding, which pads stride-2
layers asymmetrically. Loaded into a stock torchvision ResNet-50 these weights reach ~70% ImageNet
top-1 instead of 74.4% (deepmind-research#84); backbone ``B`` therefore rebuilds its strided layers with
SAME padding (``padding: tf_same`` in registry.yaml, ``featbench.plugins.backbones_resnet``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np

from ..errors import DataError
from .files import replacing

_BLOCK = re.compile(r"block_group_(\d+)/~/block_(\d+)/~/(conv|batchnorm)_(\d+)$")
_SHORTCUT = re.compile(r"block_group_(\d+)/~/block_(\d+)/~/shortcut_(conv|batchnorm)$")


def torch_module_name(haiku_name: str) -> str | None:
    """The torchvision module a Haiku module maps to (None for projector/predictor and unknown ones)."""
    if "projector" in haiku_name or "predictor" in haiku_name:
        return None
    if m := _BLOCK.search(haiku_name):
        g, b, kind, k = m.groups()
        return f"layer{int(g) + 1}.{int(b)}.{'conv' if kind == 'conv' else 'bn'}{int(k) + 1}"
    if m := _SHORTCUT.search(haiku_name):
        g, b, kind = m.groups()
        return f"layer{int(g) + 1}.{int(b)}.downsample.{0 if kind == 'conv' else 1}"
    if haiku_name.endswith("initial_conv"):
        return "conv1"
    if haiku_name.endswith("initial_batchnorm"):
        return "bn1"
    if haiku_name.split("/")[-1] == "classifier":
        return "fc"
    return None


def _array(value, where: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise DataError(
            f"BYOL checkpoint: {where} is a {type(value).__name__}, not an array", "is it BYOL's pretrain_*.pkl?"
        )
    return value


def haiku_to_torchvision(params: Mapping, state: Mapping) -> dict:
    """Convert Haiku ResNet params/state (module -> name -> array) to a torchvision state dict (numpy)."""
    out: dict[str, np.ndarray] = {}
    for module, leaves in params.items():
        name = torch_module_name(module)
        if name is None:
            continue
        for leaf, value in leaves.items():
            v = _array(value, f"{module}/{leaf}")
            if leaf == "w":
                out[f"{name}.weight"] = v.transpose(3, 2, 0, 1) if v.ndim == 4 else v.T
            elif leaf == "b":
                out[f"{name}.bias"] = v
            elif leaf == "scale":
                out[f"{name}.weight"] = v.reshape(-1)
            elif leaf == "offset":
                out[f"{name}.bias"] = v.reshape(-1)
            else:
                raise DataError(f"BYOL checkpoint: unknown parameter {module}/{leaf}", "is it BYOL's pretrain_*.pkl?")
    for module, stats in state.items():
        owner, _, stat = module.rpartition("/~/")
        name = torch_module_name(owner)
        if name is None or stat not in ("mean_ema", "var_ema"):
            continue
        average = _array(stats["average"], f"{module}/average")
        out[f"{name}.{'running_mean' if stat == 'mean_ema' else 'running_var'}"] = average.reshape(-1)
    return out


def _plain(obj, where: str):
    """Haiku containers come back from safe_pickle as dicts; anything else is not a BYOL checkpoint."""
    if isinstance(obj, Mapping):
        return {k: _plain(v, f"{where}/{k}") if isinstance(v, Mapping) else v for k, v in obj.items()}
    raise DataError(
        f"BYOL checkpoint: {where} is a {type(obj).__name__}, not a mapping", "is it BYOL's pretrain_*.pkl?"
    )


def read_byol_pickle(path: str) -> tuple[dict, dict]:
    """(online_params, online_state) of a BYOL checkpoint, read without executing the pickle."""
    from . import safe_pickle

    data = safe_pickle.load(path, encoding="latin1")
    if not isinstance(data, Mapping) or "experiment_state" not in data:
        raise DataError(
            f"{path}: no 'experiment_state' (keys: "
            f"{sorted(data)[:5] if isinstance(data, Mapping) else type(data).__name__})",
            "pass BYOL's pretrain_res50x1.pkl",
        )
    es = data["experiment_state"]
    if isinstance(es, Mapping):
        params, state = es.get("online_params"), es.get("online_state")
    elif isinstance(es, safe_pickle.Record) and len(es.args) >= 4:  # the _ByolExperimentState NamedTuple
        params, state = es.args[0], es.args[2]
    else:
        raise DataError(f"{path}: experiment_state has an unexpected form ({es!r})", "pass BYOL's pretrain_res50x1.pkl")
    return _plain(params, "online_params"), _plain(state, "online_state")


def convert_byol(pkl: str, out: str) -> dict:
    """Convert BYOL's ``pretrain_res50x1.pkl`` to a torchvision ResNet-50 state dict saved at ``out``."""
    import torch
    import torchvision

    params, state = read_byol_pickle(pkl)
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in haiku_to_torchvision(params, state).items()}
    ref = {
        k: v
        for k, v in torchvision.models.resnet50(weights=None).state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    missing, extra = sorted(set(ref) - set(sd)), sorted(set(sd) - set(ref))
    if missing or extra:
        raise DataError(
            f"{pkl}: converted keys do not match torchvision resnet50 (missing {missing[:4]}, unexpected {extra[:4]})",
            "only the ResNet-50 (1x) checkpoint pretrain_res50x1.pkl is supported",
        )
    wrong = [k for k in ref if tuple(sd[k].shape) != tuple(ref[k].shape)]
    if wrong:
        raise DataError(
            f"{pkl}: shapes differ from torchvision resnet50 at {wrong[:4]}", "only pretrain_res50x1.pkl is supported"
        )
    sd = {k: sd[k].to(ref[k].dtype) for k in ref}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with replacing(out) as tmp:
        torch.save(sd, tmp)
    return sd
