"""Comparison tables from finished cells, in the layouts of the SeA paper.

* **Table 5 layout** (one table per backbone set): rows = augmenters, columns = data sets, ``Avg``, and a
  ``Gain`` row (an augmenter minus ``none``) whose every cell carries a significance test.
* **Table 4 layout** (when several backbone sets are evaluated): rows = backbone combinations, grouped by
  augmenter, columns = data sets and ``Avg``; the best value per column within each group is underlined
  and the best overall is bold, as in the paper.

Every format (``table``, ``markdown``, ``csv``, ``csv-wide``, ``json``, ``latex``) is rendered from the same
:class:`Report`; JSON is its plain-data image, with the p-value of every gain. Reports are built from
:class:`~featbench.records.CellRecord` s only, so ``featbench report DIR`` rebuilds them from the store.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence

import attrs
import numpy as np

from ..errors import UnknownNameError
from ..records import PROBE_ROW, CellRecord
from . import significance as sig

#: Output formats -> the extension of a run directory's table file.
#: Output format -> the extension of the table file ``--out`` writes; ``csv`` is one line per
#: (backbone set, augmenter, column) with the numbers in their own columns, ``csv-wide`` the table as printed.
FORMATS = {"table": "txt", "markdown": "md", "csv": "csv", "csv-wide": "csv", "json": "json", "latex": "tex"}
LAYOUTS = ("auto", "table5", "table4", "both")
BASELINE = "none"
BEST, GROUP_BEST = "best", "group_best"
AVG = "Avg"


@attrs.frozen
class Aggregate:
    """One (row, data set, backbone set) entry over seeds."""

    row: str
    augmenter: str
    dataset: str
    backbones: str
    metric: str
    value: float  # mean over seeds
    std: float | None  # sample std over seeds (None with one seed)
    by_seed: Mapping[int, float]
    hp: tuple[Mapping[str, float], ...]  # the chosen configuration per seed
    seconds: float
    grid_size: int
    diverged_configs: int
    loss: str
    cells: tuple[CellRecord, ...] = attrs.field(eq=False, repr=False)


@attrs.frozen
class Line:
    """A table row: a label, its group (Table 4: the augmenter), and an entry per column."""

    label: str
    group: str
    entries: Mapping[str, Aggregate]
    avg: float
    avg_std: float | None
    avg_by_seed: Mapping[int, float]


@attrs.frozen
class Table:
    layout: str  # table5 | table4
    title: str
    columns: tuple[str, ...]
    lines: tuple[Line, ...]
    marks: Mapping[tuple[int, str], frozenset]  # (line index, column or Avg) -> {BEST, GROUP_BEST}
    gain_of: str | None = None  # Table 5: the row of the Gain line
    gain: Mapping[str, sig.GainTest] = attrs.field(factory=dict)  # column or Avg -> test
    probe_gain: Mapping[str, sig.GainTest] = attrs.field(factory=dict)  # the Gain row's augmenter minus the probe


@attrs.frozen
class Report:
    tables: tuple[Table, ...]
    entries: tuple[Aggregate, ...]
    gains: tuple[dict, ...]  # every (backbone set, row, column) gain against none, for JSON
    seeds: int  # most seeds of any entry
    metrics: tuple[str, ...]
    tests: tuple[str, ...]  # significance tests used
    meta: Mapping[str, object] = attrs.field(factory=dict)


# ---- building -----------------------------------------------------------------------------------


def _ordered(values) -> list:
    out: list = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _aggregate(cells: Sequence[CellRecord]) -> Aggregate:
    c0 = cells[0]
    by_seed = {c.seed: c.value for c in cells}
    vals = list(by_seed.values())
    return Aggregate(
        row=c0.row,
        augmenter=c0.augmenter,
        dataset=c0.dataset,
        backbones=c0.backbones,
        metric=c0.metric,
        value=float(np.mean(vals)),
        std=float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
        by_seed=by_seed,
        hp=tuple(c.hp for c in cells),
        seconds=float(sum(c.seconds for c in cells)),
        grid_size=c0.grid_size,
        diverged_configs=sum(c.diverged_configs for c in cells),
        loss=c0.loss,
        cells=tuple(cells),
    )


def _line(label: str, group: str, entries: dict[str, Aggregate], columns: Sequence[str]) -> Line:
    if not columns or any(c not in entries for c in columns):
        return Line(label, group, entries, float("nan"), None, {})
    common = set.intersection(*(set(entries[c].by_seed) for c in columns))
    by_seed = {s: float(np.mean([entries[c].by_seed[s] for c in columns])) for s in sorted(common)}
    avg = float(np.mean([entries[c].value for c in columns]))
    std = float(np.std(list(by_seed.values()), ddof=1)) if len(by_seed) > 1 else None
    return Line(label, group, entries, avg, std, by_seed)


def _value(line: Line, col: str) -> float:
    if col == AVG:
        return line.avg
    e = line.entries.get(col)
    return e.value if e is not None else float("nan")


def _best(lines: Sequence[Line], idx: Sequence[int], col: str) -> list[int]:
    vals = [(i, _value(lines[i], col)) for i in idx]
    vals = [(i, v) for i, v in vals if math.isfinite(v)]
    if len(vals) < 2:
        return []
    top = max(v for _, v in vals)
    return [i for i, v in vals if v == top]


def _marks(lines: Sequence[Line], columns: Sequence[str], grouped: bool) -> dict[tuple[int, str], frozenset]:
    marks: dict[tuple[int, str], set] = {}
    all_idx = list(range(len(lines)))
    for col in [*columns, AVG]:
        for i in _best(lines, all_idx, col):
            marks.setdefault((i, col), set()).add(BEST)
        if grouped:
            for g in _ordered(ln.group for ln in lines):
                for i in _best(lines, [j for j in all_idx if lines[j].group == g], col):
                    marks.setdefault((i, col), set()).add(GROUP_BEST)
    return {k: frozenset(v) for k, v in marks.items()}


def _samples(a: Aggregate, b: Aggregate) -> list[sig.PairedSample] | None:
    """Per-example correctness of both entries on the first seed they share (None if unavailable)."""
    common = sorted(set(a.by_seed) & set(b.by_seed))
    if not common:
        return None
    ca = next(c for c in a.cells if c.seed == common[0])
    cb = next(c for c in b.cells if c.seed == common[0])
    if ca.correct is None or cb.correct is None or not (math.isfinite(ca.value) and math.isfinite(cb.value)):
        return None
    if ca.test_y is None and a.metric != "top1":
        return None
    y = ca.test_y if ca.test_y is not None else np.zeros(ca.correct.shape, dtype=np.int64)
    return [sig.PairedSample(ca.correct, cb.correct, y, a.metric)]


def gain_tests(row: Line, base: Line, columns: Sequence[str]) -> dict[str, sig.GainTest]:
    """The gain of ``row`` over ``base`` in every column and on Avg, each with its significance test."""
    out = {}
    for col in columns:
        a, b = row.entries.get(col), base.entries.get(col)
        out[col] = (
            sig.gain_test(a.by_seed, b.by_seed, _samples(a, b)) if a and b else sig.GainTest(float("nan"), None, None)
        )
    per_col = [
        _samples(row.entries[c], base.entries[c]) if c in row.entries and c in base.entries else None for c in columns
    ]
    samples = [s[0] for s in per_col if s] if per_col and all(per_col) else None
    if math.isfinite(row.avg) and math.isfinite(base.avg):
        t = sig.gain_test(row.avg_by_seed, base.avg_by_seed, samples)
        # the Avg gain is the difference of the averages (equal to the mean of per-seed differences when seeds match)
        out[AVG] = attrs.evolve(t, gain=row.avg - base.avg)
    else:
        out[AVG] = sig.GainTest(float("nan"), None, None)
    return out


def build(
    cells: Sequence[CellRecord],
    *,
    gain_of: str | None = None,
    layout: str = "auto",
    meta: Mapping[str, object] | None = None,
) -> Report:
    """Aggregate finished cells (in table order) over seeds and lay them out."""
    if layout not in LAYOUTS:
        raise UnknownNameError("table layout", layout, LAYOUTS)
    groups: dict[tuple[str, str, str], list[CellRecord]] = {}
    for c in cells:
        groups.setdefault((c.row, c.dataset, c.backbones), []).append(c)
    entries = {k: _aggregate(v) for k, v in groups.items()}
    rows = _ordered(c.row for c in cells)
    bsets = _ordered(c.backbones for c in cells)
    others = [r for r in rows if r not in (BASELINE, PROBE_ROW)]
    if gain_of is not None and gain_of not in others:
        raise UnknownNameError("augmenter for the Gain row", gain_of, others)
    if not (BASELINE in rows or PROBE_ROW in rows) or not others:
        gain_of = None
    elif gain_of is None:
        gain_of = "sea" if "sea" in others else others[-1]

    tables: list[Table] = []
    gains: list[dict] = []
    tests_used: set[str] = set()
    dataset_bsets = [b for b in bsets if b]
    show5 = layout in ("auto", "both", "table5")
    show4 = layout in ("both", "table4") or (layout == "auto" and len(dataset_bsets) > 1)
    for bset in bsets:
        cols = _ordered(c.dataset for c in cells if c.backbones == bset)
        lines = [
            _line(r, "", {d: entries[(r, d, bset)] for d in cols if (r, d, bset) in entries}, cols)
            for r in rows
            if any((r, d, bset) in entries for d in cols)
        ]
        maps: dict[str, dict[str, sig.GainTest]] = {BASELINE: {}, PROBE_ROW: {}}
        for vs in maps:
            base = next((ln for ln in lines if ln.label == vs), None)
            if base is None:
                continue
            for ln in lines:
                if ln.label in (BASELINE, PROBE_ROW):
                    continue
                tests = gain_tests(ln, base, cols)
                tests_used.update(t.test for t in tests.values() if t.test)
                for col, t in tests.items():
                    gains.append(
                        {
                            "backbones": bset,
                            "augmenter": ln.label,
                            "vs": vs,
                            "column": col,
                            "gain": t.gain,
                            "p": t.p,
                            "test": t.test,
                            "significant": t.significant,
                        }
                    )
                if ln.label == gain_of:
                    maps[vs] = tests
        if show5:
            title = f"backbones {bset}" if bset else "feature files"
            tables.append(
                Table(
                    "table5",
                    title,
                    tuple(cols),
                    tuple(lines),
                    _marks(lines, cols, False),
                    gain_of if maps[BASELINE] or maps[PROBE_ROW] else None,
                    maps[BASELINE],
                    maps[PROBE_ROW],
                )
            )
    if show4 and dataset_bsets:
        cols = _ordered(c.dataset for c in cells if c.backbones)
        lines = [
            _line(b, r, {d: entries[(r, d, b)] for d in cols if (r, d, b) in entries}, cols)
            for r in rows
            for b in dataset_bsets
            if any((r, d, b) in entries for d in cols)
        ]
        tables.append(
            Table(
                "table4",
                "backbone combinations",
                tuple(cols),
                tuple(lines),
                _marks(lines, cols, len({ln.group for ln in lines}) > 1),
            )
        )
    ordered = [entries[k] for k in entries]
    return Report(
        tuple(tables),
        tuple(ordered),
        tuple(gains),
        max((len(e.by_seed) for e in ordered), default=0),
        tuple(sorted({e.metric for e in ordered})),
        tuple(sorted(tests_used)),
        dict(meta or {}),
    )


# ---- rendering ----------------------------------------------------------------------------------


DIVERGED = "diverged"


def _num(value: float, std: float | None, digits: int, pm: str) -> str:
    if value is None or not math.isfinite(value):
        return "nan"
    return f"{value:.{digits}f}" + (f"{pm}{std:.{digits}f}" if std is not None else "")


_STYLE = {
    # format: (bold, underline, significant-suffix, plus-minus)
    "table": ("*{}*", "_{}_", "{}†", " ± "),
    "csv-wide": ("*{}*", "_{}_", "{}†", " ± "),
    "markdown": ("**{}**", "<u>{}</u>", "{}†", " ± "),
    "latex": ("\\textbf{{{}}}", "\\underline{{{}}}", "{}$^\\dagger$", " $\\pm$ "),
}


def _cell_text(text: str, marks: frozenset, fmt: str, grouped: bool) -> str:
    bold, under, _, _ = _STYLE[fmt]
    if grouped and GROUP_BEST in marks:
        text = under.format(text)
    if BEST in marks:
        text = bold.format(text)
    return text


_LATEX_SPECIAL = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "$": "\\$",
    "#": "\\#",
    "_": "\\_",
    "{": "\\{",
    "}": "\\}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
}


def _latex_escape(s: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s)


def _grid(table: Table, fmt: str, digits: int) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Header and body lines ``(kind, cells)`` with kind ``group`` | ``row`` | ``gain``."""
    pm = _STYLE[fmt][3]
    esc = _latex_escape if fmt == "latex" else (lambda s: s)
    grouped = table.layout == "table4" and len({ln.group for ln in table.lines}) > 1
    first = "augmenter" if table.layout == "table5" else "backbones"
    header = [first, *map(esc, table.columns), AVG]
    body: list[tuple[str, list[str]]] = []
    group = None
    for i, line in enumerate(table.lines):
        if table.layout == "table4" and line.group != group:
            group = line.group
            body.append(("group", [esc(f"{group}:"), *[""] * (len(header) - 1)]))
        cells = [esc(line.label)]
        for col in table.columns:
            e = line.entries.get(col)
            text = _num(e.value, e.std, digits, pm) if e else ""
            if e and not math.isfinite(e.value) and e.diverged_configs:
                text = DIVERGED  # the chosen configuration diverged: there is no number to show
            cells.append(_cell_text(text, table.marks.get((i, col), frozenset()), fmt, grouped) if e else "")
        cells.append(
            _cell_text(_num(line.avg, line.avg_std, digits, pm), table.marks.get((i, AVG), frozenset()), fmt, grouped)
        )
        body.append(("row", cells))
    for vs, tests in ((BASELINE, table.gain), (PROBE_ROW, table.probe_gain)):
        if not table.gain_of or not tests:
            continue
        sig_fmt = _STYLE[fmt][2]
        cells = [esc(f"Gain ({table.gain_of} - {vs})")]
        for col in [*table.columns, AVG]:
            t = tests.get(col)
            text = _num(t.gain, None, digits, pm) if t else ""
            cells.append(sig_fmt.format(text) if t is not None and t.significant else text)
        body.append(("gain", cells))
    return header, body


