"""Planning a run: feature sources, augmenter rows with their grids, and cells with the keys under which
the results store knows their parts.

A cell is one feature source (data set × backbone set, or feature files) × augmenter row × seed. Its
search configurations are cut into K-stacks (structural groups in chunks of ``stack_size``), and every
trained configuration has a key (:func:`config_key`) that depends only on what makes its numbers what
they are, so a rerun or a resumed run finds it in the store. The plan is pure: it reads feature files'
bytes (for their identity) and the plugin host, and writes nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence

import attrs

from ..errors import UnknownNameError
from ..records import SEARCH, stable_hash
from ..training.protocol import stacks
from ..training.trainer import TrainSettings
from .spec import RunSpec

PROTOCOL_VERSION = 1  # bump when a change of the protocol changes recorded numbers
MOMENTUM = 0.9
DEMO_NAME = "digits-pixels"


# ---- feature sources --------------------------------------------------------------------------


@attrs.frozen
class SourceSpec:
    """Where a cell's features come from: feature files (an ensemble, in order), or a data set under a
    backbone set resolved through :func:`featbench.inputs.sources.feature_set_for`."""

    dataset: str  # the table column
    backbones: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    metric: str | None = None  # override of the source's own metric
    builtin: bool = False  # the embedded default (scikit-learn digits pixels), when no source is named

    @property
    def backbone_label(self) -> str:
        return "+".join(self.backbones)


_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes (memoised per path, size and modification time)."""
    try:
        st = os.stat(path)
    except OSError:
        from ..errors import DataError

        raise DataError(
            f"feature file not found: {path}", "check the path (suite paths are relative to the suite file)"
        ) from None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def source_id(src: SourceSpec, weights: Mapping[str, str]) -> str:
    """Identity of a source's numbers: file contents, or the data set, backbones and weight files used."""
    if src.builtin:
        ident = {"builtin": src.dataset}
    elif src.files:
        ident = {"files": [file_digest(p) for p in src.files]}
    else:
        used = {b: _weights_identity(weights[b]) for b in src.backbones if b in weights}
        ident = {"dataset": src.dataset, "backbones": list(src.backbones), "weights": used}
    return stable_hash({**ident, "metric": src.metric})


def _weights_identity(path: str) -> object:
    return file_digest(path) if os.path.isfile(path) else path


def plan_sources(spec: RunSpec) -> list[SourceSpec]:
    """Feature-file columns first, then every data set × backbone set."""
    out = [
        SourceSpec("+".join(os.path.splitext(os.path.basename(p))[0] for p in files), (), tuple(files), spec.metric)
        for files in spec.features
    ]
    sets = spec.backbone_sets()
    for ds in spec.datasets:
        for bset in sets:
            files = tuple(spec.feature_files[ds][b] for b in bset) if ds in spec.feature_files else ()
            out.append(SourceSpec(ds, tuple(bset), files, spec.metric))
    if not out:
        out.append(SourceSpec(DEMO_NAME, (), (), spec.metric, builtin=True))
    return out


# ---- rows and grids -----------------------------------------------------------------------------


@attrs.frozen
class RowPlan:
    """One augmenter row with its grid."""

    label: str
    augmenter: str
    params: Mapping
    configs: tuple[Mapping[str, float], ...]


