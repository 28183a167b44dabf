"""Many searches in one Ray Tune experiment: one Optuna study and one ASHA per search.

Per-arm tuning (``--tune-per-arm``) is one search per (arm, outer fold) — 30 on the full grid — and
``search.py`` runs one per arm. Run one after another, each as its own Tuner, they leave the machine
idle between and inside them. Run as one experiment, every free slot runs some search's trial,
while each search keeps what makes the comparison of arms fair:

* its own seeded Optuna TPE study, driven through Optuna's ask/tell interface, whose first trial is
  the untuned defaults; no study ever sees another study's trials (:class:`StudySearcher`);
* its own ASHA brackets: a trial is only compared with trials of its own study, never stopped
  because another arm scores higher (:class:`StudyScheduler`: one Ray ``AsyncHyperBandScheduler``
  per study);
* the same budget of trials for every study.

Ray's own parts cannot do this: ``OptunaSearch`` holds one study and refuses ``grid_search``, and a
scheduler compares every trial of its experiment. A trial's study is named by its own config
(:func:`sweeps.naming.study_name`), which Tune keeps with the trial, so searcher, scheduler and the
MLflow callback agree on it, also after ``Tuner.restore``.
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers import TPESampler
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler
from ray.tune.search import Searcher
from ray.tune.utils.util import flatten_dict

from erc import contract as C
from erc.config import RunConfig
from sweeps.naming import run_config_keys, study_name
from sweeps.spaces import SearchSpace

log = logging.getLogger(__name__)

SCORE = C.RESULT_SCORE  # what a search trial reports: the running best of its tuned metric


@dataclass(frozen=True)
class Study:
    """One search: the configuration its trials share, the space they sample, how many there are."""

    space: SearchSpace
    fixed: Mapping[str, Any]  # flat config of every trial (the arm, the outer fold, the sweep's values)
    budget: int
    first: Mapping[str, Any] | None = None  # the first trial's sampled values: the untuned defaults

    @classmethod
    def of(cls, space: SearchSpace, base: Mapping[str, Any], fixed: Mapping[str, Any], budget: int,
           first: Mapping[str, Any] | None = None) -> Study:
        """The space's held values, then the sweep's own (``--epochs`` …), then ``fixed`` (the arm …)."""
        nuisance = space.by_role("nuisance")
        shared = {**space.held(), **{k: v for k, v in base.items() if k not in nuisance}, **fixed}
        return cls(space, shared, budget, first)

    @property
    def name(self) -> str:
        return study_name(self.fixed)

    @property
    def max_epochs(self) -> int:
        """The most epochs a trial trains: ASHA's ``max_t``."""
        if "epochs" in self.space.by_role("nuisance"):
            return int(self.space.params["epochs"].high)
        return RunConfig.from_flat(run_config_keys(self.fixed)).optim.epochs

    def tuned(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """What a config file records of a trial: the space's entries except the scientific ones."""
        config = {**self.fixed, **values}
        return {k: config[k] for k, p in self.space.params.items() if p.role != "scientific" and k in config}


@dataclass(frozen=True)
class SearchResult:
    """One study's outcome, its trials in the order they were asked (the first: the untuned defaults)."""

    best: dict[str, Any]  # the best trial's tuned values (empty when no trial finished)
    score: float  # its score (NaN when no trial finished)
    scores: list[float]  # every trial's score in ask order; a failed trial's is the worst possible
    trial_ids: list[str]  # Tune's trial ids in ask order
    failed: int  # trials that ended in error

    @property
    def default(self) -> float:
        return self.scores[0] if self.scores else math.nan


class StudySearcher(Searcher):
    """One seeded Optuna study per :class:`Study`, asked and told through Optuna's ask/tell interface.

    ``suggest`` gives the next trial to the study with the fewest trials so far (ties: the order
    given), so all studies advance together, and with many studies each one's previous trials have
    been told before it is asked again. The whole state (every study, which Tune trial is which
    Optuna trial) is pickled into Tune's experiment snapshots, so ``Tuner.restore`` resumes it.
    """

    def __init__(self, studies: Sequence[Study], *, mode: str, seed: int, metric: str = SCORE) -> None:
        super().__init__(metric=metric, mode=mode)
        self.studies = {s.name: s for s in studies}
        if len(self.studies) != len(studies):
            raise ValueError(f"two studies share a name: {[s.name for s in studies]}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # Tune already reports every trial
        direction = "maximize" if mode == "max" else "minimize"
        self.optuna: dict[str, optuna.Study] = {}
        for name, spec in self.studies.items():
            # every study draws from its own generator: its trials never depend on another study's
            study = optuna.create_study(study_name=name, sampler=TPESampler(seed=seed), direction=direction)
            if spec.first is not None:
                study.enqueue_trial(dict(spec.first))
            self.optuna[name] = study
        self.asked: dict[str, list[str]] = {name: [] for name in self.studies}  # Tune trial ids, in ask order
        self.trials: dict[str, tuple[str, int]] = {}  # Tune trial id -> (study, Optuna trial number)
        self.told: set[str] = set()

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        open_ = [name for name, spec in self.studies.items() if len(self.asked[name]) < spec.budget]
        if not open_:
            return Searcher.FINISHED
        name = min(open_, key=lambda n: len(self.asked[n]))
        trial = self.optuna[name].ask(self.studies[name].space.distributions())
        self.asked[name].append(trial_id)
        self.trials[trial_id] = (name, trial.number)
        return {**self.studies[name].fixed, **trial.params}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.trials or trial_id in self.told:
            return
        name, number = self.trials[trial_id]
        value = (result or {}).get(self.metric)
        if error:
            self.optuna[name].tell(number, state=TrialState.FAIL, skip_if_finished=True)
        elif value is None or not math.isfinite(value):  # removed before its first report
            self.optuna[name].tell(number, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            # a trial ASHA stopped counts with the score it reached, as Ray's OptunaSearch tells it
            self.optuna[name].tell(number, float(value), skip_if_finished=True)
        self.told.add(trial_id)

    def result(self, name: str) -> SearchResult:
        spec, study = self.studies[name], self.optuna[name]
        by_number = {number: tid for tid, (study_of, number) in self.trials.items() if study_of == name}
        trials = [t for t in study.get_trials(deepcopy=False) if t.number in by_number]
        worst = -math.inf if self.mode == "max" else math.inf
        scores = [t.value if t.state == TrialState.COMPLETE else worst for t in trials]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = (max if self.mode == "max" else min)(complete, key=lambda t: t.value) if complete else None
        return SearchResult(best=spec.tuned(best.params) if best else {}, score=best.value if best else math.nan,
                            scores=scores, trial_ids=[by_number[t.number] for t in trials],
                            failed=sum(t.state == TrialState.FAIL for t in trials))

    def trials_frame(self, name: str) -> Any:
        """A study's trials as Optuna's data frame, with Tune's trial id beside each."""
        frame = self.optuna[name].trials_dataframe()
        ids = {number: tid for tid, (study_of, number) in self.trials.items() if study_of == name}
        frame.insert(1, "ray_trial_id", frame["number"].map(ids))
        return frame

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    @classmethod
    def saved(cls, results: Any) -> StudySearcher:
        """The searcher as Tune saved it last (at the end of the fit) in a finished experiment's directory.

        ``results`` is the fit's ``ResultGrid``: after ``Tuner.restore`` the searcher that ran is the
        one Tune unpickled, not one this process holds, so its state is read back from storage.
        """
        fs, path = results.filesystem, results.experiment_path
        from pyarrow.fs import FileSelector

        names = sorted(info.path for info in fs.get_file_info(FileSelector(path))
                       if Path(info.path).name.startswith("searcher-state-"))
        if not names:
            raise FileNotFoundError(f"no saved searcher state in {path}")
        searcher = cls.__new__(cls)
        with fs.open_input_stream(names[-1]) as f:  # session timestamps: the last name is the newest
            searcher.__dict__.update(pickle.loads(f.readall()))
        return searcher


class StudyScheduler(FIFOScheduler):
    """One ASHA per study: a trial is compared only with trials of its own study.

    Each study's ``AsyncHyperBandScheduler`` is Ray's own, created on the study's first trial, so the
    rungs and cut-offs are exactly those of a search run alone. Tune does not save schedulers with
    the experiment; after ``Tuner.restore`` each finished trial's last score refills its study's
    brackets.

    It also makes the experiment snapshot exact for search trials: Tune saves the experiment state
    at most every ~10 s unless a trial checkpoints, and search trials do not. A driver killed in
    between would forget trials that had finished (rerunning them) or started (leaving their
    MLflow runs orphaned). So the state is saved whenever a trial was added or ended, before the
    next trial starts.
    """

    def __init__(self, asha: Mapping[str, Mapping[str, Any]], *, mode: str, metric: str = SCORE) -> None:
        super().__init__()
        self._metric, self._mode = metric, mode
        self.asha = {name: dict(kwargs) for name, kwargs in asha.items()}  # study -> ASHA arguments
        self._brackets: dict[str, AsyncHyperBandScheduler] = {}
        self._snapshot_due = False

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_snapshot_due": False}

    def brackets(self, trial: Trial) -> AsyncHyperBandScheduler:
        name = study_name(trial.config)
        if name not in self._brackets:
            self._brackets[name] = AsyncHyperBandScheduler(metric=self._metric, mode=self._mode, **self.asha[name])
        return self._brackets[name]

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        asha = self.brackets(trial)
        asha.on_trial_add(tune_controller, trial)
        if trial.status == Trial.TERMINATED and trial.last_result:  # finished before Tuner.restore
            asha.on_trial_complete(tune_controller, trial, flatten_dict(trial.last_result))
        self._snapshot_due = True

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        return self.brackets(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self.brackets(trial).on_trial_complete(tune_controller, trial, result)
        self._snapshot_due = True

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.brackets(trial).on_trial_error(tune_controller, trial)
        self._snapshot_due = True

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self.brackets(trial).on_trial_remove(tune_controller, trial)
        self._snapshot_due = True

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        # Tune calls this every step, after new trials were added and before any is started.
        if self._snapshot_due:
            self._snapshot_due = False
            # Schedulers get a wrapper that warns on everything but a few methods; the controller's
            # public checkpoint() is what CheckpointConfig(num_to_keep) triggers for checkpointing trials.
            controller = getattr(tune_controller, "_tune_controller", tune_controller)
            if hasattr(controller, "checkpoint"):
                controller.checkpoint(force=True)
        # The newest waiting trial first. Tune gives a finished trial's reused actor to the trial chosen
        # here, killing the actor that trial had starting; the oldest waiting trials are the ones whose
        # actors are starting (their resources were free), the newest waits for resources. FIFO killed
        # the second slot's starting actor whenever trials ended faster than an actor starts.
        trials = tune_controller.get_trials()
        for trial in reversed(trials):
            if trial.status == Trial.PENDING:
                return trial
        return next((trial for trial in trials if trial.status == Trial.PAUSED), None)

    def debug_string(self) -> str:
        stopped = sum(a._num_stopped for a in self._brackets.values())
        return f"Using one AsyncHyperBand per study ({len(self._brackets)} studies): num_stopped={stopped}"


@dataclass
class StudyParents:
    """Picklable ``config -> MLflow run id``: each trial nests under its own study's run."""

    runs: dict[str, str] = field(default_factory=dict)  # study name -> run id

    def __call__(self, config: Mapping[str, Any]) -> str:
        return self.runs[study_name(config)]
