"""Diverged configurations of recorded cells: which ones, and what that means for each cell's number.
Read-only on the results store."""

from __future__ import annotations

import json


def diverged(store, cells) -> list[tuple]:
    """``(cell, [{"phase", "hp", "varied"}...])`` for every cell with a diverged configuration; ``varied``
    holds the hyper-parameters the cell's grid varies (and ``lr``)."""
    out = []
    for cell in cells:
        if not cell.diverged_configs:
            continue
        keys = store.cell_config_keys(cell.key)  # the grid in order, then the refit
        found = store.configs(keys)
        records = [found[k] for k in keys if k in found]
        varying = [k for k in cell.hp if k == "lr" or len({json.dumps(r.hp.get(k)) for r in records}) > 1]
        bad = [{"phase": r.phase, "hp": dict(r.hp), "varied": {k: r.hp[k] for k in varying if k in r.hp}}
               for r in records if r.diverged]
        out.append((cell, bad))
    return out


def divergence_warnings(store, cells) -> list[str]:
    """One line per cell in which a configuration diverged: which ones, and what that means for the cell."""
    lines = []
    for cell, bad in diverged(store, cells):
        where = (
            f"{cell.row} on {cell.dataset}"
            + (f" [{cell.backbones}]" if cell.backbones else "")
            + f" (seed {cell.seed})"
        )
        shown = "; ".join(
            ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in d["varied"].items())
            for d in bad[:3]
        ) + ("; ..." if len(bad) > 3 else "")
        search = [d for d in bad if d["phase"] == "search"]
        refit = any(d["phase"] == "refit" for d in bad)
        if not search:
            lines.append(
                f"{where}: training diverged (weights became NaN/Inf with {shown}), so the cell has no result "
                "(lower the learning rate)"
            )
            continue
        if refit:
            what = "the chosen one diverged again in the final training, so the cell has no result"
        elif len(search) == cell.grid_size:
            what = "every one diverged, so the selection fell back to the first"
        else:
            what = "they were left out of the selection"
        lines.append(
            f"{where}: {len(search)} of {cell.grid_size} configuration(s) diverged (weights became NaN/Inf with "
            f"{shown}); {what} (lower the learning rate)"
        )
    return lines