def plan_rows(
    spec: RunSpec, host, registry_path: str | None = None, sources: Sequence[SourceSpec] | None = None
) -> list[RowPlan]:
    """Resolve rows, the loss and each row's grid (declared grid values < registry.yaml's < NAME=... <
    ROW.NAME=... < the row's own hp).
    The run's size (over ``sources``, planned here if not given) is checked against ``spec.max_configs``
    before any grid is expanded."""
    from ..config import load_registry
    from ..training.grid import expand_grid, grid_names_of, hparams_for, search_values
    from .workload import check_grids

    rows = spec.rows(host.list_augmenters())
    loss_cls = host.get_loss(spec.loss)
    registry = load_registry(registry_path) if spec.grid else None
    if registry is not None:
        names = grid_names_of(registry, [loss_cls, *(host.get_augmenter(r.augmenter) for r in rows)])
        if spec.grid not in names:
            raise UnknownNameError("grid", spec.grid, names, "registry.yaml's grids and those the components declare")
    labels = [r.label for r in rows]
    scoped: dict[str, dict[str, tuple[float, ...]]] = {}
    plain: dict[str, tuple[float, ...]] = {}
    for name, values in spec.hp.items():
        prefix, dot, rest = name.partition(".")
        if dot:
            if prefix not in labels:
                raise UnknownNameError("augmenter row in --hp", prefix, labels, f"in {name}=...")
            scoped.setdefault(prefix, {})[rest] = values
        else:
            plain[name] = values
    grids, known = [], set()
    for row in rows:
        cls = host.get_augmenter(row.augmenter)
        params = hparams_for(loss_cls, cls)
        known |= set(params)
        components = [("trainer", None), (spec.loss, loss_cls), (row.augmenter, cls)]
        values = search_values(registry, spec.grid, components) if registry is not None else {}
        values = {k: v for k, v in values.items() if k in params}
        values.update({k: v for k, v in plain.items() if k in params})
        for name, v in {**scoped.get(row.label, {}), **row.hp}.items():
            if name not in params:
                raise UnknownNameError(
                    "hyper-parameter", name, params, f"for row {row.label} ({row.augmenter} with --loss {spec.loss})"
                )
            values[name] = v
        grids.append((row, params, values))
    for k in plain:
        if k not in known:
            raise UnknownNameError("hyper-parameter", k, known, f"for --aug {','.join(labels)} with --loss {spec.loss}")
    sources = plan_sources(spec) if sources is None else sources
    check_grids(
        [(row.label, values) for row, _, values in grids],
        spec.max_configs,
        len(sources),
        spec.seeds,
        spec.epochs,
        lambda: [source_shape(s, spec.val_fraction) for s in sources],
        spec.batch_size,
        spec.device,
    )
    return [
        RowPlan(row.label, row.augmenter, params, tuple(expand_grid(params, values))) for row, params, values in grids
    ]


def source_shape(src: SourceSpec, val_fraction: float) -> tuple[int, int, int] | None:
    """(rows searched on, features, classes) of a source, from its files' headers (None until extracted)."""
    if src.builtin:
        from .workload import DIGITS_SHAPE

        return DIGITS_SHAPE
    if not src.files:
        return None
    import numpy as np

    from ..inputs.features import load_feature_file

    files = [load_feature_file(p, headers_only=True) for p in src.files]
    y = files[0]["train_y"]
    rows = y.shape[0] if "val_x" in files[0] else int(y.shape[0] * (1 - val_fraction))
    return rows, sum(f["train_x"].shape[1] for f in files), len(np.unique(y))


@attrs.frozen
class Plan:
    """What a run compares, resolved once (preflight) and handed to the driver: rows with their grids, and
    the feature sources in table order."""

    rows: tuple[RowPlan, ...]
    sources: tuple[SourceSpec, ...]


def make_plan(spec: RunSpec, host, registry_path: str | None = None) -> Plan:
    sources = plan_sources(spec)
    return Plan(tuple(plan_rows(spec, host, registry_path, sources)), tuple(sources))


# ---- cells and keys -----------------------------------------------------------------------------


@attrs.frozen
class CellPlan:
    """One cell: what to train and the keys under which the store knows its parts."""

    key: str
    source: SourceSpec
    source_id: str
    row: RowPlan
    loss: str
    seed: int
    settings: TrainSettings
    search_keys: tuple[str, ...]  # one per grid configuration (empty without a search, or with halving)
    stacks: tuple[tuple[int, ...], ...]  # grid indices trained together
    rungs: tuple[int, ...] = ()  # successive halving: the rung epochs (empty: the grid search)
    keep: float = 1.0  # halving: the fraction of configurations each rung passes on
    rung_keys: tuple[tuple[str, ...], ...] = ()  # halving: per rung, one key per grid configuration
    probe: bool = False  # the L-BFGS probe's row (featbench.training.probe), not an augmenter

    @property
    def configs(self):
        return self.row.configs

    @property
    def augmenter(self) -> str:
        return self.row.augmenter


def _settings_ident(settings: TrainSettings, val_fraction: float) -> dict:
    """The settings that make a result what it is. Reduced-precision products and storage change the numbers,
    so they are part of it when not the default; chunking and CUDA graphs do not (tested equal)."""
    s = settings
    precision = {
        k: v
        for k, v in (("matmul", s.matmul), ("storage", s.storage))
        if v != attrs.fields_dict(TrainSettings)[k].default
    }
    return {
        "v": PROTOCOL_VERSION,
        "epochs": s.epochs,
        "batch_size": s.batch_size,
        "momentum": s.momentum,
        "seed": s.seed,
        "val_fraction": val_fraction,
        **precision,
    }


