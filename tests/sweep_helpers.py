"""Running the sweep entry scripts as a user does (subprocesses, real Ray, real MLflow)."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import requests
from mlflow.tracking import MlflowClient

from sweeps.head_mlflow import TRACKING_ONLY

REPO = Path(__file__).resolve().parents[1]


def sweep_command(script: str, data: Path, encoders: tuple[Path, Path], cache: Path, *args: str) -> list[str]:
    return [sys.executable, str(REPO / "sweeps" / script), "--data", str(data), "--audio-encoder", str(encoders[0]),
            "--text-encoder", str(encoders[1]), "--cache-dir", str(cache),
            *(["--preset", "demo"] if script == "ablation.py" else []), *args]


def run(cmd: list[str], cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    print(proc.stdout[-5000:], proc.stderr[-5000:])
    return proc


def children(client: MlflowClient, experiment: str = "erc-sweeps", stage: str | None = "grid") -> list:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], filter_string="tags.role = 'trial'", max_results=1000)
    return [r for r in runs if stage is None or r.data.tags.get("stage") == stage]


def parents(client: MlflowClient, experiment: str = "erc-sweeps") -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], filter_string="tags.role = 'parent'")


def wait_for_runs(tracking: MlflowClient | Path, driver: subprocess.Popen, ready, *, timeout: float = 300,
                  experiment: str = "erc-sweeps", stage: str | None = "grid") -> list:
    """Poll the store until ``ready(runs)`` holds for the sweep's trial runs; an AssertionError if the
    driver ends first (say, the sweep finished before a test could kill it) or the time runs out.

    ``tracking``: a client of a tracking server, or the path of a SQLite file the driver creates. For a
    file, no MLflow client exists before the driver has created its schema and the experiment: an
    ``MlflowClient`` migrates a store's schema as it is constructed, racing the driver's own migrations.
    """
    deadline = time.time() + timeout
    runs: list = []
    client = tracking if isinstance(tracking, MlflowClient) else None
    while time.time() < deadline and driver.poll() is None:
        time.sleep(0.5)
        if client is None:
            if not sqlite_has_experiment(tracking, experiment):
                continue
            client = MlflowClient(f"sqlite:///{tracking}")
        try:
            if client.get_experiment_by_name(experiment) is None:
                continue
            runs = children(client, experiment, stage)
        except Exception:  # noqa: BLE001, S112 - the store is still being created, or the server is away
            continue
        if ready(runs):
            return runs
    ended = driver.poll() is not None and driver.stderr is not None and not driver.stderr.closed
    raise AssertionError(f"the sweep never reached the awaited state (driver rc {driver.poll()}): "
                         f"{[(r.info.run_name, r.info.status) for r in runs]}"
                         + (f"\ndriver stderr:\n{driver.stderr.read()[-3000:]}" if ended else ""))


def sqlite_has_experiment(store: Path, experiment: str) -> bool:
    """Whether a SQLite MLflow store holds ``experiment``, read with sqlite3 alone: an MLflow client on a
    store whose tables are not there yet creates them, racing the migrations of the process that is
    creating the store (under load, that process then fails). The experiment is made after them."""
    if not store.exists():
        return False
    try:
        with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)) as db:
            return db.execute("SELECT 1 FROM experiments WHERE name = ?", (experiment,)).fetchone() is not None
    except sqlite3.Error:
        return False


def finished_and_running(runs: list, finished: int = 1) -> bool:
    """At least ``finished`` runs FINISHED while another still runs: the moment to interrupt a sweep."""
    statuses = [r.info.status for r in runs]
    return statuses.count("FINISHED") >= finished and "RUNNING" in statuses


def namespaces_work() -> bool:
    """Whether this machine lets a test run a command in its own PID namespace (``unshare``), where it
    sees none of the processes, Ray's included, that other tests run at the same time."""
    try:
        return subprocess.run(UNSHARE_PID + ["true"], capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


UNSHARE_PID = ["unshare", "--pid", "--fork", "--mount-proc"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1: by default with its own SQLite store and proxied
    artifacts under ``root``; ``store_args`` replaces those (e.g. to serve an existing store)."""

    def __init__(self, root: Path, store_args: list[str] | None = None, port: int | None = None) -> None:
        self.root, self.store_args = root, store_args
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        self.log = (root / "server.log").open("a")
        store_args = store_args or ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                                    "--artifacts-destination", str(root / "artifacts")]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             *store_args, "--workers", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env={**TRACKING_ONLY, **os.environ})
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if requests.get(self.uri + "/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # a loaded machine: its workers did not exit in time
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=30)
        self.log.close()

    def restart(self) -> MlflowServer:
        """The same store served again on the same port (after ``stop``)."""
        return MlflowServer(self.root, self.store_args, port=self.port)


@dataclass
class Proc:
    """A live process, read from /proc (Linux, like the tests that use it)."""

    pid: int
    name: str
    cmdline: list[str]
    pgid: int

    @classmethod
    def all(cls) -> list[Proc]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                state, _, pgid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
                if state == "Z":
                    continue
                found.append(cls(int(entry.name), (entry / "comm").read_text().strip(),
                                 (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1], int(pgid)))
            except OSError:
                continue
        return found

    def environ(self) -> bytes:
        try:
            return Path(f"/proc/{self.pid}/environ").read_bytes()
        except OSError:
            return b""


def imported(importtime_log: str) -> set[str]:
    """The top-level packages a ``python -X importtime`` run imported (its stderr lines name every module)."""
    names = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "package":
                names.add(name.split(".")[0])
    return names
