"""Feature sets from images: extract what the cache lacks, then build the (ensemble) FeatureSet.

:func:`feature_set_for` is the runner's entry point. For every backbone it resolves the weights and the
preprocessing, computes each split's cache key (:func:`entry_fields`), and builds the model only if a
split is missing from the cache. The ensemble normalises each backbone's block, concatenates and
normalises again (SeA Eq. 1), working through the memory-mapped float16 blocks in row chunks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import attrs
import numpy as np

from ..api import BackboneSpec, Preprocess, ResolvedWeights
from ..errors import ConfigError, DataError
from .cache import CachedFeatures, FeatureCache, cache_key
from .datasets import ImageSource, Splits, default_data_root
from .extract import ExtractSettings, extract_into
from .features import FeatureSet, l2_normalize
from .progress import ExtractListener
from .weights import build_backbone, resolve_weights

ROW_CHUNK = 8192
_DEFAULT_SETTINGS = ExtractSettings()


@attrs.frozen
class BackboneFeatures:
    """One backbone's cached features for every split of a data set."""

    backbone: str
    splits: Mapping[str, CachedFeatures]
    extracted: tuple[str, ...]  # splits computed in this call (the others came from the cache)
    weights: ResolvedWeights


def entry_fields(backbone: str, arch: str, weights: ResolvedWeights, preprocess: Preprocess, dataset: str, split: str,
                 source: ImageSource) -> dict:
    """Everything that changes the numbers of one cache entry (hashed into its key)."""
    return {"backbone": backbone, "arch": arch, "weights": weights.id,
            "conversion": weights.rule.key() if weights.mode == "file" else None,
            "preprocess": preprocess.key(), "dataset": dataset, "split": split, "images": source.fingerprint(),
            "dtype": "float16"}


def _say(settings: ExtractSettings, message: str) -> None:
    if settings.progress:
        settings.listener.message(message)


def load_splits(dataset: str, host, data_root: str | None = None) -> tuple[Splits, str]:
    """The data set's splits and metric."""
    spec = host.get_dataset(dataset)
    splits = spec.load(os.path.expanduser(data_root or default_data_root()))
    return splits, spec.metric


def backbone_features(dataset: str, splits: Splits, backbone: str, spec: BackboneSpec, rw: ResolvedWeights, *,
                      cache: FeatureCache, preprocess: Preprocess | int | None = None,
                      settings: ExtractSettings = _DEFAULT_SETTINGS) -> BackboneFeatures:
    """Load backbone ``backbone``'s features of every split from the cache, extracting the missing ones."""
    pre = spec.preprocess.with_size(preprocess) if isinstance(preprocess, int) else (preprocess or spec.preprocess)
    model, transform = None, None
    out, extracted = {}, []
    for split, source in splits.items():
        fields = entry_fields(backbone, spec.arch, rw, pre, dataset, split, source)
        key = cache_key(fields)
        hit = cache.load(key)
        if hit is None:
            with cache.lock(key):
                hit = cache.load(key)  # another process may have finished it meanwhile
                if hit is None:
                    if model is None:
                        _say(settings, f"{backbone}: building the model ({rw.mode} weights)")
                        model, transform = build_backbone(backbone, spec, rw), pre.transform()
                    writer = cache.writer(key, source.labels, fields)
                    resumed = f" (resuming at row {writer.start})" if writer.start else ""
                    _say(settings, f"{backbone}: extracting {dataset}/{split}, {len(source)} images{resumed}")
                    extract_into(writer, model, source, transform, settings, desc=f"{backbone} {dataset}/{split}")
                    extracted.append(split)
                    hit = cache.load(key)
                    if hit is None:
                        raise DataError(f"cache entry {cache.entry_dir(key)} did not verify right after writing it",
                                        "check the disk (space, errors) and run again")
        if not np.array_equal(hit.y, source.labels):
            raise DataError(f"cache entry {cache.entry_dir(key)} holds other labels than {dataset}/{split}",
                            f"delete {cache.entry_dir(key)} and run again")
        out[split] = hit
    if not extracted:
        _say(settings, f"{backbone}: {dataset} features loaded from the cache")
    return BackboneFeatures(backbone, out, tuple(extracted), rw)


