"""benchmarks/gpu_suite.py on a CPU with tiny models: every GPU figure's code path runs (real Ray, Tune,
Ray Data, MLflow), the JSON line carries every figure, and one measurement's failure spares the rest."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest

from tests.sweep_helpers import REPO, run

pytestmark = pytest.mark.slow

SUITE = [sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--device", "cpu", "--tiny"]
FIGURES = ("finetune_step_s_fp32", "finetune_step_s_bf16", "peak_memory_mb", "trials_per_gpu_auto",
           "packed_vs_single_throughput", "extraction_utt_per_s")


def _suite(tmp_path, *args: str, fail: str | None = None):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "ERC_GPU_SUITE_FAIL")}
    if fail:
        env["ERC_GPU_SUITE_FAIL"] = fail
    # the suite's budget is 5 minutes on a 2-core machine; the rest is slack for a machine others share
    proc = run([*SUITE, "--work", str(tmp_path / "work"), *args], cwd=tmp_path, timeout=480, env=env)
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])


def _positive(value) -> bool:
    return isinstance(value, float | int) and math.isfinite(value) and value > 0


def test_tiny_suite_measures_every_figure_on_the_gpu_code_paths(tmp_path):
    from sweeps.settings import SweepSettings

    fusions = SweepSettings(cache_dir=tmp_path).fusions  # the sweep's default grid, as the suite runs it
    proc, figures = _suite(tmp_path)
    assert proc.returncode == 0
    assert figures["errors"] == {}
    assert set(FIGURES) <= set(figures)
    assert figures["device"] == "cpu" and figures["sizes"] == "tiny" and figures["gpu"] is None
    for key in ("finetune_step_s_fp32", "finetune_step_s_bf16", "peak_memory_mb", "peak_memory_mb_bf16",
                "packed_vs_single_throughput", "extraction_utt_per_s"):
        assert _positive(figures[key]), key
    # the probes of both paper grids ran one step each per fusion at the grid's batch; a CPU has no
    # GPU memory figure, so auto chooses nothing here
    assert figures["trials_per_gpu_auto"] == {"finetune": None, "cached": None}
    for grid, probes in figures["auto_probes"].items():
        assert [p["fusion"] for p in probes] == fusions, grid
        assert all(p["rows"] == p["batch_size"] == 8 and math.isfinite(p["loss"]) and p["device"] == "cpu"
                   for p in probes), grid
    per_hour = figures["trials_per_hour"]
    assert per_hour["trials"] == len(fusions) and _positive(per_hour["packed"]) and _positive(per_hour["single"])
    assert per_hour["fraction_from"] == "CPUs" and 0 < per_hour["packed_gpus_per_trial"] <= 1
    assert figures["extraction"]["actors"] == 1 and figures["extraction"]["utterances"] == 80


def test_a_failed_measurement_is_recorded_and_the_others_still_run(tmp_path):
    proc, figures = _suite(tmp_path, "--only", "finetune_bf16,finetune_fp32", fail="finetune_bf16")
    assert proc.returncode == 1
    assert figures["errors"] == {"finetune_bf16": "RuntimeError: injected failure (ERC_GPU_SUITE_FAIL=finetune_bf16)"}
    assert figures["finetune_step_s_bf16"] is None and figures["peak_memory_mb_bf16"] is None
    assert _positive(figures["finetune_step_s_fp32"]) and _positive(figures["peak_memory_mb"])
    assert figures["extraction_utt_per_s"] is None and "extraction" not in figures["seconds"]  # not asked for
