"""What to run: the :class:`RunSpec` shared by ``featbench run`` flags and suite YAML files.

A suite file holds the same settings as the flags, with the flag names as keys (``batch-size`` or
``batch_size``); flags given on the command line override the file. Paths to inputs (``features``,
``feature_files``, ``plugins``) are relative to the suite file; ``out`` and ``cache_dir`` to the working
directory. Example (``benchmarks/cpu_small.yaml`` is a complete one)::

    aug: [none, sea, {label: sea-onehot, augmenter: sea, hp: {alpha: 0}}]
    datasets: [digits, cancer]
    backbones: [raw, rff]
    combos: [raw, raw+rff]
    feature_files: {digits: {raw: data/digits_raw.npz, rff: data/digits_rff.npz}, ...}
    grid: quick
    hp: {eta: [0.4, 0.8], sea-onehot.eta: [0.8]}   # NAME applies to every row, ROW.NAME to one row
    seeds: 2
    epochs: 30
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence

import attrs

from ..errors import ConfigError, UnknownNameError

FORMATS = ("table", "markdown", "csv", "json", "latex")
LAYOUTS = ("auto", "table5", "table4", "both")
EXECUTORS = ("local", "ray")
MATMULS = ("fp32", "tf32", "bf16")  # featbench.training.trainer.matmul_precision
METRICS = ("top1", "mean_per_class")
SEARCHES = ("grid", "halving")  # featbench.training.halving
PROBES = ("lbfgs",)  # featbench.probe
DEFAULT_STACK = 64  # configurations per job (one K-stack) unless max_heads says otherwise


@attrs.frozen
class AugRow:
    """A row of the comparison: an augmenter plugin under a label, with optional hyper-parameter values of its own."""

    label: str
    augmenter: str
    hp: Mapping[str, tuple[float, ...]] = attrs.field(factory=dict)


def _tuple(v) -> tuple:
    return tuple(v)


@attrs.frozen
class RunSpec:
    """Everything ``featbench run`` needs to know; built from flags, a suite file, or both."""

    aug: tuple = ("none", "sea")  # labels / AugRow; ("all",) = every registered augmenter
    features: tuple[tuple[str, ...], ...] = ()  # feature-file columns (each an ensemble of files)
    datasets: tuple[str, ...] = ()
    backbones: tuple[str, ...] = ()
    combos: tuple[str, ...] = ()  # () = all backbones together; ("all",), ("singles",) or explicit "A+B" sets
    feature_files: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)  # dataset -> backbone -> .npz
    loss: str = "hinge"
    hp: Mapping[str, tuple[float, ...]] = attrs.field(factory=dict)  # NAME or ROW.NAME -> values
    grid: str | None = None
    epochs: int = 100
    batch_size: int = 256
    seed: int = 0
    seeds: int = 1
    val_fraction: float = 0.2
    metric: str | None = None
    device: str = "auto"
    format: str = "table"
    layout: str = "auto"
    gain_of: str | None = None
    digits: int = 2
    out: str | None = None
    quiet: bool = False
    log_every: int = 0
    max_heads: int | None = None
    matmul: str = "fp32"  # precision of float32 matrix products (featbench.training.trainer.TrainSettings)
    storage: str = "auto"  # dtype the training features are kept in (featbench.training.storage)
    cuda_graphs: bool = False
    executor: str = "local"
    ray_address: str | None = None  # HOST:PORT of a running Ray cluster (executor ray; default: a local one)
    threads: int | None = None  # CPU threads per job (a Ray task requests as many CPUs); None: local all, ray 1
    ray_gpus: float = 1.0  # GPUs a Ray task requests when the device is CUDA (a fraction packs tasks on a GPU)
    ray_retries: int = 3  # re-runs of a Ray task after its worker or node died (or an OSError)
    cache_dir: str | None = None
    data_root: str | None = None
    image_size: int | None = None
    extract_batch_size: int = 64
    workers: int | None = None
    weights: Mapping[str, str] = attrs.field(factory=dict)
    plugins: tuple[str, ...] = ()
    description: str = ""
    search: str = "grid"  # grid (every configuration, the paper's protocol) or halving (featbench.training.halving)
    halving_keep: float = 1.0 / 3.0  # fraction of configurations a rung passes on
    halving_rungs: tuple[int, ...] = ()  # rung epochs; () = featbench.training.halving.default_rungs
    probe: str | None = None  # lbfgs: an extra row, the L-BFGS logistic-regression probe (featbench.training.probe)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))

    def rows(self, registered: Sequence[str]) -> list[AugRow]:
        """The comparison rows; ``all`` expands to every registered augmenter."""
        out: list[AugRow] = []
        for item in self.aug:
            if item == "all":
                out.extend(AugRow(n, n) for n in registered)
            else:
                out.append(item if isinstance(item, AugRow) else AugRow(item, item))
        labels = [r.label for r in out]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ConfigError(f"augmenter row(s) {', '.join(dup)} listed twice", "list each row once (give variants their own label)")
        return out

    def backbone_sets(self) -> list[tuple[str, ...]]:
        """The backbone combinations to evaluate, in the paper's order for ``all`` (singles, pairs, ...)."""
        bb = self.backbones
        if not self.combos:
            return [bb] if bb else []
        if self.combos == ("all",):
            return [c for k in range(1, len(bb) + 1) for c in itertools.combinations(bb, k)]
        if self.combos == ("singles",):
            return [(b,) for b in bb]
        out = []
        for combo in self.combos:
            parts = tuple(p.strip() for p in combo.split("+") if p.strip())
            for p in parts:
                if p not in bb:
                    raise UnknownNameError("backbone in --combos", p, bb, "every combination must use backbones from --backbones")
            if not parts or len(set(parts)) != len(parts):
                raise ConfigError(f"--combos entry {combo!r} is empty or repeats a backbone", "write sets like S+M")
            out.append(parts)
        return out

    def to_json(self) -> dict:
        def conv(v):
            if isinstance(v, AugRow):
                return {"label": v.label, "augmenter": v.augmenter, "hp": {k: list(x) for k, x in v.hp.items()}}
            if isinstance(v, Mapping):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, (tuple, list)):
                return [conv(x) for x in v]
            return v

        return {f.name: conv(getattr(self, f.name)) for f in attrs.fields(RunSpec)}


