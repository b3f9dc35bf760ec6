"""The K-head trainer: K bias-free linear heads trained together on shared mini-batches.

Protocol (SeA paper §4 and its official code): unit-normalised features; ``W`` initialised like
``nn.Linear`` (U(-1/sqrt(d), 1/sqrt(d)), the same draw for every head); plain SGD with momentum 0.9 and a
constant learning rate;
weight decay added to the gradient of the mean batch loss; a fresh permutation per epoch from a seeded
data-order generator, walked in chunks of ``batch_size`` with the last partial chunk kept.

Heads are independent: their losses are summed only to get every head's own gradient in one backward
pass, so K heads trained together equal K single runs with the same seed (tested). Each step takes the
cheapest exact route (featbench.training.fastpath): an augmenter's fused step, else the closed-form weight gradient
``(dL/dZ)^T X``, else autograd through ``head_gradients`` (the reference). The trainer itself reads no
device value on the host inside an epoch; divergence is detected on the device after each epoch.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence

import attrs
import numpy as np

from ..api import (
    Augmented,
    AugRNG,
    Batch,
    BoundLoss,
    ExtraRows,
    FeatureAugmenter,
    Loss,
    RunInfo,
    Targets,
    has_fused_step,
    seed_stream,
)
from ..device import resolve_device
from .cudagraph import epoch_graphs
from .fastpath import closed_form_eligible, closed_form_gradients, sgd_momentum_
from .storage import CPU_CHUNK_BYTES, head_bytes, memory_budget, place_features, plan_chunk

DATA_ORDER_STREAM = 0
INIT_STREAM = 3
AUGMENT_STREAM = 4


@attrs.frozen
class TrainSettings:
    """Settings shared by all heads of one training run.

    Performance options (none changes what is computed beyond floating-point rounding; each is tested
    against the straightforward path): ``fast`` uses closed-form and fused steps where available
    (featbench.training.fastpath), else the generic autograd step; ``dtype`` is the dtype of the weights and the
    math (float32, or float64 for exactness checks); ``storage`` the dtype the features are kept in
    (featbench.training.storage: ``auto`` keeps float16 inputs such as memmaps half); ``matmul`` the precision of
    float32 matrix products: ``fp32``, ``tf32`` (CUDA) or ``bf16`` (oneDNN on CPUs with bf16 units);
    ``heads_per_chunk`` the most heads stepped at a time (0: as many as fit the device memory, and on the CPU
    at most ``storage.CPU_CHUNK_BYTES`` of weights and momentum per chunk); ``cuda_graphs``
    replays each epoch as a CUDA graph for augmenters that declare ``cuda_graph_safe``.
    """

    epochs: int = 100
    batch_size: int = 256
    momentum: float = 0.9
    seed: int = 0
    device: str = "cpu"
    fast: bool = True
    dtype: str = "float32"
    storage: str = "auto"
    matmul: str = "fp32"
    heads_per_chunk: int = 0
    cuda_graphs: bool = False


@attrs.frozen
class TrainResult:
    """The trained heads and what happened during training."""

    weight: object  # torch.Tensor (K, C, d), float32 (float64 with dtype="float64"), on the CPU
    diverged: tuple[bool, ...]  # heads whose weights became non-finite (frozen at zero from then on)
    unaugmented_batches: int  # batches too small for the augmenter (trained on clean rows)
    seconds: float


def init_weight(num_classes: int, dim: int, seed: int):
    """``nn.Linear``'s default initialisation U(-1/sqrt(d), 1/sqrt(d)), drawn from a seeded generator."""
    import torch

    g = torch.Generator().manual_seed(seed_stream(seed, INIT_STREAM))
    bound = 1.0 / math.sqrt(dim)
    return torch.empty(num_classes, dim).uniform_(-bound, bound, generator=g)


def hp_tensors(configs: Sequence[Mapping[str, float | str]], device) -> dict[str, object]:
    """The numeric hyper-parameters of K configurations as (K,) float32 tensors."""
    import torch

    return {
        name: torch.tensor([c[name] for c in configs], dtype=torch.float32, device=device)
        for name, value in configs[0].items()
        if not isinstance(value, str)
    }


def hp_options(configs: Sequence[Mapping[str, float | str]]) -> dict[str, str]:
    """The choice-valued hyper-parameters, which must be equal in all K configurations of one stack."""
    out = {}
    for name, value in configs[0].items():
        if isinstance(value, str):
            differing = sorted({str(c[name]) for c in configs})
            if len(differing) > 1:
                from ..errors import ConfigError

                raise ConfigError(
                    f"configurations of one stack differ in the option {name} ({', '.join(differing)})",
                    "train configurations that differ in an option in separate stacks (grid.structural_groups)",
                )
            out[name] = value
    return out


