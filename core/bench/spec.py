"""What to run: the :class:`RunSpec` shared by ``featbench run`` flags and suite YAML files.

Every option is declared once, as a field of one of the spec's concerns: :class:`Compare` (what to
compare), :class:`Inputs` (where features come from), :class:`Compute` (how and where jobs run, plus the
options each executor module declares in its ``Options`` class) and :class:`Output` (what is written and
shown). A field's declaration (:func:`featbench.bench.options.option`) holds its default, help text and
flag; the command line's flags, the suite-file keys and the coercion of their values are generated from it.

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
    hp: {eta: [0.4, 0.8], sea-onehot.eta: [0.8], cov: [full]}   # NAME applies to every row, ROW.NAME to one row
    seeds: 2
    epochs: 30
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Mapping, Sequence

import attrs

from ..api import METRICS
from ..errors import ConfigError, UnknownNameError, shown
from ..limits import DEFAULT_MAX_CONFIGS, SQLITE_INT_MAX, cpu_cores
from .options import ALIASES, coerce, declared, option

MATMULS = ("fp32", "tf32", "bf16")  # featbench.training.trainer.matmul_precision
SEARCHES = ("grid", "halving")  # featbench.training.halving
PROBES = ("lbfgs",)  # featbench.training.probe
BASELINE = "none"  # the augmenter every comparison is against
#: The data sets of the SeA paper's Table 5 (``--dataset paper``, and the default with --backbones).
PAPER_DATASETS = (
    "aircraft", "birds", "caltech101", "cars", "cifar10", "cifar100", "dtd", "flowers", "food", "pets", "sun397",
)  # fmt: skip
#: ``--grid auto`` (the default without --hp values and --grid): the grid searched on each kind of device.
AUTO_GRIDS = {"cuda": "paper-auto", "cpu": "quick"}
GRID_HELP = (
    "search a named grid (paper, paper-auto, quick): the values each component declares, with registry.yaml's "
    "entries over them; default without --hp values: auto (paper-auto when training on a GPU, quick on the CPU)"
)


@attrs.frozen
class AugRow:
    """A row of the comparison: an augmenter plugin under a label, with optional hyper-parameter values of its own."""

    label: str
    augmenter: str
    hp: Mapping[str, tuple[float | str | bool, ...]] = attrs.field(factory=dict)


def split_list(value, what: str) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` -> ``("a", "b")``."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise ConfigError(
        f"{what} must be a list of names or a comma-separated string, not {shown(value)}", f"e.g. {what}: [a, b]"
    )


def _parse_hp(value, base, from_flags):
    if from_flags:  # --hp NAME=V,V ... (repeatable)
        from ..training.grid import parse_hp_args

        return {k: tuple(v) for k, v in parse_hp_args(value).items()}
    return parse_hp_mapping(value)


def parse_hp_mapping(value, what: str = "hp") -> dict[str, tuple[float | str | bool, ...]]:
    """A suite file's ``hp:`` mapping (NAME or ROW.NAME -> values), read as ``--hp`` and registry.yaml grids are
    (:func:`featbench.training.grid.hp_values`). The trainer's own hyper-parameters (lr, wd) are numbers, so a
    word there is refused now, naming the file's key."""
    from ..training.grid import TRAINER_HPARAMS, hp_values

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping NAME: [values]", f"e.g. {what}: {{lr: [0.5, 2], eta: 0.8}}")
    numeric = {h.name for h in TRAINER_HPARAMS}
    out = {}
    for k, v in value.items():
        key = f"{what}.{k}"
        values = hp_values(v, key)
        if str(k).rpartition(".")[2] in numeric:
            for x in values:
                if not isinstance(x, float):
                    raise ConfigError(f"{key}: {shown(x)} is not a number", f"write {key}: [0.1, 0.2]")
        out[str(k)] = values
    return out


def _parse_aug(value, base, from_flags) -> tuple:
    if isinstance(value, str):
        return split_list(value, "aug")
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"aug must be a list, not {shown(value)}", "e.g. aug: [none, sea]")
    out: list = []
    for item in value:
        if isinstance(item, str):
            out.append(item.strip())
        elif isinstance(item, Mapping):
            unknown = set(item) - {"label", "augmenter", "hp"}
            if unknown or "augmenter" not in item:
                raise ConfigError(
                    f"aug entry {shown(dict(item))} is not {{label, augmenter, hp}}",
                    "write {label: sea-a0, augmenter: sea, hp: {alpha: 0}}",
                )
            out.append(
                AugRow(
                    str(item.get("label") or item["augmenter"]),
                    str(item["augmenter"]),
                    parse_hp_mapping(item.get("hp"), f"aug.{item.get('label') or item['augmenter']}.hp"),
                )
            )
        else:
            raise ConfigError(f"aug entry {shown(item)} is neither a name nor a mapping", "e.g. aug: [none, sea]")
    return tuple(out)


