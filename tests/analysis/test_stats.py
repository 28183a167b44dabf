"""analysis.paired_table: the paper's pingouin table, fold pairing by key, and the opt-in corrections."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from baycomp import two_on_single
from scipy import stats as sps

from analysis import paired_table
from analysis.stats import EXTENDED_COLUMNS, SEED_COLUMNS, full_precision

# Five folds with fold-to-fold difficulty shared by both arms (as in session CV), three metrics with
# clearly different effects so that Holm's step-down actually changes the p-values.
FOLD_BASE = np.array([0.52, 0.61, 0.57, 0.66, 0.49])
BASE = {
    "acc": FOLD_BASE,
    "macro_f1": FOLD_BASE - 0.08,
    "ccc_valence": FOLD_BASE - 0.2,
}
DELTA = {
    "acc": np.array([0.021, 0.034, 0.012, 0.028, 0.019]),
    "macro_f1": np.array([0.004, 0.012, -0.006, 0.010, 0.001]),
    "ccc_valence": np.array([-0.010, 0.015, -0.005, -0.020, 0.002]),
}
# The Wilcoxon floor warning is expected with 5 folds; one test checks it with pytest.warns.
pytestmark = pytest.mark.filterwarnings("ignore:Wilcoxon")

N_TRAIN = {0: 400, 1: 410, 2: 380, 3: 395, 4: 415}
N_TEST = {0: 100, 1: 90, 2: 120, 3: 105, 4: 85}


def arms(keys=range(5)):
    treat = {m: {k: float(BASE[m][k] + DELTA[m][k]) for k in keys} for m in BASE}
    base = {m: {k: float(BASE[m][k]) for k in keys} for m in BASE}
    return treat, base


def arrays(metric):
    return BASE[metric] + DELTA[metric], BASE[metric]


def test_columns_and_values_equal_pingouin_ttest():
    treat, base = arms()
    table = paired_table(treat, base)
    assert (
        list(table.columns)
        == SEED_COLUMNS
        == ["T", "dof", "alternative", "p-val", "CI95%", "cohen-d", "BF10", "power"]
    )
    assert list(table.index) == list(BASE)
    for metric in BASE:
        t, b = arrays(metric)
        with full_precision():
            ref = pg.ttest(t, b, paired=True).iloc[0]
        row = table.loc[metric]
        assert row["T"] == pytest.approx(ref["T"], rel=1e-12)
        assert row["dof"] == ref["dof"] == 4
        assert row["alternative"] == ref["alternative"] == "two-sided"
        assert row["p-val"] == pytest.approx(ref["p_val"], rel=1e-12)
        np.testing.assert_allclose(row["CI95%"], ref["CI95"], rtol=1e-12)
        assert row["cohen-d"] == pytest.approx(ref["cohen_d"], rel=1e-12)
        assert row["BF10"] == pytest.approx(float(ref["BF10"]), rel=1e-12)
        assert row["power"] == pytest.approx(ref["power"], rel=1e-12)
        # pingouin's default (display-rounded) output is what the seed's tables print: same numbers.
        shown = pg.ttest(t, b, paired=True).iloc[0]
        np.testing.assert_allclose(np.round(row["CI95%"], 2), shown["CI95"])
        assert float(shown["BF10"]) == pytest.approx(row["BF10"], rel=2e-3)
    # Treatment minus baseline: acc improved on every fold, so T > 0 and the CI excludes 0.
    assert table.loc["acc", "T"] > 0 and table.loc["acc", "CI95%"][0] > 0
    # The rounding switch must not leak: pingouin's defaults are back after the call.
    assert pg.options["round.column.CI95"] == 2


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_one_sided_matches_pingouin(alternative):
    treat, base = arms()
    table = paired_table(treat, base, alternative)
    t, b = arrays("acc")
    with full_precision():
        ref = pg.ttest(t, b, paired=True, alternative=alternative).iloc[0]
    assert table.loc["acc", "alternative"] == alternative
    assert table.loc["acc", "p-val"] == pytest.approx(ref["p_val"], rel=1e-12)
    assert table.loc["acc", "power"] == pytest.approx(ref["power"], rel=1e-12)
    np.testing.assert_allclose(table.loc["acc", "CI95%"], ref["CI95"])
    assert math.isnan(table.loc["acc", "BF10"])  # pingouin computes BF10 for two-sided tests only


def test_folds_are_matched_by_key_not_position():
    treat, base = arms()
    reference = paired_table(treat, base, extended=True, n_train=N_TRAIN, n_test=N_TEST)
    rng = random.Random(3)
    shuffled = []
    for side in (treat, base):
        out = {}
        for metric, values in side.items():
            keys = list(values)
            rng.shuffle(keys)  # each side and metric in its own order
            out[metric] = {k: values[k] for k in keys}
        shuffled.append(out)
    assert list(shuffled[0]["acc"]) != list(shuffled[1]["acc"])
    again = paired_table(*shuffled, extended=True, n_train=N_TRAIN, n_test=N_TEST)
    pd.testing.assert_frame_equal(
        again.drop(columns=["CI95%", "CI95% (NB)"]), reference.drop(columns=["CI95%", "CI95% (NB)"])
    )
    for col in ("CI95%", "CI95% (NB)"):
        np.testing.assert_allclose(np.stack(again[col]), np.stack(reference[col]))


def test_missing_and_nan_folds_are_refused_by_name():
    treat, base = arms()
    del treat["acc"][3]
    del base["macro_f1"][1]
    base["ccc_valence"][4] = float("nan")
    with pytest.raises(ValueError) as err:
        paired_table(treat, base)
    msg = str(err.value)
    assert "'acc': missing from treatment: fold 3" in msg
    assert "'macro_f1': missing from baseline: fold 1" in msg
    assert "'ccc_valence': missing from baseline: fold 4" in msg


def test_metric_sets_must_match():
    treat, base = arms()
    del base["acc"]
    with pytest.raises(ValueError, match="only in treatment \\['acc'\\]"):
        paired_table(treat, base)


def test_nadeau_bengio_equals_hand_computation():
    treat, base = arms()
    table = paired_table(treat, base, extended=True, n_train=N_TRAIN, n_test=N_TEST)
    ratio = np.mean(list(N_TEST.values())) / np.mean(list(N_TRAIN.values()))
    for metric in BASE:
        d = DELTA[metric]
        n = len(d)
        se = math.sqrt((1 / n + ratio) * np.var(d, ddof=1))
        t_nb = d.mean() / se
        p_nb = 2 * sps.t.sf(abs(t_nb), n - 1)
        half = sps.t.ppf(0.975, n - 1) * se
        assert table.loc[metric, "T (NB)"] == pytest.approx(t_nb, rel=1e-12)
        assert table.loc[metric, "p-val (NB)"] == pytest.approx(p_nb, rel=1e-12)
        np.testing.assert_allclose(
            table.loc[metric, "CI95% (NB)"], [d.mean() - half, d.mean() + half], rtol=1e-12
        )
        # The correction only rescales T: naive T / NB T = sqrt((1/n + ratio) / (1/n)).
        assert table.loc[metric, "T"] / t_nb == pytest.approx(math.sqrt((1 / n + ratio) * n), rel=1e-12)


def test_nb_with_k5_and_quarter_ratio_divides_t_by_1_5():
    treat, base = arms()
    table = paired_table(treat, base, "greater", extended=True, n_train=400, n_test=100)
    assert table.loc["acc", "T"] / table.loc["acc", "T (NB)"] == pytest.approx(1.5)
    d = DELTA["acc"]
    se = math.sqrt(0.45 * np.var(d, ddof=1))
    assert table.loc["acc", "p-val (NB)"] == pytest.approx(sps.t.sf(d.mean() / se, 4), rel=1e-12)
    assert table.loc["acc", "CI95% (NB)"][1] == np.inf
    # Minimum detectable d_z at 80 % power, n = 5: the NB one is 1.5 times the naive one.
    assert table.loc["acc", "min-dz80 (NB)"] / table.loc["acc", "min-dz80"] == pytest.approx(1.5)
    assert pg.power_ttest(d=table.loc["acc", "min-dz80"], n=5, contrast="paired", alternative="greater") == (
        pytest.approx(0.8, abs=1e-4)
    )


def test_extended_needs_fold_sizes():
    treat, base = arms()
    with pytest.raises(ValueError, match="n_train"):
        paired_table(treat, base, extended=True)
    with pytest.raises(ValueError, match="n_test lacks fold 4"):
        paired_table(treat, base, extended=True, n_train=400, n_test={k: 100 for k in range(4)})


def test_holm_equals_pingouin_multicomp():
    treat, base = arms()
    table = paired_table(treat, base, extended=True, n_train=N_TRAIN, n_test=N_TEST)
    for raw, adjusted in (("p-val", "p-val (Holm)"), ("p-val (NB)", "p-val (NB, Holm)")):
        expected = pg.multicomp(table[raw].to_numpy(dtype=float), method="holm")[1]
        np.testing.assert_allclose(table[adjusted].to_numpy(dtype=float), expected, rtol=1e-12)
        assert not np.allclose(table[adjusted], table[raw])  # the adjustment did something


def test_dz_two_sided_min_dz_and_wilcoxon_floor_warning():
    treat, base = arms()
    with pytest.warns(UserWarning, match="cannot go below 0.0625"):
        table = paired_table(treat, base, extended=True, n_train=N_TRAIN, n_test=N_TEST)
    assert list(table.columns) == SEED_COLUMNS + EXTENDED_COLUMNS
    for metric in BASE:
        t, b = arrays(metric)
        # d_z is signed (positive favours the treatment) and equals T / sqrt(n).
        assert table.loc[metric, "cohen-dz"] == pytest.approx(
            table.loc[metric, "T"] / math.sqrt(5), rel=1e-12
        )
        assert table.loc[metric, "p-val (Wilcoxon)"] == pytest.approx(
            pg.wilcoxon(t, b)["p_val"].iloc[0], rel=1e-12
        )
    assert table.loc["ccc_valence", "cohen-dz"] < 0 < table.loc["acc", "cohen-dz"]
    # pingouin's cohen-d is d_av, not d_z: with shared fold difficulty they differ a lot.
    assert table.loc["acc", "cohen-d"] < 0.5 * table.loc["acc", "cohen-dz"]
    assert table.loc["acc", "p-val (Wilcoxon)"] == pytest.approx(0.0625)  # all 5 folds improved
    assert table.loc["acc", "min-dz80"] == pytest.approx(1.68, abs=0.01)
    assert "0.0625" in table.attrs["notes"][0]


def test_bayesian_correlated_ttest_matches_baycomp():
    treat, base = arms()
    table = paired_table(treat, base, rope=0.01)
    assert list(table.columns) == SEED_COLUMNS + ["P(T>B)", "P(rope)", "P(B>T)"]
    for metric in BASE:
        t, b = arrays(metric)
        # baycomp's difference is y - x, so (baseline, treatment) puts "treatment better" on the right.
        left, rope, right = two_on_single(b, t, rope=0.01)
        assert table.loc[metric, "P(T>B)"] == pytest.approx(right)
        assert table.loc[metric, "P(rope)"] == pytest.approx(rope)
        assert table.loc[metric, "P(B>T)"] == pytest.approx(left)
    assert table.loc["acc", "P(T>B)"] > 0.9


def test_repeated_folds_with_seed_keys():
    keys = [(f, s) for f in range(5) for s in ("0", "1")]
    rng = np.random.default_rng(0)
    base = {"acc": {k: 0.5 + 0.02 * k[0] + rng.normal(0, 0.01) for k in keys}}
    treat = {"acc": {k: v + 0.01 + rng.normal(0, 0.01) for k, v in base["acc"].items()}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = paired_table(treat, base, extended=True, n_train=400, n_test=100, rope=0.0, runs=2)
    assert table.loc["acc", "dof"] == 9
    d = np.array([treat["acc"][k] - base["acc"][k] for k in keys])
    t_bf = d.mean() / math.sqrt((1 / 10 + 0.25) * d.var(ddof=1))  # Bouckaert & Frank, k*r = 10
    assert table.loc["acc", "T (NB)"] == pytest.approx(t_bf, rel=1e-12)
    assert table.loc["acc", "P(rope)"] == 0.0
    del treat["acc"][(2, "1")]
    with pytest.raises(ValueError, match=r"\(fold 2, seed 1\)"):
        paired_table(treat, base)
