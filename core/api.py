"""What plugins implement: the FeatureAugmenter and Loss contracts, the BackboneSpec and DatasetSpec values
backbone and data-set plugins register, and the typed values they exchange.

Everything is vectorised over K configurations: the trainer trains a stack of K bias-free linear heads
``W`` of shape ``(K, C, d)`` on the same mini-batches, each head with its own hyper-parameters. A
numeric hyper-parameter reaches a plugin as a tensor of shape ``(K,)``; a named option (``HParam.choices``)
as one string shared by the stack. Tensors named ``x`` are either shared by
all heads, shape ``(r, d)``, or per head, shape ``(K, r, d)``; :func:`per_head` lifts the first to the
second without copying.

This module is the whole plugin surface, with :mod:`featbench.errors`: a plugin imports nothing else of
featbench (``hookimpl`` included). Besides the contracts it offers the data-set toolkit (image sources,
splits, the registry.yaml data-set catalog, safe unpickling), the backbone-weights helpers and, from the
neutral :mod:`featbench.directions`, the helpers for in-batch directions and fused steps. It imports torch
only for type names; it is safe to import from a plugin module at load time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from .errors import ConfigError, PluginError, UnknownNameError, shown
from .hookspecs import hookimpl as hookimpl  # re-exported: plugins import it from here

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

    from .directions import LinearGrad


#: The metrics a data set or feature file may be scored with (functions of the same names in
#: ``featbench.training.metrics``): top-1 accuracy, and the mean over classes of per-class recall.
METRICS = ("top1", "mean_per_class")


# --------------------------------------------------------------------------------------------------
# Hyper-parameters


@attrs.frozen
class HParam:
    """A hyper-parameter a trainer, loss or augmenter understands.

    ``vectorized=False`` marks structural hyper-parameters (they change shapes or schedules); the trainer
    then trains configurations that differ in it in separate passes instead of one stack.

    ``choices`` makes it a named option instead of a number (e.g. ISDA's ``cov`` in ``("diag", "full")``):
    its default is one of the choices, it is always structural, and it reaches the plugin as a string in
    ``RunInfo.options`` rather than as a tensor in ``RunInfo.hp``. Yes/no options use :data:`FLAG_CHOICES`.

    Bounds: ``low`` / ``high`` are inclusive unless ``low_open`` / ``high_open`` (``p`` in [0, 1) is
    ``low=0.0, high=1.0, high_open=True``). ``grids`` maps a grid name (``quick``, ``paper``, or one of the
    plugin's own) to the values ``featbench run --grid NAME`` searches; the default and every such value
    pass :meth:`check`. A ``grids:`` entry for the component in registry.yaml replaces these values.
    """

    name: str
    default: float | str
    doc: str
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    integer: bool = False
    vectorized: bool = True
    choices: tuple[str, ...] = ()
    high_open: bool = False
    grids: tuple[tuple[str, tuple[float | str, ...]], ...] = attrs.field(default=(), converter=lambda g: _grid_pairs(g))

    def __attrs_post_init__(self) -> None:
        if self.choices and self.default not in self.choices:
            raise PluginError(
                f"hyper-parameter {self.name}: default {self.default!r} is not one of its choices {self.choices}",
                "declare a default that is one of the choices",
            )
        if not self.choices and isinstance(self.default, str):
            raise PluginError(
                f"hyper-parameter {self.name}: a string default {self.default!r} needs choices",
                "declare choices=(...) or give a numeric default",
            )
        try:
            self.check(self.default)
            for _, values in self.grids:
                for v in values:
                    self.check(v)
        except ConfigError as exc:
            raise PluginError(
                f"hyper-parameter {self.name} declares a value outside its own bounds: {exc.message}", exc.hint
            ) from None

    def grid(self, name: str) -> tuple[float | str, ...] | None:
        """The values this parameter declares for grid ``name``, or None."""
        return dict(self.grids).get(name)

    def describe(self, grids: Mapping[str, Sequence[float | str]] | None = None) -> str:
        """One line of text: default, range or choices, and the grids' values (``featbench plugins -v``);
        ``grids`` (grid name -> values) replaces the parameter's own ``grids`` (a class may override them)."""
        if self.choices:
            text = f"{self.name}={self.default} (one of {', '.join(self.choices)})"
        else:
            text = f"{self.name}={self.default:g}"
            if self.low is not None or self.high is not None:
                lo = "(-inf" if self.low is None else f"{'(' if self.low_open else '['}{self.low:g}"
                hi = "inf)" if self.high is None else f"{self.high:g}{')' if self.high_open else ']'}"
                text += f" in {lo}, {hi}"
            if self.integer:
                text += ", whole"
            if not self.vectorized:
                text += ", structural"
        for grid, values in grids.items() if grids is not None else self.grids:
            text += f"; {grid}: {', '.join(v if isinstance(v, str) else f'{v:g}' for v in values)}"
        return text

    @property
    def structural(self) -> bool:
        """True when configurations differing in this parameter cannot share one K-stack."""
        return not self.vectorized or bool(self.choices)

    def check(self, value: float | str | bool) -> float | str:
        """Return ``value`` as a float (or one of ``choices``), or raise a ConfigError naming the problem."""
        if self.choices:
            return self._check_choice(value)
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"hyper-parameter {self.name}={shown(value)} is not a number",
                f"give a number, e.g. {self.name}={self.default:g}",
            ) from None
        if math.isnan(v) or math.isinf(v):
            raise ConfigError(
                f"hyper-parameter {self.name}={shown(value)} is not finite", f"give a finite number ({self.doc})"
            )
        if self.integer and v != int(v):
            raise ConfigError(f"hyper-parameter {self.name}={shown(value)} must be a whole number", self.doc)
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            op = ">" if self.low_open else ">="
            raise ConfigError(
                f"hyper-parameter {self.name}={shown(value)} is out of range",
                f"{self.name} must be {op} {self.low:g} ({self.doc})",
            )
        if self.high is not None and (v >= self.high if self.high_open else v > self.high):
            op = "<" if self.high_open else "<="
            raise ConfigError(
                f"hyper-parameter {self.name}={shown(value)} is out of range",
                f"{self.name} must be {op} {self.high:g} ({self.doc})",
            )
        return v

    def _check_choice(self, value: float | str | bool) -> str:
        if isinstance(value, bool):  # YAML reads true/false/yes/no as booleans
            value = "true" if value else "false"
        if not isinstance(value, str) or value not in self.choices:
            raise UnknownNameError(f"value of hyper-parameter {self.name}", str(value), self.choices, self.doc)
        return value


def _grid_pairs(grids) -> tuple[tuple[str, tuple[float | str, ...]], ...]:
    """``{"quick": [0.1, 0.3]}`` (or pairs) as a hashable tuple of ``(grid, values)`` pairs."""
    items = list(grids.items() if isinstance(grids, Mapping) else grids)
    out = []
    for grid, values in items:
        values = (values,) if isinstance(values, (str, int, float)) else tuple(values)
        if not isinstance(grid, str) or not values:
            raise PluginError(
                f"grids {dict(items)!r} is not a mapping of grid names to lists of values",
                "write grids={'quick': (v1, v2), 'paper': (...)}",
            )
        out.append((grid, tuple(v if isinstance(v, str) else float(v) for v in values)))
    return tuple(out)


#: The choices of a yes/no option (``HParam(..., choices=FLAG_CHOICES)``); YAML booleans map onto them.
FLAG_CHOICES: tuple[str, str] = ("true", "false")


# --------------------------------------------------------------------------------------------------
# Targets


@attrs.frozen
class Targets:
    """Training targets as label slots: row i puts mass ``weight[..., i, s]`` on class ``index[..., i, s]``.

    Hard labels have one slot and ``weight=None``; a mixup pair has two slots; a dense soft-label matrix
    has C slots. Either tensor may carry a leading K dimension (per head) or not (shared). The loss of a
    row is the convex combination ``sum_s weight_s * loss(z, index_s)`` (SeA paper §3.2, Eqs. 12-16).
    """

    index: Tensor
    weight: Tensor | None = None

    @classmethod
    def hard(cls, y: Tensor) -> Targets:
        return cls(y.unsqueeze(-1))

    @classmethod
    def pair(cls, y_a: Tensor, y_b: Tensor, lam: Tensor) -> Targets:
        """Mass ``lam`` on ``y_a`` and ``1 - lam`` on ``y_b``; ``lam`` broadcasts against ``y_a``."""
        import torch

        lam = torch.as_tensor(lam, dtype=torch.get_default_dtype(), device=y_a.device)
        y_a, y_b, lam = torch.broadcast_tensors(y_a, y_b, lam)
        return cls(torch.stack([y_a, y_b], -1), torch.stack([lam, 1 - lam], -1))

    @classmethod
    def dense(cls, probs: Tensor) -> Targets:
        """A soft-label matrix (rows sum to 1) as C slots."""
        import torch

        C = probs.shape[-1]
        index = torch.arange(C, device=probs.device).expand(probs.shape)
        return cls(index, probs)

    @property
    def slots(self) -> int:
        return self.index.shape[-1]

    def dense_probs(self, num_classes: int) -> Tensor:
        """The targets as a (…, r, C) probability matrix."""
        import torch

        w = self.weight if self.weight is not None else torch.ones(self.index.shape, device=self.index.device)
        out = torch.zeros(*self.index.shape[:-1], num_classes, dtype=w.dtype, device=w.device)
        return out.scatter_add_(-1, self.index, w)


# --------------------------------------------------------------------------------------------------
# Randomness


class AugRNG:
    """Augmentation randomness, separate from the data-order stream.

    ``shared`` is for draws that do not depend on hyper-parameters (drawn once, used by every head);
    ``for_head(k)`` is a stream per head for draws that do (e.g. Beta(alpha_k, alpha_k)). All per-head
    streams start from the same seed, so head k of a K-stack draws exactly what a single run of that
    configuration draws. The streams live on the CPU; move draws to the training device.
    """

    def __init__(self, seed: int, num_heads: int):
        import torch

        self.seed = seed
        self.shared = torch.Generator().manual_seed(_mix_seed(seed, 1))
        self._heads = [torch.Generator().manual_seed(_mix_seed(seed, 2)) for _ in range(num_heads)]

    def for_head(self, k: int):
        return self._heads[k]

    @property
    def num_heads(self) -> int:
        return len(self._heads)


def _mix_seed(seed: int, stream: int) -> int:
    """A 63-bit seed for ``stream`` derived from ``seed`` (splitmix64), so streams never coincide."""
    z = (seed * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


def seed_stream(seed: int, stream: int) -> int:
    """Public form of the seed derivation, for plugins that need their own stream."""
    return _mix_seed(seed, stream)


# --------------------------------------------------------------------------------------------------
# Losses


class Loss:
    """A per-row training loss for K stacked heads.

    Subclasses set ``hparams`` and implement :meth:`per_row`. The trainer minimises
    ``sum_i row_weight_i * per_row_i`` (+ :meth:`batch_term`) per head (``row_weight`` defaults to the mean
    over rows). ``hp`` maps every hyper-parameter of the run to a (K,) tensor, or to a string for a
    choice-valued one (equal for all heads).
    """

    hparams: ClassVar[tuple[HParam, ...]] = ()
    #: Values ``featbench run --grid NAME`` searches, ``{"quick": {"eps": (0.05, 0.1)}}``; see :func:`declared_grid`.
    grids: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def per_row(self, logits: Tensor, targets: Targets, hp: Mapping[str, Tensor]) -> Tensor:
        """Loss of every row: ``logits`` (K, r, C), ``targets`` shared or per head → (K, r)."""
        raise NotImplementedError

    def grad_logits(self, logits: Tensor, targets: Targets, hp: Mapping[str, Tensor]) -> Tensor:
        """d(sum of per-row losses)/d(logits), shape (K, r, C): the gradient the trainer trains with.

        The trainer's closed-form step uses this, not autograd of :meth:`per_row`, so an override must equal
        autograd of ``per_row`` (``featbench.testing.check_loss`` checks it). The default is that autograd.
        """
        import torch

        with torch.enable_grad():
            z = logits.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.per_row(z, targets, hp).sum(), z)
        return g

    def batch_term(self, logits: Tensor, targets: Targets, hp: Mapping[str, Tensor]) -> Tensor | None:
        """An extra term over all rows of the batch together, shape (K,), added to the weighted row losses.

        For losses that are not a sum over rows (a contrastive term couples the rows). It sees every row the
        augmenter returned, whatever their ``row_weight``. Default: none.
        """
        return None


@attrs.frozen
class BoundLoss:
    """A loss with the K heads' hyper-parameters bound, as augmenters see it."""

    loss: Loss
    hp: Mapping[str, Any]

    def per_row(self, logits: Tensor, targets: Targets) -> Tensor:
        return self.loss.per_row(logits, targets, self.hp)

    def grad_logits(self, logits: Tensor, targets: Targets) -> Tensor:
        return self.loss.grad_logits(logits, targets, self.hp)

    def batch_term(self, logits: Tensor, targets: Targets) -> Tensor | None:
        return self.loss.batch_term(logits, targets, self.hp)


# --------------------------------------------------------------------------------------------------
# Augmenters


@attrs.frozen
class RunInfo:
    """What an augmenter is built with, once per training run."""

    train_x: Tensor  # (n, d) unit rows, on the training device; never modify
    train_y: Tensor  # (n,) int64
    num_classes: int
    hp: Mapping[str, Tensor]  # every numeric hyper-parameter of the run, name -> (K,)
    num_heads: int
    epochs: int
    batch_size: int
    steps_per_epoch: int
    loss: BoundLoss
    rng: AugRNG
    device: Any
    options: Mapping[str, str] = attrs.field(factory=dict)  # choice-valued hyper-parameters, equal for all K heads


@attrs.frozen
class Batch:
    """One training mini-batch as the augmenter sees it (everything detached, never modify in place)."""

    x: Tensor  # (b, d) shared or (K, b, d) per head
    y: Tensor  # (b,)
    weight: Tensor  # (K, C, d) current heads, before this step's update
    epoch: int
    step: int  # global step, 0-based


@attrs.frozen
class Augmented:
    """What the trainer trains on for one step.

    ``x``: rows to train on, (r, d) or (K, r, d), detached. ``targets``: :class:`Targets`.
    ``row_weight``: (r,) or (K, r) weights of the rows in the loss (default: 1/r each).
    ``logit_adjust(logits, weight)``: a differentiable change of the logits (ISDA's surrogate).
    ``extra_loss(logits, weight, x)``: an extra per-head loss term, shape (K,), added to the mean loss.
    ``row_loss(logits)``: per-row losses (K, r) that replace the run's loss, for methods whose loss is part
    of the method (ISDA's cross-entropy surrogate, mixup's official BCE); it gets the adjusted logits.
    """

    x: Tensor
    targets: Targets
    row_weight: Tensor | None = None
    logit_adjust: Callable[[Tensor, Tensor], Tensor] | None = None
    extra_loss: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None
    row_loss: Callable[[Tensor], Tensor] | None = None


@attrs.frozen
class ExtraRows:
    """Rows an augmenter adds to the training set between epochs (ME-ADA): x (K, m, d), y (m,)."""

    x: Tensor
    y: Tensor


class FeatureAugmenter:
    """Base class of feature-space augmentation methods.

    Class attributes:
      ``hparams``: the method's own hyper-parameters (defaults, bounds, and the grids each declares).
      ``grids``: grid values declared on the class, ``{"quick": {"p": (0.1, 0.3)}}`` (see :func:`declared_grid`).
      ``off``: the setting that trains exactly like the no-augmentation baseline (``{"eta": 0.0}``), or None
      when the method has none; ``featbench.testing.check_augmenter`` checks it.
      ``min_batch``: batches with fewer rows are trained on unaugmented (in-batch methods need 2).

    The trainer builds one instance per training run (``__init__(run)``), calls
    :meth:`on_epoch_start` before each epoch and :meth:`augment` for every mini-batch. State kept
    across steps lives on the instance.
    """

    hparams: ClassVar[tuple[HParam, ...]] = ()
    grids: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    off: ClassVar[Mapping[str, float | str] | None] = None
    min_batch: ClassVar[int] = 1
    #: ``True`` promises that a training epoch with this augmenter performs no host synchronisation, draws
    #: no host-side randomness and does not depend on ``batch.epoch`` / ``batch.step`` (nor overrides
    #: :meth:`on_epoch_start`), so the trainer may capture the epoch in a CUDA graph (``--cuda-graphs``).
    cuda_graph_safe: ClassVar[bool] = False

    def __init__(self, run: RunInfo):
        self.run = run

    def on_epoch_start(self, epoch: int, weight: Tensor) -> ExtraRows | None:
        """Called before every epoch with the current heads; may return rows to append to the training set."""
        return None

    def augment(self, batch: Batch) -> Augmented:
        """Return what to train on for this mini-batch."""
        raise NotImplementedError

    def fused_gradients(self, batch: Batch) -> Tensor | LinearGrad | None:
        """Optional fast path: every head's gradient of its **mean** training loss on the augmented batch
        w.r.t. its weights, as a (K, C, d) tensor or a :class:`~featbench.directions.LinearGrad`, computed in
        one fused pass. It must equal what the trainer gets from ``head_gradients(augment(batch), ...)``
        (weight decay is added by the trainer); a provider proves the equality with a test. ``None`` (the
        default) lets the trainer take its own path for this batch; the trainer calls this only for classes
        that override it (:func:`has_fused_step`).
        """
        return None

    def head_state(self, k: int) -> dict[str, Any]:
        """What head ``k`` of this instance carries from one epoch to the next, beyond its weights, momentum,
        RNG streams and added rows (the trainer keeps those). Successive halving continues a surviving head
        in a new instance built for the survivors (``__init__`` recomputes everything derived from the
        data and the hyper-parameters), then calls :meth:`load_head_states`. An augmenter whose state
        changes during training must implement both; the default is stateless. Values: tensors, numbers,
        strings, None, or lists/dicts of them."""
        return {}

    def load_head_states(self, states: list[dict[str, Any]]) -> None:
        """Restore this instance's heads, in order, from :meth:`head_state` dicts of earlier instances."""


def has_fused_step(cls: type) -> bool:
    """Whether augmenter class ``cls`` overrides :meth:`FeatureAugmenter.fused_gradients`."""
    return getattr(cls, "fused_gradients", None) is not FeatureAugmenter.fused_gradients


def declared_grid(cls: type, grid: str) -> dict[str, tuple[float | str, ...]]:
    """The values a component (a FeatureAugmenter or Loss class) declares for grid ``grid``: each
    ``HParam.grids`` entry, replaced by the class's ``grids[grid]`` where that names the same parameter.
    Raises PluginError for a class entry that is not one of its hyper-parameters or is out of bounds."""
    params = {h.name: h for h in getattr(cls, "hparams", ())}
    out = {name: h.grid(grid) for name, h in params.items() if h.grid(grid) is not None}
    entry = (getattr(cls, "grids", None) or {}).get(grid) or {}
    for name, values in entry.items():
        if name not in params:
            raise PluginError(
                f"{cls.__name__}.grids[{grid!r}] names {name!r}, which is not one of its hyper-parameters "
                f"({', '.join(params) or 'none'})",
                "list only the class's own hyper-parameters",
            )
        out[name] = dict(_grid_pairs({grid: values}))[grid]
        for v in out[name]:
            try:
                params[name].check(v)
            except ConfigError as exc:
                raise PluginError(f"{cls.__name__}.grids[{grid!r}]: {exc.message}", exc.hint) from None
    return out


def declared_grid_names(cls: type) -> list[str]:
    """Every grid name a component declares values for (on its class or its hyper-parameters)."""
    names = {g for h in getattr(cls, "hparams", ()) for g, _ in h.grids} | set(getattr(cls, "grids", None) or {})
    return sorted(names)


def per_head(x: Tensor, num_heads: int) -> Tensor:
    """View ``x`` as (K, r, d): a shared (r, d) tensor is expanded without a copy."""
    return x if x.dim() == 3 else x.unsqueeze(0).expand(num_heads, *x.shape)


def hp_column(value: Tensor, like: Tensor) -> Tensor:
    """Reshape a (K,) hyper-parameter so that it broadcasts over the trailing dims of ``like`` (K, ...)."""
    return value.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


# --------------------------------------------------------------------------------------------------
# Backbones and data sets (registered through ``register_backbones`` / ``register_datasets``)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


def _three_floats(value) -> tuple[float, float, float]:
    t = tuple(float(v) for v in value)
    if len(t) != 3:
        raise ConfigError(f"expected 3 channel values, got {shown(value)}", "give one value per RGB channel")
    return t


def _positive(instance, attribute, value) -> None:
    if value < 1:
        raise ConfigError(f"preprocess {attribute.name}={value} must be a positive size", "e.g. 224")


@attrs.frozen
class Preprocess:
    """Image preprocessing bound to a backbone: resize the shorter side, centre-crop, normalise.

    The default is the transfer linear-evaluation protocol (Resize 224 bicubic + CenterCrop 224, ImageNet
    mean/std). Every field is part of the feature-cache key.
    """

    resize: int = attrs.field(default=224, converter=int, validator=_positive)
    crop: int = attrs.field(default=224, converter=int, validator=_positive)
    interpolation: str = attrs.field(default="bicubic", validator=attrs.validators.in_(INTERPOLATIONS))
    mean: tuple[float, float, float] = attrs.field(default=IMAGENET_MEAN, converter=_three_floats)
    std: tuple[float, float, float] = attrs.field(default=IMAGENET_STD, converter=_three_floats)

    def with_size(self, size: int) -> Preprocess:
        """The same preprocessing at crop ``size``, keeping the resize/crop ratio."""
        return attrs.evolve(self, resize=round(size * self.resize / self.crop), crop=size)

    def key(self) -> dict:
        return attrs.asdict(self)

    def transform(self):
        """The torchvision transform: PIL RGB image -> float tensor (3, crop, crop)."""
        from torchvision import transforms as T

        mode = getattr(T.InterpolationMode, self.interpolation.upper())
        return T.Compose(
            [
                T.Resize(self.resize, interpolation=mode, antialias=True),
                T.CenterCrop(self.crop),
                T.ToTensor(),
                T.Normalize(self.mean, self.std),
            ]
        )


def _str_tuple(value) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value or ())


