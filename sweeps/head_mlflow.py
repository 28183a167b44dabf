"""The MLflow tracking server on a Ray cluster's head, as ``ray up`` starts it (cluster.yaml, cluster-onprem.yaml).

    python -m sweeps.head_mlflow --host HEAD_IP --port 5000 --ray-address HEAD_IP:6379 -- \\
        --backend-store-uri sqlite:///$HOME/mlflow/mlflow.db --artifacts-destination DEST --workers 2

Everything after ``--`` goes to ``mlflow server``.

- Started once: when a server already answers on HOST:PORT it is left alone, so a second
  ``ray up`` (which restarts Ray) neither restarts MLflow nor drops a running sweep's connection.
- Fails loudly: it waits until the new server answers ``/health`` and otherwise exits non-zero with
  the end of the server's log, so a bad flag fails ``ray up`` instead of leaving a head without
  its tracking server.
- Stopped with the cluster: ``ray down`` only runs ``ray stop`` on the head, which knows nothing of
  MLflow. A detached supervisor therefore stops the server once Ray's head (its GCS port,
  --ray-address) has been unreachable for --grace seconds: long enough to ride out the ``ray stop``
  and ``ray start`` of a repeated ``ray up``. ``--grace 0`` keeps the server running regardless.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

GRACE_ENV = "ERC_MLFLOW_GRACE_S"
# The server only tracks. MLflow 3 also starts, by default, a job runner and seven Huey consumer processes
# for its GenAI jobs, each importing MLflow (~50 CPU-s on 2 cores, and their memory) for nothing a sweep
# uses. A value already in the environment wins.
TRACKING_ONLY = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
DEFAULT_GRACE_S = 60.0
POLL_S = 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sweeps.head_mlflow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True, help="address to bind: the head's cluster-network IP")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--ray-address", help="Ray's GCS on this head, HOST:PORT (default: HOST:6379)")
    parser.add_argument("--grace", type=float, default=os.environ.get(GRACE_ENV, str(DEFAULT_GRACE_S)),
                        help=f"seconds Ray may be down before MLflow is stopped; 0: never stop it "
                             f"(default: ${GRACE_ENV}, else {DEFAULT_GRACE_S:g})")
    parser.add_argument("--log", type=Path, default=Path("~/mlflow/server.log"),
                        help="the server's log, appended to (default: ~/mlflow/server.log)")
    parser.add_argument("--startup-timeout", type=float, default=180.0,
                        help="seconds to wait for the new server to answer (default: 180)")
    parser.add_argument("--supervise", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("mlflow_args", nargs=argparse.REMAINDER,
                        help="-- then the arguments for `mlflow server` (store, artifacts, workers)")
    args = parser.parse_args(argv)
    if args.mlflow_args[:1] == ["--"]:
        args.mlflow_args = args.mlflow_args[1:]
    if any(a in ("--host", "-h", "--port", "-p") for a in args.mlflow_args):
        parser.error("give --host and --port before `--`, not in mlflow's arguments")
    args.ray_address = args.ray_address or f"{args.host}:6379"
    args.log = args.log.expanduser()
    return args


def _url(args: argparse.Namespace) -> str:
    return f"http://{args.host}:{args.port}"


def answers(url: str) -> bool:
    try:
        return requests.get(url + "/health", timeout=3).ok
    except requests.RequestException:
        return False


def reachable(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            return True
    except OSError:
        return False


def _log_since(path: Path, offset: int, chars: int = 4000) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")[-chars:]
    except OSError:
        return f"(no log at {path})"


def launch(args: argparse.Namespace) -> int:
    url = _url(args)
    if answers(url):
        print(f"MLflow already serves {url}: left running")
        return 0
    args.log.parent.mkdir(parents=True, exist_ok=True)
    start = args.log.stat().st_size if args.log.exists() else 0
    with args.log.open("a") as log:
        # A new session: the supervisor outlives the SSH session that `ray up` runs this command in.
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "sweeps.head_mlflow", "--supervise", "--host", args.host, "--port",
             str(args.port), "--ray-address", args.ray_address, "--grace", str(args.grace),
             "--log", str(args.log), "--", *args.mlflow_args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + args.startup_timeout
    while time.time() < deadline:
        if answers(url):
            stop = f"stops {args.grace:g} s after Ray at {args.ray_address} stops" if args.grace > 0 else "never stops"
            print(f"MLflow serves {url} (supervisor pid {supervisor.pid}; it {stop}); log: {args.log}")
            return 0
        if supervisor.poll() is not None:
            break
        time.sleep(1)
    if supervisor.poll() is None:
        os.kill(supervisor.pid, signal.SIGTERM)  # the supervisor stops its server
    print(f"MLflow did not come up on {url} within {args.startup_timeout:g} s. Its log:\n"
          f"{_log_since(args.log, start)}", file=sys.stderr)
    return 1


def supervise(args: argparse.Namespace) -> int:
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", args.host, "--port",
                               str(args.port), *args.mlflow_args], start_new_session=True,
                              env={**TRACKING_ONLY, **os.environ})
    print(f"[head_mlflow] supervisor {os.getpid()}: mlflow server pid {server.pid} on {_url(args)}", flush=True)

    def stop(reason: str) -> None:
        print(f"[head_mlflow] stopping mlflow server: {reason}", flush=True)
        # its own process group: the uvicorn workers and job consumers it starts go too
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(server.pid, sig)
            except ProcessLookupError:
                break
            try:
                server.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue

    signal.signal(signal.SIGTERM, lambda *_: (stop("supervisor terminated"), sys.exit(0)))
    last_up = time.time()
    while True:
        code = server.poll()
        if code is not None:
            print(f"[head_mlflow] mlflow server exited with code {code}", flush=True)
            return code
        if args.grace > 0:
            if reachable(args.ray_address):
                last_up = time.time()
            elif time.time() - last_up > args.grace:
                stop(f"Ray at {args.ray_address} unreachable for {time.time() - last_up:.0f} s (ray down)")
                return 0
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return supervise(args) if args.supervise else launch(args)


if __name__ == "__main__":
    sys.exit(main())
