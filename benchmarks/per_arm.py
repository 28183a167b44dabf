"""Per-arm tuning at machine width: the demo grid alone vs the same grid with ``--tune-per-arm N``.

Both run in this one process, on the same warm caches (demo corpus, encoders, features; built first
if missing, untimed) and the same Ray runtime (started first, untimed), each as a fresh sweep:

  grid     python sweeps/ablation.py                     (30 trials, untuned defaults)
  per_arm  python sweeps/ablation.py --tune-per-arm N    (30 searches × N trials at once, then the grid)

Busy fraction = CPU time of the trials (Ray's worker processes, sampled from /proc) / (wall time ×
CPUs): how much of the machine did trial work, while the trials run: grid_busy_fraction over the grid's
Tuner, search_busy_fraction over the searches (grid_run_busy_fraction: the whole grid run, its set-up and
report included). The trials' CPU time is also the work itself:
per_arm_vs_grid_cpu_ratio is how much more work per-arm tuning is, which no scheduling removes.
Work in slot-seconds = the trials' summed wall time as MLflow recorded it; slot occupancy = that work
/ (the phase's wall time × trial slots): whether the scheduler keeps every slot holding a trial, which
the CPU-based busy fractions cannot separate from the driver's own CPU on a small machine. The
``…_slot_occupancy_trials_span`` figures divide the same work by the span from the first trial's start to the
last one's end instead: the share the trial processes' start-up does not explain.
Work bound: the per-arm run's trial CPU time / CPUs, over grid_s — the wall ratio a perfect scheduler
would reach on this work (per_arm_vs_grid_work_bound_ratio).
Last line: a JSON object with grid_s, per_arm_s, per_arm_vs_grid_wall_ratio, search_s, the busy
fractions and the work figures.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
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


def ray_workers_cpu() -> dict[int, float]:
    """CPU seconds so far of each Ray worker process (``ray::…``) started under this process."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    mine, frontier = set(), {os.getpid()}
    while frontier:  # descendants of this process
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - mine
        mine |= frontier
    cpu = {}
    for pid in mine:
        if _cmdline(pid).startswith("ray::") and (fields := _stat(pid)) is not None:
            cpu[pid] = (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    return cpu


@dataclass
class Phase:
    wall_s: float = 0.0
    worker_cpu_s: float = 0.0
    driver_cpu_s: float = 0.0  # includes the sampling thread's own small share

    def busy(self, cpus: int) -> float:
        return self.worker_cpu_s / (self.wall_s * cpus)


class Timer:
    """Wall time, driver CPU and the Ray workers' CPU of a phase.

    Workers are sampled every ``every`` seconds: exited workers are not reaped into the raylet's
    children's times, so a worker counts with what it showed last (at most ``every`` s of CPU is
    missed per worker that exits; with actor reuse there are few).
    """

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.phase = Phase()

    def _sample(self, baseline: bool = False) -> None:
        for pid, cpu in ray_workers_cpu().items():
            self._first.setdefault(pid, cpu if baseline else 0.0)  # a worker born in the phase counts whole
            self._last[pid] = cpu

    def _poll(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> Self:
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._sample(baseline=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._t, self._d = time.perf_counter(), time.process_time()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        wall, driver = time.perf_counter() - self._t, time.process_time() - self._d
        self._stop.set()
        self._thread.join()
        self._sample()
        self.phase = Phase(wall, sum(cpu - self._first[pid] for pid, cpu in self._last.items()), driver)


def trial_work_s(sweep: str, cache: Path, stage: str) -> tuple[int, float, float]:
    """How many trials of a stage the sweep ran, their summed wall time (slot-seconds), and the span from the
    first trial's start to the last one's end (seconds; the trial processes' start-up comes before it)."""
    from mlflow.tracking import MlflowClient

    from erc import contract as C
    from erc import vocab
    from sweeps.tracking import default_tracking_uri

    client = MlflowClient(default_tracking_uri(cache))
    exp = client.get_experiment_by_name(vocab.EXPERIMENT).experiment_id
    runs = client.search_runs([exp], C.tag_filter({C.SWEEP: sweep, C.ROLE: C.TRIAL_ROLE, C.STAGE: stage}),
                              max_results=10000)
    ended = [r for r in runs if r.info.end_time]
    span = (max(r.info.end_time for r in ended) - min(r.info.start_time for r in ended)) / 1000 if ended else 0.0
    return len(runs), sum((r.info.end_time - r.info.start_time) / 1000 for r in ended), span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tune-per-arm", type=int, default=8, metavar="N", help="search trials per arm and fold")
    parser.add_argument("--cache-dir", type=Path, default=None, help="as for ablation.py (default: $ERC_CACHE)")
    parser.add_argument("--smoke-test", action="store_true",
                        help="both runs with ablation.py's --smoke-test (a check that this runs, not a measurement)")
    args = parser.parse_args()

    from sweeps import ablation, grid
    from sweeps.cluster import init_ray, trial_slots
    from sweeps.prepare import prepare
    from sweeps.settings import settings_from_args

    stamp = time.strftime("%Y%m%d-%H%M%S")
    common = ["--quiet", *(["--cache-dir", str(args.cache_dir)] if args.cache_dir else []),
              *(["--smoke-test"] if args.smoke_test else [])]
    runs = {"grid": ["--name", f"bench-grid-{stamp}"],
            "per_arm": ["--name", f"bench-per-arm-{stamp}", "--tune-per-arm", str(args.tune_per_arm)]}
    settings = settings_from_args(ablation.parse_args(common))
    prepare(settings)  # warm caches for both runs
    init_ray(settings)  # one Ray runtime for both runs; its start-up is timed in neither
    cpus = os.cpu_count() or 1
    slots = trial_slots(settings.cpus_per_trial, 0.0) or 1  # trials at once on this private Ray (no GPU)
    load_before = os.getloadavg()

    search = Timer()
    tune_each_arm = grid.tune_each_arm

    def timed_search(*a, **kw):  # the searches' own phase inside the per-arm run
        with search:
            return tune_each_arm(*a, **kw)

    grid.tune_each_arm = timed_search

    trials = Timer()
    run_grid_tuner = grid.run_tuner

    def timed_grid(*a, **kw):  # the grid's trials inside each run: without set-up and report
        with trials:
            return run_grid_tuner(*a, **kw)

    grid.run_tuner = timed_grid
    grid_trials_phase: dict[str, Phase] = {}
    phases: dict[str, Phase] = {}
    for label, flags in runs.items():
        with Timer() as timer:
            code = ablation.main([*common, *flags])
        phases[label] = timer.phase
        grid_trials_phase[label] = trials.phase
        if code != 0:
            raise SystemExit(f"{label} run failed with exit code {code}")
        print(f"{label}: {timer.phase.wall_s:.1f} s", flush=True)

    grid_trials, grid_work, grid_span = trial_work_s(runs["grid"][1], settings.cache_dir, "grid")
    search_trials, search_work, search_span = trial_work_s(runs["per_arm"][1], settings.cache_dir, "search")
    _, tuned_grid_work, _ = trial_work_s(runs["per_arm"][1], settings.cache_dir, "grid")
    figures = {
        "grid_s": round(phases["grid"].wall_s, 1),
        "per_arm_s": round(phases["per_arm"].wall_s, 1),
        "per_arm_vs_grid_wall_ratio": round(phases["per_arm"].wall_s / phases["grid"].wall_s, 2),
        "tune_per_arm": args.tune_per_arm,
        "search_s": round(search.phase.wall_s, 1),
        "search_busy_fraction": round(search.phase.busy(cpus), 3),
        # while the grid's trials run (its Tuner), as the search's figure is while the searches run
        "grid_busy_fraction": round(grid_trials_phase["grid"].busy(cpus), 3),
        "grid_trials_s": round(grid_trials_phase["grid"].wall_s, 1),
        # the whole grid run: set-up, the trials, and the report (tests, figures, files; the driver alone)
        "grid_run_busy_fraction": round(phases["grid"].busy(cpus), 3),
        "per_arm_busy_fraction": round(phases["per_arm"].busy(cpus), 3),
        "search_driver_cpu_fraction": round(search.phase.driver_cpu_s / (search.phase.wall_s * cpus), 3),
        # the work itself, as CPU time of the trials (contention from other processes barely changes it)
        "grid_trial_cpu_s": round(phases["grid"].worker_cpu_s, 1),
        "search_trial_cpu_s": round(search.phase.worker_cpu_s, 1),
        "per_arm_trial_cpu_s": round(phases["per_arm"].worker_cpu_s, 1),
        "per_arm_vs_grid_cpu_ratio": round(phases["per_arm"].worker_cpu_s / phases["grid"].worker_cpu_s, 2),
        # the wall ratio no scheduler can beat: the per-arm run's trial CPU time spread over every CPU
        "per_arm_vs_grid_work_bound_ratio": round(phases["per_arm"].worker_cpu_s / cpus / phases["grid"].wall_s, 2),
        "grid_trials": grid_trials, "search_trials": search_trials,
        "grid_work_slot_s": round(grid_work, 1), "search_work_slot_s": round(search_work, 1),
        "tuned_grid_work_slot_s": round(tuned_grid_work, 1),
        # the slots' side of "busy": how much of each trial slot's time a trial held it (MLflow's run
        # times over the phase's wall); the busy fractions above also count the driver's CPU against it
        "grid_slot_occupancy": round(grid_work / (grid_trials_phase["grid"].wall_s * slots), 3),
        "search_slot_occupancy": round(search_work / (search.phase.wall_s * slots), 3),
        # the same from the first trial's start to the last one's end: without the trial processes' start-up
        # and Tune's set-up and end, i.e. what the turnaround between trials and the last trials' tail leave
        "grid_slot_occupancy_trials_span": round(grid_work / (grid_span * slots), 3) if grid_span else None,
        "search_slot_occupancy_trials_span": round(search_work / (search_span * slots), 3) if search_span else None,
        "slots": slots,
        "cpus": cpus, "loadavg_1m_before": round(load_before[0], 2), "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