def search_note(settings: Mapping) -> str:
    """How the hyper-parameters of the run with these settings were chosen, and how to get the paper's search."""
    grid = settings.get("grid")
    if grid:
        paper = "" if grid == "paper" else " (the paper's: --grid paper)"
        return f"hyper-parameters searched on validation over grid {grid}{paper}{_halving_note(settings)}"
    hp = settings.get("hp") or {}
    if any(len(v) > 1 for v in hp.values()):
        return f"hyper-parameters searched on validation over the --hp values{_halving_note(settings)}"
    return "fixed hyper-parameters, no search (--grid paper searches the paper's grid)"


def _halving_note(settings: Mapping) -> str:
    """With ``--search halving``: how the search was cut short (empty for the full grid)."""
    if settings.get("search") != "halving":
        return ""
    rungs = settings.get("halving_rungs")
    where = (
        f"rungs at epochs {','.join(map(str, rungs))}"
        if rungs
        else "the default rungs: E/3^k from at least E/9, featbench.training.halving"
    )
    keep = settings.get("halving_keep", 1 / 3)
    return f", by successive halving (keep {keep:.3g} per rung, {where}), not the full grid"


def _legend(report: Report, fmt: str) -> str:
    seeds = f"mean ± std over {report.seeds} seeds" if report.seeds > 1 else "one seed"
    metric = ", ".join(report.metrics) or "metric"
    bold, under, dagger = {"markdown": ("**x**", "<u>x</u>", "x†"), "latex": ("bold", "underlined", "dagger")}.get(
        fmt, ("*x*", "_x_", "x†")
    )
    tests = "; ".join(report.tests) if report.tests else "no test applicable"
    text = f"test {metric} in %, {seeds}; {bold} = best in its column"
    if any(t.layout == "table4" and len({ln.group for ln in t.lines}) > 1 for t in report.tables):
        text += f", {under} = best within its augmenter group"
    if any(t.gain_of for t in report.tables):
        used = ((BASELINE, any(t.gain for t in report.tables)), (PROBE_ROW, any(t.probe_gain for t in report.tables)))
        versus = " or ".join(vs for vs, present in used if present)
        text += f"; {dagger} = gain over {versus} significant at p < {sig.ALPHA} ({tests})"
    if any(t.probe_gain for t in report.tables):
        text += (
            f"; {PROBE_ROW} = L-BFGS logistic regression, weight decay swept on validation (coarse decades, "
            "then quarter decades), refit on train+val"
        )
    settings = report.meta.get("settings")
    if isinstance(settings, Mapping):
        text += f"; {search_note(settings)}"
    diverged = sum(e.diverged_configs for e in report.entries)
    if diverged:
        text += f"; {diverged} configuration(s) diverged (NaN/Inf weights), see results.json"
    done = report.meta.get("cells")
    if isinstance(done, Mapping) and done.get("finished") != done.get("planned"):
        text += f"; INCOMPLETE: {done.get('finished')} of {done.get('planned')} cells finished"
    return text