def _rel(base: str | None, path: str) -> str:
    path = os.path.expanduser(str(path))
    return path if base is None or os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _parse_features(value, base, from_flags) -> tuple[tuple[str, ...], ...]:
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


def _parse_feature_files(value, base, from_flags) -> dict[str, dict[str, str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ConfigError(
            "feature_files must map data set -> backbone -> file",
            "e.g. feature_files: {digits: {raw: data/digits_raw.npz}}",
        )
    return {str(ds): {str(b): _rel(base, p) for b, p in files.items()} for ds, files in value.items()}


def _parse_weights(value, base, from_flags) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(
            f"weights must map backbone names to files, not {shown(value)}",
            "e.g. weights: {M: ckpt/r-50-1000ep.pth.tar}",
        )
    out = {}
    for item in value:
        name, sep, path = str(item).partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"malformed --weights {shown(item)}", "write --weights NAME=PATH")
        out[name.strip()] = path.strip()
    return out


def _parse_plugins(value, base, from_flags) -> tuple[str, ...]:
    return tuple(_rel(base, p) if str(p).endswith(".py") else str(p) for p in split_list(value, "plugins"))


def _parse_rungs(value, base, from_flags) -> tuple[int, ...]:
    """Rung epochs from ``10,30,90`` or a YAML list of whole numbers."""
    if value is None:
        return ()
    items = split_list(value, "halving_rungs") if isinstance(value, str) else value
    try:
        return tuple(int(str(v)) for v in (items if isinstance(items, (list, tuple)) else [items]))
    except ValueError:
        raise ConfigError(
            f"halving_rungs must be whole numbers of epochs, not {value!r}", "e.g. --halving-rungs 10,30,90"
        ) from None


def _names(what: str):
    return lambda value, base, from_flags: split_list(value, what)


def expand_datasets(names: Sequence[str]) -> tuple[str, ...]:
    """Data-set names with the alias ``paper`` replaced by the SeA paper's eleven (each name once)."""
    out: list[str] = []
    for n in names:
        for m in PAPER_DATASETS if n == "paper" else (n,):
            if m not in out:
                out.append(m)
    return tuple(out)


def _dataset_names(value, base, from_flags) -> tuple[str, ...]:
    return expand_datasets(split_list(value, "datasets"))


# ---- the concerns ---------------------------------------------------------------------------------


@attrs.frozen
class Compare:
    """What to compare: the rows, the feature sources (columns), and the protocol that scores them."""

    aug: tuple = option(
        ("none", "sea"),
        parse=_parse_aug,
        metavar="NAME[,NAME...]|all",
        aliases=("augmenters",),
        help="augmenter rows (all: every registered augmenter)",
    )
    features: tuple[tuple[str, ...], ...] = option(
        (),
        parse=_parse_features,
        repeat=True,
        metavar="A.npz[,B.npz...]",
        help="a feature-file column (several comma-separated files form an ensemble); "
        "repeatable. Default without --dataset: the embedded scikit-learn digits set",
    )
    datasets: tuple[str, ...] = option(
        (),
        parse=_dataset_names,
        flag="--dataset",
        aliases=("dataset",),
        metavar="NAME[,NAME...]",
        help="data sets (columns); paper = the eleven of the SeA paper's Table 5 (the default with --backbones). "
        "Missing catalog data sets and checkpoints are downloaded first",
    )
    backbones: tuple[str, ...] = option(
        (),
        parse=_names("backbones"),
        aliases=("backbone",),
        metavar="B[,B...]",
        help="backbones; by default one ensemble of all of them",
    )
    combos: tuple[str, ...] = option(
        (),
        parse=_names("combos"),
        metavar="all|singles|A+B[,...]",
        help="backbone sets to evaluate: all non-empty subsets of --backbones (Table 4), "
        "each alone, or a list (default: all backbones together)",
    )
    feature_files: Mapping[str, Mapping[str, str]] = option(
        factory=dict,
        flag=None,
        parse=_parse_feature_files,
        aliases=("feature-files",),
        help="data set -> backbone -> .npz (suite files only)",
    )
    feature_files_script: str | None = option(
        None,
        parse=lambda value, base, from_flags: None if value is None else _rel(base, str(value)),
        metavar="SCRIPT.py",
        help="the script that writes the feature files (named in the error when one is missing)",
    )
    metric: str | None = option(None, help="override the sources' metric: top1 or mean_per_class")
    loss: str = option("hinge", help="training loss")
    hp: Mapping[str, tuple[float | str | bool, ...]] = option(
        factory=dict,
        parse=_parse_hp,
        repeat=True,
        metavar="[ROW.]KEY=V[,V2...]",
        help="fix a hyper-parameter, or give several values to search; ROW.KEY applies to one row (repeatable)",
    )
    grid: str | None = option(None, metavar="NAME", help=GRID_HELP)
    no_baseline: bool = option(
        False,
        help="do not train the baseline row none beside the augmenters given with --aug (no Gain row then); by "
        "default it is added, once per cell, unless a row already trains it (a suite file's aug: list is taken "
        "as it is)",
    )
    epochs: int = option(100, help="training epochs")
    batch_size: int = option(256, help="mini-batch size")
    seed: int = option(0, help="first seed")
    seeds: int = option(1, help="number of seeds, seed..seed+N-1; tables show mean ± std")
    max_configs: int = option(
        DEFAULT_MAX_CONFIGS,
        metavar="N",
        help="the most configurations the run may train, every grid point and refit of every row, source and seed; "
        "a larger run is refused with an estimate of its work",
    )
    val_fraction: float = option(0.2, help="hold-out fraction of train for the search when there is no val split")
    search: str = option(
        "grid",
        help="grid (every configuration for all epochs, the paper's protocol) or halving (successive halving over "
        "the same grid: the best --halving-keep fraction on validation goes on at every rung)",
    )
    halving_keep: float = option(1.0 / 3.0, metavar="F", help="fraction of configurations each rung passes on")
    halving_rungs: tuple[int, ...] = option(
        (),
        parse=_parse_rungs,
        metavar="E1,E2,...",
        help="rung epochs (default: E/3^(m-1), ..., E/3, E with m = 1 + floor(log3 N) for N configurations)",
    )
    probe: str | None = option(
        None,
        metavar="lbfgs",
        help="add the L-BFGS logistic-regression probe as a row (weight decay swept on validation) "
        "and a Gain row against it",
    )


@attrs.frozen
class Inputs:
    """Where features come from when they are extracted from images (backbones × data sets)."""

    weights: Mapping[str, str] = option(
        factory=dict,
        parse=_parse_weights,
        repeat=True,
        metavar="NAME=PATH",
        help="weights for a backbone: a checkpoint file, 'random' or 'pretrained'; repeatable",
    )
    cache_dir: str | None = option(
        None, metavar="DIR", help="feature and weights cache (default: $FEATBENCH_CACHE or ~/.cache/featbench)"
    )
    data_root: str | None = option(
        None, metavar="DIR", help="where data sets live (default: $FEATBENCH_DATA or ~/.cache/featbench/data)"
    )
    image_size: int | None = option(
        None,
        metavar="N",
        help="crop size N for every backbone, keeping each one's resize/crop ratio (default: each backbone's own)",
    )
    extract_batch_size: int = option(64, metavar="B", help="images per forward pass")
    workers: int | None = option(None, metavar="N", help="image-decoding workers (default: by device)")
    plugins: tuple[str, ...] = option(
        (), flag=None, parse=_parse_plugins, help="plugin modules to load (suite files only; on the command line: -p)"
    )


@attrs.frozen
class Compute:
    """How and where jobs run. Besides these, each executor module declares its own ``Options``."""

    device: str = option("auto", help="auto, cpu or cuda[:N]")
    stack_size: int = option(
        64,
        aliases=("max_heads",),
        metavar="K",
        help="configurations of a grid trained together in one job (one K-stack); smaller stacks "
        "resume at a finer grain",
    )
    executor: str = option(
        "local",
        help="where jobs run: local (this process) or another module of "
        "featbench.bench.executors, e.g. ray (tasks on a Ray cluster: pip install 'featbench[ray]')",
    )
    threads: int | None = option(
        None,
        metavar="N",
        help="CPU threads per job, and CPUs per Ray task (default: local all cores, ray 1); "
        "the same N gives bit-identical numbers under both executors",
    )
    matmul: str = option(
        "fp32",
        help="float32 matrix products: fp32, tf32 (CUDA) or bf16 (CPUs with bf16 units); "
        "reduced precision changes results slightly and is recorded with them",
    )
    storage: str = option(
        "auto",
        help="dtype the training features are kept in: auto (float16 caches stay half), float32, float16 or bfloat16",
    )
    cuda_graphs: bool = option(
        False, help="replay each training epoch as a CUDA graph (GPU, augmenters that declare it safe)"
    )


@attrs.frozen
class Output:
    """What a run records, writes and shows."""

    format: str = option(
        "table",
        help="output format of the tables: table, markdown, csv (one line per cell: mean, std, gain and p in their own "
        "columns), csv-wide (the table as printed), json or latex",
    )
    layout: str = option("auto", help="auto (Table 5, plus Table 4 with several backbone sets), table5, table4 or both")
    gain_of: str | None = option(None, metavar="NAME", help="row of the Gain line (default: sea, else the last)")
    digits: int = option(2, help="decimals in tables")
    out: str | None = option(None, metavar="DIR", help="run directory: results store, results.json and the table")
    log_every: int = option(0, metavar="N", help="record train/test accuracy every N epochs (for featbench plot)")
    quiet: bool = option(False, help="no progress on stderr")
    description: str = option("", flag=None, help="what the suite is for (suite files only)")


CONCERNS = {"compare": Compare, "inputs": Inputs, "compute": Compute, "output": Output}


@functools.cache
def executor_options() -> dict[str, type]:
    """Executor name -> its ``Options`` class, for the executors that declare options."""
    from . import executors

    found = {}
    for name in executors.names():
        cls = getattr(executors.module(name), "Options", None)
        if cls is not None:
            found[name] = cls
    return found


@functools.cache
def option_fields() -> dict[str, tuple[str, attrs.Attribute]]:
    """Every option's name -> (where it lives: a concern, or ``executor:NAME``, and its field), in flag order."""
    out = {}
    for part, cls in [*CONCERNS.items(), *((f"executor:{n}", c) for n, c in executor_options().items())]:
        for field in declared(cls):
            if field.name in out:
                raise TypeError(f"option {field.name} is declared twice ({out[field.name][0]} and {part})")
            out[field.name] = (part, field)
    return out


@attrs.frozen(init=False)
class RunSpec:
    """Everything ``featbench run`` needs to know; built from flags, a suite file, or both.

    Built from its concerns, or from options by name (``RunSpec(epochs=3, executor="ray")``), and read by
    name too (``spec.epochs``); :func:`attrs.evolve` takes option names.
    """

    compare: Compare
    inputs: Inputs
    compute: Compute
    output: Output
    executors: Mapping[str, object]  # executor name -> its Options

    def __init__(
        self,
        compare: Compare | None = None,
        inputs: Inputs | None = None,
        compute: Compute | None = None,
        output: Output | None = None,
        executors: Mapping[str, object] | None = None,
        **options,
    ):
        parts: dict[str, object] = {
            "compare": compare or Compare(),
            "inputs": inputs or Inputs(),
            "compute": compute or Compute(),
            "output": output or Output(),
        }
        given = dict(executors or {})
        for name, cls in executor_options().items():
            parts[f"executor:{name}"] = given.get(name) or cls()
        fields = option_fields()
        changes: dict[str, dict] = {}
        for name, value in options.items():
            if name not in fields:
                raise TypeError(f"RunSpec() got an unexpected option {name!r}")
            changes.setdefault(fields[name][0], {})[name] = value
        for part, values in changes.items():
            parts[part] = attrs.evolve(parts[part], **values)
        self.__attrs_init__(
            parts["compare"],
            parts["inputs"],
            parts["compute"],
            parts["output"],
            {k.partition(":")[2]: v for k, v in parts.items() if k.startswith("executor:")},
        )

    def __getattr__(self, name: str):
        fields = option_fields()
        if name not in fields:
            raise AttributeError(name)
        part = fields[name][0]
        holder = (
            self.executors[part.partition(":")[2]]
            if part.startswith("executor:")
            else object.__getattribute__(self, part)
        )
        return getattr(holder, name)

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
            raise ConfigError(
                f"augmenter row(s) {', '.join(dup)} listed twice", "list each row once (give variants their own label)"
            )
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
                    raise UnknownNameError(
                        "backbone in --combos", p, bb, "every combination must use backbones from --backbones"
                    )
            if not parts or len(set(parts)) != len(parts):
                raise ConfigError(
                    f"--combos entry {shown(combo)} is empty or repeats a backbone", "write sets like S+M"
                )
            out.append(parts)
        return out

    def to_json(self) -> dict:
        """Every option by name (the run record's settings)."""

        def conv(v):
            if isinstance(v, AugRow):
                return {"label": v.label, "augmenter": v.augmenter, "hp": {k: list(x) for k, x in v.hp.items()}}
            if isinstance(v, Mapping):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, (tuple, list)):
                return [conv(x) for x in v]
            return v

        return {name: conv(getattr(self, name)) for name in option_fields()}


