"""The tables of one recorded run, rebuilt from the results store alone (what ``featbench run`` prints
and writes, and ``featbench report`` reprints)."""

from __future__ import annotations

from ..errors import UnknownNameError
from .divergence import diverged
from .tables import FORMATS, build, render


def render_run(store, run_id: int | None, fmt: str, layout: str | None, gain_of: str | None, digits: int | None) -> str:
    """Run ``run_id`` of ``store`` (None: the latest) in ``fmt``; a layout, gain row or digits left None is the "
    "run's own."""
    if fmt not in FORMATS:
        raise UnknownNameError("output format", fmt, FORMATS)
    run = store.run(run_id)
    planned = store.planned_cells(run.id)
    cells = store.cells(planned)
    spec = run.spec
    meta = {
        "run": {"id": run.id, "status": run.status},
        "cells": {"planned": len(planned), "finished": len(cells)},
        "versions": run.versions,
        "settings": spec,
    }
    if fmt == "json":  # every diverged configuration, with the cell it belongs to
        meta["diverged"] = [
            {
                "augmenter": c.row,
                "dataset": c.dataset,
                "backbones": c.backbones,
                "seed": c.seed,
                "phase": d["phase"],
                "hp": d["hp"],
            }
            for c, bad in diverged(store, cells)
            for d in bad
        ]
    report = build(
        cells,
        gain_of=gain_of if gain_of is not None else spec.get("gain_of"),
        layout=layout or spec.get("layout", "auto"),
        meta=meta,
    )
    return render(report, fmt, digits if digits is not None else spec.get("digits", 2))
