"""sweeps/studies.py: concurrent searches kept apart — own Optuna study, own ASHA, same budget.

The searcher and scheduler are fed results by hand here (fast, exact); the last test runs them in a
real Tune experiment.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from sweeps.spaces import Param, SearchSpace
from sweeps.studies import Study, StudyParents, StudyScheduler, StudySearcher

SPACE = SearchSpace(Path("test.yaml"), {
    "fusion": Param("fusion", "scientific", value="concat"),
    "lr": Param("lr", "nuisance", "loguniform", low=1e-4, high=1e-2),
    "dropout": Param("dropout", "nuisance", "uniform", low=0.0, high=0.5),
    "batch_size": Param("batch_size", "nuisance", "choice", values=(16, 32, 64)),
    "epochs": Param("epochs", "fixed", value=9),
})
DEFAULTS = {"lr": 1e-3, "dropout": 0.1, "batch_size": 32}


def study(fusion: str, fold: int | None = 0, budget: int = 4, first: dict | None = DEFAULTS) -> Study:
    fixed = {"fusion": fusion, "labels": "peakl", **({"fold": fold} if fold is not None else {})}
    return Study.of(SPACE, {"preset": "demo", "seed": 0}, fixed, budget, first=first)


def objective(config: dict) -> float:
    """A deterministic score of a config: the searcher's view of a trained trial."""
    return -abs(math.log10(config["lr"]) + 3) - config["dropout"] + config["batch_size"] / 1000


def test_every_study_gets_its_budget_in_turn_with_its_own_configs():
    studies = [study("concat", 0), study("outer", 0), study("outer", 1)]
    searcher = StudySearcher(studies, mode="max", seed=0)
    configs = [searcher.suggest(f"t{i}") for i in range(12)]
    assert searcher.suggest("t12") == StudySearcher.FINISHED
    names = [searcher.trials[f"t{i}"][0] for i in range(12)]
    assert names[:3] == ["concat-peakl fold0", "outer-peakl fold0", "outer-peakl fold1"]  # in turn
    assert {n: names.count(n) for n in names} == {s.name: 4 for s in studies}  # the same budget
    for config, name in zip(configs, names, strict=True):
        spec = next(s for s in studies if s.name == name)
        assert {k: config[k] for k in spec.fixed} == dict(spec.fixed)  # its own arm, fold and sweep values
        assert config["epochs"] == 9 and set(SPACE.distributions()) <= set(config)
    for name in searcher.studies:  # each study's first trial: the untuned defaults
        first = configs[names.index(name)]
        assert {k: first[k] for k in DEFAULTS} == DEFAULTS


def test_a_study_is_never_informed_by_another_arms_trials():
    """Past TPE's random start-up, a study's suggestions depend on its own results only."""
    budget = 14  # TPE starts modelling after 10 trials

    def run(studies: list[Study], score_of) -> list[dict]:
        searcher = StudySearcher(studies, mode="max", seed=3)
        seen = []
        for i in range(budget * len(studies)):
            config = searcher.suggest(f"t{i}")
            if config["fusion"] == "outer":
                seen.append({k: config[k] for k in SPACE.distributions()})
            searcher.on_trial_complete(f"t{i}", {"score": score_of(config)})
        return seen

    alone = run([study("outer", budget=budget)], objective)
    # beside a concat study whose scores are far higher and reward the opposite corner of the space
    beside = run([study("concat", budget=budget), study("outer", budget=budget)],
                 lambda c: 100 - objective(c) if c["fusion"] == "concat" else objective(c))
    assert beside == alone


def test_best_and_scores_follow_the_metric_direction():
    searcher = StudySearcher([study("outer", budget=3)], mode="min", seed=0)
    losses = [0.9, 0.4, 0.7]
    for i, loss in enumerate(losses):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"score": loss})
    result = searcher.result("outer-peakl fold0")
    assert result.score == 0.4 and result.scores == losses and result.default == 0.9
    lowest = searcher.optuna["outer-peakl fold0"].trials[1].params
    assert result.best == {**lowest, "epochs": 9}  # the searched values and the space's fixed ones
    assert result.trial_ids == ["t0", "t1", "t2"] and result.failed == 0

    failed = StudySearcher([study("outer", budget=2)], mode="min", seed=0)
    for i in range(2):
        failed.suggest(f"t{i}")
    failed.on_trial_complete("t0", error=True)
    failed.on_trial_complete("t1", {"score": 1.5})
    result = failed.result("outer-peakl fold0")
    assert result.scores == [math.inf, 1.5] and result.failed == 1 and result.score == 1.5


def test_saved_state_resumes_the_same_searches(tmp_path):
    studies = [study("concat", budget=12), study("outer", budget=12)]

    def drive(searcher: StudySearcher, ids: range) -> list[dict]:
        out = []
        for i in ids:
            config = searcher.suggest(f"t{i}")
            out.append(config)
            searcher.on_trial_complete(f"t{i}", {"score": objective(config)})
        return out

    straight = drive(StudySearcher(studies, mode="max", seed=1), range(24))
    first = StudySearcher(studies, mode="max", seed=1)
    before = drive(first, range(10))
    first.save(str(tmp_path / "state.pkl"))
    again = StudySearcher(studies, mode="max", seed=1)
    again.restore(str(tmp_path / "state.pkl"))
    assert before + drive(again, range(10, 24)) == straight


def trial(trial_id: str, fusion: str) -> Trial:
    return Trial("fake", config={"fusion": fusion, "labels": "peakl", "fold": 0}, trial_id=trial_id, stub=True)