FIELDS = tuple(f.name for f in attrs.fields(RunSpec))


def check(spec: RunSpec) -> RunSpec:
    """Reject impossible settings with a message naming the flag and the fix."""
    if spec.epochs < 1:
        raise ConfigError(f"--epochs {spec.epochs} must be at least 1", "e.g. --epochs 100")
    if spec.batch_size < 1:
        raise ConfigError(f"--batch-size {spec.batch_size} must be at least 1", "e.g. --batch-size 256")
    if spec.seeds < 1:
        raise ConfigError(f"--seeds {spec.seeds} must be at least 1", "e.g. --seeds 3")
    if not 0 < spec.val_fraction < 1:
        raise ConfigError(f"--val-fraction {spec.val_fraction} must be between 0 and 1", "e.g. --val-fraction 0.2")
    if spec.log_every < 0:
        raise ConfigError(f"--log-every {spec.log_every} must be >= 0", "0 turns per-epoch logging off")
    if spec.max_heads is not None and spec.max_heads < 1:
        raise ConfigError(f"--max-heads {spec.max_heads} must be at least 1", "or leave it out for the memory-based default")
    if spec.threads is not None and spec.threads < 1:
        raise ConfigError(f"--threads {spec.threads} must be at least 1", "or leave it out for the executor's default")
    if not spec.ray_gpus > 0:
        raise ConfigError(f"--ray-gpus {spec.ray_gpus} must be above 0", "e.g. --ray-gpus 1, or 0.5 for two tasks per GPU")
    if spec.ray_retries < 0:
        raise ConfigError(f"--ray-retries {spec.ray_retries} must be >= 0", "e.g. --ray-retries 3")
    if spec.ray_address is not None and spec.executor != "ray":
        raise ConfigError(f"--ray-address {spec.ray_address} is given but the executor is {spec.executor}", "add --executor ray")
    if not 0 <= spec.digits <= 6:
        raise ConfigError(f"--digits {spec.digits} must be between 0 and 6", "e.g. --digits 2")
    from ..training.storage import STORAGE_CHOICES

    for value, valid, what in ((spec.format, FORMATS, "output format"), (spec.layout, LAYOUTS, "table layout"),
                               (spec.executor, EXECUTORS, "executor"), (spec.matmul, MATMULS, "matmul precision"),
                               (spec.storage, STORAGE_CHOICES, "feature storage")):
        if value not in valid:
            raise UnknownNameError(what, value, valid)
    if spec.metric is not None and spec.metric not in METRICS:
        raise UnknownNameError("metric", spec.metric, METRICS)
    if not 0 < spec.halving_keep < 1:
        raise ConfigError(f"--halving-keep {spec.halving_keep} must be between 0 and 1", "e.g. --halving-keep 0.333")
    if spec.halving_rungs:
        from ..training.halving import check_rungs

        spec = attrs.evolve(spec, halving_rungs=check_rungs(spec.halving_rungs, spec.epochs))  # the last rung is --epochs
    if spec.search not in SEARCHES:
        raise UnknownNameError("search", spec.search, SEARCHES)
    if spec.probe is not None and spec.probe not in PROBES:
        raise UnknownNameError("probe", spec.probe, PROBES)
    if not spec.aug:
        raise ConfigError("--aug is empty", "name augmenters, e.g. --aug none,sea")
    if spec.datasets and not spec.backbones:
        raise ConfigError("--dataset needs --backbones", "e.g. --dataset cifar100 --backbones S,M,B,C")
    if spec.backbones and not spec.datasets:
        raise ConfigError("--backbones needs --dataset", "e.g. --backbones S,M --dataset cifar100")
    if spec.combos and not spec.backbones:
        raise ConfigError("--combos needs --backbones", "e.g. --backbones S,M,B,C --combos all")
    spec.backbone_sets()  # validates explicit combinations
    for ds, files in spec.feature_files.items():
        if ds not in spec.datasets:
            continue  # a catalog may list more data sets than this run uses
        missing = [b for b in spec.backbones if b not in files]
        if missing:
            raise ConfigError(f"feature_files.{ds} has no file for backbone(s) {', '.join(missing)}",
                              f"give a .npz for each of {', '.join(spec.backbones)} or drop feature_files.{ds}")
    return spec


