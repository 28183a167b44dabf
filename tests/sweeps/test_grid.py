"""sweeps/grid.py: the grid's explicit trial list, on a real Ray runtime."""

from __future__ import annotations

import itertools
import time

import pytest
import ray
from ray import tune

from sweeps.grid import grid_tuning
from sweeps.settings import SweepSettings


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _stamp(config):
    start = time.time()
    time.sleep(1.0)
    tune.report({"start": start, "end": time.time()})


@pytest.mark.parametrize("max_concurrent", [1, None])
def test_max_concurrent_limits_the_grid(local_ray, tmp_path, max_concurrent):
    # Tune drops TuneConfig.max_concurrent_trials for a BasicVariantGenerator: --max-concurrent once did nothing
    settings = SweepSettings(cache_dir=tmp_path, folds=[0, 1], fusions=["concat", "outer"], labels=["soft"],
                             max_concurrent=max_concurrent)
    space, config = grid_tuning(settings)
    results = tune.Tuner(tune.with_resources(_stamp, {"cpu": 1}), param_space=space, tune_config=config,
                         run_config=tune.RunConfig(storage_path=str(tmp_path / "runs"), verbose=0)).fit()
    assert not results.errors and len(results) == 4
    spans = sorted((r.metrics["start"], r.metrics["end"]) for r in results)
    overlaps = sum(1 for (_, end), (start, _) in itertools.pairwise(spans) if start < end)
    if max_concurrent == 1:
        assert overlaps == 0, spans
    else:  # two CPUs: trials run two at a time
        assert overlaps >= 1, spans
