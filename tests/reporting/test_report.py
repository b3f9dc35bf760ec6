"""Tables in the paper's layouts: averages, gains, best marks and significance marks in every format."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from featbench.errors import UnknownNameError
from featbench.records import CellRecord
from featbench.reporting import significance as sig
from featbench.reporting.tables import AVG, BEST, GROUP_BEST, build, render, to_json_data

N = 200


def _correct(n_right: int, offset: int = 0) -> np.ndarray:
    c = np.zeros(N, dtype=bool)
    c[offset:offset + n_right] = True
    return c


def cell(row, dataset, value, seed=0, backbones="S+M", correct=None, metric="top1", hp=None):
    if correct is None:
        correct = _correct(int(round(value / 100 * N)))
    return CellRecord(key=f"{row}/{dataset}/{backbones}/{seed}", source_id=f"{dataset}/{backbones}", dataset=dataset,
                      backbones=backbones, row=row, augmenter=row, loss="hinge", seed=seed, metric=metric, value=value,
                      top1=value, mean_per_class=value, hp=hp or {"lr": 1.0}, val_value=None, grid_size=4,
                      diverged_configs=0, seconds=1.0, refit_key="r", correct=correct, test_y=np.arange(N) % 4)


def one_seed_cells():
    # sea beats none by 20 examples out of 200 on A (all discordant in sea's favour: McNemar p ~ 2e-6),
    # and by one example on B (p = 1)
    return [cell("none", "A", 50.0), cell("sea", "A", 60.0), cell("isda", "A", 55.0),
            cell("none", "B", 70.0), cell("sea", "B", 70.5), cell("isda", "B", 71.0)]


def test_table5_layout_averages_gains_and_marks():
    report = build(one_seed_cells())
    (t,) = report.tables
    assert t.layout == "table5" and t.columns == ("A", "B") and [l.label for l in t.lines] == ["none", "sea", "isda"]
    sea = t.lines[1]
    assert sea.avg == pytest.approx(65.25)
    assert t.gain_of == "sea"
    assert t.gain["A"].gain == pytest.approx(10.0) and t.gain["A"].test == sig.MCNEMAR
    assert t.gain["A"].p == pytest.approx(sig.mcnemar_exact(_correct(120), _correct(100)))
    assert t.gain["A"].significant and not t.gain["B"].significant
    assert t.gain[AVG].gain == pytest.approx(65.25 - 60.0) and t.gain[AVG].test == sig.BOOTSTRAP
    assert BEST in t.marks[(1, "A")] and BEST in t.marks[(2, "B")] and (0, "A") not in t.marks
    assert BEST in t.marks[(1, AVG)]


def test_marks_appear_in_every_format():
    report = build(one_seed_cells())
    text = render(report, "table")
    lines = text.splitlines()
    gain_line = next(l for l in lines if l.startswith("Gain (sea - none)"))
    assert "10.00†" in gain_line and "0.50†" not in gain_line and "0.50" in gain_line
    assert "*60.00*" in text and "*71.00*" in text and "(test top1 in %, one seed" in text
    md = render(report, "markdown")
    assert "**60.00**" in md and "10.00†" in md and "| Gain (sea - none) |" in md
    rows = list(csv.reader(io.StringIO(render(report, "csv-wide"))))
    assert rows[0][1:] == ["A", "B", "Avg"] and rows[-1][0] == "Gain (sea - none)" and rows[-1][1] == "10.00†"
    tex = render(report, "latex")
    for token in ("\\toprule", "\\midrule", "\\bottomrule", "\\textbf{60.00}", "10.00$^\\dagger$", "\\begin{tabular}{lrrr}"):
        assert token in tex
    data = json.loads(render(report, "json"))
    gain_cells = data["tables"][0]["gain"]["cells"]
    assert gain_cells["A"]["significant"] is True and gain_cells["A"]["p"] < 1e-4 and gain_cells["A"]["test"] == sig.MCNEMAR
    assert gain_cells["B"]["significant"] is False and gain_cells["B"]["p"] == pytest.approx(1.0)
    all_gains = {(g["augmenter"], g["column"]): g for g in data["gains"]}
    assert set(all_gains) == {(r, c) for r in ("sea", "isda") for c in ("A", "B", "Avg")}
    assert all(g["p"] is not None for g in data["gains"])
    assert {r["augmenter"] for r in data["results"]} == {"none", "sea", "isda"}


def test_several_seeds_show_std_and_use_the_paired_t_test():
    cells = []
    for seed, (b, s) in enumerate([(50.0, 53.0), (51.0, 53.5), (49.0, 52.5)]):
        cells += [cell("none", "A", b, seed=seed), cell("sea", "A", s, seed=seed)]
    report = build(cells)
    (t,) = report.tables
    none = t.lines[0].entries["A"]
    assert none.std == pytest.approx(1.0) and none.value == pytest.approx(50.0)
    g = t.gain["A"]
    assert g.test == sig.PAIRED_T
    assert g.p == pytest.approx(sig.paired_t_test([53.0, 53.5, 52.5], [50.0, 51.0, 49.0]))
    text = render(report, "table")
    assert "50.00 ± 1.00" in text and "mean ± std over 3 seeds" in text and "paired-t over seeds" in text
    assert "53.00 $\\pm$ 0.50" in render(report, "latex")


def test_table4_layout_groups_rows_by_augmenter_and_marks_group_and_global_best():
    cells = []
    vals = {("none", "S"): (40, 60), ("none", "S+M"): (45, 58), ("sea", "S"): (44, 61), ("sea", "S+M"): (50, 59)}
    for (row, bset), (a, b) in vals.items():
        cells += [cell(row, "A", float(a), backbones=bset), cell(row, "B", float(b), backbones=bset)]
    report = build(cells)
    layouts = [t.layout for t in report.tables]
    assert layouts == ["table5", "table5", "table4"]  # one Table 5 per backbone set, then Table 4
    t4 = report.tables[-1]
    assert [(l.group, l.label) for l in t4.lines] == [("none", "S"), ("none", "S+M"), ("sea", "S"), ("sea", "S+M")]
    assert t4.marks[(1, "A")] == {GROUP_BEST}  # best of the none group, not overall
    assert t4.marks[(3, "A")] == {GROUP_BEST, BEST}
    assert t4.marks[(2, "B")] == {GROUP_BEST, BEST} and t4.marks[(0, "B")] == {GROUP_BEST}
    text = render(report, "table")
    assert "none:" in text and "sea:" in text and "*_50.00_*" in text and "_45.00_" in text
    tex = render(report, "latex")
    assert "\\multicolumn{4}{l}{\\textit{sea:}}" in tex and "\\textbf{\\underline{50.00}}" in tex
    assert "\\underline{45.00}" in tex
    md = render(report, "markdown")
    assert "**<u>50.00</u>**" in md
    data = to_json_data(report)
    t4j = data["tables"][-1]
    assert t4j["layout"] == "table4" and t4j["rows"][3]["values"]["A"] == {"value": 50.0, "std": None, "best": True, "group_best": True}
    only5 = build(cells, layout="table5")
    assert [t.layout for t in only5.tables] == ["table5", "table5"]


def test_gain_row_choice_missing_cells_and_incomplete_runs():
    cells = one_seed_cells()[:-1]  # isda has no B
    report = build(cells, gain_of="isda", meta={"cells": {"planned": 6, "finished": 5}})
    (t,) = report.tables
    assert t.gain_of == "isda" and math.isnan(t.lines[2].avg)
    assert math.isnan(t.gain["B"].gain) and t.gain["B"].p is None
    text = render(report, "table")
    assert "INCOMPLETE: 5 of 6 cells finished" in text
    with pytest.raises(UnknownNameError, match="unknown augmenter for the Gain row 'sae'"):
        build(cells, gain_of="sae")
    no_base = build([c for c in cells if c.row != "none"])
    assert no_base.tables[0].gain_of is None and "Gain" not in render(no_base, "table")


def test_latex_escapes_names():
    cells = [cell("none", "cub_200", 50.0), cell("sea_neg", "cub_200", 52.0)]
    tex = render(build(cells, gain_of="sea_neg"), "latex")
    assert "sea\\_neg" in tex and "cub\\_200" in tex and "sea_neg" not in tex.replace("% ", "")


def test_csv_has_mean_std_and_p_in_their_own_columns():
    cells = []
    for seed, (b, s) in enumerate([(50.0, 53.0), (51.0, 53.5), (49.0, 52.5)]):
        cells += [cell("none", "A", b, seed=seed), cell("sea", "A", s, seed=seed)]
    for layout in ("table5", "table4"):
        rows = list(csv.DictReader(io.StringIO(render(build(cells, layout=layout), "csv"))))
        by = {(r["augmenter"], r["dataset"]): r for r in rows}
        assert set(by) == {("none", "A"), ("sea", "A"), ("none", "Avg"), ("sea", "Avg")}
        assert float(by["none", "A"]["mean"]) == pytest.approx(50.0) and float(by["none", "A"]["std"]) == pytest.approx(1.0)
        assert by["none", "A"]["seeds"] == "3" and by["none", "A"]["p"] == "" and by["none", "A"]["backbones"] == "S+M"
        sea = by["sea", "A"]
        assert float(sea["gain"]) == pytest.approx(3.0) and 0 < float(sea["p"]) < 0.05 and sea["significant"] == "true"
        assert float(by["sea", "Avg"]["mean"]) == pytest.approx(53.0)
