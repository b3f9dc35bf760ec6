"""Thread control of training jobs."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (restored afterwards); ``None`` changes nothing.

    The thread count is part of what makes numbers reproducible: CPU matrix products split their sums
    across threads, so 1 and 2 threads differ in the last bits (measured on the trainer's shapes).
    """
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
