"""Every benchmark runs at its smallest arguments, so none rots between the times someone measures.

Not a measurement: each script runs as a user runs it (a subprocess, its own cache) and must exit 0
with a JSON object as the last line it prints (what the README's figures are copied from).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sweep_helpers import imported

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"

# each benchmark's smallest arguments
SMALLEST: dict[str, list[str]] = {
    # its warm run is its cold run's code again (here the shared cache is cold only for the first)
    "demo_sweep.py": ["--smoke-test", "--rerun", "--no-warm"],
    "extraction.py": ["--mid-utterances", "4", "--check", "4", "--cluster-utterances", "8", "--cluster-jobs", "small", "--head-epochs", "1",
                      "--limit", "20", "--batch-seconds", "8"],
    "finetune_step.py": ["--steps", "1", "--batch-size", "2", "--sizes", "demo"],
    "honest_cost.py": ["--folds", "1", "--epochs", "2"],
    "head_vs_end_to_end.py": ["--utterances", "8", "--batch-size", "4", "--paper-batch", "1", "--paper-steps", "1"],
    "per_arm.py": ["--smoke-test", "--tune-per-arm", "1"],
    # its cold phase is the same code as rerun and trial, and demo_sweep has built the shared cache
    "profile_job.py": ["--smoke-test", "rerun", "trial"],
    # its three parts run above on their own: here only its table and JSON line
    "targets.py": ["--smoke-test", "--skip", "demo_sweep", "per_arm", "tune_overhead"],
    # its reference run (a fresh trial process per trial) is one flag of the same code; two folds, so that
    # its split of the overhead (a second, one-fold grid) runs too
    "tune_overhead.py": ["--folds", "2", "--no-reference"],
}

# figures a benchmark computes only from several of its runs: present (not null) at the arguments above
COMPUTED = {"tune_overhead.py": ("overhead_s_per_trial", "fixed_start_s", "marginal_overhead_s_per_trial")}


# benchmarks with a test module of their own, which checks their figures too
OWN_TEST = {"gpu_suite.py": "tests/benchmarks/test_gpu_suite.py"}


def test_every_benchmark_is_run_here():
    assert set(SMALLEST) | set(OWN_TEST) == {p.name for p in BENCHMARKS.glob("*.py")}
    assert all((REPO / test).is_file() for test in OWN_TEST.values())


# Benchmarks that use the demo share one cache, so its corpus, encoders and features are built once
# for all of them (demo_sweep, first, builds it). demo_sweep and profile_job time a cold start, so here
# theirs is warm: what this test checks is that they run; .ci/run's smoke test starts truly cold.
SHARED_CACHE = {"demo_sweep.py": lambda cache: ["--cache", str(cache)],
                "profile_job.py": lambda cache: ["--cache", str(cache)],
                "extraction.py": lambda cache: ["--work", str(cache / "demo")],
                "honest_cost.py": lambda cache: ["--cache", str(cache)],
                "per_arm.py": lambda cache: ["--cache-dir", str(cache)]}


# What a benchmark's --help and usage errors must not wait for (seconds each to import here).
HEAVY = frozenset({"torch", "transformers", "ray", "mlflow", "numpy", "pandas", "matplotlib", "optuna"})


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_help_and_usage_errors_come_before_any_heavy_import(script):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    helped = subprocess.run([sys.executable, "-X", "importtime", str(BENCHMARKS / script), "--help"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert helped.stdout.startswith("usage:")
    assert not imported(helped.stderr) & HEAVY, sorted(imported(helped.stderr) & HEAVY)
    wrong = subprocess.run([sys.executable, "-X", "importtime", str(BENCHMARKS / script), "--no-such-flag"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert wrong.returncode == 2 and "error: unrecognized arguments: --no-such-flag" in wrong.stderr
    assert not imported(wrong.stderr) & HEAVY


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-cache")


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMALLEST))
def test_benchmark_runs_and_ends_with_one_json_line(script, tmp_path, shared_cache):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    cache = shared_cache if script in SHARED_CACHE else tmp_path / "cache"
    env.update(ERC_CACHE=str(cache), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    args = [*SMALLEST[script], *(SHARED_CACHE[script](cache) if script in SHARED_CACHE else [])]
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800, check=False)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(figures, dict) and figures
    assert all(isinstance(figures[key], int | float) for key in COMPUTED.get(script, ())), figures
