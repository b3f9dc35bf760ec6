"""Any timm or torchvision classification model by name: ``timm:NAME[.TAG]`` and ``torchvision:NAME[.WEIGHTS]``.

Each member uses its library's own eval preprocessing (timm's pretrained config, torchvision's
``weights.transforms()``), and its pooled pre-classifier features. Weights: the library's pretrained
ones by default (fetched by the library; with no network the error names the URL, the path and the
flag), ``--weights NAME=FILE`` for a local checkpoint, ``--weights NAME=random`` for a seeded random
initialisation, which is also the default for timm's tiny ``test_*`` models (CI).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import re
import sys

from featbench.api import BackboneSpec, ConversionRule, Preprocess, ResolvedWeights, hookimpl, load_into
from featbench.errors import UnknownNameError, WeightsUnavailableError

# ---- member names without importing the libraries ---------------------------------------------------

_REGISTERED = re.compile(r"^@register_model(?:\([^)]*\))?[ \t]*\n(?:@[^\n]*\n)*def\s+(\w+)\s*\(", re.M)


@functools.lru_cache(maxsize=None)
def registered_model_names(package: str) -> tuple[str, ...]:
    """The model names ``PACKAGE/models/*.py`` registers with ``@register_model`` (timm's ``list_models()``,
    torchvision's classification ``list_models(module=models)``), read from the installed sources without
    importing the package (seconds saved for a misspelt name); always in step with the installed version.
    Empty when the package is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return ()
    folder = os.path.join(os.path.dirname(spec.origin), "models")
    names: set[str] = set()
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        if entry.endswith(".py"):
            with open(os.path.join(folder, entry), encoding="utf-8", errors="replace") as f:
                names.update(_REGISTERED.findall(f.read()))
    return tuple(sorted(names))


# ---- timm --------------------------------------------------------------------------------------------


def _timm_cfg(model_name: str):
    """timm's pretrained config for NAME[.TAG] (None for models without one)."""
    import timm

    arch = model_name.split(".", 1)[0]
    if not timm.is_model(arch):
        raise UnknownNameError("timm model", arch, timm.list_models(), "timm.list_models() lists them all")
    try:
        return timm.models.get_pretrained_cfg(model_name)
    except RuntimeError:
        raise UnknownNameError(
            f"pretrained tag of timm:{arch}", model_name, timm.list_pretrained(f"{arch}.*")
        ) from None


def timm_preprocess(cfg) -> Preprocess:
    """timm's eval transform for a pretrained config: Resize(floor(size / crop_pct)) + CenterCrop(size)."""
    from timm.data import resolve_data_config

    data = resolve_data_config({}, pretrained_cfg=cfg.to_dict() if cfg is not None else {})
    size = data["input_size"][-1]
    interp = data.get("interpolation", "bicubic")
    return Preprocess(
        resize=math.floor(size / data.get("crop_pct", 0.875)),
        crop=size,
        interpolation=interp if interp in ("bicubic", "bilinear", "nearest") else "bicubic",
        mean=data["mean"],
        std=data["std"],
    )


def _timm_head_prefix(model) -> tuple[str, ...]:
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or "fc"
    return tuple(f"{h}." for h in ((head,) if isinstance(head, str) else head))


def build_timm(model_name: str, weights: ResolvedWeights):
    import timm

    if weights.mode == "pretrained":
        try:
            return timm.create_model(model_name, pretrained=True, num_classes=0)
        except Exception as exc:
            cfg = _timm_cfg(model_name)
            source = getattr(cfg, "hf_hub_id", None) or getattr(cfg, "url", None) or "the Hugging Face hub"
            hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
            raise WeightsUnavailableError(
                f"timm:{model_name}: pretrained weights could not be fetched from {source} ({type(exc).__name__})",
                f"make them available under {hf_home}, or download a checkpoint and pass --weights "
                f"timm:{model_name}=FILE "
                f"(or =random)",
            ) from None
    model = timm.create_model(model_name, pretrained=False, num_classes=0)
    if weights.mode == "file":
        rule = ConversionRule(
            top_key=weights.rule.top_key,
            keep=weights.rule.keep,
            strip=weights.rule.strip,
            drop=weights.rule.drop + _timm_head_prefix(model),
        )
        load_into(model, weights.path, rule, f"timm:{model_name}")
    return model


def resolve_timm(name: str) -> BackboneSpec:
    model_name = name.split(":", 1)[1]
    cfg = _timm_cfg(model_name)
    tag = f"{getattr(cfg, 'hf_hub_id', None) or getattr(cfg, 'url', None) or model_name}"
    test_model = model_name.startswith("test_")
    return BackboneSpec(
        build=functools.partial(build_timm, model_name),
        arch=f"timm:{model_name}",
        preprocess=timm_preprocess(cfg),
        default_weights="random" if test_model else "pretrained",
        pretrained_id=f"timm:{model_name}:{tag}",
    )


# ---- torchvision -------------------------------------------------------------------------------------


def _tv_weights(model_name: str):
    from torchvision import models

    arch, _, tag = model_name.partition(".")
    if arch not in models.list_models(module=models):
        raise UnknownNameError("torchvision classification model", arch, models.list_models(module=models))
    enum = models.get_model_weights(arch)
    try:
        return arch, enum[tag or "DEFAULT"]
    except KeyError:
        raise UnknownNameError(f"weights of torchvision:{arch}", tag, [w.name for w in enum] + ["DEFAULT"]) from None


def replace_head(model) -> str:
    """Replace the model's last ``nn.Linear`` (the classifier) by ``nn.Identity``; returns its name."""
    import torch

    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise UnknownNameError("torchvision model with a linear classifier", type(model).__name__, [])
    name = linears[-1]
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], torch.nn.Identity())
    return name


def build_torchvision(model_name: str, weights: ResolvedWeights):
    from torchvision import models

    arch, enum = _tv_weights(model_name)
    model = models.get_model(arch, weights=None)
    head = replace_head(model)
    if weights.mode == "pretrained":
        try:
            sd = enum.get_state_dict(progress=sys.stderr.isatty(), check_hash=True, weights_only=True)
        except Exception as exc:
            import torch.hub

            path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(enum.url))
            raise WeightsUnavailableError(
                f"torchvision:{model_name}: could not fetch {enum.url} ({type(exc).__name__})",
                f"download it to {path}, or pass --weights torchvision:{model_name}=FILE (or =random)",
            ) from None
        sd = {k: v for k, v in sd.items() if not k.startswith(head + ".")}
        model.load_state_dict(sd)
    elif weights.mode == "file":
        rule = ConversionRule(
            top_key=weights.rule.top_key,
            keep=weights.rule.keep,
            strip=weights.rule.strip,
            drop=weights.rule.drop + (head + ".",),
        )
        load_into(model, weights.path, rule, f"torchvision:{model_name}")
    return model


def torchvision_preprocess(enum) -> Preprocess:
    t = enum.transforms()
    return Preprocess(
        resize=t.resize_size[0], crop=t.crop_size[0], interpolation=t.interpolation.value, mean=t.mean, std=t.std
    )


def resolve_torchvision(name: str) -> BackboneSpec:
    model_name = name.split(":", 1)[1]
    _, enum = _tv_weights(model_name)
    return BackboneSpec(
        build=functools.partial(build_torchvision, model_name),
        arch=f"torchvision:{model_name.partition('.')[0]}",
        preprocess=torchvision_preprocess(enum),
        default_weights="pretrained",
        pretrained_id=f"torchvision:{enum}:{enum.url}",
    )


@hookimpl
def register_backbones(registry):
    registry.add(
        "timm:",
        BackboneSpec(resolve=resolve_timm, members=functools.partial(registered_model_names, "timm")),
        summary="any timm model: timm:NAME[.TAG], its own preprocessing (test_* models: seeded random weights)",
    )
    registry.add(
        "torchvision:",
        BackboneSpec(resolve=resolve_torchvision, members=functools.partial(registered_model_names, "torchvision")),
        summary="any torchvision classifier: torchvision:NAME[.WEIGHTS], its own preprocessing",
    )
