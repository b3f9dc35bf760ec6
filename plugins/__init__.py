"""Built-in featbench plugins.

Each module listed here is registered through exactly the same path as a third-party plugin
(``featbench.manager.load_plugins``); none is special-cased anywhere else. ``draws`` is a helper module
of these plugins and registers nothing.
"""

BUILTIN_PLUGINS: tuple[str, ...] = (
    "featbench.plugins.losses",
    "featbench.plugins.baseline",
    "featbench.plugins.sea",
    "featbench.plugins.sea_neg",
    "featbench.plugins.rand",
    "featbench.plugins.adv",
    "featbench.plugins.mixdir",
    "featbench.plugins.mixup",
    "featbench.plugins.isda",
    "featbench.plugins.meada",
    "featbench.plugins.core_tuning",
    "featbench.plugins.backbones_resnet",
    "featbench.plugins.backbones_offline",
    "featbench.plugins.backbones_hub",
    "featbench.plugins.datasets",
)
