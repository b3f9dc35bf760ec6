"""Figures of a run, from stored records only (matplotlib, Agg backend, PNG).

* ``hp_<NAME>__<source>.png`` (Fig. 3-4 style): test accuracy against a hyper-parameter, one line per
  augmenter row. At each value, the other hyper-parameters take the setting with the best validation
  score; the heads are those trained in the search (on the search split), mean ± std over seeds. Rows
  whose grid does not vary it (``none`` against ``eta``) are a dashed level: their best search head.
* ``epochs__<row>__<source>.png`` (Fig. 2 style, needs ``--log-every``): train and test accuracy per epoch,
  one line per value of the row's first varying hyper-parameter (profiled as above, first seed), and the
  refit of the chosen configuration.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import numpy as np

from ..records import SEARCH, CellRecord, ConfigRecord, select_best

MAX_LINES = 8


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "x"


def _source_name(cell: CellRecord) -> str:
    return cell.dataset + (f" [{cell.backbones}]" if cell.backbones else "")


def varying(configs: Sequence[ConfigRecord]) -> list[str]:
    """Hyper-parameters that take more than one value among ``configs`` (in their declaration order)."""
    if not configs:
        return []
    names = list(configs[0].hp)
    return [n for n in names if len({c.hp[n] for c in configs}) > 1]


def profile(configs: Sequence[ConfigRecord], name: str) -> dict[float, ConfigRecord]:
    """For each value of ``name``: the configuration with the best validation score among those with it."""
    out = {}
    for x in sorted({c.hp[name] for c in configs}):
        group = [c for c in configs if c.hp[name] == x]
        out[x] = group[select_best([c.val for c in group])]
    return out


def _search(
    cell: CellRecord, members: Mapping[str, Sequence[str]], configs: Mapping[str, ConfigRecord]
) -> list[ConfigRecord]:
    """Every search record of the cell (every rung of a halving search; :func:`fully_trained` keeps its last)."""
    return [configs[k] for k in members.get(cell.key, ()) if k in configs and configs[k].phase == SEARCH]


def fully_trained(search: Sequence[ConfigRecord]) -> list[ConfigRecord]:
    """The search records of configurations trained for all epochs: all of a grid search, the last rung of a
    halving search (the only ones scored on test)."""
    last = max((r.rung_epoch for r in search if r.rung_epoch is not None), default=None)
    return list(search) if last is None else [r for r in search if r.rung_epoch == last]


def _figure():
    try:
        import matplotlib
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError(
            "featbench plot needs matplotlib, which is not installed", "pip install 'featbench[plot]'"
        ) from None

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _log_x(xs: Sequence[float]) -> bool:
    pos = [x for x in xs if x > 0]
    return len(pos) == len(xs) and len(xs) > 2 and max(pos) / min(pos) >= 20


def plot_hp(cells: Sequence[CellRecord], members, configs, name: str, out_dir: str) -> list[str]:
    """One PNG per source where ``name`` varies: test metric vs ``name`` per row."""
    plt = _figure()
    paths = []
    sources = {}
    for c in cells:
        sources.setdefault((c.dataset, c.backbones), []).append(c)
    for (dataset, bset), group in sources.items():
        rows: dict[str, dict[float, list[float]]] = {}
        flat: dict[str, list[float]] = {}  # rows whose grid does not vary the hyper-parameter (e.g. none vs eta)
        metric = group[0].metric
        for cell in group:
            search = _search(cell, members, configs)
            trained = fully_trained(search)
            if name not in varying(search):
                best = trained[select_best([c.val for c in trained])].test if trained else cell.value
                flat.setdefault(cell.row, []).append(best)
                continue
            for x, rec in profile(trained, name).items():  # halving: the values that reached the last rung
                rows.setdefault(cell.row, {}).setdefault(x, []).append(rec.test)
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        all_x: set[float] = set()
        for row, points in rows.items():
            xs = sorted(points)
            all_x.update(xs)
            means = [np.nanmean(points[x]) for x in xs]
            stds = [np.nanstd(points[x], ddof=1) if len(points[x]) > 1 else 0.0 for x in xs]
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=row)
        for i, (row, values) in enumerate(flat.items()):
            ax.axhline(
                float(np.nanmean(values)),
                linestyle=("--", ":", "-.")[i % 3],
                color="gray",
                linewidth=1.2,
                label=f"{row} (no {name})",
            )
        if _log_x(sorted(all_x)):
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(f"test {metric} (%)")
        ax.set_title(f"{_source_name(group[0])}: test {metric} vs {name}", fontsize=10)
        ax.text(
            0.01,
            0.01,
            "search heads trained for all epochs (halving: its last rung); other hyper-parameters best on validation",
            transform=ax.transAxes,
            fontsize=7,
            color="gray",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        path = os.path.join(
            out_dir, f"hp_{_slug(name)}__{_slug(dataset)}" + (f"__{_slug(bset)}" if bset else "") + ".png"
        )
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_epochs(cells: Sequence[CellRecord], members, configs, out_dir: str) -> list[str]:
    """One PNG per (source, row) with per-epoch logs: train and test accuracy against the epoch."""
    plt = _figure()
    paths = []
    seen = set()
    for cell in cells:
        ident = (cell.dataset, cell.backbones, cell.row)
        if ident in seen:
            continue
        refit = configs.get(cell.refit_key)
        search = [c for c in _search(cell, members, configs) if c.epochs]
        lines: list[tuple[str, ConfigRecord, dict]] = []
        names = varying(search)
        if search and names:
            for x, rec in profile(search, names[0]).items():
                lines.append((f"{names[0]}={x:g}", rec, {}))
        elif search:
            lines.append(("search", search[0], {}))
        lines = lines[:MAX_LINES]
        if refit is not None and refit.epochs:
            lines.append(("refit (chosen)", refit, {"color": "black", "linewidth": 2}))
        if not lines:
            continue
        seen.add(ident)
        fig, (ax_tr, ax_te) = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
        for label, rec, style in lines:
            ep = [e.epoch + 1 for e in rec.epochs]
            ax_tr.plot(ep, [e.train for e in rec.epochs], label=label, **style)
            ax_te.plot(ep, [e.test for e in rec.epochs], label=label, **style)
        for ax, what in ((ax_tr, "train"), (ax_te, "test")):
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"{what} {cell.metric} (%)")
            ax.grid(alpha=0.3)
        ax_te.legend(fontsize=8)
        fig.suptitle(f"{cell.row} on {_source_name(cell)} (seed {cell.seed})", fontsize=10)
        fig.tight_layout()
        path = os.path.join(
            out_dir,
            f"epochs__{_slug(cell.row)}__{_slug(cell.dataset)}"
            + (f"__{_slug(cell.backbones)}" if cell.backbones else "")
            + ".png",
        )
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def write_plots(
    cells: Sequence[CellRecord],
    members: Mapping[str, Sequence[str]],
    configs: Mapping[str, ConfigRecord],
    out_dir: str,
    hps: Sequence[str] | None = None,
) -> list[str]:
    """Every figure the records support; returns the paths written."""
    if hps is None:
        names: list[str] = []
        for cell in cells:
            for n in varying(_search(cell, members, configs)):
                if n not in names:
                    names.append(n)
    else:
        names = list(hps)
    paths = []
    for n in names:
        paths += plot_hp(cells, members, configs, n, out_dir)
    paths += plot_epochs(cells, members, configs, out_dir)
    return paths
