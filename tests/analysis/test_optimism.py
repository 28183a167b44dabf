"""analysis.optimism: oracle − selected and best − selected per arm, and whether verdicts change."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.optimism import (
    BASELINE,
    NONE,
    TREATMENT,
    conclusion,
    conclusions_sentence,
    conclusions_table,
    draw_optimism,
    optimism_plot,
    optimism_table,
)
from analysis.stats import paired_table
from erc import contract as C


def _runs(values: dict[str, list[float]], shift: dict[str, float] | None = None) -> pd.DataFrame:
    rows = []
    for arm, accs in values.items():
        for fold, acc in enumerate(accs):
            rows.append({C.FOLD: fold, C.SEED: "0", C.ARM: arm, "acc": acc + (shift or {}).get(arm, 0.0),
                         "macro_f1": acc / 2})
    return pd.DataFrame(rows)


def test_optimism_is_the_mean_paired_gap_per_arm_and_metric():
    selected = _runs({"concat-hard": [0.5, 0.6, 0.55, 0.5, 0.6], "outer-peakl": [0.6, 0.6, 0.6, 0.6, 0.6]})
    oracle = _runs({"concat-hard": [0.5, 0.6, 0.55, 0.5, 0.6], "outer-peakl": [0.6, 0.6, 0.6, 0.6, 0.6]},
                   {"concat-hard": 0.02, "outer-peakl": 0.05})
    best = oracle.assign(acc=oracle["acc"] + 0.01)
    oracle = oracle.drop(index=0)  # a trial without oracle values is left out of that mean only
    table = optimism_table({"selected": selected, "oracle": oracle, "best": best}, ["acc", "macro_f1"])
    assert list(table.columns) == ["folds", "selected", "oracle − selected", "best − selected"]
    assert table.loc[("concat-hard", "acc"), "oracle − selected"] == pytest.approx(0.02)
    assert table.loc[("outer-peakl", "acc"), "oracle − selected"] == pytest.approx(0.05)
    assert table.loc[("outer-peakl", "acc"), "best − selected"] == pytest.approx(0.06)
    assert table.loc[("concat-hard", "acc"), "selected"] == pytest.approx(0.55)
    assert table.loc[("concat-hard", "macro_f1"), "oracle − selected"] == pytest.approx(0.0)
    assert table.loc[("concat-hard", "acc"), "folds"] == 5
    with pytest.raises(ValueError, match="selected"):
        optimism_table({"oracle": oracle}, ["acc"])


def test_verdicts_and_whether_they_change():
    assert conclusion(3.0, 0.01, 0.05) == TREATMENT and conclusion(-3.0, 0.01, 0.05) == BASELINE
    assert conclusion(3.0, 0.2, 0.05) == NONE and conclusion(math.nan, math.nan, 0.05) == NONE
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.01, 5)
    folds = range(5)

    def table(gain: float) -> pd.DataFrame:
        treat = {"acc": dict(zip(folds, base + gain + rng.normal(0, 0.002, 5), strict=True))}
        return paired_table(treat, {"acc": dict(zip(folds, base, strict=True))})

    tables = {"selected": {"fusion": table(0.0)}, "oracle": {"fusion": table(0.05)}, "best": {"fusion": table(0.0)}}
    verdicts = conclusions_table(tables, 0.05)
    row = verdicts.loc[("fusion", "acc")]
    assert row["selected"] == NONE and row["oracle"] == TREATMENT and row["changes"] == "yes"
    sentence = conclusions_sentence(verdicts, 0.05)
    assert "some of the tables' conclusions change" in sentence and "1 of 1 on oracle" in sentence
    same = conclusions_table({"selected": tables["selected"], "oracle": tables["selected"]}, 0.05)
    assert (same["changes"] == "no").all() and "none of" in conclusions_sentence(same, 0.05)


def test_optimism_figure_has_a_bar_per_arm_and_gap(tmp_path):
    selected = _runs({"a": [0.5] * 5, "b": [0.6] * 5})
    table = optimism_table({"selected": selected, "oracle": _runs({"a": [0.5] * 5, "b": [0.6] * 5}, {"a": 0.1}),
                            "best": _runs({"a": [0.5] * 5, "b": [0.6] * 5}, {"b": 0.2})}, ["acc"])
    fig = draw_optimism(table, "acc")
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches)
    assert heights == [0.0, 0.0, 0.1, 0.2]
    assert optimism_plot(table, "acc", tmp_path / "optimism_acc.png").stat().st_size > 0


def test_display_is_one_row_per_arm():
    from analysis.optimism import optimism_display

    selected = _runs({"a": [0.5] * 5, "b": [0.6] * 5})
    table = optimism_table({"selected": selected, "oracle": _runs({"a": [0.5] * 5, "b": [0.6] * 5}, {"a": 0.1}),
                            "best": _runs({"a": [0.5] * 5, "b": [0.6] * 5}, {"b": 0.2})}, ["acc", "macro_f1"],
                           arms=["b", "a"])
    shown = optimism_display(table)
    assert list(shown.index) == ["b", "a"] and list(shown.columns) == ["acc", "macro_f1"]
    assert shown.loc["a", "acc"] == "+0.100 / +0.000" and shown.loc["b", "acc"] == "+0.000 / +0.200"
