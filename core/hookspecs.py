"""The featbench plugin contract.

A plugin is any module or object with functions decorated by ``featbench.hookimpl`` whose names
match the hooks below. Built-in plugins (``featbench.plugins.*``) and third-party plugins (entry-point
group ``featbench``, or ``featbench -p MODULE``) are registered through exactly the same path.

Each registration hook receives a ``registry`` (:class:`featbench.registry.Registry`) and calls
``registry.add(name, obj)`` once per thing it provides. The plugin manager calls every plugin's hook
separately, so each name is attributed to its plugin and distribution, a plugin that raises is isolated,
and a name registered twice is an error that names both providers.

Example::

    from featbench.api import FeatureAugmenter, hookimpl

    class Jitter(FeatureAugmenter):
        "Gaussian jitter on the unit sphere."
        ...

    @hookimpl
    def register_augmenters(registry):
        registry.add("jitter", Jitter)
"""

from __future__ import annotations

import pluggy

PROJECT = "featbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_augmenters(registry):
    """Register feature-space augmentation methods.

    :param registry: call ``registry.add(name, cls)`` where ``cls`` is a subclass of
        :class:`featbench.api.FeatureAugmenter`. The class declares its own hyper-parameters
        (``cls.hparams``) and is instantiated once per training run.

    Called once per plugin when the plugin manager builds its catalog.
    """


@hookspec
def register_losses(registry):
    """Register training losses for the linear heads.

    :param registry: call ``registry.add(name, cls)`` where ``cls`` is a subclass of
        :class:`featbench.api.Loss` (per-row losses over K stacked heads, hard or soft targets).

    Called once per plugin when the plugin manager builds its catalog.
    """


@hookspec
def register_backbones(registry, catalog):
    """Register frozen feature extractors.

    :param catalog: the registry.yaml in use (``--registry``, else the packaged one) as a mapping; its
        ``backbones`` section lists weight sources and conversions (``featbench.api.registry_backbones``).
        An implementation that does not need it leaves the parameter out.

    :param registry: call ``registry.add(name, spec, summary)`` where ``spec`` is a
        :class:`featbench.api.BackboneSpec`: how to build the model with its weights
        (:class:`featbench.api.ResolvedWeights`), where a weights file comes from
        (:class:`featbench.api.WeightsSource`) and the preprocessing (:class:`featbench.api.Preprocess`).
        A name ending in ``:`` (``timm:``) is a prefix family whose ``spec.resolve(full_name)`` returns
        the spec of a member (``timm:resnet50``). Import torch/timm inside ``build``, not at module level.

    Called once per plugin when the plugin manager builds its catalog.
    """


@hookspec
def register_datasets(registry, catalog):
    """Register image data sets (train/val/test splits, class names, metric).

    :param catalog: the registry.yaml in use as a mapping; its ``datasets`` section is the data-set catalog
        (``featbench.api.catalog_entries``). An implementation that does not need it leaves the parameter out.

    :param registry: call ``registry.add(name, spec, summary)`` where ``spec`` is a
        :class:`featbench.api.DatasetSpec` whose ``load(data_root)`` returns
        :class:`featbench.api.Splits`. A name ending in ``:`` (``folder:``) is a prefix family
        resolved by ``spec.resolve(full_name)``.

    Called once per plugin when the plugin manager builds its catalog.
    """
