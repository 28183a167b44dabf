"""Per-arm tuning at machine width: the demo grid alone vs the same grid with ``--tune-per-arm N``.

Both run in this one process, on the same warm caches (demo corpus, encoders, features; built first
if missing, untimed) and the same Ray runtime (started first, untimed), each as a fresh sweep:

  grid     python sweeps/ablation.py                     (30 trials, untuned defaults)
  per_arm  python sweeps/ablation.py --tune-per-arm N    (30 searches × N trials at once, then the grid)

Busy fraction = CPU time of the trials (Ray's worker processes, read from /proc, with the workers
that exited counted through the raylet) / (wall time × CPUs): how much of the machine did trial work.
Work = the trials' summed wall time (slot-seconds) as MLflow recorded it.
Last line: a JSON object with grid_s, per_arm_s, per_arm_vs_grid_wall_ratio, search_s, the busy
fractions and the work figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on; the name may hold spaces


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def worker_cpu_s() -> float:
    """CPU seconds of this process tree's Ray workers so far, live ones and those that exited."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    mine, frontier = set(), {os.getpid()}
    while frontier:  # descendants of this process
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - mine
        mine |= frontier
    total = 0.0
    for pid in mine:
        fields = _stat(pid)
        if fields is None:
            continue
        if _cmdline(pid).startswith("ray::"):  # a worker: its own user + system time
            total += (int(fields[11]) + int(fields[12])) / TICKS
        elif "raylet" in _cmdline(pid).split(" ")[0]:  # workers that exited, reaped by the raylet
            total += (int(fields[13]) + int(fields[14])) / TICKS
    return total


@dataclass
class Phase:
    wall_s: float = 0.0
    worker_cpu_s: float = 0.0
    driver_cpu_s: float = 0.0

    def busy(self, cpus: int) -> float:
        return self.worker_cpu_s / (self.wall_s * cpus)


class Timer:
    def __init__(self) -> None:
        self.phase = Phase()

    def __enter__(self) -> Self:
        self._t, self._w, self._d = time.perf_counter(), worker_cpu_s(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.phase = Phase(time.perf_counter() - self._t, worker_cpu_s() - self._w, time.process_time() - self._d)


def trial_work_s(sweep: str, cache: Path, stage: str) -> tuple[int, float]:
    """How many trials of a stage the sweep ran, and their summed wall time (slot-seconds)."""
    from mlflow.tracking import MlflowClient

    from analysis import contract as C
    from sweeps.tracking import default_tracking_uri

    client = MlflowClient(default_tracking_uri(cache))
    exp = client.get_experiment_by_name("erc-sweeps").experiment_id
    runs = client.search_runs([exp], C.tag_filter({C.SWEEP: sweep, C.ROLE: C.TRIAL_ROLE, C.STAGE: stage}),
                              max_results=10000)
    return len(runs), sum((r.info.end_time - r.info.start_time) / 1000 for r in runs if r.info.end_time)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tune-per-arm", type=int, default=8, metavar="N", help="search trials per arm and fold")
    parser.add_argument("--cache-dir", type=Path, default=None, help="as for ablation.py (default: $ERC_CACHE)")
    args = parser.parse_args()

    from sweeps import ablation, grid
    from sweeps.prepare import prepare
    from sweeps.runner import init_ray
    from sweeps.settings import settings_from_args

    stamp = time.strftime("%Y%m%d-%H%M%S")
    common = ["--quiet", *(["--cache-dir", str(args.cache_dir)] if args.cache_dir else [])]
    runs = {"grid": ["--name", f"bench-grid-{stamp}"],
            "per_arm": ["--name", f"bench-per-arm-{stamp}", "--tune-per-arm", str(args.tune_per_arm)]}
    settings = settings_from_args(ablation.parse_args(common))
    prepare(settings)  # warm caches for both runs
    init_ray(settings)  # one Ray runtime for both runs; its start-up is timed in neither
    cpus = os.cpu_count() or 1
    load_before = os.getloadavg()

    search = Timer()
    tune_each_arm = grid.tune_each_arm

    def timed_search(*a, **kw):  # the searches' own phase inside the per-arm run
        with search:
            return tune_each_arm(*a, **kw)

    grid.tune_each_arm = timed_search
    phases: dict[str, Phase] = {}
    for label, flags in runs.items():
        with Timer() as timer:
            code = ablation.main([*common, *flags])
        phases[label] = timer.phase
        if code != 0:
            raise SystemExit(f"{label} run failed with exit code {code}")
        print(f"{label}: {timer.phase.wall_s:.1f} s", flush=True)

    grid_trials, grid_work = trial_work_s(runs["grid"][1], settings.cache_dir, "grid")
    search_trials, search_work = trial_work_s(runs["per_arm"][1], settings.cache_dir, "search")
    _, tuned_grid_work = trial_work_s(runs["per_arm"][1], settings.cache_dir, "grid")
    figures = {
        "grid_s": round(phases["grid"].wall_s, 1),
        "per_arm_s": round(phases["per_arm"].wall_s, 1),
        "per_arm_vs_grid_wall_ratio": round(phases["per_arm"].wall_s / phases["grid"].wall_s, 2),
        "tune_per_arm": args.tune_per_arm,
        "search_s": round(search.phase.wall_s, 1),
        "search_busy_fraction": round(search.phase.busy(cpus), 3),
        "grid_busy_fraction": round(phases["grid"].busy(cpus), 3),
        "per_arm_busy_fraction": round(phases["per_arm"].busy(cpus), 3),
        "search_driver_cpu_fraction": round(search.phase.driver_cpu_s / (search.phase.wall_s * cpus), 3),
        "grid_trials": grid_trials, "search_trials": search_trials,
        "grid_work_slot_s": round(grid_work, 1), "search_work_slot_s": round(search_work, 1),
        "tuned_grid_work_slot_s": round(tuned_grid_work, 1),
        "cpus": cpus, "loadavg_1m_before": round(load_before[0], 2), "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
