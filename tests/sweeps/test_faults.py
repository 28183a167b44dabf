"""Faults a real user meets (issue 16): Ctrl-C, two sweeps at once, impossible requests, dead clusters,
a worker's shutdown noise, an MLflow server that goes away. Real processes, real Ray, real MLflow."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.sweep_helpers import (
    REPO,
    UNSHARE_PID,
    MlflowServer,
    children,
    finished_and_running,
    namespaces_work,
    parents,
    run,
    sweep_command,
    wait_for_runs,
)

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def test_ctrl_c_exits_130_counts_what_finished_and_writes_no_report(demo_root, demo_encoders, demo_cache,
                                                                    tmp_path):
    cache = demo_cache
    cmd = sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0,1", "--fusions",
                        "concat,outer", "--labels", "soft", "--epochs", "150", "--max-concurrent", "1")
    # A terminal's Ctrl-C goes to the foreground process group: the driver and what it started.
    driver = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True, env=_env())
    try:
        wait_for_runs(cache / "mlflow.db", driver, finished_and_running)
        os.killpg(driver.pid, signal.SIGINT)
        out, err = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    print(out[-4000:], err[-4000:])
    client = MlflowClient(f"sqlite:///{cache / 'mlflow.db'}")
    assert driver.returncode == 130
    assert "interrupted — rerun the same command" in err
    finished = sum(r.info.status == "FINISHED" for r in children(client))
    assert 1 <= finished < 4
    # the count is what finished (Tune's result grid calls the interrupted trial TERMINATED too)
    assert f"{finished} of 4 trials finished, {4 - finished} unfinished" in out
    [parent] = parents(client)
    assert parent.info.status == "KILLED"
    assert "Per-arm mean" not in out and not client.list_artifacts(parent.info.run_id, "report")


def test_two_sweeps_started_at_once_on_a_fresh_cache_both_finish(demo_root, demo_encoders, tmp_path):
    cache = tmp_path / "cache"  # fresh: no MLflow store, no feature cache yet
    drivers = {name: subprocess.Popen(
        sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0", "--fusions", "concat",
                      "--labels", "soft", "--epochs", "1", "--name", name),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
        for name in ("first", "second")}
    outputs = {name: d.communicate(timeout=600)[0] for name, d in drivers.items()}
    for name, d in drivers.items():
        print(f"--- {name}\n{outputs[name][-4000:]}")
        assert d.returncode == 0, name
        # a successful run prints no traceback (not even a worker's at shutdown)
        assert "Traceback" not in outputs[name] and "SystemExit" not in outputs[name], name
    client = MlflowClient(f"sqlite:///{cache / 'mlflow.db'}")
    by_sweep = {p.data.tags["sweep"]: p for p in parents(client)}
    assert set(by_sweep) == {"first", "second"}
    for name, parent in by_sweep.items():
        [trial] = [r for r in children(client) if r.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert parent.info.status == trial.info.status == "FINISHED"
    assert len(list((cache / "features").glob("*/meta.json"))) == 1  # one build, shared


DEMO_BUILD = textwrap.dedent("""
    import json, sys
    from erc.data import load_corpus
    from erc.data.demo import write_demo_corpus
    from erc.encoders import build_demo_encoders
    root = write_demo_corpus(sys.argv[1] + "/data", seed=0, kemdy19_sessions=5, kemdy20_sessions=6,
                             utterances_per_speaker=4)
    audio, text = build_demo_encoders(sys.argv[1] + "/encoders", load_corpus(root, verbose=False))
    print(json.dumps([str(root), str(audio), str(text)]))
