"""Multi-node (DESIGN §9): the cluster-launcher configs, and the ablation on a real multi-raylet cluster.

The configs go through the same steps as ``ray up`` before it touches a cloud: Ray's defaults are
filled in (``prepare_config``) and the result is checked against the JSON schema shipped in the ray
wheel (``validate_config``).

The sweep runs against ``ray.cluster_utils.Cluster``: a head raylet with no CPU and two worker
raylets with one CPU and one (logical) GPU each, so trials can only run on the workers, with
fractional CPU and GPU requests. Like a ``ray up`` cluster it uses token authentication, and it
binds to 127.0.0.1 with its own temp dir, so a ``ray.init()`` elsewhere on this machine never finds
it. The driver is ``sweeps/ablation.py --address`` in a subprocess, logging to a real ``mlflow
server`` on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweeps import head_mlflow
from tests.sweep_helpers import REPO, MlflowServer, children, parents, run, sweep_command

CONFIGS = ("cluster.yaml", "cluster-onprem.yaml")
NAMES = ["fold0-concat-soft", "fold0-outer-soft", "fold1-concat-soft", "fold1-outer-soft"]


# ---------------------------------------------------------------------------------------------
# The cluster-launcher configs


def prepared_config(name: str) -> dict:
    """The config as ``ray up`` sees it after filling in defaults, validated against Ray's schema."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / name).read_text())
    prepared = prepare_config(config)
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("name", CONFIGS)
def test_cluster_configs_pass_rays_validation(name):
    config = prepared_config(name)
    text = (REPO / name).read_text()
    # the repo is installed with the README's command, on every node
    assert any("pip install -r requirements.txt" in c for c in config["setup_commands"])
    assert "pip install -r requirements.txt" in (REPO / "README.md").read_text()
    assert any(remote.rstrip("/").endswith("erc-sweeps") for remote in config["file_mounts"])
    # the head also runs the MLflow server, on the head's cluster address (as Ray does), not 0.0.0.0
    assert any(c.rstrip().endswith("> ~/erc-head-ip") for c in config["head_setup_commands"])
    head = " ".join(config["head_start_ray_commands"])
    assert "ray start --head --node-ip-address=$(cat ~/erc-head-ip)" in head and "0.0.0.0" not in head
    [mlflow] = [c for c in config["head_start_ray_commands"] if "sweeps.head_mlflow" in c]
    args = head_mlflow.parse_args(shlex.split(mlflow.replace("$(cat ~/erc-head-ip)", "10.0.0.10"))[3:])
    assert args.host == "10.0.0.10" and args.ray_address == "10.0.0.10:6379" and args.port == 5000
    assert "--backend-store-uri" in args.mlflow_args and args.mlflow_args[
        args.mlflow_args.index("--backend-store-uri") + 1].startswith("sqlite:///")
    # token authentication everywhere: the token goes to every node
    assert "~/.ray/auth_token" in config["file_mounts"]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any("RAY_AUTH_MODE=token" in c and "ray start" in c for c in config[key]), key
    # no secrets in the file
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|password\s*[:=]", text, re.IGNORECASE)


def test_aws_config_has_a_cpu_head_and_gpu_workers_from_zero():
    config = prepared_config("cluster.yaml")
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and head["max_workers"] == 0  # trials never land on the head
    [(worker_type, worker)] = [(k, v) for k, v in types.items() if k != config["head_node_type"]]
    assert worker["min_workers"] == 0 and worker["max_workers"] >= 1
    assert re.match(r"(g|p)\d", worker["node_config"]["InstanceType"]), worker_type
    # shared storage: MLflow artifacts and Tune's storage_path in the same bucket
    head_cmds = " ".join(config["head_start_ray_commands"])
    bucket = re.search(r"--artifacts-destination (s3://[^/\s]+)", head_cmds).group(1)
    readme = (REPO / "README.md").read_text()
    assert f"--storage {bucket}/" in readme


def test_validation_is_not_vacuous():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config["max_wokers"] = 2  # a typo'd top-level key
    with pytest.raises(Exception, match="max_wokers"):
        validate_config(prepare_config(config))


