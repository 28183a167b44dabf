"""The head's MLflow server (sweeps/head_mlflow.py) as `ray up` starts it, here on 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from sweeps.head_mlflow import TRACKING_ONLY, answers
from tests.sweep_helpers import REPO, Proc, free_port


def _group(pgid: int) -> list[str]:
    """The command lines of the live processes in process group ``pgid``."""
    return [" ".join(p.cmdline) for p in Proc.all() if p.pgid == pgid]


def test_the_head_server_tracks_and_starts_no_job_runner(tmp_path):
    """MLflow 3 starts a job runner and Huey consumers by default (each a process importing MLflow);
    the head's server serves tracking alone, unless the environment asks for jobs."""
    port, log = free_port(), tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in TRACKING_ONLY}
    proc = subprocess.run([sys.executable, "-m", "sweeps.head_mlflow", "--host", "127.0.0.1", "--port", str(port),
                           "--grace", "0", "--log", str(log), "--", "--backend-store-uri",
                           f"sqlite:///{tmp_path / 'mlflow.db'}", "--workers", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [(supervisor, server)] = re.findall(r"supervisor (\d+): mlflow server pid (\d+)", log.read_text())
    try:
        # MLflow launches its job runner right after the web server's process, long before /health answers
        assert answers(f"http://127.0.0.1:{port}")
        group = _group(int(server))
        assert any("uvicorn" in c for c in group), group
        assert not [c for c in group if "mlflow.server.jobs" in c or "huey" in c], group
    finally:
        os.kill(int(supervisor), signal.SIGTERM)  # the supervisor stops its server
    deadline = time.time() + 60
    while _group(int(server)) and time.time() < deadline:
        time.sleep(0.5)
    assert not _group(int(server))
