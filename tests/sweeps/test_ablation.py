"""The sweep entry scripts end to end: real Ray runtime, real MLflow (SQLite and an HTTP server)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.sweep_helpers import (
    MlflowServer,
    children,
    finished_and_running,
    parents,
    run,
    sweep_command,
    wait_for_runs,
)

pytestmark = pytest.mark.slow


def test_every_fusion_as_an_arm_nested_runs_tags_a_retried_failure_and_a_rerun(demo_root, demo_encoders, demo_cache,
                                                                                tmp_path):
    """--fusions all: one FINISHED run per (fold, arm) nested under the sweep's parent run, with the tags,
    params, curves and artifacts that reproduce it, model/params and model/flops; a failed trial retried in
    its own run; the report with the Friedman test over the arms (friedman.csv, logged to the parent run);
    then the finished sweep's rerun, which trains and duplicates nothing. One sweep: every fusion is in it."""
    from erc import contract as C
    from erc.vocab import fusion_names

    cache = demo_cache
    cmd = sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0,1", "--fusions", "all",
                        "--labels", "soft", "--epochs", "2", "--preset", "demo")
    proc = run(cmd, cwd=tmp_path, env={"ERC_FAIL_ONCE": "fold1-outer-soft"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the sweep read demo_cache's features: a key of its own would have been a second build
    assert len(list((cache / "features").glob("*/meta.json"))) == 1
    client = MlflowClient(f"sqlite:///{cache / 'mlflow.db'}")
    [parent] = parents(client)
    assert parent.info.status == "FINISHED"
    runs = children(client)
    assert Counter(r.info.run_name for r in runs) == Counter(
        f"fold{fold}-{fusion}-soft" for fold in (0, 1) for fusion in fusion_names())
    for r in runs:
        tags, params = r.data.tags, r.data.params
        assert r.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["sweep"] == parent.data.tags["sweep"]
        assert tags["arm"] == f"{tags['fusion']}-{tags['labels']}" and tags["labels"] == "soft"
        assert r.info.run_name == f"fold{tags['fold']}-{tags['arm']}"
        for key in ("corpus", "audio_encoder", "text_encoder", "git_commit", "ray.trial_id", "ray.node_id"):
            assert tags.get(key), key
        assert params["fusion"] == tags["fusion"] and params["epochs"] == "2" and "lr" in params
        assert int(params["n_train"]) > int(params["n_valid"]) > 0
        history = client.get_metric_history(r.info.run_id, "valid/acc")
        assert sorted(m.step for m in history) == [1, 2]
        assert "selected/macro_f1" in r.data.metrics and "selected/epoch" in r.data.metrics
        assert r.data.metrics[C.MODEL_PARAMS] > 0 and r.data.metrics[C.MODEL_FLOPS] > 0, r.info.run_name
        artifacts = {a.path for a in client.list_artifacts(r.info.run_id, "plots")}
        assert "plots/confusion_matrix.png" in artifacts
        assert {a.path for a in client.list_artifacts(r.info.run_id, "checkpoint")} == {"checkpoint/head.pt"}
        failed = r.info.run_name == "fold1-outer-soft"
        assert tags["attempts"] == ("2" if failed else "1")
        if failed:  # the retry continued the same run, which records the failed attempt
            text = client.download_artifacts(r.info.run_id, "errors/attempt_1.txt", str(tmp_path))
            assert "injected failure" in Path(text).read_text()
            assert "injected failure" in tags["last_error"]
    # the report is printed and logged to the parent, with the many-arm test
    assert "Per-arm mean" in proc.stdout and "Friedman" in proc.stdout
    assert "report/friedman.csv" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}

    # rerunning the finished sweep reruns nothing and duplicates nothing
    again = run(cmd, cwd=tmp_path)
    assert again.returncode == 0
    # … and reprints the report from the store without starting Ray (sweeps/finished.py)
    assert "nothing to run" in again.stdout and "Per-arm mean" in again.stdout
    assert "resuming sweep" not in again.stdout
    runs2 = children(client)
    assert sorted(r.info.run_id for r in runs2) == sorted(r.info.run_id for r in runs)
    assert all(r.data.tags["attempts"] in ("1", "2") and r.info.status == "FINISHED" for r in runs2)
    assert len(parents(client)) == 1


def test_http_server_and_a_trial_out_of_retries(demo_root, demo_encoders, demo_cache, tmp_path):
    server = MlflowServer(tmp_path / "server")
    try:
        cache = demo_cache
        cmd = sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0", "--fusions",
                            "concat,outer", "--labels", "peakl", "--epochs", "2", "--max-failures", "0",
                            "--tracking-uri", server.uri)
        proc = run(cmd, cwd=tmp_path, env={"ERC_FAIL_ONCE": "fold0-concat"})
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "FAILED" in proc.stdout
        client = MlflowClient(server.uri)
        status = {r.info.run_name: r.info.status for r in children(client)}
        assert status == {"fold0-concat-peakl": "FAILED", "fold0-outer-peakl": "FINISHED"}
        [parent] = parents(client)
        assert parent.info.status == "FAILED"
        failed = next(r for r in children(client) if r.info.status == "FAILED")
        assert "errors/attempt_1.txt" in {a.path for a in client.list_artifacts(failed.info.run_id, "errors")}
    finally:
        server.stop()


def test_unreachable_tracking_server_fails_before_any_work(demo_root, demo_encoders, tmp_path):
    cache = tmp_path / "cache"
    start = time.time()
    proc = run(sweep_command("ablation.py", demo_root, demo_encoders, cache, "--tracking-uri",
                             "http://127.0.0.1:9"), cwd=tmp_path)
    assert proc.returncode != 0 and "not reachable" in proc.stderr
    assert not (cache / "features").exists() and not (cache / "ray_results").exists()
    assert time.time() - start < 60


def test_killed_driver_then_rerun_resumes_without_duplicates(demo_root, demo_encoders, demo_cache, tmp_path):
    cache = demo_cache
    cmd = sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0,1", "--fusions",
                        "concat,outer", "--labels", "soft", "--epochs", "40", "--max-concurrent", "1")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    driver = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, env=env)
    runs = wait_for_runs(cache / "mlflow.db", driver, finished_and_running, timeout=400)
    finished_before = {r.info.run_name: r.info.run_id for r in runs if r.info.status == "FINISHED"}
    assert 1 <= len(finished_before) < 4
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    driver.wait()
    client = MlflowClient(f"sqlite:///{cache / 'mlflow.db'}")
    assert any(r.info.status == "RUNNING" for r in children(client))  # left behind by the dead driver

    proc = run(cmd, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming sweep" in proc.stdout
    runs = children(client)
    assert Counter(r.info.run_name for r in runs) == Counter(
        {"fold0-concat-soft": 1, "fold0-outer-soft": 1, "fold1-concat-soft": 1, "fold1-outer-soft": 1})
    assert all(r.info.status == "FINISHED" for r in runs)
    by_name = {r.info.run_name: r for r in runs}
    for name, run_id in finished_before.items():  # finished trials were not rerun
        assert by_name[name].info.run_id == run_id and by_name[name].data.tags["attempts"] == "1"
    assert any(r.data.tags.get("orphaned") == "true" for r in runs)  # the interrupted one resumed its run
