"""Which runs the reader takes, and their values: erc-sweeps sweeps and runs logged with plain MLflow."""

from __future__ import annotations

import math
import zlib

import mlflow
import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from mlflow import MlflowClient

from analysis import paired_table
from analysis.__main__ import main
from analysis.runs import (
    DuplicateRunsError,
    Sweep,
    Trials,
    find_sweep,
    find_trial_run,
    load_trials,
    metric_values,
    pair_arms,
)
from erc import contract as C
from tests.analysis.mlflow_store import FUSIONS, N_VALID, best_offset, value

pytestmark = [pytest.mark.filterwarnings("ignore:Wilcoxon"), pytest.mark.filterwarnings("ignore:ignored ")]


def test_sweep_lookup_by_name_id_and_unknowns(store):
    client = store["client"]
    assert find_sweep(client, "erc-sweeps").parent_run_id == store["parent"]
    assert find_sweep(client, "erc-sweeps", "old-sweep").parent_run_id == store["old"]
    assert find_sweep(client, "erc-sweeps", store["old"]).name == "old-sweep"
    with pytest.raises(ValueError, match="sweeps there: demo, old-sweep"):
        find_sweep(client, "erc-sweeps", "nope")
    with pytest.raises(ValueError, match="is a trial run, not a sweep's parent run"):
        find_sweep(client, "erc-sweeps", store["failed"])
    with pytest.raises(ValueError, match="experiment 'nope' not found"):
        find_sweep(client, "nope")


def test_all_runs_and_filter_select_runs_across_sweeps(store):
    client = store["client"]
    every = find_sweep(client, "erc-sweeps", all_runs=True)
    assert every.parent_run_id is None and every.scope == "all runs"
    # Both sweeps' outer-peakl fold-0 trials: one table cannot hold both, and neither is picked silently.
    with pytest.raises(DuplicateRunsError, match="fold 0, seed 0, arm outer-peakl"):
        load_trials(client, every)
    # A filter without --sweep reads the whole experiment; role/stage/status rules still hold.
    demo = find_sweep(client, "erc-sweeps", filter_string="tags.sweep = 'demo'")
    assert demo.parent_run_id is None
    with pytest.warns(UserWarning, match="ignored 2 trial run"):
        trials = load_trials(client, demo)
    assert len(trials.runs) == 30 and set(trials.runs["fold"]) == set(range(5))
    assert any(f"{C.STAGE}=search" in n for n in trials.notes)
    # A filter narrows a sweep too.
    narrowed = load_trials(client, find_sweep(client, "erc-sweeps", "demo", filter_string="tags.fold = '1'"))
    assert set(narrowed.runs["fold"]) == {1} and len(narrowed.runs) == 6
    with pytest.raises(ValueError, match="either a sweep or all runs"):
        find_sweep(client, "erc-sweeps", "demo", all_runs=True)


def test_best_values_are_read_from_best_prefix(store):
    client = store["client"]
    sweep = find_sweep(client, "erc-sweeps", "demo")
    selected = load_trials(client, sweep)
    best = load_trials(client, sweep, values="best")
    assert best.values == "best" and best.metrics == selected.metrics
    comp = pair_arms(best, "fusion", "outer", "concat", {"labels": "peakl"}, metrics=["acc"])
    assert comp.treatment_values["acc"] == pytest.approx(
        {f: value(f, "outer", "peakl", "acc") + best_offset("outer") for f in range(5)})
    assert comp.baseline_values["acc"] == pytest.approx(
        {f: value(f, "concat", "peakl", "acc") + best_offset("concat") for f in range(5)})
    with pytest.raises(ValueError, match="values must be one of selected, oracle, best"):
        load_trials(client, sweep, values="max")


def test_another_set_of_values_is_read_from_the_runs_already_read(store):
    """The report reads oracle/* and best/* beside the selected values: from the same runs, no new query."""
    client = store["client"]
    sweep = find_sweep(client, "erc-sweeps", "demo")
    selected = load_trials(client, sweep)
    assert len(selected.source) >= len(selected.runs)

    class NoQueries:  # the runs are all there: asking the store again is an error here
        def search_runs(self, *args, **kwargs):
            raise AssertionError("queried the store again")

    for values in ("best", "oracle"):
        again = load_trials(NoQueries(), sweep, values, runs=selected.source)
        fresh = load_trials(client, sweep, values)
        pd.testing.assert_frame_equal(again.runs, fresh.runs)
        assert again.metrics == fresh.metrics and again.values == values