@pytest.mark.parametrize("mode", ["max", "min"])
def test_asha_compares_a_trial_only_with_its_own_study(mode):
    sign = 1 if mode == "max" else -1  # a loss: lower is better
    asha = {"max_t": 9, "grace_period": 1, "reduction_factor": 3}
    scheduler = StudyScheduler({"concat-peakl fold0": asha, "outer-peakl fold0": asha}, mode=mode)
    decisions: dict[str, list[str]] = {}
    # concat is uniformly far better than outer; within each arm, every new trial is worse than the last
    for k in range(6):
        for fusion, level in (("concat", 10.0), ("outer", 0.0)):
            t = trial(f"{fusion}{k}", fusion)
            scheduler.on_trial_add(None, t)
            score = sign * (level - 0.1 * k)
            decisions[t.trial_id] = [scheduler.on_trial_result(None, t, {"training_iteration": 1, "score": score})]
    # the first trial of each arm passes its first rung: there is nothing in its own study to beat
    assert decisions["outer0"] == decisions["concat0"] == [TrialScheduler.CONTINUE]
    # outer is stopped exactly like concat — by its own earlier, better trials, never by concat's
    for k in range(6):
        assert decisions[f"outer{k}"] == decisions[f"concat{k}"], k
    assert TrialScheduler.STOP in decisions["outer5"]


def test_restored_finished_trials_refill_their_studys_brackets():
    asha = {"max_t": 9, "grace_period": 1, "reduction_factor": 3}
    scheduler = StudyScheduler({"outer-peakl fold0": asha}, mode="max")
    done = trial("done", "outer")
    done.set_status(Trial.TERMINATED)
    done.update_last_result({"training_iteration": 1, "score": 0.9})
    scheduler.on_trial_add(None, done)  # as Tuner.restore adds a trial that had finished
    late = trial("late", "outer")
    scheduler.on_trial_add(None, late)
    assert scheduler.on_trial_result(None, late, {"training_iteration": 1, "score": 0.1}) == TrialScheduler.STOP


class _Trials:
    """What the scheduler reads of Tune's controller: its trials, oldest first."""

    def __init__(self, *trials: Trial) -> None:
        self.trials = list(trials)

    def get_trials(self) -> list[Trial]:
        return self.trials


def test_the_newest_waiting_trial_runs_first_then_a_paused_one():
    scheduler = StudyScheduler({}, mode="min")
    old, new, running, paused = (trial(name, "concat") for name in ("old", "new", "running", "paused"))
    running.set_status(Trial.RUNNING)
    paused.set_status(Trial.PAUSED)
    # the oldest waiting trial is the one whose actor may be starting: a freed actor goes to the newest
    trials = _Trials(paused, old, new, running)
    assert scheduler.choose_trial_to_run(trials) is new
    assert scheduler.choose_trial_to_run(trials) is new  # Tune asks again: the same answer
    assert scheduler.choose_trial_to_run(_Trials(running, paused)) is paused
    assert scheduler.choose_trial_to_run(_Trials(running)) is None


def test_each_trial_nests_under_its_own_studys_run():
    parents = StudyParents({"outer-peakl fold0": "run-a", "outer-peakl fold1": "run-b", "concat-peakl": "run-c"})
    assert parents({"fusion": "outer", "labels": "peakl", "fold": 1, "lr": 0.1}) == "run-b"
    assert parents({"fusion": "concat", "labels": "peakl"}) == "run-c"


def _loss_trainable(config: dict) -> None:
    from ray import tune

    level = 0.0 if config["fusion"] == "concat" else 10.0  # outer: uniformly worse
    for epoch in range(1, 10):
        tune.report({"score": level - objective(config) - 0.01 * epoch, "epoch": epoch})


@pytest.mark.slow
def test_concurrent_studies_in_a_real_tune_experiment(tmp_path):
    import ray
    from ray import tune

    studies = [study("concat", budget=6), study("outer", budget=6)]
    asha = {s.name: {"max_t": 9, "grace_period": 1, "reduction_factor": 3} for s in studies}
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(_loss_trainable, tune_config=tune.TuneConfig(
            search_alg=StudySearcher(studies, mode="min", seed=0), scheduler=StudyScheduler(asha, mode="min"),
            num_samples=12, reuse_actors=True), run_config=tune.RunConfig(name="studies", storage_path=str(tmp_path),
                                                                      verbose=0))
        results = tuner.fit()
    finally:
        ray.shutdown()
    assert results.num_errors == 0 and len(results) == 12
    final = StudySearcher.saved(results)  # what Tune saved at the end
    by_id = {r.metrics["trial_id"]: r for r in results}
    for spec in studies:
        result = final.result(spec.name)
        # the arm that is uniformly worse still ran its whole budget, each trial with its own arm's config
        assert len(result.trial_ids) == 6 and all(by_id[t].config["fusion"] == spec.fixed["fusion"]
                                                  for t in result.trial_ids)
        assert all(by_id[t].metrics["score"] == s for t, s in zip(result.trial_ids, result.scores, strict=True))
        assert result.score == min(result.scores)  # a loss: the lowest wins
        epochs = [by_id[t].metrics["training_iteration"] for t in result.trial_ids]
        assert epochs[0] == 9 and min(epochs) < 9  # ASHA stopped some of the study's own trials
    spans = {}  # each study's time span, first trial start to last trial end
    for r in results:
        end = r.metrics["timestamp"]
        start, stop = spans.get(r.config["fusion"], (end, end))
        spans[r.config["fusion"]] = (min(start, end - r.metrics["time_total_s"]), max(stop, end))
    assert max(s for s, _ in spans.values()) < min(e for _, e in spans.values())  # the studies ran side by side
