"""sweeps/gpus.py: --gpus-per-trial auto on a real (GPU-less) Ray runtime; the probe runs a trial's step."""

from __future__ import annotations

import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import ray

from sweeps.gpus import probe_configs, probe_sample, resolve_gpus_per_trial, run_probe, run_probes
from sweeps.prepare import Prepared
from sweeps.settings import SweepSettings
from tests.sweep_helpers import REPO, run
from tests.synthetic import synthetic_features


def _prepared(table) -> Prepared:
    return Prepared(table=table, corpus_name="synthetic", audio_encoder="a", text_encoder="t", feature_dir=None,
                    excluded_csv=None)


def test_auto_means_zero_without_a_gpu_and_an_explicit_fraction_wins(tmp_path):
    ray.init(address="local", num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        prepared = _prepared(synthetic_features(n=50))
        assert resolve_gpus_per_trial(SweepSettings(cache_dir=tmp_path), prepared, {}) == 0.0
        assert resolve_gpus_per_trial(SweepSettings(cache_dir=tmp_path, gpus_per_trial=0.5), prepared, {}) == 0.5
    finally:
        ray.shutdown()


def test_probe_takes_the_largest_batch_and_the_longest_inputs(demo_root, demo_encoders, tmp_path):
    settings = SweepSettings(cache_dir=tmp_path, fusions=["concat", "outer"],
                             arm_hparams={"outer-peakl": {"batch_size": 48}})
    configs = probe_configs(settings)
    assert [c["fusion"] for c in configs] == ["concat", "outer"] and {c["batch_size"] for c in configs} == {48}

    from erc.data import load_corpus
    from erc.inputs import build_inputs

    table, _ = build_inputs(load_corpus(demo_root, verbose=False), *demo_encoders, tmp_path / "in", progress=False)
    sample = probe_sample(table, 0, 4)
    longest = np.sort(table.wave_len[table.fold != 0])[-4:]
    assert sorted(sample.wave_len[sample.fold != 0]) == sorted(longest) and (sample.fold == 0).sum() == 4
    flat = {**SweepSettings(cache_dir=tmp_path, mode="finetune", protocol="paper").base_config(),
            "fusion": "outer", "labels": "soft", "batch_size": 4}
    result = run_probe(flat, sample, 0, {"mode": "finetune", "audio_encoder": str(demo_encoders[0]),
                                         "text_encoder": str(demo_encoders[1])}, device="cpu")
    assert result["rows"] == 4 and np.isfinite(result["loss"])


@pytest.mark.parametrize("fusion", ["concat", "outer"])
def test_probe_of_a_cached_trial(fusion, tmp_path):
    table = synthetic_features(n=120)
    flat = {**SweepSettings(cache_dir=tmp_path, preset="paper").base_config(), "fusion": fusion, "labels": "soft",
            "batch_size": 4}
    result = run_probe(flat, probe_sample(table, 0, 4), 0, {}, device="cpu")
    assert result["rows"] == 4 and result["peak_mb"] is None


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_each_probe_runs_in_a_fresh_worker_that_is_gone_once_it_returns(tmp_path):
    """A reused worker kept the previous probe's CUDA cache, measured by the next probe as its own; an idle
    one held it beside the trials. Two probes on one (logical) GPU: two processes, neither alive after."""
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        settings = SweepSettings(cache_dir=tmp_path, fusions=["concat", "outer"], preset="demo")
        probes = run_probes(settings, _prepared(synthetic_features(n=120)), {}, device="cpu")
        pids = [result["pid"] for _, result in probes]
        assert len(set(pids)) == 2
        deadline = time.time() + 60
        while time.time() < deadline and any(map(_alive, pids)):
            time.sleep(0.2)
        assert not any(map(_alive, pids))
    finally:
        ray.shutdown()


# A sweep's driver joins (--address) a cluster of CPU raylets, as after `ray start --head` on CPU machines,
# with the default --gpus-per-trial auto; then the same cluster as seen from the head of a `ray up`
# cluster whose autoscaler can add CPU workers only, and one whose autoscaler can add GPU workers.
JOIN_CPU_CLUSTER = textwrap.dedent("""
    import os, sys
    import ray
    from ray.cluster_utils import Cluster
    import sweeps.gpus as gpus
    from sweeps.cluster import start_ray
    from sweeps.prepare import Prepared
    from sweeps.settings import SweepSettings
    from tests.synthetic import synthetic_features

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0,
                                                             "node_ip_address": "127.0.0.1",
                                                             "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1, num_gpus=0, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    prepared = Prepared(table=synthetic_features(n=50), corpus_name="synthetic", audio_encoder="a",
                        text_encoder="t", feature_dir=None, excluded_csv=None)
    settings = SweepSettings(cache_dir=sys.argv[1], address=cluster.address, verbose=0)
    try:
        start_ray(settings)
        os.environ["HOME"] = sys.argv[2]  # no autoscaler config there (Ray read its token from the real one)
        print("fraction:", gpus.resolve_gpus_per_trial(settings, prepared, {}), flush=True)
        os.environ["HOME"] = sys.argv[3]  # a ray up head whose autoscaler adds CPU workers only
        print("fraction:", gpus.resolve_gpus_per_trial(settings, prepared, {}), flush=True)
        os.environ["HOME"] = sys.argv[4]  # ... and one whose autoscaler adds GPU workers
        gpus.WAIT_FOR_GPU_S = 3.0  # none comes here: the wait runs out
        print("fraction:", gpus.resolve_gpus_per_trial(settings, prepared, {}), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
""")

BOOTSTRAP = {
    "home": None,
    "cpu-autoscaler": "available_node_types:\n  head: {resources: {CPU: 0}, max_workers: 0}\n"
                      "  cpu_worker: {resources: {CPU: 8}, max_workers: 4}\n",
    "gpu-autoscaler": "available_node_types:\n  head: {resources: {CPU: 0}, max_workers: 0}\n"
                      "  cpu_worker: {resources: {CPU: 8}, max_workers: 4}\n"
                      "  gpu_worker: {resources: {}, max_workers: 4}\n",  # as cluster.yaml: from the instance
}


@pytest.mark.slow
def test_auto_on_a_joined_cpu_cluster_waits_only_for_a_gpu_node_an_autoscaler_can_add(tmp_path):
    homes = []
    for name, text in BOOTSTRAP.items():
        (tmp_path / name).mkdir()
        if text is not None:
            (tmp_path / name / "ray_bootstrap_config.yaml").write_text(text)
        homes.append(str(tmp_path / name))
    # Ray's socket paths must stay under 108 bytes: pytest's tmp_path is too deep (more so under xdist)
    ray_tmp = tempfile.mkdtemp(prefix="rg", dir="/tmp")
    env = {"RAY_TMPDIR": ray_tmp, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    try:
        # far less than the 900 s the probe used to wait for a GPU node that nothing could add
        proc = run([sys.executable, "-c", JOIN_CPU_CLUSTER, str(tmp_path / "cache"), *homes], cwd=REPO,
                   timeout=240, env=env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0
    fixed, cpu_only, gpu = proc.stdout.split("fraction:")[:3]
    assert "no GPU in this Ray cluster, and no autoscaler that could add a node → 0 (trials run on CPUs)" in fixed
    assert "the autoscaler adds no GPU node (cpu_worker) → 0" in cpu_only
    assert "waiting" not in fixed + cpu_only
    assert "waiting up to 3 s for the autoscaler to add one (gpu_worker) for the probe" in gpu
    assert "no GPU node came up → 0" in gpu
    assert proc.stdout.count("fraction: 0.0") == 3
