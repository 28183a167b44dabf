"""sweeps/search_run.py: concurrent Optuna + ASHA searches as one Tune experiment, tracked in MLflow.

Real Ray (a private local runtime) and a real MLflow store (SQLite); the trials report a score that is a
known function of their config at once, so the search's bookkeeping is what is tested.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import ray
from mlflow import MlflowClient
from ray import tune

from erc import contract as C
from sweeps.prepare import Prepared
from sweeps.runner import close_tracking, open_tracking
from sweeps.search_run import run_studies
from sweeps.settings import SweepSettings
from sweeps.spaces import Param, SearchSpace
from sweeps.studies import Study
from tests.synthetic import synthetic_features

SPACE = SearchSpace(Path("test.yaml"), {
    "fusion": Param("fusion", "scientific", value="concat"),
    "lr": Param("lr", "nuisance", "loguniform", low=1e-4, high=1e-2),
    "epochs": Param("epochs", "fixed", value=3),
})
BUDGET = 4


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def loss_of(config: dict, epoch: int) -> float:
    """What a trial 'measures': best at lr = 1e-3; the outer arm is uniformly worse; better with epochs."""
    return (0.0 if config[C.FUSION] == "concat" else 5.0) + abs(math.log10(config["lr"]) + 3) + 0.1 / epoch


# A trial lasts about a second: shorter than a trial process's start-up (it imports this module, with
# mlflow, Ray Tune and sweeps.runner), and the whole search lasts several start-ups.
EPOCH_S = 0.3


def scored_trial(config: dict, data, settings: dict) -> None:
    if settings["metric"] != "loss":  # run_studies binds the tuned metric for the trainable
        raise ValueError(settings["metric"])
    best = math.inf
    for epoch in range(1, int(config["epochs"]) + 1):
        time.sleep(EPOCH_S)
        loss = loss_of(config, epoch)
        best = min(best, loss)
        tune.report({C.RESULT_EPOCH: epoch, C.VALID_PREFIX + "loss": loss, C.RESULT_SCORE: best})


def test_every_arm_searches_its_own_budget_at_once_and_nests_under_its_run(local_ray, tmp_path):
    settings = SweepSettings(cache_dir=tmp_path, folds=[0], fusions=["concat", "outer"], labels=["soft"],
                             gpus_per_trial=0.0, verbose=-1)
    prepared = Prepared(synthetic_features(n=50, seed=0), "synthetic", "audio", "text", tmp_path, None)
    track = open_tracking(settings, prepared, "search", stage=C.SEARCH_STAGE)
    client = MlflowClient(track.uri)
    studies = [Study.of(SPACE, {"preset": "demo"}, {C.FUSION: fusion, C.LABELS: "soft"}, BUDGET)
               for fusion in settings.fusions]
    runs = {s.name: client.create_run(track.experiment_id, run_name=s.name,
                                      tags={C.PARENT_RUN_ID: track.parent_run_id}).info.run_id for s in studies}
    searches = run_studies(settings, prepared, track, studies, metric="loss", grace_period=1,
                           trainable=scored_trial, parents=runs)
    assert (searches.outcome.finished, searches.outcome.total) == (2 * BUDGET, 2 * BUDGET)
    # Both slots ran trials, although each trial ends before a new trial process has started: with
    # Tune's one waiting trial, that trial took the finished trial's process each time and the one
    # starting for it was killed, so every trial ran in one process.
    assert len({r.metrics["pid"] for r in searches.outcome.results}) >= 2
    for run_id in runs.values():  # as per-arm tuning ends its search runs
        client.set_terminated(run_id, status="FINISHED")
    assert close_tracking(track, searches.outcome) == "FINISHED"
    assert set(searches.results) == {s.name for s in studies}
    for study in studies:
        result = searches.results[study.name]
        assert len(result.trial_ids) == BUDGET and not result.failed
        assert result.score == min(result.scores)  # a loss is minimised
        assert set(result.best) == {"lr", "epochs"} and 1e-4 <= result.best["lr"] <= 1e-2
        trials = client.search_runs([track.experiment_id], C.tag_filter(parent=runs[study.name]))
        assert len(trials) == BUDGET
        for run in trials:
            # every trial of the study nests under the study's run, tagged as a search trial of its arm
            assert run.data.tags[C.STAGE] == C.SEARCH_STAGE and run.data.tags[C.FUSION] == study.fixed[C.FUSION]
            assert run.info.run_name.startswith(study.name + " lr=")
    # the outer arm is worse whatever its lr: the two studies never mixed their trials
    assert searches.results["outer-soft"].score > 5 > searches.results["concat-soft"].score
