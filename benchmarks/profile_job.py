"""Where the main job's time goes: py-spy over ``python sweeps/ablation.py`` and every process it starts.

  cold   the default job from an empty cache and a fresh MLflow store (demo corpus, encoders, features, 30 trials)
  rerun  the same command again on that cache (every trial finished)
  trial  one grid trial (fold 0, outer-peakl) as a new sweep on that cache

Each phase runs ``python sweeps/ablation.py --quiet …`` with py-spy attached to it from its start::

    py-spy record --subprocesses --format raw --rate RATE -o PHASE.raw --pid JOB

(py-spy samples only threads that are on a CPU, so a sample is CPU time; Ray's processes are sampled
too, each under its own command line). The summary prints per phase the wall time, the samples by
process kind (driver, trial workers ``ray::…``, Ray's own Python daemons), and the top functions by
inclusive samples in the driver and in the trial workers. ``--no-py-spy`` times the phases only.
Last line: a JSON object with each phase's wall time and its samples by process kind.
Needs ``py-spy`` (requirements.txt); on a machine that forbids ptrace, run it as root or with --no-py-spy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ABLATION = ROOT / "sweeps" / "ablation.py"
PHASES = {"cold": [], "rerun": [], "trial": ["--name", "profile-one-trial", "--folds", "0", "--fusions", "outer",
                                            "--labels", "peakl"]}
PROCESS = re.compile(r'^process (\d+):"(.*)"$', re.DOTALL)
# frames that only say "a module is being imported" (kept: the module's own frame below them)
IMPORT_FRAMES = ("<frozen importlib._bootstrap", "_call_with_frames_removed")


def kind(command: str, driver: bool) -> str:
    if driver:
        return "driver"
    # A worker is named by its script until it takes an actor or task and renames itself (ray::ImplicitFunc
    # for a trial); py-spy keeps the command line it first saw, so a trial worker found early has the script's.
    if command.startswith("ray::") or "/ray/_private/workers/" in command:
        return "ray_workers"  # trials, idle pool workers, Tune's actors
    return "ray_daemons"  # dashboard, monitor, log monitor, agents; raylet and gcs (native frames only)


def summarise(raw: Path, top: int) -> dict:
    """Samples by process kind, and the top functions (inclusive) of the driver and the trial workers."""
    by_kind: Counter = Counter()
    inclusive: dict[str, Counter] = {"driver": Counter(), "ray_workers": Counter()}
    for line in raw.read_text(errors="replace").split("\n"):
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        processes = []
        while frames and (m := PROCESS.match(frames[0])):
            processes.append(m.group(2))
            frames.pop(0)
        if not processes:
            continue
        which = kind(processes[-1], driver=len(processes) == 1)
        by_kind[which] += n
        if which in inclusive:
            seen = {f for f in frames if not f.startswith(IMPORT_FRAMES)}
            inclusive[which].update(dict.fromkeys(seen, n))
    return {"samples": dict(by_kind),
            "top": {k: c.most_common(top) for k, c in inclusive.items()}}


def run_phase(name: str, cache: Path, out: Path, rate: int, py_spy: str | None, extra: list[str]) -> float:
    """The phase's wall time; its profile in ``out/NAME.raw``.

    py-spy attaches to the job (``--pid``) rather than starting it, so the job's exit status and wall
    time are its own, and a py-spy that does not return once the job has ended (seen with
    ``--subprocesses``: a trial worker outliving its raylet, held stopped by py-spy's tracer) is
    stopped with SIGINT, which still writes the profile, instead of hanging the benchmark.
    """
    env = {**os.environ, "ERC_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, str(ABLATION), "--quiet", *PHASES[name], *extra]
    t0 = time.perf_counter()
    with (out / f"{name}.log").open("w") as log, (out / f"{name}.py-spy.log").open("w") as spy_log:
        job = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        spy = None
        if py_spy:
            spy = subprocess.Popen([py_spy, "record", "--subprocesses", "--format", "raw", "--rate", str(rate),
                                    "--output", str(out / f"{name}.raw"), "--pid", str(job.pid)],
                                   stdout=subprocess.DEVNULL, stderr=spy_log)
        code = job.wait()
        wall = time.perf_counter() - t0
        if spy is not None:
            _stop(spy)
    if code != 0:
        sys.exit(f"{name} failed ({code}); see {out / f'{name}.log'}")
    return wall


def _stop(spy: subprocess.Popen, grace_s: float = 15.0) -> None:
    """Let py-spy finish after its job ended; SIGINT (it writes what it has), then SIGKILL."""
    for sig in (None, signal.SIGINT, signal.SIGKILL):
        if sig is not None:
            spy.send_signal(sig)
        try:
            spy.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phases", nargs="*", metavar="PHASE", default=list(PHASES),
                        help=f"of {', '.join(PHASES)}, in order (default: all); rerun and trial reuse the cache")
    parser.add_argument("--cache", type=Path, default=None, help="the cache to use (default: a new empty one)")
    parser.add_argument("--out", type=Path, default=None, help="where the profiles and logs go (default: the cache)")
    parser.add_argument("--rate", type=int, default=20, help="py-spy samples per second (default %(default)s)")
    parser.add_argument("--top", type=int, default=15, help="functions shown per process kind")
    parser.add_argument("--no-py-spy", dest="py_spy", action="store_false", help="time the phases only")
    parser.add_argument("--smoke-test", action="store_true",
                        help="every phase with ablation.py's --smoke-test (a check that this runs, not a profile)")
    args = parser.parse_args()
    if unknown := set(args.phases) - set(PHASES):
        parser.error(f"unknown phase(s) {', '.join(sorted(unknown))}; choose from {', '.join(PHASES)}")
    py_spy = (shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))) if args.py_spy else None
    cache = args.cache or Path(tempfile.mkdtemp(prefix="profile-job-"))
    out = args.out or cache
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, dict] = {}
    for name in args.phases:
        wall = run_phase(name, cache, out, args.rate, py_spy, ["--smoke-test"] if args.smoke_test else [])
        figures[name] = {"wall_s": round(wall, 1)}
        print(f"\n== {name}: {wall:.1f} s wall (log {out / f'{name}.log'})", flush=True)
        if py_spy:
            summary = summarise(out / f"{name}.raw", args.top)
            figures[name]["cpu_s"] = {k: round(v / args.rate, 1) for k, v in summary["samples"].items()}
            print("   CPU seconds by process kind: " + ", ".join(f"{k} {v}" for k, v in figures[name]["cpu_s"].items()))
            for which, rows in summary["top"].items():
                if rows:
                    print(f"   top {which} (inclusive CPU s):")
                    for frame, n in rows:
                        print(f"   {n / args.rate:8.1f}  {frame[:150]}")
    print(f"profiles and logs in {out}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