def _render_latex(table: Table, header: list[str], body: list[tuple[str, list[str]]]) -> str:
    ncol = len(header)
    out = [
        f"% {table.layout} layout: {table.title}",
        "\\begin{tabular}{l" + "r" * (ncol - 1) + "}",
        "\\toprule",
        " & ".join(header) + " \\\\",
        "\\midrule",
    ]
    for kind, cells in body:
        if kind == "group":
            out.append(f"\\multicolumn{{{ncol}}}{{l}}{{\\textit{{{cells[0]}}}}} \\\\")
        elif kind == "gain":
            out += ["\\midrule", " & ".join(cells) + " \\\\"]
        else:
            out.append(" & ".join(cells) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(out)


def render(report: Report, fmt: str, digits: int = 2) -> str:
    """The report in ``fmt`` (one of FORMATS); several tables are separated by a blank line."""
    from tabulate import tabulate

    if fmt == "json":
        return json.dumps(_finite(to_json_data(report)), indent=2, default=_json_default, allow_nan=False)
    if fmt == "csv":
        return _render_csv(report)
    if fmt not in FORMATS:
        raise UnknownNameError("output format", fmt, FORMATS)
    if not report.tables:
        return "(no finished cells)"
    parts = []
    titled = len(report.tables) > 1  # a single table prints bare, like the paper's
    for table in report.tables:
        header, body = _grid(table, fmt, digits)
        rows = [cells for _, cells in body]
        title = f"{table.layout} layout: {table.title}"
        if fmt == "csv-wide":
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow([f"{header[0]} [{title}]" if titled else header[0], *header[1:]])
            writer.writerows(rows)
            parts.append(buf.getvalue().rstrip("\n"))
        elif fmt == "latex":
            parts.append(_render_latex(table, header, body))
        else:
            style = "simple" if fmt == "table" else "github"
            text = tabulate(
                rows,
                headers=header,
                tablefmt=style,
                disable_numparse=True,
                colalign=("left",) + ("right",) * (len(header) - 1),
            )
            heading = (f"### {title}\n\n" if fmt == "markdown" else f"[{title}]\n") if titled else ""
            parts.append(heading + text)
    legend = _legend(report, fmt)
    if fmt == "latex":
        parts.append("% " + legend)
    elif fmt == "table":
        parts.append(f"({legend})")
    elif fmt == "markdown":
        parts.append(legend)
    return "\n\n".join(parts)


CSV_HEADER = (
    "backbones", "augmenter", "dataset", "metric", "mean", "std", "seeds", "gain", "p", "test", "significant",
)


def _render_csv(report: Report) -> str:
    """One line per (backbone set, augmenter, data set or Avg) with numbers in their own columns: the mean
    and sample std over seeds (in %), the number of seeds, and the gain over ``none`` with its p-value and
    test (empty for ``none`` itself and where no test applies). Layout-independent, for spreadsheets."""
    gains = {(g["backbones"], g["augmenter"], g["column"]): g for g in report.gains}
    rows = [[e.backbones, e.row, e.dataset, e.metric, e.value, e.std, len(e.by_seed)] for e in report.entries]
    seen = set()
    for table in report.tables:
        for line in table.lines:
            if not line.entries:
                continue
            if table.layout == "table5":
                row, bset = line.label, next(iter(line.entries.values())).backbones
            else:
                row, bset = line.group, line.label
            if (bset, row) not in seen:
                seen.add((bset, row))
                rows.append([bset, row, AVG, "", line.avg, line.avg_std, len(line.avg_by_seed)])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for r in rows:
        g = gains.get((r[0], r[1], r[2]))
        extra = [g["gain"], g["p"], g["test"] or "", g["significant"]] if g else ["", "", "", ""]
        writer.writerow([_plain(v) for v in [*r, *extra]])
    return buf.getvalue().rstrip("\n")


def _plain(v) -> str:
    """A CSV field: numbers with 6 significant digits, NaN / None as empty, booleans as true / false."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def to_json_data(report: Report) -> dict:
    results = []
    for a in report.entries:
        hps = [dict(h) for h in a.hp]
        results.append(
            {
                "augmenter": a.row,
                "plugin": a.augmenter,
                "features": a.dataset,
                "dataset": a.dataset,
                "backbones": a.backbones,
                "metric": a.metric,
                "value": a.value,
                "std": a.std,
                "values": list(a.by_seed.values()),
                "seeds": list(a.by_seed),
                "hp": hps[0] if all(h == hps[0] for h in hps) else hps,
                "seconds": a.seconds,
                "grid_size": a.grid_size,
                "diverged_configs": a.diverged_configs,
                "loss": a.loss,
            }
        )
    tables = []
    for t in report.tables:
        lines = []
        for i, ln in enumerate(t.lines):
            vals = {
                c: {
                    "value": ln.entries[c].value,
                    "std": ln.entries[c].std,
                    "best": BEST in t.marks.get((i, c), ()),
                    "group_best": GROUP_BEST in t.marks.get((i, c), ()),
                }
                for c in t.columns
                if c in ln.entries
            }
            vals[AVG] = {
                "value": ln.avg,
                "std": ln.avg_std,
                "best": BEST in t.marks.get((i, AVG), ()),
                "group_best": GROUP_BEST in t.marks.get((i, AVG), ()),
            }
            lines.append({"label": ln.label, "group": ln.group or None, "values": vals})
        item = {"layout": t.layout, "title": t.title, "columns": list(t.columns), "rows": lines}
        for name, vs, tests in (("gain", BASELINE, t.gain), ("gain_vs_probe", PROBE_ROW, t.probe_gain)):
            if t.gain_of and tests:
                item[name] = {
                    "of": t.gain_of,
                    "vs": vs,
                    "cells": {
                        c: {"gain": g.gain, "p": g.p, "test": g.test, "significant": g.significant}
                        for c, g in tests.items()
                    },
                }
        tables.append(item)
    return {"results": results, "tables": tables, "gains": list(report.gains), "alpha": sig.ALPHA, **report.meta}


def _finite(obj):
    """``obj`` with every NaN/Inf float replaced by None: strict JSON (a diverged value is null)."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
