"""Build the plugin manager and expose its catalogs through a small typed façade.

Loading order: hook specs; built-in plugins (``featbench.plugins.BUILTIN_PLUGINS``, registered exactly
like third-party ones); entry points of group ``featbench``, each loaded on its own; ``-p MODULE``
plugins; then each plugin's registration hooks, called one plugin at a time. A plugin that fails to load
or to register is recorded and reported (a warning) unless strict mode is on, in which case the error is
raised. This is the only module that touches ``pm.hook``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from types import ModuleType
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import ConfigError, PluginError, UnknownNameError
from .registry import Catalog, Entry, Provider, Registry

ENTRY_POINT_GROUP = "featbench"
BUILTIN_DIST = "featbench"
LOCAL_DIST = "(local -p module)"

# hook name -> catalog kind
CATALOG_HOOKS = {
    "register_augmenters": "augmenter",
    "register_losses": "loss",
    "register_backbones": "backbone",
    "register_datasets": "dataset",
}


class PluginLoadWarning(UserWarning):
    """A plugin failed to load or register; everything else keeps working."""


@attrs.frozen
class LoadFailure:
    """A plugin that could not be loaded or registered."""

    plugin: str
    dist: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} (distribution {self.dist!r}) failed: {self.error}"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str) -> list[str]:
    return [s.strip() for s in os.environ.get(name, "").split(",") if s.strip()]


def _check_class(base_name: str, kind: str):
    def check(name: str, obj: Any) -> None:
        from . import api

        base = getattr(api, base_name)
        if not (isinstance(obj, type) and issubclass(obj, base)):
            tname = type(obj).__name__
            got = (
                f"the class {obj.__name__}"
                if isinstance(obj, type)
                else f"{'an' if tname[0] in 'aeiouAEIOU' else 'a'} {tname} instance"
            )
            raise PluginError(
                f"{kind} {name!r} is {got}, not a subclass of featbench.api.{base_name}",
                f"register a class derived from featbench.api.{base_name}",
            )
        names = [h.name for h in obj.hparams]
        if len(set(names)) != len(names):
            raise PluginError(f"{name!r} declares a hyper-parameter twice: {names}", "give each HParam a unique name")
        for grid in api.declared_grid_names(obj):
            try:
                api.declared_grid(obj, grid)
            except PluginError as exc:
                raise PluginError(f"{kind} {name!r}: {exc.message}", exc.hint) from None

    return check


def _check_spec(type_name: str):
    """Backbones and data sets are spec instances; a name ending in ':' is a family with ``resolve``."""

    def check(name: str, obj: Any) -> None:
        from . import api

        if not isinstance(obj, getattr(api, type_name)):
            raise PluginError(
                f"{name!r} is a {type(obj).__name__}, not a featbench.api.{type_name}",
                f"register a featbench.api.{type_name}(...)",
            )
        if name.endswith(":") != (obj.resolve is not None):
            raise PluginError(
                f"{name!r}: a family's name ends in ':' and its spec sets resolve (and only then)",
                "register 'family:' with resolve=..., or a plain name with build/load",
            )

    return check


@attrs.frozen
class PluginRecipe:
    """How a :class:`PluginHost` was built, as plain picklable values, so that another process (a Ray
    worker) can build the same one with :meth:`load`: the built-in modules, the entry points (``None``: the
    ``featbench`` group installed where it is loaded; a tuple: exactly these), the ``-p`` modules (``.py``
    paths made absolute), every blocked name (flags and ``FEATBENCH_DISABLE_PLUGINS`` at build time) and
    strictness."""

    builtins: tuple[str, ...]
    entry_points: tuple[Any, ...] | None
    local_modules: tuple[str, ...]
    disabled: tuple[str, ...]
    strict: bool
    registry: str | None = None  # the registry.yaml whose catalogs the hooks got (None: the packaged one)

    def load(self) -> PluginHost:
        return load_plugins(
            builtins=self.builtins,
            entry_points=None if self.entry_points is None else list(self.entry_points),
            local_modules=self.local_modules,
            disabled=self.disabled,
            strict=self.strict,
            registry=self.registry,
        )


class PluginHost:
    """The plugin manager plus the catalogs built from it. Build one with :func:`load_plugins`."""

    def __init__(self, pm: pluggy.PluginManager, strict: bool):
        self.pm = pm
        self.strict = strict
        self.recipe: PluginRecipe | None = None  # set by load_plugins
        self.registry_path: str | None = None  # --registry (None: the packaged registry.yaml)
        self.failures: list[LoadFailure] = []
        self.disabled: list[str] = []  # every blocked name that matched a plugin or distribution
        self.disabled_builtins: list[str] = []
        self.disabled_entry_points: list[tuple[str, str]] = []  # (entry point, distribution)
        self.providers: dict[str, Provider] = {}
        self.augmenters: Catalog = Catalog("augmenter", _check_class("FeatureAugmenter", "augmenter"))
        self.losses: Catalog = Catalog("loss", _check_class("Loss", "loss"))
        self.backbones: Catalog = Catalog("backbone", _check_spec("BackboneSpec"))
        self.datasets: Catalog = Catalog("dataset", _check_spec("DatasetSpec"))

    # ---- loading -----------------------------------------------------------------------------

    def _fail(self, plugin: str, dist: str, exc: BaseException, outcome: str = "continuing without it") -> None:
        """A plugin failed to load or register: an error in strict mode, else a warning (``outcome`` says
        what the command goes on with). A ConfigError is the user's configuration (a registry entry the
        plugin reads), not the plugin's fault: it stops the command in either mode, as it is."""
        if isinstance(exc, ConfigError):
            raise exc
        if self.strict:
            if isinstance(exc, PluginError):
                if repr(plugin) in exc.message:
                    raise exc
                raise PluginError(f"plugin {plugin!r} (distribution {dist!r}): {exc.message}", exc.hint) from exc
            raise PluginError(
                f"plugin {plugin!r} (distribution {dist!r}) failed: {type(exc).__name__}: {_one_line(exc)}",
                "fix or uninstall the plugin, or run without --strict-plugins",
            ) from exc
        failure = LoadFailure(plugin, dist, f"{type(exc).__name__}: {_one_line(exc)}")
        self.failures.append(failure)
        said = _one_line(exc) if isinstance(exc, PluginError) and repr(plugin) in exc.message else str(failure)
        warnings.warn(
            f"{said}; {outcome} (--strict-plugins makes this an error)", PluginLoadWarning, stacklevel=3
        )

    def register_module(self, obj: Any, name: str, dist: str) -> bool:
        """Register an already imported plugin object (module or instance) under ``name``."""
        try:
            self._check_not_registered(obj, name, dist)
            self.pm.register(obj, name=name)
            unknown = sorted(h.name for h in (self.pm.get_hookcallers(obj) or []) if not h.has_spec())
            if unknown:
                self.pm.unregister(obj)
                raise PluginError(
                    f"plugin {name!r} (distribution {dist!r}) implements unknown hook(s) {', '.join(unknown)}",
                    f"featbench's hooks are {', '.join(CATALOG_HOOKS)} (check the spelling)",
                )
        except Exception as exc:  # a bad hook signature, a name registered twice, a misspelt hook...
            self._fail(name, dist, exc)
            return False
        self.providers[name] = Provider(name, dist)
        return True

    def _check_not_registered(self, obj: Any, name: str, dist: str) -> None:
        """A one-line PluginError (not pluggy's dump of every registered plugin) when ``obj`` or ``name`` is taken."""
        other = self.pm.get_name(obj) if self.pm.is_registered(obj) else None
        if other is None and self.pm.get_plugin(name) is not None:
            other = name
        if other is None:
            return
        first = self.providers.get(other, Provider(other, "?"))
        if dist == LOCAL_DIST:
            raise PluginError(
                f"-p {name}: that module is already loaded as {first}",
                f"drop -p {name} (installed plugins load through their entry point), or add --disable-plugin "
                f"{first.plugin} to load the -p copy instead",
            )
        raise PluginError(
            f"plugin {name!r} (distribution {dist!r}) is the same module or name as {first}, already loaded",
            "give each entry point its own module and name",
        )

    def import_and_register(self, module_name: str, dist: str) -> bool:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            self._fail(module_name, dist, exc)
            return False
        return self.register_module(module, module_name, dist)

    def load_entry_points(self, entry_points: Iterable[Any], blocked: set[str]) -> None:
        for ep in entry_points:
            dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
            if ep.name in blocked or dist in blocked:
                self.disabled_entry_points.append((ep.name, dist))
                continue
            try:
                obj = ep.load()
            except Exception as exc:
                self._fail(ep.name, dist, exc)
                continue
            self.register_module(obj, ep.name, dist)

    def build_catalogs(self, registry_file: Mapping | None = None) -> None:
        """Call every plugin's registration hooks, one plugin at a time through pluggy (so that
        ``FEATBENCH_TRACE_PLUGINS`` traces them), with the registry.yaml catalog ``registry_file`` as the
        ``catalog`` argument of the hooks that take one."""
        others = [p for p in self.pm.get_plugins()]
        for hook_name, kind in CATALOG_HOOKS.items():
            catalog = self.catalog(kind)
            hook = getattr(self.pm.hook, hook_name)
            takes_catalog = "catalog" in hook.spec.argnames
            # In registration order: built-ins first, then entry points, then -p modules.
            for impl in hook.get_hookimpls():
                provider = self.providers.get(impl.plugin_name, Provider(impl.plugin_name, "?"))
                registry = Registry(catalog, provider, on_reject=self._rejecter(provider))
                try:
                    if takes_catalog and registry_file is None:
                        from .config import load_registry

                        registry_file = load_registry(self.registry_path)
                    caller = self.pm.subset_hook_caller(hook_name, [p for p in others if p is not impl.plugin])
                    returned = caller(registry=registry, **({"catalog": registry_file} if takes_catalog else {}))
                    returned = [r for r in returned if r is not None]
                    if returned:
                        raise PluginError(
                            f"plugin {provider.plugin!r} (distribution {provider.dist!r}): {hook_name} returned "
                            f"a {type(returned[0]).__name__}, which featbench ignores",
                            f"call registry.add(name, obj) for each {kind} and return nothing",
                        )
                except Exception as exc:
                    for name in registry.added:  # keep nothing half-registered
                        catalog._entries.pop(name, None)
                    self._fail(provider.plugin, provider.dist, exc)

    def _rejecter(self, provider: Provider):
        """What happens to one invalid ``registry.add``: strict mode raises; otherwise that one name is
        dropped with a warning and the plugin's other registrations are kept."""

        def reject(exc: PluginError) -> None:
            outcome = "skipped that one; the plugin's other registrations are kept"
            self._fail(provider.plugin, provider.dist, exc, outcome)

        return reject

    def catalog(self, kind: str) -> Catalog:
        return {
            "augmenter": self.augmenters,
            "loss": self.losses,
            "backbone": self.backbones,
            "dataset": self.datasets,
        }[kind]

    def _get(self, catalog: Catalog, name: str) -> Entry:
        if name in catalog:
            return catalog.entry(name)
        raise self._unknown(catalog, name)

    def _unknown(self, catalog: Catalog, name: str, hint: str | None = None) -> Exception:
        """The error for a name no loaded plugin registered: a PluginError naming the disabled plugin that
        provides it, else an UnknownNameError that says first which plugins are disabled or failed to load."""
        owner = self._disabled_owner(catalog.kind, name)
        if owner is not None:
            named = " and ".join(repr(n) for n in (owner.plugin, owner.dist) if n in self.disabled)
            return PluginError(
                f"unknown {catalog.kind} {name!r}: it is provided by {owner}, which is disabled",
                f"remove {named} from --disable-plugin and FEATBENCH_DISABLE_PLUGINS",
            )
        context = []
        if self.disabled:
            context.append(f"disabled plugins: {', '.join(self.disabled)}")
        if self.failures:
            context.append("plugins that failed to load: " + "; ".join(str(f) for f in self.failures))
        extra = "; ".join([*context, *([hint] if hint else [])]) or None
        return UnknownNameError(catalog.kind, name, catalog.names(), extra, lead=bool(context))

    def _disabled_owner(self, kind: str, name: str) -> Provider | None:
        """Which disabled plugin provides ``name``: a disabled built-in module registering it (featbench's own
        code, imported to ask), or a disabled entry point of that name (third-party code is never run)."""
        hook_name = next(h for h, k in CATALOG_HOOKS.items() if k == kind)
        for module_name in self.disabled_builtins:
            scratch = Catalog(kind)
            try:
                hook = getattr(importlib.import_module(module_name), hook_name, None)
                if hook is not None:
                    wants = inspect.signature(hook).parameters
                    catalog = {"catalog": self._registry_file()} if "catalog" in wants else {}
                    hook(registry=Registry(scratch, Provider(module_name, BUILTIN_DIST)), **catalog)
            except Exception:  # noqa: BLE001 - only a hint: a module that cannot say provides nothing
                continue
            if name in scratch:
                return Provider(module_name, BUILTIN_DIST)
        for plugin, dist in self.disabled_entry_points:
            if plugin == name:
                return Provider(plugin, dist)
        return None

    def _registry_file(self) -> Mapping:
        from .config import load_registry

        return load_registry(self.registry_path)

    def get_augmenter(self, name: str) -> type:
        return self._get(self.augmenters, name).obj

    def get_loss(self, name: str) -> type:
        return self._get(self.losses, name).obj

    def _get_member(self, catalog: Catalog, name: str) -> Any:
        """A name, or a member ``FAMILY:REST`` of a prefix family registered as ``FAMILY:`` (resolved by
        the family's ``resolve(name)``); a plain name wins over a family member of the same spelling."""
        family = name.split(":", 1)[0] + ":" if ":" in name else None
        if name not in catalog and family in catalog and len(name) > len(family):
            return catalog.get(family).resolve(name)
        if name not in catalog:
            exact, close = ([], []) if family else _family_members(catalog, name)
            hint = (
                f"did you mean the family member {' or '.join(exact)}?"
                if exact
                else f"close family members: {', '.join(close)}"
                if close
                else None
            )
            raise self._unknown(catalog, name, hint)
        spec = self._get(catalog, name).obj
        if getattr(spec, "resolve", None) is not None:
            raise UnknownNameError(
                catalog.kind, name, catalog.names(), f"{name} is a family: name a member, e.g. {name}NAME"
            )
        return spec

    def get_backbone(self, name: str) -> Any:
        """The :class:`featbench.api.BackboneSpec` of ``name`` (``timm:resnet50`` resolves through ``timm:``)."""
        return self._get_member(self.backbones, name)

    def get_dataset(self, name: str) -> Any:
        """The :class:`featbench.api.DatasetSpec` of ``name`` (``folder:PATH`` resolves through ``folder:``)."""
        return self._get_member(self.datasets, name)

    def list_augmenters(self) -> list[str]:
        return self.augmenters.names()

    def list_losses(self) -> list[str]:
        return self.losses.names()

    def list_backbones(self) -> list[str]:
        return self.backbones.names()

    def list_datasets(self) -> list[str]:
        return self.datasets.names()

    def distributions(self) -> dict[str, str | None]:
        """Every distribution that provides a loaded plugin, with its installed version (None for ``-p``
        modules and anything not installed as a distribution): recorded with every run."""
        out: dict[str, str | None] = {}
        for provider in self.providers.values():
            if provider.dist not in out:
                try:
                    out[provider.dist] = metadata.version(provider.dist)
                except (metadata.PackageNotFoundError, ValueError):
                    out[provider.dist] = None
        return out


