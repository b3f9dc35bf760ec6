"""Comparison tables from cell results: rows = augmenters, columns = feature sets, Avg, and a Gain row.

All formats are rendered from the same :class:`Report` (the JSON form is its plain-data image).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence

import attrs
import numpy as np

from .errors import UnknownNameError
from .protocol import CellResult

FORMATS = ("table", "markdown", "csv", "json", "latex")
BASELINE = "none"


@attrs.frozen
class Aggregate:
    """One (augmenter, feature set) entry over seeds."""

    augmenter: str
    features: str
    metric: str
    value: float
    std: float | None
    values: tuple[float, ...]
    seeds: tuple[int, ...]
    hp: tuple[dict, ...]  # the chosen configuration per seed
    seconds: float
    grid_size: int
    diverged_configs: int
    loss: str


@attrs.frozen
class Report:
    rows: tuple[str, ...]  # augmenters in order
    columns: tuple[str, ...]  # feature sets in order
    cells: Mapping[tuple[str, str], Aggregate]
    gain_of: str | None  # the augmenter of the Gain row (None without a baseline)
    meta: Mapping[str, object] = attrs.field(factory=dict)

    def average(self, row: str) -> float:
        vals = [self.cells[(row, c)].value for c in self.columns if (row, c) in self.cells]
        return float(np.mean(vals)) if vals and len(vals) == len(self.columns) else float("nan")

    def gain(self, row: str, column: str | None) -> float:
        if column is None:
            return self.average(row) - self.average(BASELINE)
        a, b = self.cells.get((row, column)), self.cells.get((BASELINE, column))
        return a.value - b.value if a and b else float("nan")


def aggregate(results: Sequence[CellResult], gain_of: str | None = None, meta: Mapping | None = None) -> Report:
    rows: list[str] = []
    cols: list[str] = []
    groups: dict[tuple[str, str], list[CellResult]] = {}
    for r in results:
        if r.augmenter not in rows:
            rows.append(r.augmenter)
        if r.features not in cols:
            cols.append(r.features)
        groups.setdefault((r.augmenter, r.features), []).append(r)
    cells = {}
    for key, rs in groups.items():
        vals = tuple(r.value for r in rs)
        cells[key] = Aggregate(augmenter=key[0], features=key[1], metric=rs[0].metric, value=float(np.mean(vals)),
                               std=float(np.std(vals, ddof=1)) if len(vals) > 1 else None, values=vals,
                               seeds=tuple(r.seed for r in rs), hp=tuple(r.hp for r in rs),
                               seconds=float(sum(r.seconds for r in rs)), grid_size=rs[0].grid_size,
                               diverged_configs=sum(sum(r.diverged) for r in rs), loss=rs[0].loss)
    others = [r for r in rows if r != BASELINE]
    if BASELINE not in rows or not others:
        gain_of = None
    elif gain_of is None:
        gain_of = "sea" if "sea" in others else others[-1]
    elif gain_of not in others:
        raise UnknownNameError("augmenter for the Gain row", gain_of, others)
    return Report(tuple(rows), tuple(cols), cells, gain_of, dict(meta or {}))


def _fmt(value: float, std: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _grid(report: Report, plain: bool = False) -> tuple[list[str], list[list[str]]]:
    header = ["augmenter", *report.columns, "Avg"]
    body = []
    for row in report.rows:
        line = [row]
        for col in report.columns:
            cell = report.cells.get((row, col))
            line.append(_fmt(cell.value, None if plain else cell.std) if cell else "")
        line.append(_fmt(report.average(row), None))
        body.append(line)
    if report.gain_of:
        g = report.gain_of
        body.append([f"Gain ({g} - {BASELINE})", *[_fmt(report.gain(g, c), None) for c in report.columns], _fmt(report.gain(g, None), None)])
    return header, body


def to_json_data(report: Report) -> dict:
    results = []
    for row in report.rows:
        for col in report.columns:
            a = report.cells.get((row, col))
            if a is None:
                continue
            results.append({
                "augmenter": a.augmenter, "features": a.features, "metric": a.metric, "value": a.value,
                "std": a.std, "values": list(a.values), "hp": a.hp[0] if len(set(map(_key, a.hp))) == 1 else list(a.hp),
                "seeds": list(a.seeds), "seconds": a.seconds, "grid_size": a.grid_size,
                "diverged_configs": a.diverged_configs, "loss": a.loss,
            })
    gains = {}
    if BASELINE in report.rows:
        for row in report.rows:
            if row != BASELINE:
                gains[row] = {**{c: report.gain(row, c) for c in report.columns}, "Avg": report.gain(row, None)}
    return {"results": results, "averages": {r: report.average(r) for r in report.rows}, "gain": gains,
            "gain_row": report.gain_of, **report.meta}


def _key(hp: dict) -> tuple:
    return tuple(sorted(hp.items()))


def render(report: Report, fmt: str) -> str:
    from tabulate import tabulate

    if fmt == "json":
        return json.dumps(to_json_data(report), indent=2, default=_json_default, allow_nan=True)
    if fmt == "csv":
        header, body = _grid(report, plain=True)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(body)
        return buf.getvalue().rstrip("\n")
    header, body = _grid(report)
    style = {"table": "simple", "markdown": "github", "latex": "latex_booktabs"}.get(fmt)
    if style is None:
        raise UnknownNameError("output format", fmt, FORMATS)
    metric_names = sorted({a.metric for a in report.cells.values()})
    table = tabulate(body, headers=header, tablefmt=style, disable_numparse=True,
                     colalign=("left",) + ("right",) * (len(header) - 1))
    if fmt == "table":
        return table + f"\n(test {', '.join(metric_names)} in %; mean ± std over seeds where several)"
    return table


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
