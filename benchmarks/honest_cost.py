"""What honest selection and robustness cost the default demo job (DESIGN §14).

Runs the demo grid's 30 trials (5 folds × concat/outer × hard/soft/peakl, the demo preset, seed 0) on
the demo corpus's cached features, in this process, one thread (a trial's share of the demo job), three
ways:

  before    the old default: the epoch chosen on the held-out fold (select_on=valid), no dev set, no
            robustness evaluation
  after     the new default: a dev set carved from the training sessions, evaluated every epoch, the
            epoch chosen on it, then the 8 robustness conditions on the held-out fold
  extra     inside ``after``: the seconds spent evaluating the dev set and the robustness conditions

Times are this process's CPU seconds (``time.process_time``, one thread): on a shared machine wall time
measures the neighbours. Ray's start-up, the caches and the report are the same in both jobs, so the
trials' ratio bounds the job's. ``extra_vs_training_work`` = extra / (after − extra) is the slowdown the extra evaluations alone
cause (the new default also trains on fewer rows, which hides part of it in ``after_vs_before``); both
must stay under 1.10. It also prints how far each arm's mean accuracy moved (old ``selected`` vs new).

Last line: a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from erc.vocab import FOLDS, LABEL_ARMS, cache_root

if TYPE_CHECKING:  # the functions import erc's builders, numpy and torch: --help answers at once
    from erc.table import FeatureTable

FUSIONS = ("concat", "outer")


def demo_table(cache: Path) -> FeatureTable:
    """The demo corpus's cached features, as ``python sweeps/ablation.py`` builds them (built once)."""
    from erc.data import load_corpus
    from erc.data.demo import write_demo_corpus
    from erc.encoders import build_demo_encoders
    from erc.features import build_features
    from erc.table import FeatureTable

    root = write_demo_corpus(cache / "demo" / "data", seed=0)
    corpus = load_corpus(root, verbose=False)
    audio, text = build_demo_encoders(cache / "demo" / "encoders", corpus, seed=0)
    return FeatureTable.from_dataset(build_features(corpus, str(audio), str(text), cache / "features"))


class Timed:
    """Wraps a trainer's dev evaluation and robustness to add their seconds up."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - t0
        return timed


def run_grid(table: FeatureTable, select_on: str, robust: bool, extra: Timed | None,
             folds: tuple[int, ...] = FOLDS, epochs: int | None = None) -> tuple[float, dict]:
    import numpy as np

    from erc.config import RunConfig
    from erc.trainer import Trainer

    accs: dict[str, list[float]] = {}
    t0 = time.process_time()
    for fold in folds:
        for fusion in FUSIONS:
            for labels in LABEL_ARMS:
                config = RunConfig.from_flat({"preset": "demo", "seed": 0, "fusion": fusion, "labels": labels,
                                              "select_on": select_on, "epochs": epochs})
                train, dev, valid = table.split_for(fold, select_on)
                trainer = Trainer(config, train, valid, dev=dev)
                if extra is not None:
                    trainer.evaluate_dev = extra.wrap(trainer.evaluate_dev)
                while not trainer.done:
                    trainer.run_epoch()
                result = trainer.result()
                if robust:
                    (extra.wrap(trainer.robustness) if extra is not None else trainer.robustness)()
                accs.setdefault(f"{fusion}-{labels}", []).append(result.metrics["acc"])
    return time.process_time() - t0, {arm: float(np.mean(v)) for arm, v in accs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None, help="cache root (default $ERC_CACHE or a temp dir)")
    parser.add_argument("--repeats", type=int, default=1, help="time each way this many times, keep the fastest")
    parser.add_argument("--folds", type=int, default=len(FOLDS), help="the first N folds (a smoke run: 1)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the run config's)")
    args = parser.parse_args()
    import torch

    folds = FOLDS[:args.folds]
    cache = args.cache or (cache_root() if os.environ.get("ERC_CACHE") else Path(tempfile.mkdtemp(prefix="honest-")))
    torch.set_num_threads(1)
    table = demo_table(cache)
    before = after = extra_s = float("inf")
    for _ in range(args.repeats):
        b, old = run_grid(table, "valid", robust=False, extra=None, folds=folds, epochs=args.epochs)
        timer = Timed()
        a, new = run_grid(table, "dev", robust=True, extra=timer, folds=folds, epochs=args.epochs)
        if a < after:
            after, extra_s = a, timer.seconds
        before = min(before, b)
    figures = {
        "trials": len(folds) * len(FUSIONS) * len(LABEL_ARMS),
        "before_s": round(before, 2),
        "after_s": round(after, 2),
        "extra_eval_s": round(extra_s, 2),
        "after_vs_before": round(after / before, 3),
        "extra_vs_training_work": round(extra_s / (after - extra_s), 3),
        "mean_acc_shift": {arm: round(new[arm] - old[arm], 4) for arm in old},
    }
    print(f"{figures['trials']} demo trials, 1 thread, CPU seconds: before {before:.1f} s, after {after:.1f} s "
          f"({figures['after_vs_before']}×), of which dev + robustness evaluations {extra_s:.1f} s "
          f"(+{100 * figures['extra_vs_training_work']:.1f} % on the training work)")
    for arm in old:
        print(f"  {arm:13s} mean acc: held-out-selected {old[arm]:.4f} → dev-selected {new[arm]:.4f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