# ---- parsing ------------------------------------------------------------------------------------


def split_list(value, what: str) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` -> ``("a", "b")``."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise ConfigError(f"{what} must be a list of names or a comma-separated string, not {value!r}", f"e.g. {what}: [a, b]")


def _numbers(value, what: str) -> tuple[float, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise ConfigError(f"{what}: {v!r} is not a number", f"write {what}: [0.1, 0.2]")
        try:
            out.append(float(v))
        except ValueError:
            raise ConfigError(f"{what}: {v!r} is not a number", f"write {what}: [0.1, 0.2]") from None
    if not out:
        raise ConfigError(f"{what} has no values", f"write {what}: [0.1, 0.2]")
    if len(set(out)) != len(out):
        raise ConfigError(f"{what} repeats a value", "list each value once")
    return tuple(out)


def parse_hp_mapping(value, what: str = "hp") -> dict[str, tuple[float, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping NAME: [values]", f"e.g. {what}: {{lr: [0.5, 2], eta: 0.8}}")
    return {str(k): _numbers(v, f"{what}.{k}") for k, v in value.items()}


def _aug_items(value) -> tuple:
    if isinstance(value, str):
        return split_list(value, "aug")
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"aug must be a list, not {value!r}", "e.g. aug: [none, sea]")
    out: list = []
    for item in value:
        if isinstance(item, str):
            out.append(item.strip())
        elif isinstance(item, Mapping):
            unknown = set(item) - {"label", "augmenter", "hp"}
            if unknown or "augmenter" not in item:
                raise ConfigError(f"aug entry {dict(item)!r} is not {{label, augmenter, hp}}",
                                  "write {label: sea-a0, augmenter: sea, hp: {alpha: 0}}")
            out.append(AugRow(str(item.get("label") or item["augmenter"]), str(item["augmenter"]),
                              parse_hp_mapping(item.get("hp"), f"aug.{item.get('label') or item['augmenter']}.hp")))
        else:
            raise ConfigError(f"aug entry {item!r} is neither a name nor a mapping", "e.g. aug: [none, sea]")
    return tuple(out)


def _rel(base: str | None, path: str) -> str:
    path = os.path.expanduser(str(path))
    return path if base is None or os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _feature_columns(value, base: str | None) -> tuple[tuple[str, ...], ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    cols = []
    for item in items:
        files = split_list(item, "features") if isinstance(item, str) else split_list(list(item), "features")
        if not files:
            raise ConfigError("an empty features entry", "write features: [A.npz, B.npz+C.npz] or lists of files")
        cols.append(tuple(_rel(base, f) for f in files))
    return tuple(cols)


def _feature_files(value, base: str | None) -> dict[str, dict[str, str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ConfigError("feature_files must map data set -> backbone -> file",
                          "e.g. feature_files: {digits: {raw: data/digits_raw.npz}}")
    return {str(ds): {str(b): _rel(base, p) for b, p in files.items()} for ds, files in value.items()}


def _weights(value) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"weights must map backbone names to files, not {value!r}", "e.g. weights: {M: ckpt/r-50-1000ep.pth.tar}")
    out = {}
    for item in value:
        name, sep, path = str(item).partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"malformed --weights {item!r}", "write --weights NAME=PATH")
        out[name.strip()] = path.strip()
    return out


_INT = {"epochs", "batch_size", "seed", "seeds", "digits", "log_every", "max_heads", "image_size", "extract_batch_size", "workers",
        "threads", "ray_retries"}
_FLOAT = {"val_fraction", "ray_gpus", "halving_keep"}
_BOOL = {"quiet", "cuda_graphs"}
_STR = {"loss", "grid", "metric", "device", "format", "layout", "gain_of", "out", "executor", "ray_address", "cache_dir", "data_root",
        "description", "matmul", "storage", "search", "probe"}


def _coerce(name: str, value, base: str | None, from_flags: bool = False):
    """Turn one raw value (from YAML, or argparse when ``from_flags``) into the RunSpec field's type."""
    if name == "aug":
        return _aug_items(value)
    if name == "features":
        return _feature_columns(value, base)
    if name in ("datasets", "backbones", "combos"):
        return split_list(value, name)
    if name == "feature_files":
        return _feature_files(value, base)
    if name == "hp":
        if from_flags:  # --hp NAME=V,V ...
            from ..training.grid import parse_hp_args

            return {k: tuple(v) for k, v in parse_hp_args(value).items()}
        return parse_hp_mapping(value)
    if name == "weights":
        return _weights(value)
    if name == "halving_rungs":
        return _epoch_list(value)
    if name == "plugins":
        return tuple(_rel(base, p) if str(p).endswith(".py") else str(p) for p in split_list(value, "plugins"))
    if value is None:
        return None
    if name in _BOOL:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {value!r}", f"write {name}: true")
        return value
    if name in _INT:
        if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
            raise ConfigError(f"{name} must be a whole number, not {value!r}", f"e.g. {name}: 2")
        return int(value)
    if name in _FLOAT:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, not {value!r}", f"e.g. {name}: 0.2") from None
    if name in _STR:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{name} must be a string, not {value!r}", f"e.g. {name}: ...")
        return str(value)
    raise AssertionError(name)


def _epoch_list(value) -> tuple[int, ...]:
    """Rung epochs from ``10,30,90`` or a YAML list of whole numbers."""
    items = split_list(value, "halving_rungs") if isinstance(value, str) else value
    try:
        return tuple(int(str(v)) for v in (items if isinstance(items, (list, tuple)) else [items]))
    except ValueError:
        raise ConfigError(f"halving_rungs must be whole numbers of epochs, not {value!r}", "e.g. --halving-rungs 10,30,90") from None


ALIASES = {"dataset": "datasets", "backbone": "backbones", "augmenters": "aug", "feature-files": "feature_files"}


def load_suite(path: str) -> dict:
    """Read a suite YAML file into raw RunSpec fields (unknown keys are an error)."""
    from ..config import read_yaml

    data = read_yaml(path, "suite file", "pass --config PATH.yaml")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path} does not hold a mapping of settings", "write one setting per line, e.g. aug: [none, sea]")
    base = os.path.dirname(os.path.abspath(path))
    out = {}
    for key, value in data.items():
        name = ALIASES.get(str(key), str(key).replace("-", "_"))
        if name not in FIELDS:
            raise UnknownNameError(f"setting in {path}", str(key), FIELDS)
        out[name] = _coerce(name, value, base)
    return out


def build_spec(flags: Mapping[str, object], config: str | None = None) -> RunSpec:
    """Defaults, overridden by the suite file ``config``, overridden by ``flags`` (only the flags given)."""
    values = load_suite(config) if config else {}
    for name, value in flags.items():
        if name not in FIELDS:
            raise AssertionError(f"flag {name} has no RunSpec field")
        values[name] = _coerce(name, value, None, from_flags=True)
    return check(RunSpec(**{k: v for k, v in values.items() if v is not None}))
