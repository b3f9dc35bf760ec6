"""Contract checks for augmenter and loss plugins, shipped for plugin authors (as pytest ships ``pytester``).

``check_augmenter(cls)`` and ``check_loss(cls)`` train and call a plugin class on small synthetic data and
raise :class:`ContractError` naming the first broken property (every result is returned when all pass);
``augmenter_checks`` / ``loss_checks`` return one :class:`CheckResult` per property without raising, which
is what ``featbench check-plugin NAME`` prints. The properties (each a ``CHECK_*`` constant):

augmenters
  * a K-stack of configurations equals K single runs, random draws included (the randomness rule);
  * the same seed gives the same weights, bit for bit;
  * the class's ``off`` setting trains exactly like the no-augmentation baseline (when it declares one);
  * the trainer's fast path (closed-form step, or the class's ``fused_gradients``) equals its generic
    autograd path;
  * ``augment`` / ``on_epoch_start`` return rows on the batch's device and in its dtype (float32 and float64);
  * a final mini-batch of one row keeps the weights finite.

losses
  * ``grad_logits`` equals autograd of ``per_row`` (hard, two-label and soft targets), else the largest
    difference is named;
  * every head of a K-stack equals that head alone (``per_row``, ``grad_logits``, ``batch_term``);
  * the same input gives the same output;
  * outputs keep the logits' device and dtype, with shapes (K, r), (K, r, C) and (K,).

Hyper-parameter settings: two per class, ``variations=(a, b)`` when given, else the defaults and, for every
vectorised numeric parameter, another valid value (a declared grid value first). Everything is tiny
(at most 70 rows, 12 dimensions, 3 epochs): a class is checked in about a second on a CPU.

Importing this module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from .api import Batch, HParam, RunInfo, Targets, has_fused_step

CHECK_STACK = "K-stack equals single runs"
CHECK_SEED = "same seed, same result"
CHECK_OFF = "off setting equals the baseline"
CHECK_FAST = "fast path equals the generic path"
CHECK_DEVICE = "output keeps the input's device and dtype"
CHECK_ONE_ROW = "a final batch of one row stays finite"
CHECK_GRAD = "grad_logits equals autograd of per_row"
CHECK_HEADS = "K-stack equals single heads"
CHECK_SAME_INPUT = "same input, same result"

AUGMENTER_CHECKS = (CHECK_STACK, CHECK_SEED, CHECK_OFF, CHECK_FAST, CHECK_DEVICE, CHECK_ONE_ROW)
LOSS_CHECKS = (CHECK_GRAD, CHECK_HEADS, CHECK_SAME_INPUT, CHECK_DEVICE)


class ContractError(AssertionError):
    """A plugin class breaks the property ``check`` (one of the ``CHECK_*`` names); ``reason`` says how."""

    def __init__(self, check: str, reason: str):
        super().__init__(f"{check}: {reason}")
        self.check = check
        self.reason = reason


@attrs.frozen
class CheckResult:
    """The outcome of one property: ``ok``, or not with ``reason``; ``skipped`` when it does not apply."""

    component: str
    check: str
    ok: bool
    reason: str = ""
    skipped: bool = False

    def __str__(self) -> str:
        status = "SKIP" if self.skipped else "PASS" if self.ok else "FAIL"
        return f"{status}  {self.component}: {self.check}" + (f" ({self.reason})" if self.reason else "")


# --------------------------------------------------------------------------------------------------
# Synthetic data and runs built like the trainer builds them


def make_blobs(n_train=240, n_test=120, d=16, C=4, seed=0, spread=0.6, n_val=0) -> dict[str, np.ndarray]:
    """Clustered non-negative features (like post-ReLU features) with unit-norm rows, as a feature file's
    arrays: ``train_x`` (n, d) float32, ``train_y`` (n,) int64, and ``test_`` / ``val_`` when asked for."""
    rng = np.random.default_rng(seed)
    centers = rng.random((C, d)) * 2

    def draw(n):
        y = np.arange(n) % C
        rng.shuffle(y)
        x = np.abs(centers[y] + spread * rng.standard_normal((n, d)))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y.astype(np.int64)

    out = {}
    for split, n in (("train", n_train), ("test", n_test), ("val", n_val)):
        if n:
            out[f"{split}_x"], out[f"{split}_y"] = draw(n)
    return out


def unit_blobs(n=96, d=16, C=4, seed=0, spread=0.5) -> tuple[np.ndarray, np.ndarray]:
    """Training rows of :func:`make_blobs`: (n, d) float32, (n,) int64."""
    data = make_blobs(n_train=n, n_test=0, d=d, C=C, seed=seed, spread=spread)
    return data["train_x"], data["train_y"]


def _default_loss():
    from .plugins.losses import SmoothedHinge

    return SmoothedHinge()


def configs_for(aug_cls, loss=None, *rows, **common) -> list[dict[str, float | str]]:
    """Full configurations (every hyper-parameter, defaults filled in) for ``aug_cls`` with ``loss`` (a Loss
    class or instance; default the smoothed hinge): one per mapping in ``rows``, each updated with
    ``common``; no rows gives the defaults."""
    from .training.grid import expand_grid, hparams_for

    params = hparams_for(loss if isinstance(loss, type) else type(loss or _default_loss()), aug_cls)
    out = []
    for row in rows or ({},):
        values = {k: [v] for k, v in {**common, **row}.items()}
        (cfg,) = expand_grid(params, values)
        out.append(cfg)
    return out


def make_run(aug_cls, configs, x, y, C, loss=None, epochs=3, batch_size=32, seed=0, device="cpu") -> RunInfo:
    """A RunInfo built exactly as the trainer builds it (for calling ``augment`` directly); ``x`` keeps its dtype."""
    import torch

    from .training.trainer import TrainSettings, run_info

    xt, yt = torch.as_tensor(x).to(device), torch.as_tensor(y).to(device)
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, seed=seed, device=device)
    return run_info(xt, yt, C, loss or _default_loss(), configs, settings, torch.device(device))


def train(
    aug_cls, configs, x, y, C, loss=None, epochs=3, batch_size=32, seed=0, fast=False, dtype="float32", device="cpu"
):
    """Train a stack and return its weights (K, C, d); ``fast=False`` (default) takes the generic autograd
    step, the reference every other path is compared with."""
    from .training.trainer import TrainSettings, train_heads

    settings = TrainSettings(epochs=epochs, batch_size=batch_size, seed=seed, fast=fast, dtype=dtype, device=device)
    return train_heads(x, y, C, aug_cls, loss or _default_loss(), configs, settings).weight


def _largest_difference(got, want) -> tuple[float, tuple[int, ...]]:
    import torch

    diff = (got.double() - want.double()).abs()
    diff = torch.where(torch.isnan(diff), torch.full_like(diff, math.inf), diff)
    flat = int(diff.argmax())
    index = tuple(int(i) for i in np.unravel_index(flat, tuple(diff.shape)))
    return float(diff.max()), index


def _assert_close(check: str, got, want, what: str, atol: float, rtol: float) -> None:
    """Raise ContractError(check) naming the largest difference when ``got`` and ``want`` differ."""
    import torch

    if got.shape != want.shape:
        raise ContractError(check, f"{what}: shape {tuple(got.shape)} instead of {tuple(want.shape)}")
    if not torch.allclose(got.double(), want.double(), atol=atol, rtol=rtol):
        size, index = _largest_difference(got, want)
        raise ContractError(
            check,
            f"{what} by up to {size:.3g} at index {index}: {float(got[index]):.6g} vs "
            f"{float(want[index]):.6g}{_FIXES.get(check, '')}",
        )


#: What to do about a failed property, appended to its reason.
_FIXES = {
    "K-stack equals single runs": "; draw values that do not depend on hyper-parameters once from rng.shared in a "
    "shape without K, and those that do from rng.for_head(k) (docs/writing-a-plugin.md)",
    "grad_logits equals autograd of per_row": "; the trainer trains with grad_logits: fix it, or delete the override "
    "to get autograd of per_row",
}


def assert_stack_equals_singles(
    aug_cls, configs, x, y, C, loss=None, epochs=3, batch_size=32, seed=0, atol=2e-5, device="cpu"
):
    """K configurations trained together equal K separate runs with the same seed; returns the stack."""
    stack = train(aug_cls, configs, x, y, C, loss, epochs, batch_size, seed, device=device)
    for k, cfg in enumerate(configs):
        single = train(aug_cls, [cfg], x, y, C, loss, epochs, batch_size, seed, device=device)[0]
        _assert_close(
            CHECK_STACK,
            stack[k],
            single,
            f"head {k} of the stack [{_short(cfg)}] differs from its single run",
            atol,
            1e-4,
        )
    return stack


def assert_equals_baseline(
    aug_cls, config, x, y, C, loss=None, epochs=3, batch_size=32, seed=0, exact=True, device="cpu"
):
    """Training with ``config`` gives the same heads as the no-augmentation baseline (bit for bit when ``exact``)."""
    import torch

    from .plugins.baseline import NoAugmentation

    loss = loss or _default_loss()
    got = train(aug_cls, [config], x, y, C, loss, epochs, batch_size, seed, device=device)
    base_cfg = {k: v for k, v in config.items() if k in ("lr", "wd", *(h.name for h in loss.hparams))}
    want = train(NoAugmentation, [base_cfg], x, y, C, loss, epochs, batch_size, seed, device=device)
    if exact and not torch.equal(got, want):
        size, index = _largest_difference(got, want)
        raise ContractError(
            CHECK_OFF, f"{_short(config)} differs from the baseline by up to {size:.3g} (weight {index})"
        )
    if not exact:
        _assert_close(CHECK_OFF, got, want, f"{_short(config)} differs from the baseline", 1e-6, 1e-5)


def _short(cfg: Mapping) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in cfg.items())


# --------------------------------------------------------------------------------------------------
# Hyper-parameter settings to check with


def other_value(h: HParam) -> float | None:
    """A valid value of a numeric parameter other than its default: a declared grid value if there is one."""
    candidates = [v for _, values in h.grids for v in values if not isinstance(v, str)]
    d = float(h.default)
    candidates += [d + 1, d - 1] if h.integer else [d * 2, d / 2, d + 0.5, d + 0.1, d - 0.1, d + 1]
    for v in candidates:
        if v == d:
            continue
        try:
            return float(h.check(v))
        except Exception:  # noqa: BLE001 - out of range: try the next candidate
            continue
    return None


def default_variations(hparams: Sequence[HParam]) -> tuple[dict, dict]:
    """Two settings of ``hparams`` that can share one stack: the defaults, and every vectorised numeric
    parameter moved to :func:`other_value`."""
    other = {}
    for h in hparams:
        if not h.structural:
            v = other_value(h)
            if v is not None:
                other[h.name] = v
    return {}, other


# --------------------------------------------------------------------------------------------------
# Augmenters


def _run_check(component: str, check: str, body: Callable[[], str | None]) -> CheckResult:
    """Run one property check; a ContractError or any exception from the plugin is a failure naming it."""
    try:
        skipped = body()
    except ContractError as exc:
        return CheckResult(component, check, False, exc.reason)
    except Exception as exc:  # noqa: BLE001 - the plugin raised: that is the finding
        text = " ".join(str(exc).split())
        return CheckResult(component, check, False, f"raised {type(exc).__name__}: {text[:300]}")
    return CheckResult(component, check, True, skipped or "", skipped=bool(skipped))


def augmenter_checks(
    cls: type,
    *,
    name: str | None = None,
    loss=None,
    variations: tuple[Mapping, Mapping] | None = None,
    device: str = "cpu",
) -> list[CheckResult]:
    """Every augmenter property (see the module docstring) for ``cls``, one :class:`CheckResult` each."""
    name = name or cls.__name__
    a, b = variations if variations is not None else default_variations(cls.hparams)
    x, y = unit_blobs(n=70, d=12, C=3, seed=1)  # 70 = 2 * 32 + 6: a short last batch
    configs = configs_for(cls, loss, {**a, "lr": 1.0}, {**b, "lr": 0.5}, {**b, "lr": 2.0, "wd": 1e-4})
    stack = {}

    def stacked():
        stack["w"] = assert_stack_equals_singles(cls, configs, x, y, 3, loss, device=device)

    def same_seed():
        import torch

        first = stack.get("w")
        if first is None:
            first = train(cls, configs, x, y, 3, loss, device=device)
        again = train(cls, configs, x, y, 3, loss, device=device)
        if not torch.equal(first, again):
            size, index = _largest_difference(again, first)
            raise ContractError(
                CHECK_SEED,
                f"a second run with the same seed differs by up to {size:.3g} (weight {index}): "
                "draw from self.run.rng, never from torch's global generator",
            )

    def off():
        if cls.off is None:
            return "the class declares no off setting"
        (cfg,) = configs_for(cls, loss, dict(cls.off), lr=1.0)
        assert_equals_baseline(cls, cfg, x, y, 3, loss, device=device)

    def fast():
        import torch

        f = train(cls, configs, x, y, 3, loss, fast=True, dtype="float64", device=device)
        g = train(cls, configs, x, y, 3, loss, fast=False, dtype="float64", device=device)
        scale = max(float(g.abs().amax()), 1.0)
        if not torch.allclose(f, g, atol=1e-8 * scale, rtol=0):
            size, index = _largest_difference(f, g)
            path = "fused_gradients" if has_fused_step(cls) else "the closed-form step (the loss's grad_logits)"
            raise ContractError(
                CHECK_FAST, f"{path} differs from autograd of augment() by up to {size:.3g} (weight {index})"
            )

    def placement():
        for dtype in ("float32", "float64"):
            _check_placement(cls, configs, x, y, loss, device, dtype)

    def one_row():
        import torch

        x1, y1 = unit_blobs(n=33, d=8, C=3, seed=2)  # 33 mod 32 = 1
        w = train(cls, configs_for(cls, loss, b, lr=1.0), x1, y1, 3, loss, epochs=2, device=device)
        if not torch.isfinite(w).all():
            raise ContractError(CHECK_ONE_ROW, "the weights became NaN/Inf after a final batch of one row (min_batch?)")

    bodies = {
        CHECK_STACK: stacked,
        CHECK_SEED: same_seed,
        CHECK_OFF: off,
        CHECK_FAST: fast,
        CHECK_DEVICE: placement,
        CHECK_ONE_ROW: one_row,
    }
    return [_run_check(name, check, bodies[check]) for check in AUGMENTER_CHECKS]


def _check_placement(cls, configs, x, y, loss, device: str, dtype: str) -> None:
    """``on_epoch_start`` and ``augment`` return tensors on the batch's device and in its dtype."""
    import torch

    tdtype = getattr(torch, dtype)
    xt = torch.as_tensor(x, dtype=tdtype, device=device)
    yt = torch.as_tensor(y, device=device)
    K = len(configs)
    g = torch.Generator().manual_seed(0)
    weight = (3.0 * torch.randn(K, 3, xt.shape[1], generator=g) / math.sqrt(xt.shape[1])).to(device, tdtype)
    aug = cls(make_run(cls, configs, xt, yt, 3, loss, device=device))
    where = f"with {dtype} input on {device}"
    extra = aug.on_epoch_start(0, weight)
    if extra is not None:
        _placed(extra.x, xt, "on_epoch_start's ExtraRows.x", where)
    batch = Batch(x=xt[:32], y=yt[:32], weight=weight, epoch=0, step=0)
    out = aug.augment(batch)
    _placed(out.x, xt, "Augmented.x", where)
    if out.x.dim() not in (2, 3) or (out.x.dim() == 3 and out.x.shape[0] != K) or out.x.shape[-1] != xt.shape[1]:
        raise ContractError(
            CHECK_DEVICE,
            f"Augmented.x has shape {tuple(out.x.shape)}: expected (r, {xt.shape[1]}) or "
            f"({K}, r, {xt.shape[1]}) {where}",
        )
    if out.targets.index.device != xt.device:
        raise ContractError(CHECK_DEVICE, f"Augmented.targets.index is on {out.targets.index.device} {where}")
    if out.row_weight is not None:
        _placed(out.row_weight, xt, "Augmented.row_weight", where)


