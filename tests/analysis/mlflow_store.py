"""A real SQLite MLflow store filled the way erc-sweeps fills it: parent runs and their trial runs.

Metric values are deterministic (``value``), so tests can recompute every table from them.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from erc import contract as C

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

def value(fold: int, fusion: str, labels: str, metric: str) -> float:
    """Deterministic metric with shared fold difficulty, an arm effect and per-run noise."""
    rng = np.random.default_rng(zlib.crc32(f"{fold}{fusion}{labels}{metric}".encode()))
    fold_base = [0.55, 0.62, 0.5, 0.58, 0.6][fold]
    return float(
        fold_base + ARM_EFFECT[(fusion, labels)] + rng.normal(0, 0.006) + 0.01 * METRICS.index(metric)
    )


def best_offset(fusion: str) -> float:
    """best/<m> - selected/<m>: per-metric maxima sit above the selected epoch, more so for outer."""
    return 0.03 if fusion == "outer" else 0.02


def oracle_offset(fusion: str) -> float:
    """oracle/<m> - selected/<m>: the epoch the reported fold picks sits above the dev-chosen one."""
    return 0.012 if fusion == "outer" else 0.004


def robust_drop(fusion: str, modality: str) -> float:
    """How much a missing modality costs (robust/missing_<modality>/<m> = selected - this); noise at σ
    costs σ/4 of it (outer leans on text, concat on audio)."""
    return {("outer", "audio"): 0.05, ("outer", "text"): 0.2, ("concat", "audio"): 0.2,
            ("concat", "text"): 0.05}[(fusion, modality)]


def make_parent(client: MlflowClient, exp_id: str, sweep: str, start: int) -> str:
    return client.create_run(
        exp_id, start_time=start, tags={C.SWEEP: sweep, C.ROLE: C.PARENT_ROLE}, run_name=sweep
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
        C.PARENT_RUN_ID: parent,
        C.SWEEP: sweep,
        C.ROLE: C.TRIAL_ROLE,
        C.STAGE: stage,
        C.FOLD: str(fold),
        C.FUSION: fusion,
        C.LABELS: labels,
        C.ARM: C.arm_name(fusion, labels),
        C.SEED: str(seed),
    }
    run_id = client.create_run(exp_id, tags=tags, run_name=f"{fusion}-{labels}-f{fold}").info.run_id
    ts = int(time.time() * 1000)
    values = metrics if metrics is not None else {m: value(fold, fusion, labels, m) for m in METRICS}
    logged = [Metric(C.SELECTED_PREFIX + m, v, ts, 0) for m, v in values.items()]
    logged += [Metric(C.BEST_PREFIX + m, v + best_offset(fusion), ts, 0) for m, v in values.items()]
    logged += [Metric(C.ORACLE_PREFIX + m, v + oracle_offset(fusion), ts, 0) for m, v in values.items()]
    for modality in ("audio", "text"):
        drop = robust_drop(fusion, modality)
        logged += [Metric(f"{C.ROBUST_PREFIX}missing_{modality}/{m}", v - drop, ts, 0) for m, v in values.items()]
        logged += [Metric(f"{C.ROBUST_PREFIX}noise_{modality}_{s:g}/{m}", v - drop * s / 4, ts, 0)
                   for m, v in values.items() for s in (0.5, 1.0, 2.0)]
    logged += [Metric(C.VALID_PREFIX + m, v - 0.01 * (2 - e), ts, e) for m, v in values.items() for e in range(3)]
    params = [Param(C.N_TRAIN, str(500 - N_VALID[fold])), Param(C.N_VALID, str(N_VALID[fold]))]
    client.log_batch(run_id, metrics=logged, params=params)
    if status is not None:
        client.set_terminated(run_id, status)
    return run_id


def build_store(root: Path) -> dict:
    """One SQLite store: a full 30-trial sweep (latest), an older sweep, a sweep with duplicates, a partial one."""
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




def arm_values(fusion: str, labels: str, metric: str) -> np.ndarray:
    return np.array([value(f, fusion, labels, metric) for f in range(5)])