@attrs.frozen
class ConversionRule:
    """How a checkpoint file becomes a model state dict (``convert:`` in registry.yaml).

    Applied in order: take ``top_key`` of the loaded dict (if given and present); keep only keys starting
    with ``keep``; remove the prefix ``strip``; drop keys starting with any prefix in ``drop``.
    """

    top_key: str | None = None
    keep: str = ""
    strip: str = ""
    drop: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)

    def key(self) -> dict:
        return attrs.asdict(self)


@attrs.frozen
class WeightsSource:
    """Where a backbone's weights file comes from (``url``, stored as ``file`` under the cache's weights/).

    ``sha256``: the full hex digest or a prefix of at least 8 digits (torch.hub convention), checked on
    every file taken from the cache; None when unknown. ``download=False`` marks URLs that cannot be
    fetched by a script (Google Drive, a file that needs converting); ``manual`` then says what to do
    (``{url}`` and ``{path}`` are filled in). ``package``: the file ships inside this installed Python
    package (``file`` is relative to the package folder); ``install`` says how to install it.
    ``convert_from`` names the converter that turns the release at ``url`` into ``file``: ``featbench
    download`` / ``run`` fetch and convert it (``featbench.inputs.fetch``); :func:`featbench.weights.locate`
    alone never does, and says so.
    """

    file: str
    url: str | None = None
    sha256: str | None = None
    rule: ConversionRule = ConversionRule()
    download: bool = True
    manual: str | None = None
    package: str | None = None
    install: str | None = None
    bytes: int | None = None  # the download's size, for the plan of what a run fetches
    convert_from: str | None = None  # "byol": ``url`` is a release that featbench.inputs converts into ``file``