def check(spec: RunSpec) -> RunSpec:
    """Reject impossible settings with a message naming the flag and the fix (the output format and layout
    are checked by :func:`featbench.run.build_spec`, which knows the renderers)."""
    if spec.epochs < 1:
        raise ConfigError(f"--epochs {spec.epochs} must be at least 1", "e.g. --epochs 100")
    if spec.batch_size < 1:
        raise ConfigError(f"--batch-size {spec.batch_size} must be at least 1", "e.g. --batch-size 256")
    if spec.seeds < 1:
        raise ConfigError(f"--seeds {spec.seeds} must be at least 1", "e.g. --seeds 3")
    if not 0 <= spec.seed <= SQLITE_INT_MAX:
        raise ConfigError(
            f"--seed {spec.seed} is outside 0..{SQLITE_INT_MAX} (seeds are recorded as signed 64-bit integers)",
            "pass a --seed in that range, e.g. --seed 0",
        )
    if spec.seed + spec.seeds - 1 > SQLITE_INT_MAX:
        raise ConfigError(
            f"--seed {spec.seed} --seeds {spec.seeds} ends at seed {spec.seed + spec.seeds - 1}, beyond "
            f"{SQLITE_INT_MAX} (seeds are recorded as signed 64-bit integers)",
            f"pass a --seed of at most {SQLITE_INT_MAX - spec.seeds + 1}, or fewer --seeds",
        )
    if spec.max_configs < 1:
        raise ConfigError(
            f"--max-configs {spec.max_configs} must be at least 1", f"e.g. --max-configs {DEFAULT_MAX_CONFIGS}"
        )
    if not 0 < spec.val_fraction < 1:
        raise ConfigError(f"--val-fraction {spec.val_fraction} must be between 0 and 1", "e.g. --val-fraction 0.2")
    if spec.log_every < 0:
        raise ConfigError(f"--log-every {spec.log_every} must be >= 0", "0 turns per-epoch logging off")
    if spec.stack_size < 1:
        raise ConfigError(f"--stack-size {spec.stack_size} must be at least 1", "e.g. --stack-size 64")
    if spec.threads is not None and spec.threads < 1:
        raise ConfigError(f"--threads {spec.threads} must be at least 1", "or leave it out for the executor's default")
    if spec.threads is not None and spec.executor == "local" and spec.threads > cpu_cores():
        raise ConfigError(
            f"--threads {spec.threads} is more than the {cpu_cores()} CPU core(s) this process may use",
            f"pass --threads {cpu_cores()} or fewer, or leave it out for all of them",
        )
    if spec.image_size is not None and spec.image_size < 8:
        raise ConfigError(f"--image-size {spec.image_size} is too small", "e.g. --image-size 224")
    if spec.extract_batch_size < 1:
        raise ConfigError(
            f"--extract-batch-size {spec.extract_batch_size} must be at least 1", "e.g. --extract-batch-size 64"
        )
    if not 0 <= spec.digits <= 6:
        raise ConfigError(f"--digits {spec.digits} must be between 0 and 6", "e.g. --digits 2")
    from ..training.storage import STORAGE_CHOICES
    from .executors import names as executor_names

    for value, valid, what in (
        (spec.executor, executor_names(), "executor"),
        (spec.matmul, MATMULS, "matmul precision"),
        (spec.storage, STORAGE_CHOICES, "feature storage"),
    ):
        if value not in valid:
            raise UnknownNameError(what, value, valid)
    for options in spec.executors.values():
        options.check(spec)
    if spec.metric is not None and spec.metric not in METRICS:
        raise UnknownNameError("metric", spec.metric, METRICS)
    if not 0 < spec.halving_keep < 1:
        raise ConfigError(f"--halving-keep {spec.halving_keep} must be between 0 and 1", "e.g. --halving-keep 0.333")
    if spec.search not in SEARCHES:
        raise UnknownNameError("search", spec.search, SEARCHES)
    if spec.probe is not None and spec.probe not in PROBES:
        raise UnknownNameError("probe", spec.probe, PROBES)
    if spec.halving_rungs:
        from ..training.halving import check_rungs

        spec = attrs.evolve(spec, halving_rungs=check_rungs(spec.halving_rungs, spec.epochs))  # the last rung is E
    if not spec.aug:
        raise ConfigError("--aug is empty", "name augmenters, e.g. --aug none,sea")
    if spec.datasets and not spec.backbones:
        raise ConfigError("--dataset needs --backbones", "e.g. --dataset cifar100 --backbones S,M,B,C")
    if spec.backbones and not spec.datasets:
        spec = attrs.evolve(spec, datasets=PAPER_DATASETS)
    if spec.combos and not spec.backbones:
        raise ConfigError("--combos needs --backbones", "e.g. --backbones S,M,B,C --combos all")
    spec.backbone_sets()  # validates explicit combinations
    for ds, files in spec.feature_files.items():
        if ds not in spec.datasets:
            continue  # a catalog may list more data sets than this run uses
        missing = [b for b in spec.backbones if b not in files]
        if missing:
            raise ConfigError(
                f"feature_files.{ds} has no file for backbone(s) {', '.join(missing)}",
                f"give a .npz for each of {', '.join(spec.backbones)} or drop feature_files.{ds}",
            )
    return spec