class _Pool:
    """The training rows: the shared base set plus rows added per head by the augmenter (ME-ADA).

    The base rows stay in their storage dtype and place (featbench.training.storage); a gathered batch is moved to
    ``device`` and converted to the math ``dtype``.
    """

    def __init__(self, x, y, device, dtype):
        self.x, self.y = x, y.to(x.device)
        self.device, self.dtype = device, dtype
        self.extra_x = None  # (K, m, d)
        self.extra_y = None

    def __len__(self) -> int:
        return self.x.shape[0] + (0 if self.extra_y is None else self.extra_y.shape[0])

    def add(self, rows: ExtraRows) -> None:
        import torch

        if self.extra_x is None:
            self.extra_x, self.extra_y = rows.x, rows.y
        else:
            self.extra_x = torch.cat([self.extra_x, rows.x], 1)
            self.extra_y = torch.cat([self.extra_y, rows.y], 0)

    def _base(self, idx):
        idx = idx.to(self.x.device, non_blocking=True)
        return (
            self.x.index_select(0, idx).to(self.device, self.dtype, non_blocking=True),
            self.y.index_select(0, idx).to(self.device, non_blocking=True),
        )

    def gather(self, idx):
        import torch

        if self.extra_x is None:
            return self._base(idx)
        n = self.x.shape[0]
        idx = idx.to(self.device)
        is_extra = idx >= n
        base_x, base_y = self._base(idx.clamp(max=n - 1))
        extra = self.extra_x[:, (idx - n).clamp(min=0)]
        x = torch.where(is_extra[None, :, None], extra, base_x.unsqueeze(0))
        y = torch.where(is_extra, self.extra_y[(idx - n).clamp(min=0)], base_y)
        return x, y


def small_batches(n: int, batch_size: int, min_batch: int) -> int:
    """How many of an epoch's batches (n rows in chunks of ``batch_size``, last kept) have < ``min_batch`` rows."""
    full, last = divmod(n, batch_size)
    return (full if batch_size < min_batch else 0) + (1 if 0 < last < min_batch else 0)


def run_info(x, y, num_classes: int, loss: Loss, configs, settings: TrainSettings, device) -> RunInfo:
    """What an augmenter is built with for K configurations (``featbench.testing.make_run`` builds the same)."""
    K = len(configs)
    hp = hp_tensors(configs, device)
    options = hp_options(configs)
    b = settings.batch_size
    return RunInfo(
        train_x=x,
        train_y=y,
        num_classes=num_classes,
        hp=hp,
        num_heads=K,
        epochs=settings.epochs,
        batch_size=b,
        steps_per_epoch=math.ceil(x.shape[0] / b),
        loss=BoundLoss(loss, {**hp, **options}),
        rng=AugRNG(seed_stream(settings.seed, AUGMENT_STREAM), K),
        device=device,
        options=options,
    )


