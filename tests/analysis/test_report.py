"""``python -m analysis compare|report`` against a real SQLite MLflow store of parent runs and trials."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from mlflow import MlflowClient

from analysis.__main__ import main
from analysis.options import Contrast, ReportOptions
from analysis.report import compare_report, sweep_report
from analysis.runs import (
    DuplicateRunsError,
    MissingArmError,
    find_sweep,
    load_trials,
    pair_arms,
)
from erc import contract as C
from tests.analysis.mlflow_store import FUSIONS, LABELS, N_VALID, arm_values, best_offset, oracle_offset

REPO = Path(__file__).resolve().parents[2]

# The Wilcoxon floor warning is expected with 5 folds and is tested in test_stats.py.
# The "ignored N runs" warnings of the in-process calls are asserted on the CLI's stderr instead.
pytestmark = [pytest.mark.filterwarnings("ignore:Wilcoxon"), pytest.mark.filterwarnings("ignore:ignored ")]


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


def test_help_lists_commands(tmp_path):
    res = run_cli(["--help"], tmp_path)
    assert res.returncode == 0
    assert "compare" in res.stdout and "report" in res.stdout and "MLFLOW_TRACKING_URI" in res.stdout


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
    # Printed Markdown: the seed's 8 columns as one table first, then the corrections and Bayes in a second.
    tables = [line for line in res.stdout.splitlines() if line.startswith("| metric |")]
    assert tables[0] == "| metric | T | dof | alternative | p-val | CI95% | cohen-d | BF10 | power |"
    assert tables[1].startswith("| metric | T (NB) | p-val (NB) |") and tables[1].endswith("| P(B>T) |")
    assert "In words: outer-peakl − concat-peakl, mean difference (Nadeau–Bengio 95 % CI): acc +" in res.stdout
    assert "d_av" in res.stdout
    # The FAILED and RUNNING runs are ignored and counted in a warning naming them.
    assert "ignored 2 trial run(s) that are not FINISHED (1 FAILED, 1 RUNNING)" in res.stderr
    assert store["failed"] in res.stderr and store["running"] in res.stderr
    slug = "fusion_outer_vs_concat_labels-peakl"
    files = {f"{slug}.csv", f"{slug}.tex", f"{slug}.md", f"{slug}.png", f"{slug}.html"}
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
    assert "## labels: peakl vs hard (fusion=outer)" in text
    assert "## Per-arm mean ± sd" in text
    for fusion in FUSIONS:
        for labels in LABELS:
            assert f"| {fusion}-{labels} | 5 |" in text
    # The per-arm table shows the metrics a reader compares; the loss stays in arms.csv.
    assert "| arm | runs | acc | macro_f1 | micro_f1 | auroc | ccc_arousal | ccc_valence |" in text
    assert "d_av" in text and "Nadeau & Bengio" in text and "min-dz80" in text
    assert "ignored 2 trial run(s) that are not FINISHED" in text
    names = artifact_names(store["client"], store["parent"], "report")
    assert {
        "report.md",
        "arms.csv",
        "arms.tex",
        "fusion_outer_vs_concat_labels-peakl.csv",
        "labels_peakl_vs_soft_fusion-outer.png",
        "labels_peakl_vs_hard_fusion-outer.png",
        "report.html",
    } <= names
    page = (out / "report.html").read_text()
    assert "<table>" in page and "data:image/png;base64," in page and "src=\"http" not in page
    assert (out / "report.md").read_text() == text.rstrip("\n") + "\n"
    arms = pd.read_csv(out / "arms.csv", index_col="arm")
    acc = arm_values("outer", "peakl", "acc")
    assert arms.loc["outer-peakl", "acc_mean"] == pytest.approx(acc.mean())
    assert "loss_mean" in arms.columns
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


def test_compare_without_extended_columns_in_process(store, tmp_path):
    options = ReportOptions(experiment="erc-sweeps", sweep="demo", tracking_uri=store["uri"], out_dir=tmp_path,
                            log_to_mlflow=False, extended=False, metrics=["acc", "auroc"], echo=False)
    text = compare_report(Contrast(factor="labels", treatment="peakl", baseline="soft", where={"fusion": "outer"}),
                          options)
    assert "| metric | T | dof | alternative | p-val | CI95% | cohen-d | BF10 | power |\n" in text
    assert "With the paper's uncorrected test" in text or "Not significant on any metric" in text
    assert "T (NB)" not in text and "| auroc |" in text
    table = pd.read_csv(tmp_path / "labels_peakl_vs_soft_fusion-outer.csv", index_col="metric")
    ref = pg.ttest(arm_values("outer", "peakl", "auroc"), arm_values("outer", "soft", "auroc"), paired=True)
    assert table.loc["auroc", "CI95%_low"] == pytest.approx(ref["CI95"].iloc[0][0], abs=0.005)


def test_best_values_report_is_labelled_optimistic_and_kept_apart(store, tmp_path):
    client = store["client"]
    text = sweep_report("erc-sweeps", sweep="demo", tracking_uri=store["uri"], out_dir=tmp_path,
                        values="best", echo=False, extended=False)
    assert "values: per-metric best epochs (best/<metric>, the paper's per-metric maxima: optimistic)" in text
    assert "They are optimistic" in text
    arms = pd.read_csv(tmp_path / "arms.csv", index_col="arm")
    acc = arm_values("outer", "peakl", "acc") + best_offset("outer")
    assert arms.loc["outer-peakl", "acc_mean"] == pytest.approx(acc.mean())
    # Logged beside, never over, the default report.
    names = {a.path for a in client.list_artifacts(store["parent"], "report/best")}
    assert "report/best/report.md" in names


def test_report_on_runs_logged_with_plain_mlflow_that_vary_the_fusion_alone(file_store, tmp_path, capsys):
    # Someone's own script: one run per (fold, fusion), both as params, a plain "acc" metric; no tags, no
    # labels, no parent run. The report compares the fusions outright and lists one arm per fusion.
    mlflow.set_experiment("fusions")
    acc = {"concat": [0.60, 0.63, 0.55, 0.62, 0.61], "outer": [0.62, 0.66, 0.56, 0.65, 0.62]}
    for fold in range(5):
        for fusion, values in acc.items():
            with mlflow.start_run():
                mlflow.log_params({"fold": fold, "fusion": fusion, "lr": 0.001})
                mlflow.log_metric("acc", values[fold])
    out = tmp_path / "out"
    assert main(["report", "--tracking-uri", file_store, "--experiment", "fusions", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "# Runs of experiment fusions" in text and "10 finished grid trials, arms concat, outer" in text
    assert "## fusion: outer vs concat\n" in text and "no run carries the factor 'labels'" in text
    assert f"| outer | 5 | {np.mean(acc['outer']):.4f} ± {np.std(acc['outer'], ddof=1):.4f} |" in text
    table = pd.read_csv(out / "fusion_outer_vs_concat.csv", index_col="metric")
    ref = pg.ttest(acc["outer"], acc["concat"], paired=True).iloc[0]
    assert table.loc["acc", "T"] == pytest.approx(ref["T"], rel=1e-9)
    assert list(pd.read_csv(out / "arms.csv", index_col="arm").index) == ["concat", "outer"]
    # No parent run: the files are logged to the experiment's analysis run.
    client = MlflowClient(file_store)
    exp = client.get_experiment_by_name("fusions").experiment_id
    holder = client.search_runs([exp], C.tag_filter({C.ROLE: C.ANALYSIS_ROLE}))[0].info.run_id
    assert "report.html" in artifact_names(client, holder, C.REPORT_DIR)


def test_bad_selection_flags_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report", "--sweep", "demo", "--all-runs"])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["report", "--values", "max"])
    assert exc.value.code == 2 and "invalid choice: 'max'" in capsys.readouterr().err


def test_report_states_the_optimism_and_draws_robustness_curves(store, tmp_path):
    text = sweep_report("erc-sweeps", sweep="demo", tracking_uri=store["uri"], out_dir=tmp_path, echo=False,
                        extended=False, log_to_mlflow=False)
    assert "## Optimism of choosing the epoch on the reported fold" in text
    optimism = pd.read_csv(tmp_path / "optimism.csv", index_col=["arm", "metric"])
    for fusion in FUSIONS:
        row = optimism.loc[(f"{fusion}-peakl", "acc")]
        assert row["oracle − selected"] == pytest.approx(oracle_offset(fusion))
        assert row["best − selected"] == pytest.approx(best_offset(fusion))
        assert row["folds"] == 5
    verdicts = pd.read_csv(tmp_path / "optimism_conclusions.csv")
    assert set(verdicts.columns) >= {"table", "metric", "selected", "oracle", "best", "changes"}
    assert "when the epoch is chosen on the reported fold" in text
    # robustness: a curve per arm, MultiBench's numbers (outer leans on text: its text curve falls faster)
    assert "## Robustness to a missing or noisy modality" in text
    assert (tmp_path / "robustness_acc.png").stat().st_size > 0
    numbers = pd.read_csv(tmp_path / "robustness.csv", index_col=["arm", "modality"])
    acc = numbers[numbers["metric"] == "acc"]
    assert acc.loc[("outer-peakl", "text"), "missing drop"] == pytest.approx(0.2)
    assert acc.loc[("outer-peakl", "audio"), "relative"] > acc.loc[("outer-peakl", "text"), "relative"]
    assert acc.loc[("concat-hard", "audio"), "effective"] == pytest.approx(0.0)  # the reference arm


def test_more_than_two_fusions_add_friedman_post_hoc_and_cd_diagrams(tmp_path, capsys):
    """Five fusions at peakl (and outer at soft, which the Friedman test leaves out): friedman.csv holds
    scipy's statistic on the same fold values, the per-arm table the sizes, one paired table per fusion."""
    from scipy import stats

    rng = np.random.default_rng(0)
    fusions = ["concat", "outer", "audio", "text", "tfn"]
    level = {"concat": 0.50, "outer": 0.52, "audio": 0.30, "text": 0.45, "tfn": 0.51}
    rows = [{"fold": fold, "fusion": f, "labels": "peakl", "acc": level[f] + 0.03 * fold + rng.normal(0, 0.01),
             "macro_f1": level[f] - 0.1 + rng.normal(0, 0.02), C.MODEL_PARAMS: 1000 + 10 * i,
             C.MODEL_FLOPS: 2000 + 20 * i}
            for fold in range(5) for i, f in enumerate(fusions)]
    rows += [{"fold": fold, "fusion": "outer", "labels": "soft", "acc": 0.9, "macro_f1": 0.9, C.MODEL_PARAMS: 1,
              C.MODEL_FLOPS: 1} for fold in range(5)]
    values = pd.DataFrame(rows)
    path = tmp_path / "values.csv"
    values.to_csv(path, index=False)
    out = tmp_path / "out"
    text = sweep_report(ReportOptions(values_csv=path, out_dir=out, log_to_mlflow=False, echo=False,
                                      metrics=("acc", "macro_f1"), control="concat"))
    friedman = pd.read_csv(out / "friedman.csv")
    assert list(friedman.columns) == ["metric", "statistic", "p", "k", "n"]
    peakl = values[values.labels == "peakl"]
    for metric in ("acc", "macro_f1"):
        expected = stats.friedmanchisquare(*(peakl[peakl.fusion == f].sort_values("fold")[metric] for f in fusions))
        row = friedman.set_index("metric").loc[metric]
        assert row["statistic"] == pytest.approx(expected.statistic) and row["p"] == pytest.approx(expected.pvalue)
        assert (row["k"], row["n"]) == (5, 5)
        assert (out / f"cd_{metric}.png").is_file()
    posthoc = pd.read_csv(out / "posthoc.csv")
    assert set(posthoc["arm"]) == {"outer", "audio", "text", "tfn"} and set(posthoc["control"]) == {"concat"}
    # the paired tables stay, each fusion against the control (outer vs concat once)
    for f in ("audio", "text", "tfn"):
        assert (out / f"fusion_{f}_vs_concat_labels-peakl.csv").is_file()
    assert text.count("fusion: outer vs concat") == 1 and "Friedman" in text
    arms = pd.read_csv(out / "arms.csv", index_col="arm")
    assert arms.loc["tfn-peakl", C.MODEL_PARAMS] == 1040 and arms.loc["audio-peakl", C.MODEL_FLOPS] == 2040
    assert "| params" in text or "params |" in text
    # a control that is not among the fusions: said, not a crash
    text = sweep_report(ReportOptions(values_csv=path, out_dir=tmp_path / "o2", log_to_mlflow=False, echo=False,
                                      metrics=("acc",), control="lmf"))
    assert "control fusion 'lmf' is not among" in text
