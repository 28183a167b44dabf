import pytest

from sweeps.prepare import extraction_gpus
from sweeps.settings import AUTO, SweepSettings


@pytest.mark.parametrize(("gpus_per_trial", "expected"), [(AUTO, None), (0, None), (0.0, None), (0.25, True), (1, True)])
def test_extraction_actors_take_a_gpu_only_when_trials_ask_for_one(tmp_path, gpus_per_trial, expected):
    # "auto" on a CPU-only cluster once meant GPU actors that Ray could never place: the sweep hung
    settings = SweepSettings(cache_dir=tmp_path, gpus_per_trial=gpus_per_trial)
    assert extraction_gpus(settings) is expected
