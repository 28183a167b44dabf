"""sweeps.cluster: a private Ray started early, in the background, while the driver goes on.

Each case runs in a fresh interpreter: it starts (and ends) a private Ray of its own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.sweep_helpers import REPO

STARTED_EARLY = """
import threading
import time

import ray

from sweeps.cluster import init_ray, start_ray_early
from sweeps.settings import SweepSettings

settings = SweepSettings(cache_dir={cache!r}, verbose=0)
start_ray_early(settings)
# returned before Ray is up: the start runs in its own thread
starting = [t for t in threading.enumerate() if t.name == "ray-init" and t.is_alive()]
print("main thread free", len(starting), flush=True)
init_ray(settings)  # waits for the background start
assert ray.is_initialized()
time.sleep(2)  # Ray's processes must outlive the start (they die with the thread that forked them)

# the raylet's workers now: none, though the driver registered seconds ago (a private Ray prestarts no
# idle worker per CPU, which none of a sweep's tasks or actors could use)
from pathlib import Path

def cmdline(pid):
    return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\\0", b" ").decode(errors="replace")

def parent(pid):
    stat = (Path("/proc") / str(pid) / "stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])

pids = []
for entry in Path("/proc").iterdir():
    try:
        pids.append((int(entry.name), cmdline(entry.name), parent(entry.name)))
    except (ValueError, OSError):
        continue
node = ray.get_runtime_context().get_node_id()
[raylet] = [p for p, cmd, _ in pids if "raylet/raylet" in cmd and f"--node_id={{node}}" in cmd]
booting_or_idle = [cmd for p, cmd, up in pids if up == raylet and ("default_worker.py" in cmd or cmd.startswith("ray::IDLE"))]
print("idle workers", len(booting_or_idle), flush=True)

@ray.remote
def pid():
    import os
    return os.getpid()

print("task ran in", ray.get(pid.remote(), timeout=60), flush=True)
"""

STOPPED_AND_STARTED_AGAIN = """
import ray

from sweeps.cluster import _wait_for_stop, init_ray, start_ray_early, stop_early_ray
from sweeps.settings import SweepSettings

settings = SweepSettings(cache_dir={cache!r}, verbose=0)
for attempt in range(2):
    start_ray_early(settings)
    init_ray(settings)
    node = ray.get_runtime_context().get_node_id()
    stop_early_ray()  # in the background: the next start waits for it
    print(attempt, "started", node != "", flush=True)
_wait_for_stop()
print("up after the last stop:", ray.is_initialized())
"""

FAILED_EARLY = """
from sweeps.cluster import init_ray, start_ray_early
from sweeps.settings import SweepSettings
import ray

def refuse(*args, **kwargs):
    raise RuntimeError("no Ray here")

ray.init = refuse
settings = SweepSettings(cache_dir={cache!r}, verbose=0)
start_ray_early(settings)
try:
    init_ray(settings)
except RuntimeError as err:
    print("raised:", err)
ray.init = lambda *args, **kwargs: print("tried afresh")
init_ray(settings)  # the failure was raised once; this call starts Ray again (here: the stand-in)
"""


def run_python(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code).format(cache=str(tmp_path))], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


def test_a_ray_started_early_comes_up_behind_the_driver_and_stays_up(tmp_path):
    proc = run_python(STARTED_EARLY, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "main thread free 1"
    assert lines[1] == "idle workers 0"
    assert lines[2].startswith("task ran in ")
    assert "SIGTERM handler is not set" not in proc.stderr  # the handler is set from the main thread


def test_an_early_start_that_fails_raises_in_the_thread_that_waits_for_it(tmp_path):
    proc = run_python(FAILED_EARLY, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ["raised: no Ray here", "tried afresh"]


def test_an_early_ray_is_stopped_in_the_background_and_can_start_again(tmp_path):
    proc = run_python(STOPPED_AND_STARTED_AGAIN, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # a second start waited for the first stop to finish; the stop really shut Ray down
    assert proc.stdout.splitlines() == ["0 started True", "1 started True", "up after the last stop: False"]


TRIAL_SLOTS = """
import ray

from sweeps.cluster import trial_slots

ray.init(address="local", num_cpus=3, num_gpus=1, include_dashboard=False, log_to_driver=False,
         configure_logging=False)
for cpus, gpus in ((1, 0), (0.5, 0), (2, 0), (1, 0.25), (1, 1), (4, 0), (0, 0)):
    print(cpus, gpus, trial_slots(cpus, gpus))
ray.shutdown()
"""


def test_trial_slots_counts_the_trials_a_fixed_cluster_holds_at_once(tmp_path):
    # a private Ray has no autoscaler: its size is what it has (a logical GPU is a GPU to the scheduler)
    proc = run_python(TRIAL_SLOTS, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ["1 0 3", "0.5 0 6", "2 0 1", "1 0.25 3", "1 1 1", "4 0 0", "0 0 None"]
