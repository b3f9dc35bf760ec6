"""featbench: plugin framework and benchmark runner for augmentation of frozen deep features.

Public API::

    from featbench import hookimpl, load_plugins
    host = load_plugins()
    host.list_augmenters()  # ['none', 'sea', ...]
"""

from __future__ import annotations

from .hookspecs import hookimpl, hookspec

__version__ = "0.1.0"


def load_plugins(**kwargs):
    """Build a plugin host (see :func:`featbench.manager.load_plugins`)."""
    from .manager import load_plugins as _load

    return _load(**kwargs)


__all__ = ["__version__", "hookimpl", "hookspec", "load_plugins"]