""")


def test_demo_corpus_and_encoders_started_twice_at_once_are_built_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", DEMO_BUILD, str(tmp_path / "demo")], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert results[0][0] == results[1][0]  # both got the same corpus and encoders
    demo = tmp_path / "demo"
    assert (demo / "data" / "DEMO_CORPUS.json").is_file() and (demo / "encoders" / "DEMO_ENCODERS.json").is_file()
    leftovers = [p.name for p in demo.iterdir() if p.name.startswith(".data.") and p.is_dir()]
    leftovers += [p.name for p in (demo / "encoders").glob(".build-*")]
    assert leftovers == []


def test_impossible_requests_fail_before_any_trial(demo_root, demo_encoders, tmp_path):
    cache = tmp_path / "cache"
    start = time.time()
    proc = run(sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0", "--fusions",
                             "concat", "--labels", "soft", "--epochs", "1", "--gpus-per-trial", "2"),
               cwd=tmp_path, timeout=300)
    assert proc.returncode == 1
    assert "each trial asks for 1 CPU and 2 GPU" in proc.stderr and "2 GPU" in proc.stderr
    assert re.search(r"one node with \d+ CPU, 0 GPU", proc.stderr)
    assert "Traceback" not in proc.stderr
    assert time.time() - start < 240
    assert not (cache / "ray_results").exists()  # no trial was ever started
    client = MlflowClient(f"sqlite:///{cache / 'mlflow.db'}")
    assert client.get_experiment_by_name("erc-sweeps") is None or not parents(client)

    for flag, value, why in (("--cpus-per-trial", "0", "must be > 0"), ("--gpus-per-trial", "1.5", "whole number")):
        usage = run(sweep_command("ablation.py", demo_root, demo_encoders, cache, flag, value), cwd=tmp_path)
        assert usage.returncode == 2 and flag in usage.stderr and why in usage.stderr


AUTOSCALER_CHECK = textwrap.dedent("""
    import os, sys
    from sweeps.cluster import ClusterResourceError, check_trial_resources, init_ray
    from sweeps.settings import SweepSettings
    init_ray(SweepSettings(cache_dir=sys.argv[1], verbose=0))
    os.environ["HOME"] = sys.argv[2]  # the head node of an AWS cluster (cluster.yaml)
    print("note:", check_trial_resources(1, 2))
    os.environ["HOME"] = sys.argv[3]  # workers with one GPU each
    try:
        check_trial_resources(1, 2)
    except ClusterResourceError as err:
        print("error:", err)
""")

# What `ray up` leaves on the head node: cluster.yaml's types (worker resources autodetected from the
# instance type), and an on-prem style config that declares them.
BOOTSTRAP = {
    "aws": "available_node_types:\n"
           "  head: {resources: {CPU: 0}, max_workers: 0}\n"
           "  gpu_worker: {resources: {}, max_workers: 4}\n",
    "declared": "available_node_types:\n"
                "  head: {resources: {CPU: 0}, max_workers: 0}\n"
                "  gpu_worker: {resources: {CPU: 8, GPU: 1}, max_workers: 4}\n",
}


def test_an_autoscaler_that_can_add_the_node_is_waited_for(tmp_path):
    homes = []
    for name, text in BOOTSTRAP.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "ray_bootstrap_config.yaml").write_text(text)
        homes.append(str(tmp_path / name))
    proc = subprocess.run([sys.executable, "-c", AUTOSCALER_CHECK, str(tmp_path), *homes], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=_env(), check=False)
    print(proc.stdout, proc.stderr[-3000:])
    assert proc.returncode == 0
    assert "waiting for the autoscaler to add a node that has it (gpu_worker)" in proc.stdout
    assert "error: each trial asks for 1 CPU and 2 GPU" in proc.stdout
    assert "no node type the autoscaler can add has that much (gpu_worker)" in proc.stdout


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_address_of_a_dead_cluster_fails_fast_naming_it(demo_root, demo_encoders, tmp_path):
    port = _closed_port()  # a cluster that was there and is gone
    start = time.time()
    proc = run(sweep_command("ablation.py", demo_root, demo_encoders, tmp_path / "cache", "--folds", "0",
                             "--fusions", "concat", "--labels", "soft", "--address", f"127.0.0.1:{port}"),
               cwd=tmp_path, timeout=240)
    assert proc.returncode == 1
    assert "no Ray cluster answers at " in proc.stderr and f":{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.time() - start < 180
    assert not (tmp_path / "cache" / "features").exists()  # checked before any work


JOIN_AUTO = textwrap.dedent("""
    import sys
    from sweeps.cluster import RayAddressError, init_ray
    from sweeps.settings import SweepSettings
    try:
        init_ray(SweepSettings(cache_dir=sys.argv[1], address="auto", verbose=0))
    except RayAddressError as err:
        print(err)
        sys.exit(1)
