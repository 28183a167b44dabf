"""sweeps/grid.py: the grid's explicit trial list, on a real Ray runtime."""

from __future__ import annotations

import functools
import itertools
import time
from pathlib import Path

import pytest
import ray
from ray import tune

# Ray imports this module in every trial's worker to find _stamp: sweeps.grid (torch, via the heads'
# configs) is imported inside the test, not here, so that a trial that sleeps starts in a second.


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _stamp(config, *, meeting: str | None = None):
    """A trial that records when it ran; with ``meeting`` (a folder), it also waits (up to a minute) to
    see another trial started, and reports whether it did: two trials running at once, shown by order
    of events rather than by timing."""
    start = time.time()
    met = False
    if meeting is not None:
        here = Path(meeting)
        (here / f"{config['fold']}-{config['fusion']}").touch()
        deadline = time.monotonic() + 60
        while not (met := len(list(here.iterdir())) >= 2) and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        time.sleep(1.0)
    tune.report({"start": start, "end": time.time(), "met": met})


@pytest.mark.parametrize("max_concurrent", [1, None])
def test_max_concurrent_limits_the_grid(local_ray, tmp_path, max_concurrent):
    # Tune drops TuneConfig.max_concurrent_trials for a BasicVariantGenerator: --max-concurrent once did nothing
    from sweeps.grid import grid_tuning
    from sweeps.settings import SweepSettings

    settings = SweepSettings(cache_dir=tmp_path, folds=[0, 1], fusions=["concat", "outer"], labels=["soft"],
                             max_concurrent=max_concurrent)
    space, config = grid_tuning(settings)
    config.reuse_actors = True  # as sweeps.runner runs the grid: a started worker takes the next trial
    meeting = None
    if max_concurrent is None:
        meeting = tmp_path / "meeting"
        meeting.mkdir()
    trainable = tune.with_resources(functools.partial(_stamp, meeting=None if meeting is None else str(meeting)),
                                    {"cpu": 1})
    results = tune.Tuner(trainable, param_space=space, tune_config=config,
                         run_config=tune.RunConfig(storage_path=str(tmp_path / "runs"), verbose=0)).fit()
    assert not results.errors and len(results) == 4
    if max_concurrent == 1:  # one at a time: each trial ends before the next starts
        spans = sorted((r.metrics["start"], r.metrics["end"]) for r in results)
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), spans
    else:  # two CPUs, no limit: the first trial sees a second one start while it still runs
        assert all(r.metrics["met"] for r in results), [r.metrics for r in results]