"""The device a ``--device`` name means on this machine (shared by extraction, training and the executors)."""

from __future__ import annotations


def resolve_device(name: str) -> str:
    """``auto``: CUDA when present, else the CPU; ``cuda[:N]`` without CUDA, or a name torch does not know,
    is a one-line ConfigError."""
    import torch

    from .errors import ConfigError, shown

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available", "use --device cpu or auto")
    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {shown(name)} is not a device", "use --device auto, cpu or cuda[:N]") from None
    return name