def test_metric_values_prefer_the_prefix_then_plain_keys():
    from mlflow.entities import Metric, Run, RunData, RunInfo

    def run(metrics: dict[str, float]) -> Run:
        info = RunInfo("r", "0", "u", "FINISHED", 0, 1, "active")
        return Run(info, RunData(metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()]))

    mixed = run({"selected/acc": 0.5, "acc": 0.9, "f1": 0.4, "valid/acc": 0.1, "best/acc": 0.7, "embed/x": 1.0})
    assert metric_values(mixed) == {"acc": 0.5, "f1": 0.4}
    assert metric_values(mixed, "best") == {"acc": 0.7}


def test_repeated_seeds_pair_on_fold_and_seed(store):
    client = store["client"]
    trials = load_trials(client, find_sweep(client, "repeats"))
    comp = pair_arms(trials, "fusion", "outer", "concat", metrics=["acc"])
    keys = [(f, str(s)) for f in range(3) for s in (0, 1)]
    assert sorted(comp.treatment_values["acc"]) == keys and comp.runs == 2
    table = paired_table(
        comp.treatment_values, comp.baseline_values, extended=True, n_train=comp.n_train, n_test=comp.n_test
    )
    d = np.array(
        [
            value(f, "outer", "peakl", "acc") + 0.004 * int(s) - value(f, "concat", "peakl", "acc")
            for f, s in keys
        ]
    )
    ratio = np.mean([N_VALID[f] for f, _ in keys]) / np.mean([500 - N_VALID[f] for f, _ in keys])
    assert table.loc["acc", "dof"] == 5
    # Bouckaert & Frank: variance factor 1/(k*r) + n_test/n_train with k*r = 6 differences.
    assert table.loc["acc", "T (NB)"] == pytest.approx(d.mean() / math.sqrt((1 / 6 + ratio) * d.var(ddof=1)))
def test_missing_fold_sizes_fall_back_to_equal_folds_with_a_note():
    rows = [
        {
            "run_id": f"r{f}{fu}",
            "fold": f,
            "seed": "0",
            "fusion": fu,
            "labels": "peakl",
            "arm": f"{fu}-peakl",
            "n_train": None,
            "n_valid": None,
            "acc": value(f, fu, "peakl", "acc"),
        }
        for f in range(5)
        for fu in FUSIONS
    ]
    trials = Trials(Sweep("0", "e", "p" * 32, "s"), pd.DataFrame(rows), metrics=["acc"])
    comp = pair_arms(trials, "fusion", "outer", "concat")
    assert "n_test/n_train = 1/(k-1) with k = 5" in comp.notes[0]
    table = paired_table(
        comp.treatment_values, comp.baseline_values, extended=True, n_train=comp.n_train, n_test=comp.n_test
    )
    assert table.loc["acc", "T"] / table.loc["acc", "T (NB)"] == pytest.approx(1.5)  # sqrt((1/5 + 1/4) * 5)


def test_find_trial_run_picks_the_finished_grid_trial(store):
    client = store["client"]
    sweep, run = find_trial_run(client, "erc-sweeps", "outer-peakl", 2)  # fold 2 also has a FAILED attempt
    assert sweep.parent_run_id == store["parent"] and run.info.run_id != store["failed"]
    assert run.info.status == "FINISHED" and run.data.tags[C.FOLD] == "2"
    with pytest.raises(ValueError, match="no grid trial with arm 'outer-mix', fold 0 .* trials there: concat-hard"):
        find_trial_run(client, "erc-sweeps", "outer-mix", 0)


# ------------------------------------------------------------------ runs a researcher logged with plain MLflow

BASE = [0.55, 0.62, 0.5, 0.58, 0.6]
EFFECT = {"adam": 0.03, "sgd": 0.0, "rmsprop": 0.01}


def researcher_acc(fold: int, optimizer: str) -> float:
    rng = np.random.default_rng(zlib.crc32(f"{fold}{optimizer}".encode()))
    return BASE[fold] + EFFECT[optimizer] + float(rng.normal(0, 0.005))


