"""Where the training rows live, and how much device memory a stack of heads may use.

Features are stored once and gathered per mini-batch, converted to the math dtype only then:

* float32 / float64 arrays (the default) become a tensor of the math dtype on the training device, as before;
* half-precision arrays (``np.float16``, including an ``np.memmap`` of a feature file larger than RAM) are
  kept in half precision: zero-copy on the CPU (a memmap stays on disk and only the pages a batch touches
  are read), copied chunk by chunk to an accelerator (resident there, unless they would take more than
  half of its free memory: then they stay on the host and every batch is copied over). No full float32
  copy is ever made;
* ``storage="float16"`` / ``"bfloat16"`` converts any array to that storage dtype chunk by chunk.

Half-precision storage changes the features by the rounding of the stored values only (tested: a float16
memmap trains exactly like the in-memory float32 array of the same float16 values).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import ConfigError

STORAGE_CHOICES = ("auto", "float32", "float16", "bfloat16")
_CHUNK_ROWS = 8192  # rows converted / copied at a time


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}[
        name
    ]


def storage_dtype(train_x, storage: str, math_dtype: str):
    """The torch dtype the rows are kept in: ``auto`` keeps half-precision inputs half, else the math dtype."""
    import torch

    if storage not in STORAGE_CHOICES:
        raise ConfigError(f"unknown feature storage {storage!r}", f"use one of {', '.join(STORAGE_CHOICES)}")
    if storage != "auto":
        return _torch_dtype(storage)
    kind = getattr(train_x, "dtype", None)
    if kind in (np.float16, torch.float16):
        return torch.float16
    if kind == torch.bfloat16:
        return torch.bfloat16
    return _torch_dtype(math_dtype)


def _host_view(train_x):
    """A CPU tensor sharing memory with ``train_x`` when possible (memmaps included)."""
    import torch

    if isinstance(train_x, torch.Tensor):
        return train_x
    arr = np.asarray(train_x) if not isinstance(train_x, np.ndarray) else train_x
    with warnings.catch_warnings():  # a read-only memmap: we never write to it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


def place_features(train_x, device, math_dtype: str = "float32", storage: str = "auto"):
    """The training rows as a tensor to gather batches from: (n, d) in the storage dtype.

    On the CPU a row block already in the storage dtype is used in place (zero copy). Otherwise rows
    are converted ``_CHUNK_ROWS`` at a time into a tensor on ``device`` (or on the host, see above).
    """
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:  # "cuda" is the current device: compare like a tensor's "cuda:N"
        dev = torch.device("cuda", torch.cuda.current_device())
    dt = storage_dtype(train_x, storage, math_dtype)
    if isinstance(train_x, np.ndarray) and train_x.dtype not in (np.float16, np.float32, np.float64):
        train_x = np.asarray(train_x, dtype=np.float32)
    src = _host_view(train_x)
    if dev.type == "cuda" and src.numel() * torch.empty((), dtype=dt).element_size() > memory_budget(dev) // 2:
        dev = torch.device("cpu")  # larger than half the device: stays on the host, batches are copied over
    if src.dtype == dt and src.device == dev:
        return src
    out = torch.empty(src.shape, dtype=dt, device=dev)
    for s in range(0, src.shape[0], _CHUNK_ROWS):
        out[s : s + _CHUNK_ROWS] = src[s : s + _CHUNK_ROWS].to(device=dev, dtype=dt)
    return out


# --------------------------------------------------------------------------------------------------
# Memory planning for chunked grids


def head_bytes(num_classes: int, dim: int, batch: int, elem: int, fused: bool) -> tuple[int, int]:
    """Bytes per head: (persistent, transient).

    Persistent: weights and momentum (2*C*d). Transient, per training step: the weight gradient (C*d),
    the (b, b) and (b, C) step tensors (about 8 b^2 + 6 b C + C^2), and for the generic path the
    (b, d)-sized per-head tensors an augmenter forms (feature gradients, directions, augmented rows: ~4 b d).
    """
    C, d, b = num_classes, dim, batch
    persistent = 2 * C * d * elem
    transient = (C * d + 8 * b * b + 6 * b * C + C * C + (0 if fused else 4 * b * d)) * elem
    return persistent, transient


#: On the CPU a chunk's weights and momentum are kept near the cache size: K = 216 heads of 101 x 2560
#: stepped 72 at a time ran 9 % faster than all at once (benchmarks/README.md).
CPU_CHUNK_BYTES = 128 << 20


def plan_chunk(num_heads: int, persistent: int, transient: int, budget: int, cap_bytes: int | None = None) -> int:
    """How many heads to step at a time so that all heads' state plus one chunk's step fits ``budget``
    (and, with ``cap_bytes``, one chunk's persistent state stays under it)."""
    room = budget - num_heads * persistent
    size = max(1, min(num_heads, room // max(transient, 1)))
    if cap_bytes is not None:
        size = max(1, min(size, cap_bytes // max(persistent, 1)))
    return size


def memory_budget(device) -> int:
    """Bytes a training run may use: 80 % of the free accelerator memory, or half of the available RAM."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free * 0.8)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return 4 << 30
