"""The seed's two t-test tables, reproduced from the paper's own published fold values.

The values (``analysis/data/paper_fold_values.csv``, provenance in ``analysis/data/README.md``) go
through ``analysis.values`` and ``analysis.paired_table``, the code every report uses; each published
cell must come out to its printed precision. The corrections' verdicts the README states are asserted
here too, so the README says what the code computes.
"""

from __future__ import annotations

import re

import pytest

from analysis import paired_table
from analysis.__main__ import main
from analysis.runs import pair_arms
from analysis.values import PAPER_VALUES, load_values_csv

pytestmark = pytest.mark.filterwarnings("ignore:Wilcoxon")

# The seed's tables as printed (T | dof | alternative | p-val | CI95% | cohen-d | BF10 | power).
TENSOR_MIXER_VS_CONCAT = """
|epoch/valid_acc|	5.4178	|4	|two-sided|	**0.0056**	|[0.0, 0.02]	|0.6438	|10.689	|0.2005|
|epoch/valid_macrof1|	6.3869	|4|	two-sided|	**0.0031**|	[0.02, 0.04]|	1.3668	|16.54	|0.6345|
|epoch/valid_microf1	|5.4178	|4	|two-sided|	**0.0056**	|[0.0, 0.02]	|0.6438	|10.689|	0.2005|
|epoch/valid_ccc(aro)	|8.6186	|4	|two-sided	|**0.0010**	|[0.13, 0.25]	|5.3679	|37.745|	1.0000|
|epoch/valid_ccc(val)	|7.9099	|4	|two-sided	|**0.0014**	|[0.09, 0.18]	|3.6925	|29.703	|0.9999|
"""
PEAKL_VS_ONE_HOT = """
|epoch/valid_acc|9.7021|4|two-sided|**0.0006**|[0.01 0.01]|0.4927|52.725|0.1379|
|epoch/valid_macrof1|11.8231|4|two-sided|**0.0003**|[0.01 0.02]|0.7127|92.844|0.2342|
|epoch/valid_microf1|9.7021|4|two-sided|**0.0006**|[0.01 0.01]|0.4927|52.725|0.1379|
|epoch/valid_ccc(aro)|1.567|4|two-sided|*0.1922*|[-0.01  0.02]|0.6379|0.873|0.1977|
|epoch/valid_ccc(val)|3.6245|4|two-sided|**0.0223**|[0.   0.02]|0.7926|3.958|0.2768|
"""
COLUMNS = ["T", "dof", "alternative", "p-val", "CI95%", "cohen-d", "BF10", "power"]
CI_DECIMALS = 2  # pingouin rounds CI95% to 2 decimals for display; numpy then drops trailing zeros


def published(table: str) -> dict[str, dict[str, str]]:
    rows = {}
    for line in table.strip().splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = dict(zip(COLUMNS, cells[1:], strict=True))
    return rows


def matches(value, printed: str, column: str) -> bool:
    if column == "alternative":
        return value == printed
    if column == "CI95%":
        bounds = [float(x) for x in re.split(r"[,\s]+", printed.strip("[]").strip())]
        return [round(float(v), CI_DECIMALS) + 0.0 for v in value] == bounds
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return round(float(value), decimals) == float(printed)


@pytest.mark.parametrize(("treatment", "baseline", "table"), [
    (("outer", "peakl"), ("concat", "peakl"), TENSOR_MIXER_VS_CONCAT),
    (("outer", "peakl"), ("outer", "hard"), PEAKL_VS_ONE_HOT),
])
def test_paired_table_reproduces_the_seed_tables_to_every_printed_digit(treatment, baseline, table):
    trials = load_values_csv(PAPER_VALUES)
    factor = "fusion" if treatment[0] != baseline[0] else "labels"
    fixed = {"labels": treatment[1]} if factor == "fusion" else {"fusion": treatment[0]}
    comp = pair_arms(trials, factor, treatment[0] if factor == "fusion" else treatment[1],
                     baseline[0] if factor == "fusion" else baseline[1], fixed)
    ours = paired_table(comp.treatment_values, comp.baseline_values)
    expected = published(table)
    assert list(ours.columns) == COLUMNS and list(ours.index) == list(expected)
    wrong = [(metric, col, ours.loc[metric, col], printed)
             for metric, row in expected.items() for col, printed in row.items()
             if not matches(ours.loc[metric, col], printed, col)]
    assert not wrong


def test_report_on_the_paper_values_states_what_the_corrections_say(tmp_path, capsys):
    """What the README reports about the paper's numbers, from ``python -m analysis report --values-csv``."""
    assert main(["report", "--values-csv", str(PAPER_VALUES), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    sections = {s.split("\n", 1)[0]: s for s in out.split("\n## ")[1:]}
    fusion = sections["fusion: outer vs concat (labels=peakl)"]
    soft = sections["labels: peakl vs soft (fusion=outer)"]
    hard = sections["labels: peakl vs hard (fusion=outer)"]
    # The 8-column paper table comes first in each section, the corrections after it.
    for section in (fusion, soft, hard):
        tables = [line for line in section.splitlines() if line.startswith("| metric |")]
        assert tables[0] == "| metric | " + " | ".join(COLUMNS) + " |"
        assert tables[1].startswith("| metric | T (NB) | p-val (NB) | CI95% (NB) | cohen-dz |")
    # Tensor mixer vs concat holds on every metric after NB + Holm (largest p: acc, 0.045).
    assert "it holds for every metric (p ≤ 0.045)" in fusion
    assert "| epoch/valid_acc | 3.612 | 0.02252 |" in fusion and "| 0.04504 |" in fusion
    # PeakL vs one-hot: holds for acc and macro-F1 (and micro-F1), not for either CCC.
    assert ("it holds for epoch/valid_acc (p 0.012), epoch/valid_macrof1 (p 0.007), epoch/valid_microf1 "
            "(p 0.012) but not for epoch/valid_ccc(aro) (p 0.36), epoch/valid_ccc(val) (p 0.15; uncorrected "
            "0.022)") in hard
    # PeakL vs soft: nothing is significant, even uncorrected.
    assert "Not significant on any metric, even uncorrected (epoch/valid_acc: T 1.64, p 0.18)" in soft
    page = (tmp_path / "report.html").read_text()
    assert page.count("<table>") == 7 and page.count('src="data:image/png;base64,') == 3 + 5