def _placed(t, like, what: str, where: str) -> None:
    if t.device != like.device or t.dtype != like.dtype:
        raise ContractError(
            CHECK_DEVICE,
            f"{what} is {t.dtype} on {t.device} {where}: keep the input's "
            "(build tensors with device=x.device, dtype=x.dtype; move CPU draws with .to(x))",
        )


def check_augmenter(cls: type, **kwargs: Any) -> list[CheckResult]:
    """Run :func:`augmenter_checks` and raise :class:`ContractError` for the first failed property."""
    return _raise_first(augmenter_checks(cls, **kwargs))


def _raise_first(results: list[CheckResult]) -> list[CheckResult]:
    failed = [r for r in results if not r.ok]
    if failed:
        others = f" (and {len(failed) - 1} more: {', '.join(r.check for r in failed[1:])})" if len(failed) > 1 else ""
        raise ContractError(failed[0].check, failed[0].reason + others)
    return results


# --------------------------------------------------------------------------------------------------
# Losses


def _loss_inputs(cls, variations, device, dtype, K=3, r=10, C=4):
    """Logits (K, r, C), three kinds of targets, and the hyper-parameters of K configurations."""
    import torch

    from .training.grid import expand_grid
    from .training.trainer import hp_options, hp_tensors

    params = {h.name: h for h in cls.hparams}
    a, b = variations if variations is not None else default_variations(cls.hparams)
    rows = [a, b, b][:K]
    configs = [expand_grid(params, {k: [v] for k, v in row.items()})[0] for row in rows]
    g = torch.Generator().manual_seed(0)
    logits = (3.0 * torch.randn(K, r, C, generator=g, dtype=torch.float64)).to(device, dtype)
    y = torch.randint(0, C, (r,), generator=g).to(device)
    y2 = torch.randint(0, C, (r,), generator=g).to(device)
    lam = torch.rand(K, r, generator=g).to(device)
    probs = torch.softmax(torch.randn(r, C, generator=g), -1).to(device)
    targets = {
        "hard labels": Targets.hard(y),
        "label pairs": Targets.pair(y, y2, lam),
        "soft labels": Targets.dense(probs),
    }
    return logits, targets, {**hp_tensors(configs, device), **hp_options(configs)}, configs


