"""Replaying training epochs as CUDA graphs.

At the paper's size (b = 256) one step is ~25 small kernels, so on a GPU kernel launches, not FLOPs, bound
the epoch. With ``TrainSettings(cuda_graphs=True)`` the trainer runs the first epoch eagerly (warm-up),
captures the second epoch of every chunk of heads in a CUDA graph whose only input that changes is a static
permutation buffer, and replays it for every later epoch after copying that epoch's permutation in.

Only augmenters that declare ``cuda_graph_safe = True`` (declared on featbench.api.FeatureAugmenter) are captured:
their step must not synchronise with the host, draw host-side randomness, depend on ``batch.epoch`` /
``batch.step`` (frozen at capture) or add rows between epochs. Anything else runs eagerly.

CI has no GPU: there the eager epoch it captures is tested on the CPU; on a GPU, ``tests/test_cuda.py``
(``pytest -m cuda``, run by ``benchmarks/gpu_check.py``) checks replayed epochs against eager ones, the
divergence freeze under replay, and that replays never synchronise with the host.
"""

from __future__ import annotations

import warnings

from ..api import FeatureAugmenter
from ..errors import ConfigError


def graph_safe(augmenter: FeatureAugmenter) -> bool:
    """True when the augmenter promises a capturable epoch and never adds rows between epochs."""
    cls = type(augmenter)
    return cls.cuda_graph_safe and cls.on_epoch_start is FeatureAugmenter.on_epoch_start


def epoch_graphs(stacks, settings, device):
    """One :class:`EpochGraph` per chunk of heads when ``settings.cuda_graphs`` is on and safe, else None."""
    if not settings.cuda_graphs:
        return None
    if device.type != "cuda":
        raise ConfigError("cuda_graphs=True needs a CUDA device", "drop cuda_graphs or train with --device cuda")
    unsafe = sorted({type(st.augmenter).__name__ for st in stacks if not graph_safe(st.augmenter)})
    if unsafe:
        warnings.warn(f"CUDA graphs are off: {', '.join(unsafe)} does not declare cuda_graph_safe", stacklevel=3)
        return None
    shared: dict = {"pool": None}  # one memory pool for all chunks' graphs (replayed in capture order)
    return [EpochGraph(shared) for _ in stacks]


class EpochGraph:
    """Runs a stack's epochs: eager first, then captured once and replayed with a new permutation."""

    def __init__(self, shared: dict):
        self.graph = None
        self.perm = None
        self.eager_epochs = 0
        self.shared = shared

    def run(self, stack, epoch: int, perm, step: int) -> None:
        import torch

        if self.graph is None and self.eager_epochs == 0:
            stack.run_epoch(epoch, perm, step)  # warm-up: allocator, cuBLAS handles, lazy inits
            torch.cuda.synchronize()
            self.eager_epochs += 1
            return
        if self.graph is None:
            self.perm = perm.clone()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, pool=self.shared["pool"]):
                stack.run_epoch(epoch, self.perm, step)
            if self.shared["pool"] is None:
                self.shared["pool"] = self.graph.pool()
        elif perm.shape != self.perm.shape:  # the training set changed size: cannot replay
            stack.run_epoch(epoch, perm, step)
            return
        else:
            self.perm.copy_(perm, non_blocking=True)
        self.graph.replay()
