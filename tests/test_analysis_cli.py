"""``python -m analysis`` against a real SQLite MLflow store filled with a parent run and its trials."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

import analysis.__main__ as cli
from analysis import paired_table
from analysis.__main__ import main
from analysis.report import compare_report, sweep_report
from analysis.runs import (
    DEFAULT_METRICS,
    DuplicateRunsError,
    MissingArmError,
    Sweep,
    Trials,
    find_sweep,
    load_trials,
    pair_arms,
)

REPO = Path(__file__).resolve().parents[1]
METRICS = ["acc", "macro_f1", "micro_f1", "auroc", "ccc_valence", "ccc_arousal", "loss"]
FUSIONS = ["concat", "outer"]
LABELS = ["hard", "soft", "peakl"]
N_VALID = [100, 110, 90, 105, 95]  # unequal session folds of a 500-utterance corpus
ARM_EFFECT = {
    ("concat", "hard"): 0.0,
    ("concat", "soft"): 0.01,
    ("concat", "peakl"): 0.015,
    ("outer", "hard"): 0.01,
    ("outer", "soft"): 0.02,
    ("outer", "peakl"): 0.035,
}

# The Wilcoxon floor warning is expected with 5 folds and is tested in test_analysis_stats.py.
# The "ignored N runs" warnings of the in-process calls are asserted on the CLI's stderr instead.
pytestmark = [pytest.mark.filterwarnings("ignore:Wilcoxon"), pytest.mark.filterwarnings("ignore:ignored ")]


def value(fold: int, fusion: str, labels: str, metric: str) -> float:
    """Deterministic metric with shared fold difficulty, an arm effect and per-run noise."""
    rng = np.random.default_rng(zlib.crc32(f"{fold}{fusion}{labels}{metric}".encode()))
    fold_base = [0.55, 0.62, 0.5, 0.58, 0.6][fold]
    return float(
        fold_base + ARM_EFFECT[(fusion, labels)] + rng.normal(0, 0.006) + 0.01 * METRICS.index(metric)
    )


def make_parent(client: MlflowClient, exp_id: str, sweep: str, start: int) -> str:
    return client.create_run(
        exp_id, start_time=start, tags={"sweep": sweep, "role": "parent"}, run_name=sweep
    ).info.run_id


def make_trial(
    client: MlflowClient,
    exp_id: str,
    parent: str,
    sweep: str,
    fold: int,
    fusion: str,
    labels: str,
    *,
    status: str | None = "FINISHED",
    stage: str = "grid",
    metrics: dict[str, float] | None = None,
    seed: int = 0,
) -> str:
    tags = {
        "mlflow.parentRunId": parent,
        "sweep": sweep,
        "role": "trial",
        "stage": stage,
        "fold": str(fold),
        "fusion": fusion,
        "labels": labels,
        "arm": f"{fusion}-{labels}",
        "seed": str(seed),
    }
    run_id = client.create_run(exp_id, tags=tags, run_name=f"{fusion}-{labels}-f{fold}").info.run_id
    ts = int(time.time() * 1000)
    values = metrics if metrics is not None else {m: value(fold, fusion, labels, m) for m in METRICS}
    logged = [Metric(f"selected/{m}", v, ts, 0) for m, v in values.items()]
    logged += [Metric(f"valid/{m}", v - 0.01 * (2 - e), ts, e) for m, v in values.items() for e in range(3)]
    params = [Param("n_train", str(500 - N_VALID[fold])), Param("n_valid", str(N_VALID[fold]))]
    client.log_batch(run_id, metrics=logged, params=params)
    if status is not None:
        client.set_terminated(run_id, status)
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One SQLite store: a full 30-trial sweep (latest), an older sweep, a sweep with duplicates, a partial one."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("erc-sweeps", artifact_location=(root / "artifacts").as_uri())
    now = int(time.time() * 1000)
    old = make_parent(client, exp, "old-sweep", now - 3_600_000)
    make_trial(client, exp, old, "old-sweep", 0, "outer", "peakl")
    parent = make_parent(client, exp, "demo", now)
    for fold in range(5):
        for fusion in FUSIONS:
            for labels in LABELS:
                make_trial(client, exp, parent, "demo", fold, fusion, labels)
    # Noise the tables must ignore: a failed attempt and a still-running trial with wild values for
    # keys that already have a finished run, and a finished hyper-parameter search run.
    wild = {m: 9.0 for m in METRICS}
    failed = make_trial(client, exp, parent, "demo", 2, "outer", "peakl", status="FAILED", metrics=wild)
    running = make_trial(client, exp, parent, "demo", 3, "concat", "peakl", status=None, metrics=wild)
    make_trial(client, exp, parent, "demo", 1, "outer", "peakl", stage="search", metrics=wild)

    # Duplicates: the error is raised while loading, whatever else the sweep holds.
    dup_exp = client.create_experiment("dupes", artifact_location=(root / "dup-artifacts").as_uri())
    dup_parent = make_parent(client, dup_exp, "dup", now)
    make_trial(client, dup_exp, dup_parent, "dup", 3, "concat", "peakl")
    make_trial(client, dup_exp, dup_parent, "dup", 4, "concat", "peakl")
    dup_a = make_trial(client, dup_exp, dup_parent, "dup", 4, "concat", "peakl")

    # Partial: both peakl arms on folds 0-2, outer-soft only on folds 0-1, no hard arm.
    part_exp = client.create_experiment("partial", artifact_location=(root / "part-artifacts").as_uri())
    part_parent = make_parent(client, part_exp, "part", now)
    for fold in range(3):
        for fusion in FUSIONS:
            make_trial(client, part_exp, part_parent, "part", fold, fusion, "peakl")
    for fold in range(2):
        make_trial(client, part_exp, part_parent, "part", fold, "outer", "soft")
    # Repeats: two seeds per fold, paired on (fold, seed).
    rep_exp = client.create_experiment("repeats", artifact_location=(root / "rep-artifacts").as_uri())
    rep_parent = make_parent(client, rep_exp, "rep", now)
    for fold in range(3):
        for seed in (0, 1):
            for fusion in FUSIONS:
                vals = {"acc": value(fold, fusion, "peakl", "acc") + 0.004 * seed * (fusion == "outer")}
                make_trial(client, rep_exp, rep_parent, "rep", fold, fusion, "peakl", metrics=vals, seed=seed)
    return {
        "uri": uri,
        "client": client,
        "parent": parent,
        "old": old,
        "failed": failed,
        "running": running,
        "dup_parent": dup_parent,
        "dup_extra": dup_a,
        "part_parent": part_parent,
    }


def run_cli(args: list[str], cwd: Path, env_uri: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if env_uri:
        env["MLFLOW_TRACKING_URI"] = env_uri
    return subprocess.run(
        [sys.executable, "-m", "analysis", *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def artifact_names(client: MlflowClient, run_id: str, path: str) -> set[str]:
    return {Path(f.path).name for f in client.list_artifacts(run_id, path)}


def arm_values(fusion: str, labels: str, metric: str) -> np.ndarray:
    return np.array([value(f, fusion, labels, metric) for f in range(5)])


def test_help_lists_commands(tmp_path):
    res = run_cli(["--help"], tmp_path)
    assert res.returncode == 0
    assert "compare" in res.stdout and "report" in res.stdout and "MLFLOW_TRACKING_URI" in res.stdout
    assert cli.DEFAULT_METRICS == DEFAULT_METRICS  # the CLI's copy (kept to make --help fast) agrees


def test_compare_reads_sqlite_store_writes_and_logs_files(store, tmp_path):
    out = tmp_path / "out"
    res = run_cli(
        [
            "compare",
            "--tracking-uri",
            store["uri"],
            "--experiment",
            "erc-sweeps",
            "--sweep",
            "demo",
            "--factor",
            "fusion",
            "--treatment",
            "outer",
            "--baseline",
            "concat",
            "--where",
            "labels=peakl",
            "--out",
            str(out),
            "--rope",
            "0.01",
        ],
        tmp_path,
    )
    assert res.returncode == 0, res.stderr
    # Printed Markdown with the seed's column names first, then the extended and Bayesian ones.
    assert (
        "| metric | T | dof | alternative | p-val | CI95% | cohen-d | BF10 | power | T (NB) |" in res.stdout
    )
    assert "P(T>B)" in res.stdout and "d_av" in res.stdout
    # The FAILED and RUNNING runs are ignored and counted in a warning naming them.
    assert "ignored 2 trial run(s) that are not FINISHED (1 FAILED, 1 RUNNING)" in res.stderr
    assert store["failed"] in res.stderr and store["running"] in res.stderr
    slug = "fusion_outer_vs_concat_labels-peakl"
    files = {f"{slug}.csv", f"{slug}.tex", f"{slug}.md", f"{slug}.png"}
    assert {p.name for p in out.iterdir()} == files
    assert (out / f"{slug}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "\\begin{tabular}" in (out / f"{slug}.tex").read_text()
    assert (out / f"{slug}.md").read_text().strip() in res.stdout
    # The numbers are pingouin's on the values the trials logged (wild values of ignored runs excluded).
    table = pd.read_csv(out / f"{slug}.csv", index_col="metric")
    assert list(table.index) == ["acc", "macro_f1", "micro_f1", "ccc_arousal", "ccc_valence"]
    for metric in table.index:
        t, b = arm_values("outer", "peakl", metric), arm_values("concat", "peakl", metric)
        ref = pg.ttest(t, b, paired=True).iloc[0]
        assert table.loc[metric, "T"] == pytest.approx(ref["T"], rel=1e-9)
        assert table.loc[metric, "p-val"] == pytest.approx(ref["p_val"], rel=1e-9)
        # NB correction from the logged fold sizes.
        ratio = np.mean(N_VALID) / np.mean([500 - n for n in N_VALID])
        d = t - b
        t_nb = d.mean() / math.sqrt((1 / 5 + ratio) * d.var(ddof=1))
        assert table.loc[metric, "T (NB)"] == pytest.approx(t_nb, rel=1e-9)
    # Logged as artifacts of the sweep's parent run.
    assert artifact_names(store["client"], store["parent"], "compare") == files


def test_report_via_env_uri_prints_both_tables_and_logs_them(store, tmp_path):
    out = tmp_path / "rep"
    # No --sweep: the latest parent run ("demo", not "old-sweep"); URI from MLFLOW_TRACKING_URI.
    res = run_cli(["report", "--experiment", "erc-sweeps", "--out", str(out)], tmp_path, env_uri=store["uri"])
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "# Sweep demo" in text and store["parent"] in text
    assert "## fusion: outer vs concat (labels=peakl)" in text
    assert "## labels: peakl vs soft (fusion=outer)" in text
    assert "## Per-arm mean ± sd" in text
    for fusion in FUSIONS:
        for labels in LABELS:
            assert f"| {fusion}-{labels} | 5 |" in text
    assert "d_av" in text and "Nadeau & Bengio" in text and "min-dz80" in text
    assert "ignored 2 trial run(s) that are not FINISHED" in text
    names = artifact_names(store["client"], store["parent"], "report")
    assert {
        "report.md",
        "arms.csv",
        "arms.tex",
        "fusion_outer_vs_concat_labels-peakl.csv",
        "labels_peakl_vs_soft_fusion-outer.png",
    } <= names
    assert (out / "report.md").read_text() == text.rstrip("\n") + "\n"
    arms = pd.read_csv(out / "arms.csv", index_col="arm")
    acc = arm_values("outer", "peakl", "acc")
    assert arms.loc["outer-peakl", "acc_mean"] == pytest.approx(acc.mean())
    assert arms.loc["outer-peakl", "acc_sd"] == pytest.approx(acc.std(ddof=1))
    assert list(arms.index) == [f"{f}-{lab}" for f in FUSIONS for lab in LABELS]


def test_duplicate_finished_runs_are_an_error_naming_them(store, tmp_path, capsys):
    # The CLI's main() in-process: the subprocess path is covered above, and a third interpreter
    # start-up (imports of MLflow, pingouin, matplotlib) would double this file's run time.
    argv = ["report", "--tracking-uri", store["uri"], "--experiment", "dupes", "--sweep", store["dup_parent"]]
    assert main([*argv, "--no-log", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "error: several FINISHED runs for the same (fold, seed, arm)" in err
    assert "fold 4, seed 0, arm concat-peakl" in err and store["dup_extra"] in err
    assert "fold 3" not in err
    client = store["client"]
    with pytest.raises(DuplicateRunsError):
        load_trials(client, find_sweep(client, "dupes"))


def test_partial_sweep_report_explains_what_it_cannot_compute(store, tmp_path, capsys):
    text = sweep_report("partial", tracking_uri=store["uri"], out_dir=tmp_path / "p", extended=True)
    assert "## fusion: outer vs concat (labels=peakl)" in text and "| acc |" in text
    assert "Table not computed: cannot pair folds" in text
    assert "'acc': missing from baseline: fold 2" in text
    assert "not computed: cannot pair folds" in capsys.readouterr().err
    assert "report.md" in artifact_names(store["client"], store["part_parent"], "report")
    trials = load_trials(store["client"], find_sweep(store["client"], "partial", "part"))
    with pytest.raises(MissingArmError, match="no finished grid trials with labels=hard"):
        pair_arms(trials, "labels", "hard", "peakl", {"fusion": "outer"})
    with pytest.raises(ValueError, match="several arms per fold: outer-peakl, outer-soft"):
        pair_arms(trials, "fusion", "outer", "concat")


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


def test_compare_without_extended_columns_in_process(store, tmp_path):
    text = compare_report(
        "erc-sweeps",
        "labels",
        "peakl",
        "soft",
        {"fusion": "outer"},
        sweep="demo",
        tracking_uri=store["uri"],
        out_dir=tmp_path,
        log_to_mlflow=False,
        extended=False,
        metrics=["acc", "auroc"],
        echo=False,
    )
    assert "| metric | T | dof | alternative | p-val | CI95% | cohen-d | BF10 | power |\n" in text
    assert "T (NB)" not in text and "| auroc |" in text
    table = pd.read_csv(tmp_path / "labels_peakl_vs_soft_fusion-outer.csv", index_col="metric")
    ref = pg.ttest(arm_values("outer", "peakl", "auroc"), arm_values("outer", "soft", "auroc"), paired=True)
    assert table.loc["auroc", "CI95%_low"] == pytest.approx(ref["CI95"].iloc[0][0], abs=0.005)


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