def _head(targets: Targets, k: int) -> Targets:
    """Head k's targets: a leading K dimension (3-d tensors) sliced to k, shared (2-d) ones kept."""

    def pick(t):
        return t if t is None or t.dim() < 3 else t[k : k + 1]

    return Targets(pick(targets.index), pick(targets.weight))


def _head_hp(hp: Mapping, k: int) -> dict:
    return {n: v if isinstance(v, str) else v[k : k + 1] for n, v in hp.items()}


def loss_checks(
    cls: type, *, name: str | None = None, variations: tuple[Mapping, Mapping] | None = None, device: str = "cpu"
) -> list[CheckResult]:
    """Every loss property (see the module docstring) for ``cls``, one :class:`CheckResult` each."""
    name = name or cls.__name__
    loss = cls()

    def grad():
        import torch

        logits, targets, hp, _ = _loss_inputs(cls, variations, device, torch.float64)
        for kind, t in targets.items():
            got = loss.grad_logits(logits, t, hp)
            with torch.enable_grad():
                z = logits.detach().requires_grad_(True)
                (want,) = torch.autograd.grad(loss.per_row(z, t, hp).sum(), z)
            _assert_close(
                CHECK_GRAD, got, want, f"with {kind}, grad_logits differs from autograd of per_row", 1e-6, 1e-5
            )

    def heads():
        import torch

        logits, targets, hp, _ = _loss_inputs(cls, variations, device, torch.float64)
        K = logits.shape[0]
        for kind, t in targets.items():
            rows, grads, term = (
                loss.per_row(logits, t, hp),
                loss.grad_logits(logits, t, hp),
                loss.batch_term(logits, t, hp),
            )
            for k in range(K):
                tk, hk, zk = _head(t, k), _head_hp(hp, k), logits[k : k + 1]
                for what, stacked, fn in (
                    ("per_row", rows, loss.per_row),
                    ("grad_logits", grads, loss.grad_logits),
                    ("batch_term", term, loss.batch_term),
                ):
                    if stacked is not None:
                        got = stacked[k : k + 1]
                        _assert_close(CHECK_HEADS, got, fn(zk, tk, hk), f"{what} of head {k} with {kind}", 1e-9, 1e-7)

    def same_input():
        import torch

        logits, targets, hp, _ = _loss_inputs(cls, variations, device, torch.float32)
        for kind, t in targets.items():
            for what, fn in (("per_row", loss.per_row), ("grad_logits", loss.grad_logits)):
                if not torch.equal(fn(logits, t, hp), fn(logits, t, hp)):
                    raise ContractError(
                        CHECK_SAME_INPUT, f"{what} with {kind} gives different values on the same input"
                    )

    def placement():
        import torch

        for dtype in (torch.float32, torch.float64):
            logits, targets, hp, _ = _loss_inputs(cls, variations, device, dtype)
            K, r, C = logits.shape
            where = f"with {str(dtype).replace('torch.', '')} logits on {device}"
            for kind, t in targets.items():
                for what, out, shape in (
                    ("per_row", loss.per_row(logits, t, hp), (K, r)),
                    ("grad_logits", loss.grad_logits(logits, t, hp), (K, r, C)),
                    ("batch_term", loss.batch_term(logits, t, hp), (K,)),
                ):
                    if out is None:
                        continue
                    _placed(out, logits, f"{what} ({kind})", where)
                    if tuple(out.shape) != shape:
                        raise ContractError(CHECK_DEVICE, f"{what} ({kind}) has shape {tuple(out.shape)}, not {shape}")

    bodies = {CHECK_GRAD: grad, CHECK_HEADS: heads, CHECK_SAME_INPUT: same_input, CHECK_DEVICE: placement}
    return [_run_check(name, check, bodies[check]) for check in LOSS_CHECKS]


def check_loss(cls: type, **kwargs: Any) -> list[CheckResult]:
    """Run :func:`loss_checks` and raise :class:`ContractError` for the first failed property."""
    return _raise_first(loss_checks(cls, **kwargs))


__all__ = [
    "AUGMENTER_CHECKS",
    "LOSS_CHECKS",
    "CheckResult",
    "ContractError",
    "assert_equals_baseline",
    "assert_stack_equals_singles",
    "augmenter_checks",
    "check_augmenter",
    "check_loss",
    "configs_for",
    "default_variations",
    "loss_checks",
    "make_blobs",
    "make_run",
    "other_value",
    "train",
    "unit_blobs",
]