@attrs.frozen
class ResolvedWeights:
    """The weights a backbone is built with, and their identity in the feature-cache key.

    ``mode``: ``file`` (``path`` is a checkpoint, converted with ``rule``), ``pretrained`` (the library
    fetches its own weights) or ``random`` (seeded initialisation, for tests and CI).
    """

    mode: str
    id: str
    path: str | None = None
    rule: ConversionRule = ConversionRule()


@attrs.frozen
class BackboneSpec:
    """A frozen feature extractor, as a plugin registers it: ``registry.add(name, spec, summary)``.

    ``build(weights)`` returns a torch module in eval mode that maps a preprocessed batch (B, 3, H, W)
    to pooled features (B, d), with ``weights`` (:class:`ResolvedWeights`) loaded. ``arch`` names the
    architecture (part of the cache key). ``weights`` describes a file source; without one,
    ``default_weights`` is ``pretrained`` (then ``pretrained_id`` identifies those weights) or ``random``.
    A prefix family (``timm:``) sets ``resolve(full_name) -> BackboneSpec`` instead of ``build``, and may set
    ``members() -> names`` (without the prefix): a cheap list, without importing the library behind the
    family, used only to suggest members for a misspelt name (without it, suggestions call ``resolve``).
    """

    build: Callable[[ResolvedWeights], Any] | None = None
    arch: str = ""
    preprocess: Preprocess = Preprocess()
    weights: WeightsSource | None = None
    default_weights: str = attrs.field(default="file", validator=attrs.validators.in_(("file", "pretrained", "random")))
    pretrained_id: str | None = None
    resolve: Callable[[str], BackboneSpec] | None = None
    members: Callable[[], Sequence[str]] | None = None


