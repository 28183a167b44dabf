"""Issue 26's speed figures side by side with their targets, each measured by the benchmark that owns it.

  cold_s                 python sweeps/ablation.py from an empty cache and a fresh MLflow store (demo_sweep.py)
  rerun_s                the same command again: every trial finished, so the report is reprinted from MLflow
  grid_busy_fraction     trial CPU time / (wall × CPUs) while the grid's trials run (per_arm.py, on warm caches)
  search_busy_fraction   the same during the per-arm searches (per_arm.py --tune-per-arm N)
  overhead_s_per_trial   Tune + MLflow time per no-op trial over a plain loop (tune_overhead.py)

Beside them, with no target: grid_slot_occupancy and search_slot_occupancy (per_arm.py), the share of
each trial slot's time that a trial held it; fixed_start_s and marginal_overhead_s_per_trial
(tune_overhead.py), the overhead split into what a sweep pays once and what each further trial adds.

Targets (a quiet 2-core machine): cold ≤ 60 s, rerun ≤ 5 s, both busy fractions ≥ 0.9, overhead ≤ 0.15 s.
On a shared machine compare runs made side by side; the load average before and after is printed.
``--smoke-test`` runs every part with its smallest arguments (a check that this runs, not a measurement).
Last line: a JSON object with the figures above (null where a part was skipped) and the load averages.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# printed beside the targets, with no target of their own
BESIDE = {"grid_slot_occupancy": "the slots' side of the busy fraction above",
          "search_slot_occupancy": "the slots' side of the busy fraction above",
          "fixed_start_s": "of the overhead: once per sweep (trial processes' start-up)",
          "marginal_overhead_s_per_trial": "of the overhead: each further trial"}
TARGETS = {"cold_s": ("<=", 60.0), "rerun_s": ("<=", 5.0), "grid_busy_fraction": (">=", 0.9),
           "search_busy_fraction": (">=", 0.9), "overhead_s_per_trial": ("<=", 0.15)}


def last_json(args: list[str], cache: Path, log: Path) -> dict:
    """Run a benchmark script and return its JSON last line."""
    env = {**os.environ, "ERC_CACHE": str(cache)}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, *args], env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({proc.returncode}); see {log}")
    return json.loads(log.read_text().strip().splitlines()[-1])


def met(name: str, value: float | None) -> str:
    if value is None:
        return "skipped"
    op, target = TARGETS[name]
    return "met" if (value <= target if op == "<=" else value >= target) else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tune-per-arm", type=int, default=8, metavar="N", help="per_arm.py's N (0: skip it)")
    parser.add_argument("--smoke-test", action="store_true", help="every part with its smallest arguments")
    parser.add_argument("--skip", nargs="*", default=[], choices=["demo_sweep", "per_arm", "tune_overhead"],
                        help="parts not to run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="targets-"))
    load_before = os.getloadavg()[0]
    figures: dict[str, float | None] = dict.fromkeys(TARGETS)
    smoke = ["--smoke-test"] if args.smoke_test else []
    if "demo_sweep" not in args.skip:
        demo = last_json([str(HERE / "demo_sweep.py"), "--rerun", "--no-warm", *smoke], work / "demo", work / "demo_sweep.log")
        figures["cold_s"], figures["rerun_s"] = demo["cold_s"], demo["rerun_s"]
    if "per_arm" not in args.skip and args.tune_per_arm:
        arm = last_json([str(HERE / "per_arm.py"), "--tune-per-arm", str(args.tune_per_arm), *smoke],
                        work / "per_arm", work / "per_arm.log")
        figures["grid_busy_fraction"] = arm["grid_busy_fraction"]
        figures["search_busy_fraction"] = arm["search_busy_fraction"]
        # beside the targets: whether the slots held trials (the busy fractions also count the driver's CPU)
        figures["grid_slot_occupancy"] = arm["grid_slot_occupancy"]
        figures["search_slot_occupancy"] = arm["search_slot_occupancy"]
    if "tune_overhead" not in args.skip:
        folds = ["--folds", "1"] if args.smoke_test else []
        over = last_json([str(HERE / "tune_overhead.py"), "--no-reference", *folds], work / "overhead",
                         work / "tune_overhead.log")
        figures["overhead_s_per_trial"] = over["overhead_s_per_trial"]
        # the split of that overhead (null on one fold, as in the smoke test)
        figures["fixed_start_s"] = over["fixed_start_s"]
        figures["marginal_overhead_s_per_trial"] = over["marginal_overhead_s_per_trial"]
    width = max(map(len, [*TARGETS, *BESIDE]))
    for name, (op, target) in TARGETS.items():
        value = figures[name]
        shown = "-" if value is None else f"{value:g}"
        print(f"{name.ljust(width)}  {shown:>8}  target {op} {target:g}  {met(name, value)}")
    for name, what in BESIDE.items():
        if figures.get(name) is not None:
            print(f"{name.ljust(width)}  {figures[name]:>8g}  ({what})")
    print(f"logs in {work}")
    print(json.dumps({**figures, "loadavg_1m_before": round(load_before, 2),
                      "loadavg_1m_after": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