# ---- suite files and flags ------------------------------------------------------------------------


def suite_keys() -> dict[str, str]:
    """Every key a suite file may use (names, dashed names and aliases) -> the option's name."""
    out = {}
    for name, (_, field) in option_fields().items():
        for key in (name, *field.metadata[ALIASES]):
            out[key] = out[key.replace("_", "-")] = name
    return out


def load_suite(path: str) -> dict:
    """Read a suite YAML file into option values (unknown keys are an error)."""
    from ..config import read_yaml

    data = read_yaml(path, "suite file", "pass --config PATH.yaml")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path} does not hold a mapping of settings", "write one setting per line, e.g. aug: [none, sea]"
        )
    base = os.path.dirname(os.path.abspath(path))
    keys, fields = suite_keys(), option_fields()
    out = {}
    for key, value in data.items():
        name = keys.get(str(key))
        if name is None:
            raise UnknownNameError(f"setting in {path}", str(key), list(fields))
        out[name] = coerce(fields[name][1], value, base)
    return out


def build_spec(flags: Mapping[str, object], config: str | None = None) -> RunSpec:
    """Defaults, overridden by the suite file ``config``, overridden by ``flags`` (only the flags given, by option
    name), checked."""
    values = load_suite(config) if config else {}
    fields = option_fields()
    for name, value in flags.items():
        if name not in fields:
            raise AssertionError(f"flag {name} has no option")
        values[name] = coerce(fields[name][1], value, None, from_flags=True)
    spec = check(RunSpec(**{k: v for k, v in values.items() if v is not None}))
    return with_baseline(spec) if "aug" in flags else spec  # a suite file's rows are exactly the ones it lists