def test_readme_cluster_commands_use_real_flags():
    """The sweep commands in the README's cluster section parse with ablation.py's own parser."""
    from sweeps.ablation import parse_args

    readme = (REPO / "README.md").read_text()
    section = re.sub(r"\\\n\s*", " ", readme[readme.index("## Run on a GPU cluster"):])  # join continued lines
    submit = [line for line in section.splitlines() if "ray submit" in line and "sweeps/ablation.py -- " in line]
    job = [line for line in section.splitlines() if "ray job submit" in line and "-- python -m sweeps.ablation" in line]
    assert submit and job, "the README's cluster section lacks its `ray submit` or `ray job submit` command"
    for line in submit + job:
        args = shlex.split(line.split(" -- ", 1)[1])
        if args[:3] == ["python", "-m", "sweeps.ablation"]:
            args = args[3:]
        parsed = parse_args(args)
        shared = "/mnt/shared/erc-sweeps/" if "cluster-onprem.yaml" in line else "s3://"
        assert parsed.address == "auto" and parsed.storage.startswith(shared) and parsed.gpus_per_trial
    assert parse_args(shlex.split(submit[0].split(" -- ", 1)[1])).tracking_uri.endswith(":5000")


# ---------------------------------------------------------------------------------------------
# A multi-raylet cluster on this machine