class _Stack:
    """One chunk of the K heads, stepped together: weights, momentum, hyper-parameters, augmenter, rows."""

    def __init__(self, x, y, num_classes, augmenter_cls, loss, configs, settings: TrainSettings, device, dtype):
        import torch

        K = len(configs)
        n, d = x.shape
        run = run_info(x, y, num_classes, loss, configs, settings, device)
        self.lr = run.hp["lr"].view(K, 1, 1).clone()  # zeroed for diverged heads
        self.wd = run.hp["wd"].view(K, 1, 1)
        self.loss = run.loss
        self.settings = settings
        self.augmenter = augmenter_cls(run)
        self.weight = init_weight(num_classes, d, settings.seed).to(device, dtype).expand(K, num_classes, d).clone()
        self.momentum_buf = torch.zeros_like(self.weight)
        self.alive = torch.ones(K, dtype=torch.bool, device=device)
        self.pool = _Pool(x, y, device, dtype)
        self.fused = self.augmenter.fused_gradients if settings.fast and has_fused_step(augmenter_cls) else None

    def start_epoch(self, epoch: int) -> None:
        rows = self.augmenter.on_epoch_start(epoch, self.weight.detach())
        if rows is not None:
            self.pool.add(rows)

    def run_epoch(self, epoch: int, perm, step: int) -> None:
        """Every mini-batch of ``perm`` (on the rows' device); no host synchronisation of its own."""
        import torch

        b = self.settings.batch_size
        for s in range(0, perm.shape[0], b):
            bx, by = self.pool.gather(perm[s : s + b])
            grad = self.gradient(Batch(x=bx, y=by, weight=self.weight, epoch=epoch, step=step + s // b))
            with torch.no_grad():
                sgd_momentum_(self.weight, self.momentum_buf, grad, self.lr, self.wd, self.settings.momentum)

    def gradient(self, batch: Batch):
        """Every head's weight gradient of its mean loss on the (augmented) batch: fused, closed form or autograd."""
        if batch.y.shape[0] < self.augmenter.min_batch:
            aug = Augmented(batch.x, Targets.hard(batch.y))
        else:
            if self.fused is not None:
                grad = self.fused(batch)
                if grad is not None:
                    return grad
            aug = self.augmenter.augment(batch)
        if self.settings.fast and closed_form_eligible(aug, self.loss):
            return closed_form_gradients(aug, self.weight, self.loss)
        return head_gradients(aug, self.weight, self.loss)

    def freeze_diverged_(self) -> None:
        """Zero the weights, momentum and learning rate of heads that became non-finite, on the device."""
        import torch

        with torch.no_grad():
            finite = torch.isfinite(self.weight).flatten(1).all(1)
            newly = (self.alive & ~finite).view(-1, 1, 1)
            self.alive &= finite
            self.weight.masked_fill_(newly, 0)
            self.momentum_buf.masked_fill_(newly, 0)
            self.lr.masked_fill_(~self.alive.view(-1, 1, 1), 0)


def _chunks(K: int, x, num_classes: int, augmenter_cls, settings: TrainSettings, device, dtype) -> list[range]:
    """Split the K heads into chunks that fit the device memory (or ``settings.heads_per_chunk``)."""
    import torch

    size = settings.heads_per_chunk
    if size <= 0:
        fused = settings.fast and has_fused_step(augmenter_cls)
        elem = torch.empty((), dtype=dtype).element_size()
        persistent, transient = head_bytes(num_classes, x.shape[1], settings.batch_size, elem, fused)
        cap = CPU_CHUNK_BYTES if device.type == "cpu" else None
        size = plan_chunk(K, persistent, transient, memory_budget(device), cap)
    return [range(s, min(s + size, K)) for s in range(0, K, size)]


class HeadRun:
    """A K-head training run that can stop after any epoch and go on later (successive halving).

    Invariant: calling :meth:`advance` up to ``settings.epochs`` in any number of pieces trains exactly
    what one uninterrupted run does (the data-order stream, step counter and every stack's state simply
    persist on the object). ``featbench.training.halving`` snapshots and restores the heads between pieces.
    """

    def __init__(
        self,
        train_x,
        train_y,
        num_classes: int,
        augmenter_cls: type[FeatureAugmenter],
        loss: Loss,
        configs: Sequence[Mapping[str, float | str]],
        settings: TrainSettings,
    ):
        import torch

        self.start_time = time.perf_counter()
        self.settings = settings
        self.device = torch.device(resolve_device(settings.device))
        self.dtype = math_dtype(settings.dtype)
        x = place_features(train_x, self.device, settings.dtype, settings.storage)
        y = torch.as_tensor(np.asarray(train_y, dtype=np.int64), device=self.device)
        chunks = _chunks(len(configs), x, num_classes, augmenter_cls, settings, self.device, self.dtype)
        self.stacks = [
            _Stack(x, y, num_classes, augmenter_cls, loss, [configs[k] for k in c], settings, self.device, self.dtype)
            for c in chunks
        ]
        self.graphs = epoch_graphs(self.stacks, settings, self.device)
        self.order = torch.Generator().manual_seed(seed_stream(settings.seed, DATA_ORDER_STREAM))
        self.epoch = 0  # epochs done
        self.step = 0
        self.unaugmented = 0

    def advance(self, stop: int, on_epoch_end: Callable[[int, object], None] | None = None) -> None:
        """Train epochs ``self.epoch .. stop - 1``."""
        import torch

        stacks, settings = self.stacks, self.settings
        with matmul_precision(settings.matmul, self.device):
            for epoch in range(self.epoch, stop):
                for st in stacks:
                    st.start_epoch(epoch)
                n = len(stacks[0].pool)
                if any(len(st.pool) != n for st in stacks):
                    raise RuntimeError(
                        "chunks of heads disagree on the number of training rows; train them with heads_per_chunk=K"
                    )
                perm = torch.randperm(n, generator=self.order)
                for i, st in enumerate(stacks):
                    p = to_device(perm, st.pool.x.device)
                    if self.graphs is not None:
                        self.graphs[i].run(st, epoch, p, self.step)
                    else:
                        st.run_epoch(epoch, p, self.step)
                    st.freeze_diverged_()
                self.step += math.ceil(n / settings.batch_size)
                self.unaugmented += small_batches(n, settings.batch_size, stacks[0].augmenter.min_batch)
                self.epoch = epoch + 1
                if on_epoch_end is not None:
                    on_epoch_end(epoch, self.weight())

    def weight(self):
        """The (K, C, d) weights of every head, on the device (a view when there is one chunk)."""
        import torch

        return self.stacks[0].weight if len(self.stacks) == 1 else torch.cat([st.weight for st in self.stacks])

    def result(self) -> TrainResult:
        import torch

        weight = torch.cat([st.weight.detach().cpu() for st in self.stacks])
        alive = torch.cat([st.alive.cpu() for st in self.stacks])
        return TrainResult(
            weight=weight,
            diverged=tuple(bool(v) for v in ~alive),
            unaugmented_batches=self.unaugmented,
            seconds=time.perf_counter() - self.start_time,
        )


def train_heads(
    train_x: np.ndarray,
    train_y: np.ndarray,
    num_classes: int,
    augmenter_cls: type[FeatureAugmenter],
    loss: Loss,
    configs: Sequence[Mapping[str, float | str]],
    settings: TrainSettings,
    on_epoch_end: Callable[[int, object], None] | None = None,
) -> TrainResult:
    """Train one head per configuration in ``configs`` (each maps every hyper-parameter name to a value;
    choice-valued ones are strings and must agree across the configurations).

    ``train_x`` may be any (n, d) array, including a float16 ``np.memmap`` (featbench.training.storage). The heads
    are stepped in chunks that fit the device (``settings.heads_per_chunk``); every chunk sees the same batches,
    so chunking does not change the result.
    """
    run = HeadRun(train_x, train_y, num_classes, augmenter_cls, loss, configs, settings)
    run.advance(settings.epochs, on_epoch_end)
    return run.result()


def math_dtype(name: str):
    """The torch dtype of the weights and the math (float32 or float64)."""
    import torch

    if name not in ("float32", "float64"):
        from ..errors import ConfigError

        raise ConfigError(f"unknown training dtype {name!r}", "use float32 (or float64 for exactness checks)")
    return getattr(torch, name)


def to_device(t, device):
    """Copy a CPU tensor to ``device`` without blocking the host (pinned staging on CUDA)."""
    if t.device == device:
        return t
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def check_matmul(mode: str, device) -> None:
    """Reject a matrix-product precision the device cannot run (a one-line ConfigError)."""
    import torch

    kind = torch.device(device).type
    if mode == "fp32" or (mode, kind) in (("tf32", "cuda"), ("bf16", "cpu")):
        return
    from ..errors import ConfigError

    raise ConfigError(
        f"matmul precision {mode!r} is not available on {kind}",
        "use fp32 anywhere, tf32 on CUDA, bf16 on a CPU with bf16 units",
    )


@contextlib.contextmanager
def matmul_precision(mode: str, device):
    """Run float32 matrix products in ``mode``: fp32 (IEEE), tf32 (CUDA tensor cores) or bf16 (oneDNN on CPU).

    The backend flag is restored afterwards.
    """
    import torch

    check_matmul(mode, device)
    if mode == "fp32":
        yield
        return
    flags, value = (torch.backends.cuda.matmul, "tf32") if mode == "tf32" else (torch.backends.mkldnn.matmul, "bf16")
    before = flags.fp32_precision
    flags.fp32_precision = value
    try:
        yield
    finally:
        flags.fp32_precision = before


def head_gradients(aug: Augmented, weight, loss: BoundLoss):
    """Gradient of every head's loss on the augmented batch w.r.t. its weights, (K, C, d)."""
    import torch

    w = weight.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = aug.x.detach() @ w.transpose(1, 2)  # (K, r, C)
        if aug.logit_adjust is not None:
            logits = aug.logit_adjust(logits, w)
        rows = aug.row_loss(logits) if aug.row_loss is not None else loss.per_row(logits, aug.targets)  # (K, r)
        if aug.row_weight is None:
            per_head = rows.mean(-1)
        else:
            per_head = (rows * aug.row_weight).sum(-1)
        batch_term = loss.batch_term(logits, aug.targets)
        if batch_term is not None:
            per_head = per_head + batch_term
        if aug.extra_loss is not None:
            per_head = per_head + aug.extra_loss(logits, w, aug.x.detach())
        (grad,) = torch.autograd.grad(per_head.sum(), w)
    return grad


def predict(weight, x: np.ndarray, device: str = "cpu", chunk: int = 8192):
    """Class predictions of every head, (K, n) int64 numpy; raw logits ``x W^T`` (no margin at test time)."""
    import torch

    dev = torch.device(resolve_device(device))
    w = weight.to(dev)
    out = []
    with torch.inference_mode():
        for s in range(0, x.shape[0], chunk):
            xb = torch.as_tensor(np.asarray(x[s : s + chunk], dtype=np.float32), device=dev)
            out.append((xb @ w.transpose(1, 2)).argmax(-1).cpu())
    return torch.cat(out, 1).numpy()
