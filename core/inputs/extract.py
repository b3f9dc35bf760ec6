"""Running a frozen backbone over an image source: batched, ``torch.inference_mode``, channels_last (faster
on oneDNN CPUs too: 1.5x for EfficientNet-Lite0 / MobileNetV2 / ResNet-50 measured on 2 cores), AMP on
GPU, DataLoader workers for decoding, progress reported to an :class:`ExtractListener`; results go chunk by
chunk into the cache."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import attrs
import numpy as np

from .datasets import ImageSource
from .progress import ExtractListener


def default_workers(device: str) -> int:
    """Decoding workers: none on a small CPU box (they would compete with the model), more on a GPU one."""
    cpus = os.cpu_count() or 1
    if device.startswith("cuda"):
        return min(8, cpus)
    return 0 if cpus <= 2 else min(4, cpus // 2)


@attrs.frozen
class ExtractSettings:
    """How extraction runs (none of this changes the numbers beyond float rounding on GPU with AMP)."""

    batch_size: int = 64
    device: str = "auto"
    workers: int | None = None  # None: default_workers(device)
    progress: bool = True  # report to ``listener`` (False: report nothing)
    listener: ExtractListener = attrs.field(factory=ExtractListener, eq=False, repr=False)
    amp: bool = True  # autocast to float16 on CUDA
    channels_last: bool = True


class _Transformed:
    """Map-style dataset over ``source[start:]`` yielding preprocessed tensors (picklable for workers)."""

    def __init__(self, source: ImageSource, transform: Callable, start: int):
        self.source, self.transform, self.start = source, transform, start

    def __len__(self) -> int:
        return len(self.source) - self.start

    def __getitem__(self, i: int):
        return self.transform(self.source.image(self.start + i))


def iter_features(model, source: ImageSource, transform: Callable, settings: ExtractSettings, start: int = 0,
                  desc: str = "") -> Iterator[np.ndarray]:
    """Features of ``source[start:]`` in order, one float32 array (b, d) per batch."""
    import torch

    from ..device import resolve_device

    device = resolve_device(settings.device)
    cuda = device.startswith("cuda")
    workers = default_workers(device) if settings.workers is None else settings.workers
    model = model.to(device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = torch.utils.data.DataLoader(_Transformed(source, transform, start), batch_size=settings.batch_size,
                                         shuffle=False, num_workers=workers, pin_memory=cuda,
                                         persistent_workers=False)
    listener = settings.listener if settings.progress else ExtractListener()
    listener.images_started(desc, len(source), start)
    try:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=cuda and settings.amp):
            for batch in loader:
                batch = batch.to(device, non_blocking=True)
                if settings.channels_last:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                out = model(batch)
                if isinstance(out, (tuple, list)):
                    out = out[0]
                if out.dim() != 2:
                    raise ValueError(f"the backbone returned shape {tuple(out.shape)}, expected (batch, features)")
                listener.images_done(out.shape[0])
                yield out.float().cpu().numpy()
    finally:
        listener.images_finished()


def extract_into(
    writer, model, source: ImageSource, transform: Callable, settings: ExtractSettings, desc: str = ""
) -> None:
    """Compute the rows ``writer`` still lacks and write them chunk by chunk, then commit the entry."""
    pending: list[np.ndarray] = []
    have = 0
    for out in iter_features(model, source, transform, settings, start=writer.start, desc=desc):
        pending.append(out)
        have += out.shape[0]
        while have >= writer.chunk_rows or (have and writer.start + have >= writer.n):
            rows = np.concatenate(pending)
            k = min(writer.chunk_rows, rows.shape[0])
            writer.write(rows[:k])
            pending, have = [rows[k:]], rows.shape[0] - k
    writer.finish()