""")


def test_address_auto_naming_a_dead_cluster_fails_fast(tmp_path):
    from ray._private.services import find_gcs_addresses

    # Ray's "auto" joins a live cluster it finds among this host's processes instead, by design; in its
    # own PID namespace the driver sees none of those that other tests (in parallel, too) run.
    isolate = UNSHARE_PID if namespaces_work() else []
    if not isolate and find_gcs_addresses():
        pytest.skip("another Ray cluster runs on this host, and no PID namespace (unshare) hides it")
    # Ray's current-cluster file still names a cluster that is gone (killed, machine rebooted): a bare
    # ray.init() or ray.init("auto") retries it forever.
    ray_tmp = tmp_path / "r"
    (ray_tmp / "ray").mkdir(parents=True)
    port = _closed_port()
    (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    start = time.time()
    proc = subprocess.run([*isolate, sys.executable, "-c", JOIN_AUTO, str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=240, env=_env(RAY_TMPDIR=str(ray_tmp)), check=False)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 1
    assert f":{port} (--address auto, from {ray_tmp / 'ray' / 'ray_current_cluster'}" in proc.stdout
    assert "no Ray cluster answers at " in proc.stdout
    assert time.time() - start < 120


def test_every_entry_point_and_benchmark_starts_ray_through_init_ray():
    # A bare ray.init() joins whatever cluster Ray's current-cluster file names, and hangs when it is dead.
    offenders = []
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0] in ("tests", ".venv", "build") or rel == Path("sweeps/cluster.py"):
            continue
        if re.search(r"\bray\.init\(", path.read_text(errors="replace")):
            offenders.append(str(rel))
    assert offenders == []


SIGTERM_IN_FINALISER = textwrap.dedent("""
    import os, signal, sys, time, weakref
    import ray
    from sweeps.cluster import init_ray
    from sweeps.settings import SweepSettings

    init_ray(SweepSettings(cache_dir=sys.argv[1], verbose=1))

    @ray.remote(num_cpus=0)
    class Worker:
        def finalise(self, signum):
            class Obj:
                pass

            def callback(_):
                if signum:  # what the raylet does to a trial's actor when Tune frees its placement group
                    os.kill(os.getpid(), signum)
                    time.sleep(1)  # Ray's SIGTERM handler raises SystemExit(1) here, inside the callback
                else:
                    raise ValueError("a real error in a finaliser stays visible")

            obj = Obj()
            self.ref = weakref.ref(obj, callback)
            del obj
            return os.getpid()

    workers = [Worker.remote(), Worker.remote()]
    print(ray.get([workers[0].finalise.remote(int(signal.SIGTERM)), workers[1].finalise.remote(0)]))
    time.sleep(3)  # let Ray forward the workers' stderr to this terminal
""")


def test_a_worker_stopped_by_sigterm_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SIGTERM_IN_FINALISER, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=_env(), check=False)
    output = proc.stdout + proc.stderr
    print(output[-4000:])
    assert proc.returncode == 0
    assert "SystemExit" not in output and "sigterm_handler" not in output
    assert "ValueError: a real error in a finaliser stays visible" in output  # only the noise is gone


def test_mlflow_server_away_for_seconds_mid_sweep_loses_nothing(demo_root, demo_encoders, demo_cache,
                                                                 tmp_path):
    server = MlflowServer(tmp_path / "server")
    cache = demo_cache
    cmd = sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0,1", "--fusions", "concat",
                        "--labels", "soft", "--epochs", "20", "--max-concurrent", "1", "--tracking-uri", server.uri)
    driver = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True, env=_env())
    try:
        client = MlflowClient(server.uri)
        wait_for_runs(client, driver, lambda runs: any(
            r.info.status == "RUNNING" and "valid/acc" in r.data.metrics for r in runs))
        server.stop()  # mid-trial: the driver's MLflow calls now fail; MLflow's client retries them
        time.sleep(6)
        server = server.restart()
        out, _ = driver.communicate(timeout=600)
        print(out[-4000:])
        assert driver.returncode == 0
        runs = children(client)
        assert sorted(r.info.run_name for r in runs) == ["fold0-concat-soft", "fold1-concat-soft"]
        for r in runs:
            assert r.info.status == "FINISHED"
            steps = sorted(m.step for m in client.get_metric_history(r.info.run_id, "valid/acc"))
            assert steps == list(range(1, 21)), r.info.run_name  # every epoch, none twice
        [parent] = parents(client)
        assert parent.info.status == "FINISHED"
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        server.stop()