def assemble(blocks: Sequence[np.ndarray], row_chunk: int = ROW_CHUNK) -> np.ndarray:
    """``l2_normalize(concat(l2_normalize(b) for b in blocks))`` in float32, row chunk by row chunk, so the
    float16 memory maps are read once and only the output is held in memory."""
    n = blocks[0].shape[0]
    widths = [b.shape[1] for b in blocks]
    out = np.empty((n, sum(widths)), dtype=np.float32)
    for lo in range(0, n, row_chunk):
        hi = min(lo + row_chunk, n)
        parts = [l2_normalize(b[lo:hi]) for b in blocks]
        row = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        out[lo:hi] = l2_normalize(row) if len(parts) > 1 else row
    return out


def _settings(device: str, progress: bool, batch_size: int | None, workers: int | None,
              listener: ExtractListener | None) -> ExtractSettings:
    return ExtractSettings(batch_size=batch_size or 64, device=device, workers=workers, progress=progress,
                           listener=listener or ExtractListener())


def _check_backbones(backbones: Sequence[str]) -> list[str]:
    names = [b.strip() for b in backbones if b.strip()]
    if not names:
        raise ConfigError("no backbones given", "name one or more, e.g. --backbones S,M,B,C or timm:resnet50")
    if len(set(names)) != len(names):
        raise ConfigError(f"a backbone is named twice in {','.join(names)}", "name each backbone once")
    return names


def extract(dataset: str, backbones: Sequence[str], *, host, cache_dir: str | None = None, device: str = "auto",
            weights: Mapping[str, str] | None = None, progress: bool = True, data_root: str | None = None,
            preprocess: Preprocess | int | None = None, batch_size: int | None = None,
            workers: int | None = None,
            listener: ExtractListener | None = None) -> tuple[Splits, str, list[BackboneFeatures]]:
    """Fill the cache for every (backbone, split) of ``dataset``; returns the splits, metric and features.
    With ``progress``, what happens is reported to ``listener``."""
    names = _check_backbones(backbones)
    cache = FeatureCache(cache_dir)
    cache.check_writable()  # before any data is read or model built
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ConfigError(
            f"--weights names {unknown}, which are not among the backbones {names}",
            "use --weights NAME=PATH for a listed backbone",
        )
    splits, metric = load_splits(dataset, host, data_root)
    specs = [host.get_backbone(b) for b in names]
    # every backbone's weights first, so a missing file fails before any long extraction
    resolved = [resolve_weights(b, spec, weights.get(b), cache_dir) for b, spec in zip(names, specs)]
    settings = _settings(device, progress, batch_size, workers, listener)
    feats = [
        backbone_features(dataset, splits, b, spec, rw, cache=cache, preprocess=preprocess, settings=settings)
        for b, spec, rw in zip(names, specs, resolved)
    ]
    return splits, metric, feats


def feature_set_for(
    dataset: str,
    backbones: Sequence[str],
    *,
    host,
    cache_dir: str | None = None,
    device: str = "auto",
    weights: Mapping[str, str] | None = None,
    progress: bool = True,
    data_root: str | None = None,
    preprocess: Preprocess | int | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    listener: ExtractListener | None = None,
) -> FeatureSet:
    """The FeatureSet of ``dataset`` under the ensemble of ``backbones`` (extracting what the cache lacks).

    :param weights: backbone name -> checkpoint path, ``random`` or ``pretrained`` (``--weights NAME=...``).
    :param preprocess: a :class:`Preprocess` for every backbone, or an int crop size that rescales each
        backbone's own preprocessing (``--image-size``); both are part of the cache key.
    """
    splits, metric, feats = extract(
        dataset,
        backbones,
        host=host,
        cache_dir=cache_dir,
        device=device,
        weights=weights,
        progress=progress,
        data_root=data_root,
        preprocess=preprocess,
        batch_size=batch_size,
        workers=workers,
        listener=listener,
    )
    arrays = {split: assemble([f.splits[split].x for f in feats]) for split, _ in splits.items()}
    names = [f.backbone for f in feats]
    return FeatureSet(
        name=f"{dataset}@{'+'.join(names)}",
        train_x=arrays["train"],
        train_y=splits.train.labels,
        test_x=arrays["test"],
        test_y=splits.test.labels,
        val_x=arrays.get("val"),
        val_y=splits.val.labels if splits.val is not None else None,
        num_classes=len(splits.classes),
        metric=metric,
        sources=tuple(f.splits[s].path for f in feats for s in f.splits),
        cache_keys=tuple(f.splits[s].key for f in feats for s in f.splits),
    )
