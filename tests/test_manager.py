"""Plugin loading: built-ins like third parties, isolation of broken plugins, duplicates, strict mode, -p."""

from __future__ import annotations

import sys
import textwrap
import types

import pytest

from featbench import hookimpl
from featbench.api import Augmented, FeatureAugmenter, Targets
from featbench.errors import PluginError, UnknownNameError
from featbench.manager import PluginLoadWarning, load_plugins


class _Dist:
    def __init__(self, name):
        self.name = name


class FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint (name, dist, load())."""

    def __init__(self, name, loader, dist="fake-dist"):
        self.name = name
        self._loader = loader
        self.dist = _Dist(dist)

    def load(self):
        return self._loader()


class Flip(FeatureAugmenter):
    """Negate the features (test plugin)."""

    def augment(self, batch):
        return Augmented(-batch.x, Targets.hard(batch.y))


def plugin_module(name, aug_name="flip", cls=Flip):
    mod = types.ModuleType(name)

    @hookimpl
    def register_augmenters(registry):
        registry.add(aug_name, cls)

    mod.register_augmenters = register_augmenters
    return mod


def broken():
    raise ImportError("No module named 'missing_dependency'")


def test_builtins_are_registered_with_their_plugin_and_distribution(host):
    assert {"none", "sea"} <= set(host.list_augmenters())
    assert {"hinge", "ce"} <= set(host.list_losses())
    entry = host.augmenters.entry("sea")
    assert entry.provider.plugin == "featbench.plugins.sea"
    assert entry.provider.dist == "featbench"
    assert entry.summary.startswith("SeA")


def test_entry_point_plugin_is_registered_like_a_builtin():
    host = load_plugins(entry_points=[FakeEntryPoint("flip", lambda: plugin_module("flipmod"), "featbench-flip")], strict=True)
    assert host.get_augmenter("flip") is Flip
    assert host.augmenters.entry("flip").provider.dist == "featbench-flip"


def test_broken_plugin_warns_with_name_dist_and_error_and_the_rest_works():
    eps = [FakeEntryPoint("bad", broken, "featbench-bad"), FakeEntryPoint("flip", lambda: plugin_module("flipmod2"), "featbench-flip")]
    with pytest.warns(PluginLoadWarning, match=r"'bad'.*featbench-bad.*missing_dependency"):
        host = load_plugins(entry_points=eps, strict=False)
    assert "flip" in host.list_augmenters() and "sea" in host.list_augmenters()
    assert [f.plugin for f in host.failures] == ["bad"]
    with pytest.raises(UnknownNameError, match="featbench-bad"):
        host.get_augmenter("bads")  # the error mentions the failed plugin


def test_strict_mode_raises_on_a_broken_plugin(monkeypatch):
    with pytest.raises(PluginError, match="'bad'.*featbench-bad.*ImportError"):
        load_plugins(entry_points=[FakeEntryPoint("bad", broken, "featbench-bad")], strict=True)
    monkeypatch.setenv("FEATBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError):
        load_plugins(entry_points=[FakeEntryPoint("bad", broken, "featbench-bad")])


def test_duplicate_name_is_an_error_naming_both_providers():
    eps = [FakeEntryPoint("evil", lambda: plugin_module("evilmod", aug_name="sea"), "featbench-evil")]
    with pytest.raises(PluginError, match=r"'sea' is registered twice.*featbench\.plugins\.sea.*featbench-evil"):
        load_plugins(entry_points=eps, strict=True)
    with pytest.warns(PluginLoadWarning, match="registered twice"):
        host = load_plugins(entry_points=eps, strict=False)
    assert host.augmenters.entry("sea").provider.dist == "featbench"  # the built-in is kept


def test_plugin_registering_the_wrong_type_is_rejected():
    eps = [FakeEntryPoint("wrong", lambda: plugin_module("wrongmod", aug_name="notaclass", cls=object()), "featbench-wrong")]
    with pytest.raises(PluginError, match="not a subclass of featbench.api.FeatureAugmenter"):
        load_plugins(entry_points=eps, strict=True)


def test_plugin_raising_during_registration_is_isolated():
    mod = types.ModuleType("raisemod")

    @hookimpl
    def register_augmenters(registry):
        registry.add("half", Flip)
        raise RuntimeError("boom")

    mod.register_augmenters = register_augmenters
    with pytest.warns(PluginLoadWarning, match="boom"):
        host = load_plugins(entry_points=[FakeEntryPoint("raiser", lambda: mod)], strict=False)
    assert "half" not in host.list_augmenters()  # nothing half-registered
    assert "sea" in host.list_augmenters()


def test_bad_hook_signature_is_reported():
    mod = types.ModuleType("sigmod")

    @hookimpl
    def register_augmenters(registry, unknown_argument):
        pass

    mod.register_augmenters = register_augmenters
    with pytest.raises(PluginError, match="sigmod|unknown_argument"):
        load_plugins(entry_points=[FakeEntryPoint("sig", lambda: mod)], strict=True)


def test_disabled_plugins_are_not_loaded(monkeypatch):
    host = load_plugins(entry_points=[], disabled=["featbench.plugins.sea"])
    assert "sea" not in host.list_augmenters() and "none" in host.list_augmenters()
    monkeypatch.setenv("FEATBENCH_DISABLE_PLUGINS", "flip")
    host = load_plugins(entry_points=[FakeEntryPoint("flip", lambda: plugin_module("flipmod3"))])
    assert "flip" not in host.list_augmenters()


def test_local_plugin_by_path_and_by_module_name(tmp_path, monkeypatch):
    src = textwrap.dedent('''
        from featbench import hookimpl
        from featbench.api import Augmented, FeatureAugmenter, Targets

        class Same(FeatureAugmenter):
            """Identity (local plugin)."""
            def augment(self, batch):
                return Augmented(batch.x, Targets.hard(batch.y))

        @hookimpl
        def register_augmenters(registry):
            registry.add("same", Same)
    ''')
    path = tmp_path / "my_local_plugin.py"
    path.write_text(src)
    host = load_plugins(entry_points=[], local_modules=[str(path)])
    assert "same" in host.list_augmenters()
    assert host.augmenters.entry("same").provider.dist.startswith("(local")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_local_plugin", None)
    host = load_plugins(entry_points=[], local_modules=["my_local_plugin"])
    assert "same" in host.list_augmenters()
    with pytest.raises(PluginError, match="cannot load plugin module 'no_such_module_xyz'"):
        load_plugins(entry_points=[], local_modules=["no_such_module_xyz"])


def test_unknown_names_suggest_close_matches(host):
    with pytest.raises(UnknownNameError) as err:
        host.get_augmenter("seaa")
    assert "did you mean 'sea'" in str(err.value)
    assert "none" in str(err.value)


def test_every_hookspec_is_documented():
    from featbench import hookspecs

    specs = [getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("register_")]
    assert len(specs) == 4
    for spec in specs:
        assert spec.__doc__ and ":param registry:" in spec.__doc__


def test_nothing_outside_the_manager_calls_pm_hook():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    users = [p.name for d in ("core", "plugins") for p in (root / d).rglob("*.py") if "pm.hook" in p.read_text() or ".hook." in p.read_text()]
    assert users == ["manager.py"]


def test_trace_plugins_traces_every_registration_hook_call():
    import os
    import subprocess

    env = {**os.environ, "FEATBENCH_TRACE_PLUGINS": "1", "FEATBENCH_DISABLE_ENTRY_POINTS": "1"}
    res = subprocess.run([sys.executable, "-c", "from featbench.manager import load_plugins; load_plugins()"],
                         capture_output=True, text=True, env=env, cwd="/")
    assert res.returncode == 0, res.stderr
    calls = [line.split()[0] for line in res.stderr.splitlines() if line.endswith("[hook]") and not line.strip().startswith("finish")]
    host = load_plugins(entry_points=[])
    expected = sum(len(getattr(host.pm.hook, h).get_hookimpls()) for h in ("register_augmenters", "register_losses",
                                                                           "register_backbones", "register_datasets"))
    assert len(calls) == expected and {"register_augmenters", "register_datasets", "register_backbones"} <= set(calls)
    assert "catalog:" in res.stderr  # the registry.yaml catalog reaches the backbone and data-set hooks as an argument
