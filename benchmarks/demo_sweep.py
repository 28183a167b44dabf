"""Wall time of the embedded default, ``python sweeps/ablation.py``, as a user runs it.

  cold  from an empty cache: demo corpus, demo encoders, feature cache, 30 trials, report
  rerun (with --rerun)  the cold command again: every trial finished, the report reprinted from MLflow
  warm  the same again with every cache warm (a new sweep name, so the 30 trials really run;
        ``--no-warm`` leaves it out)
  tune_per_arm (with --tune-per-arm N)  the warm grid preceded by per-arm tuning with N trials/arm
``--smoke-test`` passes ablation.py's own ``--smoke-test`` to every run (fold 0, one epoch: a check that
the benchmark runs, not a measurement of the default).
Last line: a JSON object with cold_s, warm_s (and rerun_s, tune_per_arm_s, tune_per_arm_vs_grid).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ABLATION = Path(__file__).resolve().parent.parent / "sweeps" / "ablation.py"


def timed(args: list[str], cache: Path, log: Path) -> float:
    env = {**os.environ, "ERC_CACHE": str(cache)}
    env.pop("MLFLOW_TRACKING_URI", None)
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, str(ABLATION), "--quiet", *args], env=env, stdout=out,
                              stderr=subprocess.STDOUT, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args) or 'ablation.py'} failed ({proc.returncode}); see {log}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tune-per-arm", type=int, default=0, help="also time --tune-per-arm N (e.g. 8)")
    parser.add_argument("--smoke-test", action="store_true", help="every run with ablation.py's --smoke-test")
    parser.add_argument("--rerun", action="store_true", help="also time the cold command run again (finished)")
    parser.add_argument("--no-warm", action="store_true", help="leave out the warm run (only cold, and --rerun)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="the cache to use (default: a new empty one; a cache with the demo already built makes "
                             "'cold' a warm start: for checking that this runs, not for its figures)")
    args = parser.parse_args()
    if args.no_warm and args.tune_per_arm:
        parser.error("--tune-per-arm is compared with the warm run: leave out --no-warm")
    cache = args.cache or Path(tempfile.mkdtemp(prefix="demo-sweep-"))
    cache.mkdir(parents=True, exist_ok=True)
    smoke = ["--smoke-test"] if args.smoke_test else []
    figures = {"cold_s": round(timed(smoke, cache, cache / "cold.log"), 1)}
    print(f"cold (empty cache): {figures['cold_s']} s", flush=True)
    if args.rerun:
        figures["rerun_s"] = round(timed(smoke, cache, cache / "rerun.log"), 1)
        print(f"rerun (every trial finished): {figures['rerun_s']} s", flush=True)
    if not args.no_warm:
        figures["warm_s"] = round(timed([*smoke, "--name", "warm"], cache, cache / "warm.log"), 1)
        print(f"warm (caches built): {figures['warm_s']} s", flush=True)
    if args.tune_per_arm:
        t = timed([*smoke, "--name", "tuned", "--tune-per-arm", str(args.tune_per_arm)], cache, cache / "tuned.log")
        figures["tune_per_arm_s"] = round(t, 1)
        figures["tune_per_arm_vs_grid"] = round(t / figures["warm_s"], 2)
        print(f"--tune-per-arm {args.tune_per_arm}: {t:.1f} s ({figures['tune_per_arm_vs_grid']}× the warm grid)")
    print(f"logs in {cache}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