def config_key(
    source_id: str,
    augmenter: str,
    loss: str,
    phase: str,
    hp: Mapping[str, float],
    settings: TrainSettings,
    val_fraction: float,
    rung: int | None = None,
) -> str:
    """Identity of one trained configuration (independent of the grid it came from and of the row label);
    ``rung``: scored after that epoch of a halving search."""
    extra = {} if rung is None else {"rung": int(rung)}
    return stable_hash(
        {
            "source": source_id,
            "augmenter": augmenter,
            "loss": loss,
            "phase": phase,
            "hp": {k: v if isinstance(v, str) else float(v) for k, v in hp.items()},
            **extra,
            **_settings_ident(settings, val_fraction),
        }
    )


def cell_rungs(spec: RunSpec, n_configs: int) -> tuple[int, ...]:
    """The rung epochs of a cell with ``n_configs`` configurations; () when the search is the grid (also
    when halving would have a single rung)."""
    if spec.search != "halving" or n_configs < 2:
        return ()
    from ..training.halving import check_rungs, default_rungs

    if spec.halving_rungs:
        rungs = check_rungs(spec.halving_rungs, spec.epochs)
    else:
        rungs = default_rungs(spec.epochs, n_configs, spec.halving_keep)
    return rungs if len(rungs) > 1 else ()


PROBE_LOSS = "ce"


def _probe_cell(spec: RunSpec, src: SourceSpec, sid: str, seed: int, device: str) -> CellPlan:
    """The L-BFGS probe's cell of one source and seed (its row is labelled ``lbfgs``)."""
    from ..training import probe

    settings = TrainSettings(epochs=probe.MAX_ITER, batch_size=0, momentum=0.0, seed=seed, device=device)
    row = RowPlan(probe.NAME, probe.NAME, {}, ({},))
    ident = {"row": probe.NAME, "source": sid, "probe": probe.identity()}
    ident.update(_settings_ident(settings, spec.val_fraction))
    return CellPlan(stable_hash(ident), src, sid, row, PROBE_LOSS, seed, settings, (), (), probe=True)


def plan_cells(spec: RunSpec, plan: Plan, device: str, weights: Mapping[str, str]) -> list[CellPlan]:
    """Every (source, row, seed) cell in table order, with its keys and stacks."""
    cells = []
    for src in plan.sources:
        sid = source_id(src, weights)
        for row in plan.rows:
            for seed in spec.seed_list:
                settings = TrainSettings(
                    epochs=spec.epochs,
                    batch_size=spec.batch_size,
                    momentum=MOMENTUM,
                    seed=seed,
                    device=device,
                    matmul=spec.matmul,
                    storage=spec.storage,
                    cuda_graphs=spec.cuda_graphs,
                )
                rungs = cell_rungs(spec, len(row.configs))
                search = len(row.configs) > 1 and not rungs
                rung_keys = tuple(
                    tuple(
                        config_key(sid, row.augmenter, spec.loss, SEARCH, c, settings, spec.val_fraction, r)
                        for c in row.configs
                    )
                    for r in rungs
                )
                halving = {"halving": {"rungs": list(rungs), "keep": spec.halving_keep}} if rungs else {}
                keys = (
                    tuple(
                        config_key(sid, row.augmenter, spec.loss, SEARCH, c, settings, spec.val_fraction)
                        for c in row.configs
                    )
                    if search
                    else ()
                )
                groups = tuple(tuple(g) for g in stacks(row.params, row.configs, spec.stack_size)) if search else ()
                key = stable_hash(
                    {
                        "row": row.label,
                        "search": list(keys),
                        "configs": [dict(c) for c in row.configs],
                        "source": sid,
                        "augmenter": row.augmenter,
                        "loss": spec.loss,
                        **halving,
                        **_settings_ident(settings, spec.val_fraction),
                    }
                )
                cells.append(
                    CellPlan(
                        key, src, sid, row, spec.loss, seed, settings, keys, groups, rungs, spec.halving_keep, rung_keys
                    )
                )
        if spec.probe:
            cells += [_probe_cell(spec, src, sid, seed, device) for seed in spec.seed_list]
    return cells
