"""Jobs: what an executor computes. A :class:`TrainJob` is one K-stack of configurations of one cell in one
phase (SEARCH: grid points scored on validation and test; REFIT: the chosen configuration trained on
train+val and scored on test). :func:`execute_job` trains it on its loaded feature set and returns a
:class:`JobResult`; a job that cannot be computed becomes a :class:`JobFailure`. Nothing here writes the
results store: only the driver does.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping

import attrs
import numpy as np

from ..errors import ConfigError
from ..inputs.features import FeatureSet
from ..inputs.progress import ExtractListener
from ..records import PROBE
from ..training.protocol import ConfigOutcome, heads_within_budget, train_configs
from ..training.trainer import TrainSettings
from .plan import SourceSpec
from .spec import Inputs
from .threads import torch_threads

_INPUTS = Inputs()


@attrs.frozen
class LoadOptions:
    """How executors resolve (dataset, backbones) sources: a run's :class:`~featbench.bench.spec.Inputs` (defaults
    included), the device and whether to report progress."""

    cache_dir: str | None = _INPUTS.cache_dir
    device: str = "auto"
    weights: Mapping[str, str] = attrs.field(factory=dict)
    progress: bool = False
    data_root: str | None = _INPUTS.data_root
    image_size: int | None = _INPUTS.image_size  # crop size for every backbone (None: each backbone's own)
    extract_batch_size: int = _INPUTS.extract_batch_size
    workers: int | None = _INPUTS.workers

    @classmethod
    def from_spec(cls, spec, device: str, progress: bool = False) -> LoadOptions:
        i = spec.inputs
        return cls(
            cache_dir=i.cache_dir,
            device=device,
            weights=dict(i.weights),
            progress=progress,
            data_root=i.data_root,
            image_size=i.image_size,
            extract_batch_size=i.extract_batch_size,
            workers=i.workers,
        )


def load_source(src: SourceSpec, host, options: LoadOptions, listener: ExtractListener | None = None) -> FeatureSet:
    """The feature set of ``src``: its files ensembled, or extracted/cached through ``featbench.inputs.sources``
    (reporting to ``listener`` when ``options.progress``)."""
    if src.builtin:
        from ..inputs.demo import digits_features

        fs = digits_features(seed=0)
        return attrs.evolve(fs, metric=src.metric) if src.metric else fs
    if src.files:
        from ..inputs.features import load_features

        return load_features(list(src.files), name=src.dataset, metric=src.metric)
    try:
        from ..inputs import sources
    except ImportError:
        raise ConfigError(
            f"data set {src.dataset!r} with backbones {src.backbone_label} needs featbench.inputs.sources "
            "(backbones and data sets), which this installation lacks",
            "pass feature files with --features or feature_files in the suite",
        ) from None
    fs = sources.feature_set_for(
        src.dataset,
        list(src.backbones),
        host=host,
        cache_dir=options.cache_dir,
        device=options.device,
        weights=dict(options.weights) or None,
        progress=options.progress,
        data_root=options.data_root,
        preprocess=options.image_size,
        batch_size=options.extract_batch_size,
        workers=options.workers,
        listener=listener,
    )
    if src.metric is not None and fs.metric != src.metric:
        fs = attrs.evolve(fs, metric=src.metric)
    return fs


@attrs.frozen
class TrainJob:
    """One K-stack of one cell, in one phase. Everything a worker needs, and nothing it must not write."""

    source: SourceSpec
    source_id: str
    augmenter: str
    loss: str
    phase: str
    configs: tuple[Mapping[str, float], ...]
    keys: tuple[str, ...]
    settings: TrainSettings
    val_fraction: float
    log_every: int
    label: str  # for progress messages: "ROW on DATASET/BACKBONES seed S"
    threads: int | None = None  # torch CPU threads to train with (None: leave the process' setting)
    stop_epoch: int | None = None  # a halving rung: train up to this epoch (None: all ``settings.epochs``)
    states: tuple[bytes, ...] = ()  # a halving rung after the first: each head's state at the rung before


@attrs.frozen
class JobFailure:
    """A job that could not be computed: what an executor's ``completed`` yields instead of a result."""

    job: TrainJob
    error: str  # one line: "TypeName: message"
    detail: str = ""  # the traceback (``featbench run --debug`` prints it)
    user_error: bool = False  # a FeatbenchError: bad input the user can fix (exit status 2, not 1)

    @classmethod
    def from_exception(cls, job: TrainJob, exc: BaseException) -> JobFailure:
        from ..errors import FeatbenchError

        return cls(job, _one_line(exc), "".join(traceback.format_exception(exc)), isinstance(exc, FeatbenchError))


def _one_line(exc: BaseException) -> str:
    from ..errors import FeatbenchError, first_line

    if isinstance(exc, FeatbenchError) or not str(exc).strip():
        return first_line(exc)  # a FeatbenchError's own line, or the bare type name
    return f"{type(exc).__name__}: {first_line(exc)}"


@attrs.frozen
class SourceInfo:
    """What the store keeps about a feature source (the driver never loads features itself)."""

    dataset: str
    backbones: str
    metric: str
    num_classes: int
    test_y: np.ndarray = attrs.field(eq=False, repr=False)
    cache_keys: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


@attrs.frozen
class JobResult:
    job: TrainJob
    outcomes: tuple[ConfigOutcome, ...]
    source: SourceInfo
    device: str


def execute_job(job: TrainJob, fs: FeatureSet, host, on_epoch: Callable[[int], None] | None = None) -> JobResult:
    """Train one job on its (already loaded) feature set, with ``job.threads`` threads. Pure computation:
    writes nothing."""
    if job.phase == PROBE:
        from ..training import probe

        with torch_threads(job.threads):
            outcomes = probe.run(fs, job.settings.seed, job.val_fraction, job.settings.device)
        return JobResult(job, tuple(outcomes), _source_info(job, fs), job.settings.device)
    aug_cls = host.get_augmenter(job.augmenter)
    loss = host.get_loss(job.loss)()
    cap = heads_within_budget(fs.num_classes, fs.dim)
    outcomes: list[ConfigOutcome] = []
    states = None
    if job.states:
        from ..training.halving import decode

        states = [decode(b) for b in job.states]
    with torch_threads(job.threads):
        for start in range(0, len(job.configs), cap):
            outcomes += train_configs(
                fs,
                aug_cls,
                loss,
                job.configs[start : start + cap],
                job.settings,
                job.phase,
                job.val_fraction,
                job.log_every,
                on_epoch,
                stop=job.stop_epoch,
                states=states[start : start + cap] if states else None,
            )
    return JobResult(job, tuple(outcomes), _source_info(job, fs), job.settings.device)


def _source_info(job: TrainJob, fs: FeatureSet) -> SourceInfo:
    return SourceInfo(
        dataset=job.source.dataset,
        backbones=job.source.backbone_label,
        metric=fs.metric,
        num_classes=fs.num_classes,
        test_y=fs.test_y,
        cache_keys=tuple(fs.cache_keys),
        files=tuple(fs.sources),
    )
