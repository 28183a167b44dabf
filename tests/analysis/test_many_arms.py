"""analysis.many_arms: Friedman, the post-hoc tests and the critical-difference diagram over fold values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.many_arms import (
    FRIEDMAN_COLUMNS,
    cd_diagram,
    fold_matrix,
    friedman,
    friedman_table,
    many_arms,
    mean_ranks,
    posthoc_vs_control,
)

ARMS = ["concat", "outer", "tfn", "audio", "text"]


def long_values(n_folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """One row per (fold, arm): arms with clearly different levels, folds sharing a fold effect."""
    rng = np.random.default_rng(seed)
    level = {"concat": 0.50, "outer": 0.52, "tfn": 0.51, "audio": 0.35, "text": 0.45}
    rows = []
    for fold in range(n_folds):
        fold_effect = rng.normal(0, 0.05)
        for arm in ARMS:
            acc = level[arm] + fold_effect + rng.normal(0, 0.01)
            rows.append({"fold": fold, "arm": arm, "acc": acc, "loss": 2 - acc})
    return pd.DataFrame(rows)


def test_the_friedman_statistic_is_scipys_on_the_same_fold_values():
    values = long_values()
    matrix = fold_matrix(values, "acc", arms=ARMS)
    assert list(matrix.columns) == ARMS and matrix.shape == (5, 5)
    statistic, p, k, n = friedman(matrix)
    by_arm = [values[values.arm == a].sort_values("fold")["acc"].to_numpy() for a in ARMS]
    expected = stats.friedmanchisquare(*by_arm)
    assert statistic == pytest.approx(expected.statistic, rel=1e-12) and p == pytest.approx(expected.pvalue)
    assert (k, n) == (5, 5)
    table = friedman_table([many_arms(matrix, "acc", control="concat")])
    assert tuple(table.columns) == FRIEDMAN_COLUMNS and table.loc[0, "statistic"] == pytest.approx(statistic)
    assert table.loc[0, "p"] < 0.01  # the audio arm is always last


def test_ranks_follow_the_metrics_direction_and_incomplete_folds_are_dropped():
    values = long_values()
    acc, loss = fold_matrix(values, "acc"), fold_matrix(values, "loss")
    ranks = mean_ranks(acc[ARMS], "acc")
    assert ranks["audio"] == 5.0 and ranks.idxmin() in ("outer", "tfn")  # 1 = best
    pd.testing.assert_series_equal(mean_ranks(loss[ARMS], "loss"), ranks)  # a loss: lowest is best
    assert ranks.sum() == pytest.approx(15.0)
    short = values.drop(values[(values.fold == 2) & (values.arm == "tfn")].index)
    assert fold_matrix(short, "acc").shape == (4, 5)
    with pytest.raises(ValueError, match="arm"):
        fold_matrix(values, "acc", arms=["concat", "lmf"])
    with pytest.raises(ValueError, match="at least 3 arms"):
        friedman(acc[["concat", "outer"]])


def test_holm_against_the_control_is_demsars_z_test():
    matrix = fold_matrix(long_values(n_folds=8), "acc", arms=ARMS)
    table = posthoc_vs_control(matrix, "acc", "concat")
    assert list(table["arm"]) == ["outer", "tfn", "audio", "text"]
    ranks = mean_ranks(matrix, "acc")
    k, n = 5, 8
    z = (ranks[table["arm"]].to_numpy() - ranks["concat"]) / np.sqrt(k * (k + 1) / (6 * n))
    np.testing.assert_allclose(table["z"], z)
    np.testing.assert_allclose(table["p"], 2 * stats.norm.sf(np.abs(z)))
    # Holm: the smallest p times 4, then times 3, …, monotone
    order = np.argsort(table["p"].to_numpy())
    steps = np.maximum.accumulate(np.sort(table["p"].to_numpy()) * np.arange(4, 0, -1)).clip(max=1)
    np.testing.assert_allclose(table["p_holm"].to_numpy()[order], steps)
    audio = table.set_index("arm").loc["audio"]
    assert audio["significant"] and not audio["better"]
    with pytest.raises(ValueError, match="control arm 'lmf'"):
        posthoc_vs_control(matrix, "acc", "lmf")


def test_nemenyi_and_the_cd_diagram(tmp_path):
    matrix = fold_matrix(long_values(), "acc", arms=ARMS)
    res = many_arms(matrix, "acc", control="concat", method="nemenyi")
    assert res.nemenyi.shape == (5, 5) and np.allclose(np.diag(res.nemenyi), 1)
    assert set(res.posthoc.columns) >= {"arm", "p_nemenyi", "significant"}
    png = cd_diagram(res, tmp_path / "cd_acc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="post-hoc method"):
        many_arms(matrix, "acc", control="concat", method="tukey")