def with_baseline(spec: RunSpec) -> RunSpec:
    """``spec`` with the baseline row first unless ``no_baseline`` or a row trains it already: one baseline
    per cell, however many augmenters are listed (applied to rows given on the command line)."""
    if spec.no_baseline or any((a.augmenter if isinstance(a, AugRow) else a) in (BASELINE, "all") for a in spec.aug):
        return spec
    return attrs.evolve(spec, aug=(BASELINE, *spec.aug))


def resolve_grid(spec: RunSpec, device: str) -> RunSpec:
    """``spec`` with ``grid: auto`` made concrete for ``device`` (AUTO_GRIDS). No grid and no --hp values
    (neither run-wide nor a row's own) in a comparison (a row other than the baseline) means auto, so every
    augmenter is searched on validation over a grid that holds its off setting; the baseline alone keeps
    its single default configuration."""
    compared = any((r.augmenter if isinstance(r, AugRow) else r) != BASELINE for r in spec.aug)
    auto = spec.grid == "auto" or (
        spec.grid is None and compared and not spec.hp and not any(isinstance(r, AugRow) and r.hp for r in spec.aug)
    )
    if not auto:
        return spec
    return attrs.evolve(spec, grid=AUTO_GRIDS["cuda" if str(device).startswith("cuda") else "cpu"])