@pytest.fixture
def researcher_store(file_store) -> dict:
    """An experiment logged by someone's own script: a parent run (no role tag) holding one nested run per
    (fold, optimizer), the fold and optimizer as params, a plain ``acc`` metric; one crashed run.
    """
    uri = file_store
    mlflow.set_experiment("my-ablation")
    with mlflow.start_run(run_name="cv") as parent:
        for fold in range(5):
            for optimizer in EFFECT:
                with mlflow.start_run(nested=True):
                    mlflow.log_params({"fold": fold, "optimizer": optimizer, "lr": 0.001})
                    for epoch in range(3):  # the last logged step is the run's value
                        mlflow.log_metric("acc", researcher_acc(fold, optimizer) - 0.01 * (2 - epoch), step=epoch)
        with pytest.raises(RuntimeError), mlflow.start_run(nested=True) as crashed:
            mlflow.log_params({"fold": 0, "optimizer": "adam"})
            mlflow.log_metric("acc", 9.0)
            raise RuntimeError("out of memory")
    return {"uri": uri, "client": MlflowClient(uri), "parent": parent.info.run_id, "crashed": crashed.info.run_id}


def test_compare_runs_logged_with_plain_mlflow(researcher_store, tmp_path, capsys):
    uri, client = researcher_store["uri"], researcher_store["client"]
    # No erc-sweeps parent run (role=parent): every run of the experiment; the run holding the others is
    # not a trial and raises no "without a fold" note; the crashed run is FAILED and left out.
    sweep = find_sweep(client, "my-ablation")
    assert sweep.parent_run_id is None
    with pytest.warns(UserWarning, match="1 FAILED") as seen:
        trials = load_trials(client, sweep)
    assert not any("without a fold" in str(w.message) for w in seen)
    assert len(trials.runs) == 15 and trials.metrics == ["acc"] and "optimizer" in trials.factors
    out = tmp_path / "out"
    argv = ["compare", "--tracking-uri", uri, "--experiment", "my-ablation", "--factor", "optimizer",
            "--treatment", "adam", "--baseline", "sgd", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr()
    assert "Treatment optimizer=adam vs baseline optimizer=sgd" in printed.out
    assert "equal folds" in printed.out and "no fold sizes were logged" in printed.out
    table = pd.read_csv(out / "optimizer_adam_vs_sgd.csv", index_col="metric")
    adam = [researcher_acc(f, "adam") for f in range(5)]
    sgd = [researcher_acc(f, "sgd") for f in range(5)]
    ref = pg.ttest(adam, sgd, paired=True).iloc[0]
    assert list(table.index) == ["acc"]
    assert table.loc["acc", "T"] == pytest.approx(ref["T"], rel=1e-9)
    assert table.loc["acc", "p-val"] == pytest.approx(ref["p_val"], rel=1e-9)
    # No parent run to log to: one analysis run (role=analysis) holds the files, reused on a rerun and never
    # read as a trial.
    assert main(argv) == 0
    holders = client.search_runs([sweep.experiment_id], C.tag_filter({C.ROLE: C.ANALYSIS_ROLE}))
    assert len(holders) == 1
    logged = {a.path for a in client.list_artifacts(holders[0].info.run_id, C.COMPARE_DIR)}
    assert f"{C.COMPARE_DIR}/optimizer_adam_vs_sgd.csv" in logged
    assert len(load_trials(client, find_sweep(client, "my-ablation")).runs) == 15


def test_plain_runs_by_parent_filter_and_clear_errors(researcher_store, tmp_path, capsys):
    uri, client, parent = researcher_store["uri"], researcher_store["client"], researcher_store["parent"]
    # Their parent run (no role tag) selects its children like a sweep's parent run.
    by_parent = load_trials(client, find_sweep(client, "my-ablation", parent))
    assert by_parent.sweep.parent_run_id == parent and len(by_parent.runs) == 15
    comp = pair_arms(by_parent, "optimizer", "rmsprop", "sgd")
    assert comp.treatment_values["acc"] == pytest.approx({f: researcher_acc(f, "rmsprop") for f in range(5)})
    # --filter narrows the runs before pairing: with only adam left the baseline is missing, and the
    # error says which values are there.
    common = ["compare", "--tracking-uri", uri, "--experiment", "my-ablation", "--no-log", "--out",
              str(tmp_path)]
    code = main([*common, "--filter", "params.optimizer = 'adam'", "--factor", "optimizer",
                 "--treatment", "adam", "--baseline", "sgd"])
    assert code == 2 and "optimizer values present: adam" in capsys.readouterr().err
    assert main([*common, "--factor", "momentum", "--treatment", "a", "--baseline", "b"]) == 2
    assert "unknown factor 'momentum'" in capsys.readouterr().err
    assert main([*common, "--filter", "params.optimizer = = 'x'", "--factor", "optimizer", "--treatment",
                 "adam", "--baseline", "sgd"]) == 2
    assert "error:" in capsys.readouterr().err
