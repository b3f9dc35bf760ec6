"""The K-head trainer: K bias-free linear heads trained together on shared mini-batches.

Protocol (methods.md 1.3-1.5): unit-normalised features; ``W`` initialised like ``nn.Linear`` (U(-1/sqrt(d),
1/sqrt(d)), the same draw for every head); plain SGD with momentum 0.9 and a constant learning rate;
weight decay added to the gradient of the mean batch loss; a fresh permutation per epoch from a seeded
data-order generator, walked in chunks of ``batch_size`` with the last partial chunk kept.

Heads are independent: their losses are summed only to get every head's own gradient in one backward
pass, so K heads trained together equal K single runs with the same seed (tested).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

import attrs
import numpy as np

from .api import AugRNG, Augmented, Batch, BoundLoss, ExtraRows, FeatureAugmenter, Loss, RunInfo, Targets, seed_stream

DATA_ORDER_STREAM = 0
INIT_STREAM = 3
AUGMENT_STREAM = 4


@attrs.frozen
class TrainSettings:
    """Settings shared by all heads of one training run."""

    epochs: int = 100
    batch_size: int = 256
    momentum: float = 0.9
    seed: int = 0
    device: str = "cpu"


@attrs.frozen
class TrainResult:
    """The trained heads and what happened during training."""

    weight: object  # torch.Tensor (K, C, d), float32, on the CPU
    diverged: tuple[bool, ...]  # heads whose weights became non-finite (frozen at zero from then on)
    unaugmented_batches: int  # batches too small for the augmenter (trained on clean rows)
    seconds: float
    epochs_run: int


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        from .errors import ConfigError

        raise ConfigError("--device cuda was asked for but no CUDA device is available", "use --device cpu or auto")
    return name


def init_weight(num_classes: int, dim: int, seed: int):
    """``nn.Linear``'s default initialisation U(-1/sqrt(d), 1/sqrt(d)), drawn from a seeded generator."""
    import torch

    g = torch.Generator().manual_seed(seed_stream(seed, INIT_STREAM))
    bound = 1.0 / math.sqrt(dim)
    return torch.empty(num_classes, dim).uniform_(-bound, bound, generator=g)


def hp_tensors(configs: Sequence[Mapping[str, float | str]], device) -> dict[str, object]:
    """The numeric hyper-parameters of K configurations as (K,) float32 tensors."""
    import torch

    return {name: torch.tensor([c[name] for c in configs], dtype=torch.float32, device=device)
            for name, value in configs[0].items() if not isinstance(value, str)}


def hp_options(configs: Sequence[Mapping[str, float | str]]) -> dict[str, str]:
    """The choice-valued hyper-parameters, which must be equal in all K configurations of one stack."""
    out = {}
    for name, value in configs[0].items():
        if isinstance(value, str):
            differing = sorted({str(c[name]) for c in configs})
            if len(differing) > 1:
                from .errors import ConfigError

                raise ConfigError(f"configurations of one stack differ in the option {name} ({', '.join(differing)})",
                                  "train configurations that differ in an option in separate stacks (grid.structural_groups)")
            out[name] = value
    return out


class _Pool:
    """The training rows: the shared base set plus rows added per head by the augmenter (ME-ADA)."""

    def __init__(self, x, y):
        self.x, self.y = x, y
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

    def gather(self, idx):
        import torch

        if self.extra_x is None:
            return self.x[idx], self.y[idx]
        n = self.x.shape[0]
        is_extra = idx >= n
        base = self.x[idx.clamp(max=n - 1)]
        extra = self.extra_x[:, (idx - n).clamp(min=0)]
        x = torch.where(is_extra[None, :, None], extra, base.unsqueeze(0))
        y = torch.where(is_extra, self.extra_y[(idx - n).clamp(min=0)], self.y[idx.clamp(max=n - 1)])
        return x, y


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
    choice-valued ones are strings and must agree across the configurations)."""
    import torch

    start = time.perf_counter()
    device = torch.device(resolve_device(settings.device))
    K = len(configs)
    x = torch.as_tensor(np.asarray(train_x, dtype=np.float32), device=device)
    y = torch.as_tensor(np.asarray(train_y, dtype=np.int64), device=device)
    n, d = x.shape
    hp = hp_tensors(configs, device)
    options = hp_options(configs)
    lr = hp["lr"].view(K, 1, 1)
    wd = hp["wd"].view(K, 1, 1)
    bound_loss = BoundLoss(loss, {**hp, **options})
    b = settings.batch_size
    run = RunInfo(train_x=x, train_y=y, num_classes=num_classes, hp=hp, num_heads=K, epochs=settings.epochs,
                  batch_size=b, steps_per_epoch=math.ceil(n / b), loss=bound_loss,
                  rng=AugRNG(seed_stream(settings.seed, AUGMENT_STREAM), K), device=device, options=options)
    augmenter = augmenter_cls(run)
    weight = init_weight(num_classes, d, settings.seed).to(device).expand(K, num_classes, d).clone()
    momentum_buf = torch.zeros_like(weight)
    alive = torch.ones(K, dtype=torch.bool, device=device)
    order = torch.Generator().manual_seed(seed_stream(settings.seed, DATA_ORDER_STREAM))
    pool = _Pool(x, y)
    step = 0
    unaugmented = 0
    for epoch in range(settings.epochs):
        rows = augmenter.on_epoch_start(epoch, weight.detach())
        if rows is not None:
            pool.add(rows)
        perm = torch.randperm(len(pool), generator=order).to(device)
        for s in range(0, len(pool), b):
            bx, by = pool.gather(perm[s:s + b])
            batch = Batch(x=bx, y=by, weight=weight, epoch=epoch, step=step)
            if by.shape[0] < augmenter.min_batch:
                unaugmented += 1
                aug = Augmented(bx, Targets.hard(by))
            else:
                aug = augmenter.augment(batch)
            grad = head_gradients(aug, weight, bound_loss)
            with torch.no_grad():
                grad.add_(wd * weight)
                momentum_buf.mul_(settings.momentum).add_(grad)
                weight.sub_(lr * momentum_buf)
            step += 1
        finite = torch.isfinite(weight).flatten(1).all(1)
        if not bool(finite.all()):
            newly = alive & ~finite
            alive &= finite
            with torch.no_grad():
                weight[newly] = 0
                momentum_buf[newly] = 0
                lr = torch.where(alive.view(K, 1, 1), lr, torch.zeros_like(lr))
        if on_epoch_end is not None:
            on_epoch_end(epoch, weight)
    return TrainResult(weight=weight.detach().cpu(), diverged=tuple(bool(v) for v in (~alive).cpu()),
                       unaugmented_batches=unaugmented, seconds=time.perf_counter() - start, epochs_run=settings.epochs)


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
            xb = torch.as_tensor(np.asarray(x[s:s + chunk], dtype=np.float32), device=dev)
            out.append((xb @ w.transpose(1, 2)).argmax(-1).cpu())
    return torch.cat(out, 1).numpy()
