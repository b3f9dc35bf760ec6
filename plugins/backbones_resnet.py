"""The paper's four ResNet-50 backbones S, M, B, C (registry.yaml ``backbones:`` with ``arch: resnet50``).

Each is a torchvision ResNet-50 with ``fc = Identity`` (2048-d output of the final average pool, SeA 4),
its weights converted from the authors' checkpoint by the entry's ``convert:`` rule. BYOL (B) was trained
in Haiku with TensorFlow SAME padding: its stride-2 convolutions and the max-pool pad asymmetrically
(less before, more after). Stock PyTorch padding with BYOL's weights gives ~70% ImageNet top-1 instead of
74.4% (deepmind-research#84), so ``padding: tf_same`` rebuilds those layers with SAME padding.
"""

from __future__ import annotations

import functools
import math

from featbench.api import BackboneSpec, Preprocess, ResolvedWeights, hookimpl, load_into, registry_backbones


def same_pad(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF SAME padding (before, after) of one spatial dimension: output = ceil(size / stride)."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


_SAME_CLASSES: dict[type, type] = {}


def _same_class(module_cls: type) -> type:
    """A subclass of Conv2d / MaxPool2d that pads like TF SAME for the actual input size."""
    if module_cls not in _SAME_CLASSES:
        import torch.nn.functional as F

        pool = module_cls.__name__.startswith("MaxPool")

        def pair(v):
            return v if isinstance(v, tuple) else (v, v)

        def forward(self, x):
            k, s, d = pair(self.kernel_size), pair(self.stride), pair(self.dilation)
            top, bottom = same_pad(x.shape[-2], k[0], s[0], d[0])
            left, right = same_pad(x.shape[-1], k[1], s[1], d[1])
            x = F.pad(x, (left, right, top, bottom), value=float("-inf") if pool else 0.0)
            return module_cls.forward(self, x)

        _SAME_CLASSES[module_cls] = type(f"{module_cls.__name__}Same", (module_cls,), {"forward": forward})
    return _SAME_CLASSES[module_cls]


def tf_same_padding(model) -> None:
    """Switch ``model``'s strided convolutions and max-pools to TF SAME padding, in place (weights kept)."""
    import torch.nn as nn

    for module in model.modules():
        if type(module) in (nn.Conv2d, nn.MaxPool2d) and module.stride not in (1, (1, 1)):
            module.__class__ = _same_class(type(module))
            module.padding = (0, 0) if isinstance(module, nn.Conv2d) else 0


def build_resnet50(padding: str, weights: ResolvedWeights, what: str = "resnet50"):
    import torch
    import torchvision

    model = torchvision.models.resnet50(weights=None)
    model.fc = torch.nn.Identity()
    if weights.mode == "file":
        load_into(model, weights.path, weights.rule, what)
    elif weights.mode == "pretrained":
        raise ValueError("resnet50 backbones take their weights from a file")
    if padding == "tf_same":
        tf_same_padding(model)
    return model


@hookimpl
def register_backbones(registry, catalog):
    for name, doc, source, pre, raw in registry_backbones(catalog, "resnet50"):
        padding = raw.get("padding", "torch")
        spec = BackboneSpec(
            build=functools.partial(build_resnet50, padding, what=f"backbone {name}"),
            arch=f"torchvision.resnet50/padding={padding}",
            preprocess=Preprocess(**pre),
            weights=source,
        )
        registry.add(name, spec, summary=doc)