@attrs.frozen
class DatasetSpec:
    """An image data set, as a plugin registers it: ``registry.add(name, spec, summary)``.

    ``load(data_root)`` returns :class:`Splits` (train / val / test image sources and
    class names) or raises :class:`featbench.errors.DataError` naming what to download and where to put
    it. ``metric`` is ``top1`` or ``mean_per_class``. A prefix family (``folder:``) sets
    ``resolve(full_name) -> DatasetSpec`` instead of ``load``.
    """

    load: Callable[[str], Any] | None = None
    metric: str = attrs.field(default="top1", validator=attrs.validators.in_(METRICS))
    resolve: Callable[[str], DatasetSpec] | None = None


# --------------------------------------------------------------------------------------------------
# Toolkits re-exported for plugins: data sets, backbone weights, in-batch directions

#: name -> the module that defines it; imported on first use (``from featbench.api import push_along``),
#: so that importing the contract stays light and these modules may themselves import the contract.
_TOOLKIT = {
    **dict.fromkeys(
        (
            "IMAGE_EXTENSIONS",
            "ImageSource",
            "ArrayImages",
            "FileImages",
            "Splits",
            "CatalogEntry",
            "catalog_entries",
            "holdout_val",
            "per_class_split",
            "missing_data",
            "read_idx",
            "read_lines",
            "default_data_root",
        ),
        "featbench.inputs.datasets",
    ),
    "safe_unpickle": "featbench.inputs.safe_pickle",
    **dict.fromkeys(("load_into", "registry_backbones"), "featbench.inputs.weights"),
    **dict.fromkeys(
        (
            "NORM_EPS",
            "LinearGrad",
            "stacked_logits",
            "linear_weight_grad",
            "row_weights",
            "select_heads",
            "per_row_loss",
            "dense_grad",
            "gradient_similarities",
            "gradient_sq_norms",
            "softmax_without_subnormals",
            "fast_softmax",
            "batch_gram",
            "clamp_norm",
            "row_mix_logits",
            "row_mix_weight_grad",
            "push_mix",
            "normalize_rows",
            "masked_softmax_weights",
            "push_along",
            "span_direction",
            "feature_gradients",
            "sea_augment",
            "STEP_SIZE",
        ),
        "featbench.directions",
    ),
}
_RENAMED = {"safe_unpickle": "load"}


def __getattr__(name: str):
    module = _TOOLKIT.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_TOOLKIT])