def _family_members(catalog: Catalog, name: str) -> tuple[list[str], list[str]]:
    """``FAMILY:name`` for every prefix family that has it (``resnet50`` -> ``timm:resnet50``), and the
    closest ``FAMILY:member`` spellings where a family lists its members. A family's cheap ``members()``
    list is used when it has one; only families without one are asked through ``resolve`` (which may
    import a large library)."""
    import difflib

    found, close = [], []
    for family in (f for f in catalog.names() if f.endswith(":")):
        spec = catalog.get(family)
        members = getattr(spec, "members", None)
        if members is not None:
            try:
                names = list(members())
            except Exception:  # noqa: BLE001 - only a suggestion
                continue
            if name in names:
                found.append(family + name)
            else:
                close += [family + m for m in difflib.get_close_matches(name, names, n=3, cutoff=0.8)]
            continue
        try:
            spec.resolve(family + name)
        except Exception:  # noqa: BLE001 - not a member of this family
            continue
        found.append(family + name)
    return found, close


def _default_entry_points() -> list[Any]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def load_plugins(
    *,
    entry_points: Iterable[Any] | None = None,
    local_modules: Sequence[str] = (),
    disabled: Sequence[str] = (),
    strict: bool | None = None,
    builtins: Sequence[str] | None = None,
    registry: str | None = None,
) -> PluginHost:
    """Build a fresh plugin manager and its catalogs.

    :param entry_points: entry points to load (default: the installed ``featbench`` group; tests inject
        their own). ``FEATBENCH_DISABLE_ENTRY_POINTS=1`` loads none.
    :param local_modules: ``-p`` modules: importable module names or paths to ``.py`` files.
    :param disabled: plugin or distribution names to skip (also ``FEATBENCH_DISABLE_PLUGINS=a,b``).
    :param strict: re-raise plugin errors (default: ``FEATBENCH_STRICT_PLUGINS``).
    :param builtins: built-in module names (default: ``featbench.plugins.BUILTIN_PLUGINS``).
    :param registry: the registry.yaml whose catalogs the backbone and data-set hooks get (``--registry``;
        default: the packaged one).
    """
    if strict is None:
        strict = _env_flag("FEATBENCH_STRICT_PLUGINS")
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm, strict)
    host.registry_path = registry
    blocked = set(disabled) | set(_env_list("FEATBENCH_DISABLE_PLUGINS"))
    for name in blocked:
        pm.set_blocked(name)
    if builtins is None:
        from .plugins import BUILTIN_PLUGINS as builtins
    for module_name in builtins:
        if module_name in blocked or BUILTIN_DIST in blocked:
            host.disabled_builtins.append(module_name)
        else:
            host.import_and_register(module_name, BUILTIN_DIST)
    recipe_entry_points = (
        None if entry_points is None and not _env_flag("FEATBENCH_DISABLE_ENTRY_POINTS") else tuple(entry_points or ())
    )
    if entry_points is None:
        entry_points = [] if recipe_entry_points is not None else _default_entry_points()
    host.load_entry_points(entry_points, blocked)
    for spec in local_modules:
        module = _import_local(host, spec)
        if module is not None:
            host._check_not_registered(module, module.__name__, LOCAL_DIST)  # asked for by name: an error
            host.register_module(module, module.__name__, LOCAL_DIST)
    if _env_flag("FEATBENCH_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda m: print(m, end="", file=sys.stderr))
        pm.enable_tracing()
    host.build_catalogs()
    host.disabled = _check_disabled(host, blocked, local_modules)
    host.recipe = PluginRecipe(
        tuple(builtins),
        recipe_entry_points,
        tuple(_local_spec(m) for m in local_modules),
        tuple(sorted(blocked)),
        strict,
        registry,
    )
    return host


def _check_disabled(host: PluginHost, blocked: set[str], local_modules: Sequence[str]) -> list[str]:
    """The blocked names that matched a plugin or distribution; a warning for each one that matched nothing
    (a typo, or a component's name where its plugin's is needed)."""
    known = {*host.disabled_builtins, *(n for pair in host.disabled_entry_points for n in pair), *local_modules}
    matched = []
    for name in sorted(blocked):
        if name in known:
            matched.append(name)
            continue
        providers = [
            f"{kind} {name!r} comes from plugin {host.catalog(kind).entry(name).provider.plugin!r}"
            for kind in CATALOG_HOOKS.values()
            if name in host.catalog(kind)
        ]
        hint = (
            f"{'; '.join(providers)}: disable that plugin"
            if providers
            else "see featbench plugins for plugin and distribution names"
        )
        warnings.warn(
            f"--disable-plugin {name!r} (or FEATBENCH_DISABLE_PLUGINS) matches no plugin or distribution ({hint})",
            PluginLoadWarning,
            stacklevel=3,
        )
    return matched


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec


def _local_spec(spec: str) -> str:
    """A ``-p`` module as another process in another directory must name it: paths made absolute."""
    return os.path.abspath(spec) if _is_path(spec) else spec


def _import_local(host: PluginHost, spec: str) -> ModuleType | None:
    """Import a ``-p`` plugin given as a module name or a path to a ``.py`` file."""
    try:
        if _is_path(spec):
            path = os.path.abspath(spec)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no such file: {path}")
            name = "featbench_local_" + os.path.splitext(os.path.basename(path))[0]
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
            return module
        return importlib.import_module(spec)
    except Exception as exc:
        # -p names a plugin the user asked for explicitly: failing silently would hide a typo.
        if isinstance(exc, PluginError):
            raise PluginError(f"cannot load plugin module {spec!r}: {exc.message}", exc.hint) from exc
        missing = isinstance(exc, FileNotFoundError) or (isinstance(exc, ModuleNotFoundError) and exc.name == spec)
        hint = (
            "pass an importable module name or a path to a .py file"
            if missing
            else "fix the plugin (rerun with --debug for the traceback)"
        )
        raise PluginError(f"cannot load plugin module {spec!r}: {type(exc).__name__}: {_one_line(exc)}", hint) from exc


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (a plugin's multi-line message must not break the CLI's one-line errors)."""
    return " ".join(str(exc).split())
