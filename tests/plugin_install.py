"""Install a test distribution (tests/plugins/example_plugin, tests/plugins/outside_plugin) the way a user installs one, but
into a throwaway folder: pip builds a copy of its source and installs it with ``--target`` into a temporary
directory that only the tests' subprocesses (``PYTHONPATH``) and an in-process ``sys.path`` entry see. The
directory is deleted afterwards, so the environment running the tests never lists a test plugin."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))


@contextlib.contextmanager
def throwaway_install(name: str) -> Iterator[str]:
    """Yield the ``--target`` folder holding the installed distribution ``tests/<name>`` (``name`` relative to
    tests/, e.g. ``plugins/example_plugin``); removed on exit."""
    with tempfile.TemporaryDirectory(prefix="featbench-plugin-") as tmp:
        source = os.path.join(tmp, "src")
        shutil.copytree(os.path.join(HERE, name), source)  # pip writes build/ and *.egg-info next to the source
        target = os.path.join(tmp, "site")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--target",
                target,
                source,
            ],
            check=True,
            capture_output=True,
        )
        yield target


def subprocess_env(*targets: str) -> dict[str, str]:
    """The environment for ``python -m featbench`` with these folders importable and no FEATBENCH_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATBENCH_")}
    env["PYTHONPATH"] = os.pathsep.join([*targets, *filter(None, [env.get("PYTHONPATH")])])
    return env


@contextlib.contextmanager
def importable(target: str, *packages: str) -> Iterator[None]:
    """``target`` on sys.path for this process (entry points included); its packages are forgotten on exit."""
    import importlib

    sys.path.insert(0, target)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(target)
        for mod in [m for m in sys.modules if m.split(".")[0] in packages]:
            del sys.modules[mod]
        importlib.invalidate_caches()