class LocalCluster:
    """``ray.cluster_utils.Cluster`` with token authentication, isolated from other Ray users here."""

    def __init__(self, workers: int = 2) -> None:
        from ray.cluster_utils import Cluster

        # A short temp dir: Ray's socket paths must stay under 108 characters. The address file
        # Cluster writes (TMP/ray/ray_current_cluster) lives there too, out of other tests' way.
        self.tmp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        token = self.tmp / "auth_token"
        token.write_text(secrets.token_hex(32))
        self.env = {"RAY_TMPDIR": str(self.tmp), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    # Ray rewrites a 127.0.0.1 address to this host's interface IP unless told it is
                    # not on a multi-host network; this keeps every node, the driver and all traffic
                    # on the loopback interface.
                    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        self.saved = {k: os.environ.get(k) for k in (*self.env, "RAY_AUTH_TOKEN", "RAY_ADDRESS")}
        os.environ.update(self.env)
        for key in ("RAY_AUTH_TOKEN", "RAY_ADDRESS"):
            os.environ.pop(key, None)
        _reset_auth_state()
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "num_gpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False})
        self.count = 0
        self.workers = [self.add_worker() for _ in range(workers)]
        self.cluster.wait_for_nodes()

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_worker(self):
        """A worker raylet with 1 CPU, 1 logical GPU and a custom resource naming it (worker0, …)."""
        node = self.cluster.add_node(num_cpus=1, num_gpus=1, resources={f"worker{self.count}": 1},
                                     node_ip_address="127.0.0.1")
        node.test_name = f"worker{self.count}"
        self.count += 1
        return node

    def remove(self, node) -> None:
        self.cluster.remove_node(node)
        self.workers.remove(node)

    def shutdown(self) -> None:
        try:
            self.cluster.shutdown()
        finally:
            for key, value in self.saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            _reset_auth_state()
            shutil.rmtree(self.tmp, ignore_errors=True)


def _reset_auth_state() -> None:
    """Make this process re-read RAY_AUTH_MODE and the token (Ray caches both)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def cluster():
    local = LocalCluster(workers=2)
    yield local
    local.shutdown()


def _cluster_sweep(demo_root, demo_encoders, cache: Path, storage: Path, cluster: LocalCluster, server,
                   experiment: str, *args: str) -> list[str]:
    return sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0,1", "--fusions",
                         "concat,outer", "--labels", "soft", "--address", cluster.address, "--tracking-uri",
                         server.uri, "--storage", str(storage), "--experiment", experiment, *args)


def _check_runs(client: MlflowClient, experiment: str) -> list:
    """Every trial exactly once, FINISHED, and the analysis layer reads the sweep."""
    from analysis.runs import find_sweep, load_trials

    runs = children(client, experiment)
    assert Counter(r.info.run_name for r in runs) == Counter(NAMES)
    assert {r.info.status for r in runs} == {"FINISHED"}
    [parent] = parents(client, experiment)
    assert parent.info.status == "FINISHED"
    trials = load_trials(client, find_sweep(client, experiment))  # raises on duplicate FINISHED runs
    assert sorted(trials.runs["arm"] + "/" + trials.runs["fold"].astype(str)) == [
        "concat-soft/0", "concat-soft/1", "outer-soft/0", "outer-soft/1"]
    assert trials.runs["macro_f1"].notna().all()
    return runs


@pytest.mark.slow
def test_sweep_spreads_over_the_cluster_nodes(cluster, server, demo_root, demo_encoders, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "cluster-cache"
    storage = tmp_path_factory.mktemp("storage-spread")  # shared by all raylets (one machine)
    cmd = _cluster_sweep(demo_root, demo_encoders, cache, storage, cluster, server, "cluster-spread",
                         "--epochs", "2", "--cpus-per-trial", "0.5", "--gpus-per-trial", "0.5")
    proc = run(cmd, cwd=tmp_path_factory.getbasetemp(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Per-arm mean" in proc.stdout  # the sweep's own report read the runs back

    # with --address the features were extracted on the cluster, as a Ray Data job
    [meta] = [json.loads(p.read_text()) for p in (cache / "features").glob("*/meta.json")]
    assert meta["extracted_on"] == "cluster"

    runs = _check_runs(MlflowClient(server.uri), "cluster-spread")
    names = {w.node_id: w.test_name for w in cluster.workers}
    placed = {r.info.run_name: names.get(r.data.tags["ray.node_id"], "head?") for r in runs}
    print("placement:", placed)
    assert set(placed.values()) <= set(names.values()), placed  # the head has no CPU: never there
    assert len(set(placed.values())) >= 2, placed
    assert all(r.data.tags["ray.node_ip"] == "127.0.0.1" for r in runs)


@pytest.mark.slow
def test_losing_a_worker_node_mid_sweep(cluster, server, demo_root, demo_encoders, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "cluster-cache"
    storage = tmp_path_factory.mktemp("storage-loss")
    log = tmp_path_factory.getbasetemp() / "node-loss-driver.log"
    epochs = 60  # long enough that a quiet machine does not finish a trial between two polls
    cmd = _cluster_sweep(demo_root, demo_encoders, cache, storage, cluster, server, "cluster-node-loss",
                         "--epochs", str(epochs), "--max-concurrent", "2", "--cpus-per-trial", "1",
                         "--gpus-per-trial", "0.5")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    client = MlflowClient(server.uri)
    with log.open("w") as out:
        driver = subprocess.Popen(cmd, cwd=tmp_path_factory.getbasetemp(), stdout=out, stderr=subprocess.STDOUT,
                                  env=env, start_new_session=True)
    try:
        # Wait until a trial has reported an epoch on a worker node and is still running there.
        by_id = {w.node_id: w for w in cluster.workers}
        victim, victim_run = None, None
        deadline = time.time() + 180
        while victim is None and time.time() < deadline and driver.poll() is None:
            time.sleep(0.5)
            if client.get_experiment_by_name("cluster-node-loss") is None:
                continue
            for r in children(client, "cluster-node-loss"):
                node = by_id.get(r.data.tags.get("ray.node_id"))  # tagged on the trial's first epoch
                if r.info.status == "RUNNING" and node is not None:
                    done = len(client.get_metric_history(r.info.run_id, "valid/acc"))
                    if 1 <= done <= epochs // 2:  # well before its last epoch
                        victim, victim_run = node, r
                        break
        assert victim is not None, f"no trial caught running on a worker: {log.read_text()[-3000:]}"
        cluster.remove(victim)  # the node is gone, with the trial's process
        cluster.add_worker()  # the autoscaler's replacement
        rc = driver.wait(timeout=240)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, 9)
            driver.wait()
    output = log.read_text()
    print(output[-5000:])
    assert rc == 0, output[-3000:]

    runs = _check_runs(client, "cluster-node-loss")
    lost = next(r for r in runs if r.info.run_id == victim_run.info.run_id)
    # retried in the same MLflow run, which records the failed attempt
    assert lost.data.tags["attempts"] == "2" and lost.data.tags["failed_attempts"] == "1"
    assert "errors/attempt_1.txt" in {a.path for a in client.list_artifacts(lost.info.run_id, "errors")}
    print(f"{lost.info.run_name} lost {victim.test_name}: {lost.data.tags['last_error']}")
    history = client.get_metric_history(lost.info.run_id, "valid/acc")
    assert max(m.step for m in history) == epochs
    others = [r for r in runs if r.info.run_id != lost.info.run_id]
    assert all(r.data.tags["attempts"] == "1" for r in others)
