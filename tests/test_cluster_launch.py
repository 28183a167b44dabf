"""The cluster path as the README tells it, run for real on this machine (DESIGN §9, issue 19).

``ray up`` / ``ray submit`` / ``ray down`` with ``cluster-onprem.yaml``: Ray's cluster launcher runs
every setup and start command of the file over SSH, against an ``sshd`` on 127.0.0.1 that stands in
for the head host. The test changes only the file's ``CHANGE`` lines (head IP, user, key, shared
directory) and the cluster's name. The host is made to look like a separate machine:

- the SSH sessions get their own ``HOME`` (``SetEnv`` in the test's ``sshd_config``), so the checkout,
  the venv, ``~/.bashrc``, the MLflow store and the Ray bootstrap files all land in a temp dir,
  and their own ``RAY_TMPDIR``; the launching side gets another ``HOME`` (its ``~/.ray/auth_token``);
- ``sshd`` runs in its own PID namespace (``unshare``) where it can: ``ray stop``, which the file
  and ``ray down`` run on the head, stops every Ray process it can see, and must not see this
  machine's other Ray clusters;
- ``sshd`` listens on a free port, so an ``ssh`` on the launcher's ``PATH`` adds ``-p PORT``;
- Ray turns a loopback ``--node-ip-address`` into the machine's interface address unless told that
  this is no multi-host network (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in the host's environment),
  so with it the head advertises 127.0.0.1 like everything else here.

The one shortcut: the head's ``~/erc-venv`` exists before ``ray up``, a venv layered on the test's
own environment (a ``.pth`` file), so the file's ``pip install -r requirements.txt`` runs for real
but finds the heavy packages installed and only installs the synced checkout (editable).

The S3 flow (the AWS file's ``--storage s3://…`` and MLflow's ``--artifacts-destination s3://…``)
runs against moto's S3 server on 127.0.0.1 through the real clients: pyarrow's S3 filesystem in
Tune, boto3 in the MLflow server.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from erc import contract
from sweeps.head_mlflow import answers, reachable
from tests.sweep_helpers import (
    REPO,
    UNSHARE_PID,
    MlflowServer,
    Proc,
    children,
    finished_and_running,
    free_port,
    namespaces_work,
    parents,
    run,
    sweep_command,
    wait_for_runs,
)

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
MLFLOW_PORT, GCS_PORT = 5000, 6379  # as cluster-onprem.yaml has them
# What cluster-onprem.yaml marks CHANGE, and what the test sets them to (besides the shared dir).
CHANGE_KEYS = {"head_ip", "worker_ips", "ssh_user", "ssh_private_key"}
SHARED = "/mnt/shared/erc-sweeps"
# Seconds Ray may be down before the head's MLflow server stops (sweeps/head_mlflow.py): above the
# gap between `ray stop` and `ray start` in a repeated `ray up` on a busy 2-core machine.
GRACE_S = 30


class SshHost:
    """An ``sshd`` on 127.0.0.1 with the head host's home, and the launching user's environment."""

    def __init__(self) -> None:
        if not Path(SSHD).exists() or not shutil.which("rsync") or not shutil.which("ssh"):
            pytest.skip("needs openssh-server, openssh-client and rsync (.ci/run installs them)")
        # Short: the head's Ray puts unix sockets under RAY_TMPDIR (108-character limit).
        self.root = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
        self.marker = secrets.token_hex(6)  # in the environment of everything started over SSH
        self.home, self.client, self.shared = self.root / "home", self.root / "client", self.root / "shared"
        for d in (self.home, self.client, self.shared, self.root / "bin", self.root / "ssh", self.root / "rt",
                  self.root / "rtc"):
            d.mkdir()
        self.user = getpass.getuser()
        self.key = self.root / "ssh" / "id_user"
        for key in (self.root / "ssh" / "host_key", self.key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (self.root / "ssh" / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        self.port = free_port()
        config = self.root / "ssh" / "sshd_config"
        self.host_env = {"HOME": self.home, "RAY_TMPDIR": self.root / "rt", "ERC_MLFLOW_GRACE_S": GRACE_S,
                         "ERC_SSH_TEST": self.marker, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": 0}
        config.write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.root}/ssh/host_key
PidFile {self.root}/ssh/sshd.pid
AuthorizedKeysFile {self.root}/ssh/authorized_keys
AllowUsers {self.user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PrintMotd no
SetEnv {" ".join(f"{k}={v}" for k, v in self.host_env.items())}
""")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        command = [SSHD, "-D", "-e", "-f", str(config)]
        self.isolated = namespaces_work()
        if self.isolated:
            command = [*UNSHARE_PID, "--kill-child", *command]
        else:
            rays = [p for p in Proc.all() if p.name in ("raylet", "gcs_server")]
            if rays:
                shutil.rmtree(self.root, ignore_errors=True)
                pytest.skip(f"no PID namespace here (unshare), and `ray stop` on the SSH host would stop the Ray "
                            f"processes already running on this machine ({len(rays)})")
        self.log = (self.root / "sshd.log").open("w")
        self.sshd = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        (self.root / "bin" / "ssh").write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -p {self.port} "$@"\n')
        (self.root / "bin" / "ssh").chmod(0o755)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("RAY_", "MLFLOW_")) and k not in ("PYTHONPATH", "ERC_CACHE")}
        # TMPDIR: the launcher's cached configs and bootstrap files, out of /tmp
        self.env.update(HOME=str(self.client), PATH=f"{self.root / 'bin'}:{os.environ['PATH']}",
                        RAY_TMPDIR=str(self.root / "rtc"), TMPDIR=str(self.root / "rtc"),
                        RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
        deadline = time.time() + 30
        while self.ssh("true").returncode != 0:
            if self.sshd.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"sshd did not start: {(self.root / 'sshd.log').read_text()[-2000:]}")
            time.sleep(0.5)
        self._layered_venv()

    def ssh(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o",
                               "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                               f"{self.user}@127.0.0.1", command], env=self.env, capture_output=True, text=True,
                              timeout=60, check=False)

    def _layered_venv(self) -> None:
        """``~/erc-venv`` on the head: this environment's packages, its own site-packages and scripts."""
        venv = self.home / "erc-venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        site = Path(subprocess.run([venv / "bin" / "python", "-c", query], capture_output=True, text=True,
                                   check=True).stdout.strip())
        ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
        (site / "zz_test_environment.pth").write_text("".join(f"{p}\n" for p in ours))
        # The console scripts (ray, mlflow, …) run the head's interpreter, so that `pip install -e .`
        # there decides which checkout `import sweeps` finds.
        prefix = f"#!{Path(sys.executable).parent}/python"
        for script in Path(sys.executable).parent.iterdir():
            target = venv / "bin" / script.name
            if target.exists() or not script.is_file():
                continue
            with script.open("rb") as f:
                first = f.readline().decode(errors="replace")
            if first.startswith(prefix):
                target.write_text(f"#!{venv}/bin/python\n" + script.read_text().split("\n", 1)[1])
                target.chmod(0o755)

    def cluster_config(self, name: str) -> Path:
        """A copy of the file with its CHANGE lines pointing at this host, user, key and shared dir."""
        text = (REPO / name).read_text()
        marked = {m.group(1) for m in re.finditer(r"^\s*(\w+):.*#\s*CHANGE\b", text, re.MULTILINE)}
        assert marked == CHANGE_KEYS, f"{name}'s CHANGE lines moved: {marked}; update this test"
        assert SHARED in text
        config = json.loads(json.dumps(yaml.safe_load(text)).replace(SHARED, str(self.shared)))
        config["cluster_name"] = f"erc-test-{self.marker}"  # its own launcher state and SSH control path
        config["provider"].update(head_ip="127.0.0.1", worker_ips=[])
        config["auth"].update(ssh_user=self.user, ssh_private_key=str(self.key))
        path = self.root / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def ray(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """The ``ray`` CLI as the user runs it: from the repo root, with the launching user's HOME."""
        start = time.time()
        proc = subprocess.run([str(Path(sys.executable).parent / "ray"), *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        print(f"$ ray {' '.join(args[:2])} … ({time.time() - start:.0f} s, rc {proc.returncode})\n"
              f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def processes(self) -> list[Proc]:
        """Everything started over this host's SSH sessions that is still running."""
        return [p for p in Proc.all() if f"ERC_SSH_TEST={self.marker}".encode() in p.environ()]

    def stop(self) -> None:
        if self.sshd.poll() is None:
            # To the group: unshare does not pass a SIGTERM on to sshd (it waited out the whole timeout),
            # sshd ends on it, and as the namespace's init takes every process in it along
            os.killpg(self.sshd.pid, signal.SIGTERM)
            try:
                self.sshd.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.sshd.kill()
                self.sshd.wait()
        for proc in self.processes():  # without a namespace (or a stray one): ours, by pid
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        cluster = f"erc-test-{self.marker}"  # the SSH control path Ray made for this cluster name
        control = Path(f"/tmp/ray_ssh_{hashlib.sha256(self.user.encode()).hexdigest()[:10]}") / (
            hashlib.sha256(cluster.encode()).hexdigest()[:10])
        shutil.rmtree(control, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def ssh_host():
    host = SshHost()
    yield host
    host.stop()


def _mlflow_server_pids(host: SshHost) -> set[int]:
    return {p.pid for p in host.processes() if "server" in p.cmdline and any(a.endswith("mlflow") for a in p.cmdline[:3])}


@pytest.mark.slow
def test_ray_up_submit_down_over_ssh(ssh_host, demo_root, demo_encoders):
    from ray.autoscaler._private.util import prepare_config

    for port in (MLFLOW_PORT, GCS_PORT):
        assert not reachable(f"127.0.0.1:{port}"), f"port {port} (cluster-onprem.yaml's) is taken on this machine"
    cfg = ssh_host.cluster_config("cluster-onprem.yaml")
    prepared = prepare_config(yaml.safe_load(cfg.read_text()))
    assert ssh_host.ray("get-auth-token", "--generate").returncode == 0

    # --- ray up: every setup and start command runs over SSH, in the head's login shell
    up = ssh_host.ray("up", "-y", str(cfg))
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-2000:]
    log = up.stdout + up.stderr
    commands = [*prepared["setup_commands"], *prepared["head_setup_commands"], *prepared["head_start_ray_commands"]]
    missing = [c for c in commands if f"Running `{c}`" not in log and f"; {c}`" not in log]
    assert not missing, f"not run over SSH: {missing}"
    assert re.search(r"Successfully installed erc-sweeps", log), "pip install -r requirements.txt did not install"
    where = ssh_host.ray("exec", str(cfg), "python -c 'import sweeps; print(sweeps.__file__)'")
    assert str(ssh_host.home / "erc-sweeps" / "sweeps") in where.stdout  # the head runs the synced checkout
    assert "MLflow serves http://127.0.0.1:5000" in log
    # It answered /health before `ray up` went on to start Ray; on a loaded machine one request can still
    # take more than a few seconds while the head starts Ray, so ask until a minute has passed.
    deadline = time.monotonic() + 60
    while not answers(f"http://127.0.0.1:{MLFLOW_PORT}") and time.monotonic() < deadline:
        time.sleep(2)
    assert answers(f"http://127.0.0.1:{MLFLOW_PORT}"), "the head's MLflow server stopped answering /health"
    others = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout.split()
    assert not [ip for ip in others if reachable(f"{ip}:{MLFLOW_PORT}")], "MLflow listens beyond 127.0.0.1"
    if shutil.which("ss"):  # for the record: Ray's GCS listens on every interface, whatever the node IP
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True, check=False).stdout
        print("listening:", [line.split()[3] for line in listening.splitlines()[1:]
                             if line.split()[3].endswith((f":{GCS_PORT}", f":{MLFLOW_PORT}"))])

    # --- the data as the README sends it, then the sweep on the head, joining the cluster
    assert ssh_host.ray("rsync-up", str(cfg), f"{demo_root}/", "~/data/").returncode == 0
    storage = ssh_host.shared / "ray_results"
    submit = ssh_host.ray("submit", str(cfg), "sweeps/ablation.py", "--", "--address", "auto", "--data", "~/data",
                          "--audio-encoder", str(demo_encoders[0]), "--text-encoder", str(demo_encoders[1]),
                          "--preset", "demo", "--storage", str(storage), "--gpus-per-trial", "0",
                          "--folds", "0", "--fusions", "outer", "--labels", "peakl,soft", "--epochs", "1",
                          "--quiet")
    assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-3000:]
    assert "Per-arm mean" in submit.stdout

    # MLFLOW_TRACKING_URI from the head's ~/.bashrc sent the runs to the head's server
    client = MlflowClient(f"http://127.0.0.1:{MLFLOW_PORT}")
    runs = children(client)
    assert Counter(r.info.run_name for r in runs) == Counter(["fold0-outer-peakl", "fold0-outer-soft"])
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags[contract.NODE_IP] for r in runs} == {"127.0.0.1"}
    [parent] = parents(client)
    assert parent.info.status == "FINISHED"
    sweep = parent.data.tags[contract.SWEEP]
    assert list((storage / sweep).glob("experiment_state-*.json"))  # Tune's state on the shared dir
    for r in runs:  # checkpoints, through the server, stored on the shared dir
        assert contract.HEAD_CHECKPOINT in {a.path for a in client.list_artifacts(r.info.run_id, contract.CHECKPOINT_DIR)}
    assert len(list((ssh_host.shared / "mlflow-artifacts").rglob("head.pt"))) == 2

    # --- a second ray up: nothing changes, MLflow keeps running (Ray itself restarts, as ray up does)
    servers = _mlflow_server_pids(ssh_host)
    assert len(servers) == 1, servers
    bashrc = (ssh_host.home / ".bashrc").read_text()
    again = ssh_host.ray("up", "-y", str(cfg))
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    assert "MLflow already serves http://127.0.0.1:5000" in again.stdout + again.stderr
    assert _mlflow_server_pids(ssh_host) == servers
    assert (ssh_host.home / ".bashrc").read_text() == bashrc
    assert len(children(client)) == 2
    assert ssh_host.ray("exec", str(cfg), "ray status").returncode == 0

    # --- ray down: nothing of the cluster keeps running (MLflow stops GRACE_S after Ray)
    down = ssh_host.ray("down", "-y", str(cfg))
    assert down.returncode == 0
    deadline = time.time() + GRACE_S + 45
    left = ssh_host.processes()
    while time.time() < deadline and [p for p in left if p.name != "sshd"]:
        time.sleep(2)
        left = ssh_host.processes()
    left = [" ".join(p.cmdline)[:150] for p in left if p.name != "sshd"]
    assert not left, f"left running after ray down: {left}"
    assert not reachable(f"127.0.0.1:{MLFLOW_PORT}") and not reachable(f"127.0.0.1:{GCS_PORT}")


# ---------------------------------------------------------------------------------------------
# S3: Tune's storage_path and MLflow's artifacts


class S3Server:
    """moto's standalone S3 server on 127.0.0.1, with one bucket."""

    def __init__(self, root: Path, bucket: str = "erc-sweeps-test") -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = bucket
        self.log = (root / "moto.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while not reachable(f"127.0.0.1:{self.port}"):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"moto server did not start: {(root / 'moto.log').read_text()[-2000:]}")
            time.sleep(0.3)

    @property
    def env(self) -> dict[str, str]:
        # Honoured by boto3 (MLflow) and by pyarrow's S3 filesystem (Tune); fake keys, no instance metadata.
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def keys(self, prefix: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def s3(tmp_path, monkeypatch):
    server = S3Server(tmp_path)
    for key, value in {**server.env, "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}.items():
        monkeypatch.setenv(key, value)  # the MLflow server and the sweeps below inherit them
    server.client().create_bucket(Bucket=server.bucket)
    yield server
    server.stop()


@pytest.mark.slow
def test_s3_storage_killed_sweep_resumes_and_artifacts_come_back_through_mlflow(s3, demo_root, demo_encoders,
                                                                                tmp_path):
    server = MlflowServer(tmp_path / "mlflow", store_args=[
        "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
        "--artifacts-destination", f"s3://{s3.bucket}/mlflow-artifacts"])
    try:
        cache = tmp_path / "cache"
        # three trials one at a time: the kill lands after one finished, even on a quiet machine
        cmd = sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0", "--fusions", "outer",
                            "--labels", "peakl,soft,hard", "--epochs", "40", "--max-concurrent", "1",
                            "--storage", f"s3://{s3.bucket}/ray_results", "--tracking-uri", server.uri)
        client = MlflowClient(server.uri)
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        driver = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True, env=env)
        runs = wait_for_runs(client, driver, finished_and_running, timeout=400)
        finished_before = {r.info.run_name: r.info.run_id for r in runs if r.info.status == "FINISHED"}
        [parent] = parents(client)
        sweep = parent.data.tags[contract.SWEEP]
        state = s3.keys(f"ray_results/{sweep}/")
        assert any(re.search(r"/experiment_state-[^/]+\.json$", k) for k in state), state
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        driver.wait()

        proc = run(cmd, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"resuming sweep {sweep} from s3://{s3.bucket}/ray_results/{sweep}" in proc.stdout
        runs = children(client)
        expected = Counter(["fold0-outer-peakl", "fold0-outer-soft", "fold0-outer-hard"])
        assert Counter(r.info.run_name for r in runs) == expected
        assert {r.info.status for r in runs} == {"FINISHED"}
        by_name = {r.info.run_name: r for r in runs}
        for name, run_id in finished_before.items():  # finished before the kill: not rerun
            assert by_name[name].info.run_id == run_id and by_name[name].data.tags[contract.ATTEMPTS] == "1"
        assert not (cache / "ray_results").exists()  # nothing of Tune's went to the local default

        # Tune's state and every trial's final checkpoint are in the bucket
        state = s3.keys(f"ray_results/{sweep}/")
        finals = [m.group(1) for k in state if (m := re.search(r"/train_trial_\w+?_(\d+)_\d+_[^/]+/checkpoint_\d+/final\.json$", k))]
        # each trial once, except one the kill caught after its checkpoint reached the bucket and before
        # Tune's state recorded it: Tune restarts that trial in a new directory and leaves the old one
        assert set(finals) == {"00000", "00001", "00002"} and len(finals) <= 4, state
        # artifacts: proxied by the server (clients need no S3 access), stored in the bucket
        for r in runs:
            assert r.info.artifact_uri.startswith("mlflow-artifacts:/"), r.info.artifact_uri
            local = client.download_artifacts(r.info.run_id, "final.json", str(tmp_path / r.info.run_name))
            assert json.loads(Path(local).read_text())
            assert s3.keys(f"mlflow-artifacts/{r.info.experiment_id}/{r.info.run_id}/artifacts/{contract.HEAD_CHECKPOINT}")
        [parent] = parents(client)
        assert parent.info.status == "FINISHED"
        report = client.download_artifacts(parent.info.run_id, f"{contract.REPORT_DIR}/report.md", str(tmp_path / "parent"))
        assert sweep in Path(report).read_text()
    finally:
        server.stop()


def test_head_mlflow_fails_loudly_when_the_server_cannot_start(tmp_path):
    """A broken MLflow start command fails `ray up` with the server's own error, not a silent head."""
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "sweeps.head_mlflow", "--host", "127.0.0.1", "--port",
                           str(free_port()), "--log", str(tmp_path / "server.log"), "--", "--no-such-flag"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "did not come up" in proc.stderr and "--no-such-flag" in proc.stderr  # mlflow's usage error
    assert "mlflow server exited with code 2" in (tmp_path / "server.log").read_text()
    print(f"failed in {time.time() - start:.1f} s")
