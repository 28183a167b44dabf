"""Running a sweep on Ray Tune with MLflow tracking, resumable (DESIGN §6, §7).

Shared by ``ablation.py`` (the grid) and ``search.py`` (Optuna + ASHA):
``open_tracking`` → ``run_tuner`` → ``close_tracking``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.result import TRIAL_ID
from ray.tune.search.basic_variant import BasicVariantGenerator

from erc import contract as C
from erc.contract import search_all
from sweeps import progress, tracking
from sweeps.cluster import init_ray, trial_slots
from sweeps.gpus import resolve_gpus_per_trial
from sweeps.naming import TrialLabels
from sweeps.prepare import Prepared
from sweeps.results import full_params
from sweeps.settings import AUTO, SweepSettings
from sweeps.store import tracking_uri

log = logging.getLogger(__name__)

# Ray changes into each trial's directory by default; our paths are absolute, but a user's
# relative --data would break in a trial (ray-project/ray#9571). Workers inherit this.
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
# The snapshot per finished trial (see CheckpointConfig below) is deliberate; silence Tune's advice.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


AUTO_LOGGERS_SWITCH = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


class _WithoutEarlierEpochs:
    """A batched result's earlier epochs (a list of dicts) are no CSV cell: Tune's CSV logger would
    write the list into progress.csv and warn with all of it on the console.
    MLflow gets each epoch at its step, and result.json (Tune's JSON logger) keeps the whole result."""

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        super().log_trial_result(iteration, trial,  # type: ignore[misc]
                                 {k: v for k, v in result.items() if k != C.RESULT_EARLIER_EPOCHS})


class CSVLogger(_WithoutEarlierEpochs, CSVLoggerCallback):
    pass


def tune_loggers() -> list:
    """Tune's CSV logger without the batched epochs, and its JSON logger (``result.json``, every result
    whole). No TensorBoard event files (see :func:`only_given_loggers`)."""
    return [CSVLogger(), JsonLoggerCallback()]


@contextlib.contextmanager
def only_given_loggers() -> Iterator[None]:
    """While a sweep's Tuner runs, Tune adds none of its default loggers to the ones given.

    Its TensorBoard logger is the one left out: MLflow has every metric already, and writing the event
    files took ~2 s of the driver's CPU over the 30 demo trials, beside two busy trial slots on a 2-core
    machine. Tune reads the switch when a Tuner starts; it is set for the sweep's Tuner only, so other
    Tune use in the same process keeps Tune's defaults (a user's own setting is kept).
    """
    if AUTO_LOGGERS_SWITCH in os.environ:
        yield
        return
    os.environ[AUTO_LOGGERS_SWITCH] = "1"
    try:
        yield
    finally:
        os.environ.pop(AUTO_LOGGERS_SWITCH, None)


@dataclass(frozen=True)
class Tracking:
    client: MlflowClient
    uri: str
    experiment_id: str
    parent_run_id: str
    sweep: str
    tags: dict[str, str]


def open_tracking(settings: SweepSettings, prepared: Prepared, sweep: str, stage: str,
                  parent_params: Mapping[str, Any] | None = None) -> Tracking:
    """Find or create the sweep's parent run (call ``tracking_uri`` first to fail fast)."""
    uri = tracking_uri(settings)
    client = MlflowClient(uri)
    artifacts = None
    if uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in ./mlruns of the cwd
        artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    experiment_id = tracking.get_or_create_experiment(client, settings.experiment, artifacts)
    tags = {C.SWEEP: sweep, C.STAGE: stage, C.CORPUS: prepared.corpus_name,
            C.AUDIO_ENCODER: prepared.audio_encoder, C.TEXT_ENCODER: prepared.text_encoder,
            C.FEATURES: str(prepared.feature_dir), C.MODE: settings.mode, C.PROTOCOL: settings.protocol,
            C.GIT_COMMIT: tracking.git_commit(), C.COMMAND: tracking.command_line()}
    parent = tracking.start_parent(client, experiment_id, sweep, parent_params or settings.as_params(), tags)
    orphans = tracking.mark_orphans_killed(client, experiment_id, parent)
    if orphans:
        print(f"marked {orphans} run(s) left RUNNING by an interrupted driver as KILLED")
    if prepared.excluded_csv is not None and prepared.excluded_csv.exists():
        client.log_artifact(parent, str(prepared.excluded_csv), artifact_path=C.DATA_DIR)
    log_corpus_facts(client, parent, prepared)
    return Tracking(client, uri, experiment_id, parent, sweep, tags)


def log_corpus_facts(client: MlflowClient, parent: str, prepared: Prepared) -> None:
    """Rater agreement per corpus (metrics ``agreement/<corpus>/<statistic>`` and ``data/agreement.csv``)
    and the corpora's notes (tag ``corpus_notes``) on the parent run, where the report reads them."""
    if prepared.notes:
        client.set_tag(parent, C.CORPUS_NOTES, "\n".join(prepared.notes))
    table = prepared.agreement
    if table is None or table.empty:
        return
    for row in table.to_dict("records"):
        for statistic, value in row.items():
            if statistic != "corpus" and value is not None and not (isinstance(value, float) and math.isnan(value)):
                client.log_metric(parent, C.agreement_metric(row["corpus"], statistic), float(value))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / C.AGREEMENT_FILE
        table.to_csv(path, index=False)
        client.log_artifact(parent, str(path), artifact_path=C.DATA_DIR)


@dataclass
class Outcome:
    """What a Tuner run achieved, counted from what really finished.

    Tune's result grid cannot tell: after Ctrl-C it reports the interrupted trials TERMINATED like
    the finished ones and omits the trials not yet created. A trial counts as finished when its
    MLflow run is FINISHED, which the callback sets only from Tune's trial-complete event (a trial
    that ran to the end, or one the scheduler stopped early), never for a trial stopped by an
    interruption; ``total`` is the number of trials the search space asks for.
    """

    finished: int
    failed: int
    total: int
    results: Any  # ray.tune.ResultGrid

    @staticmethod
    def combine(outcomes: list[Outcome]) -> Outcome:
        """Several Tuners' outcomes as one (the counts add up; the last result grid is kept)."""
        return Outcome(sum(o.finished for o in outcomes), sum(o.failed for o in outcomes),
                       sum(o.total for o in outcomes), outcomes[-1].results)

    @property
    def unfinished(self) -> int:
        return max(0, self.total - self.finished - self.failed)

    @property
    def interrupted(self) -> bool:
        return self.unfinished > 0

    @property
    def statuses(self) -> Counter:
        return +Counter({"FINISHED": self.finished, "FAILED": self.failed, "UNFINISHED": self.unfinished})

    def summary(self) -> str:
        parts = [f"{self.finished} of {self.total} trials finished"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.unfinished:
            parts.append(f"{self.unfinished} unfinished")
        return ", ".join(parts)


def expected_trials(param_space: Mapping[str, Any], num_samples: int) -> int:
    """Trials a Tuner creates: every grid_search combination, ``num_samples`` times each."""
    n = num_samples
    for value in param_space.values():
        if isinstance(value, Mapping) and "grid_search" in value:
            n *= len(value["grid_search"])
    return n


def _outcome(track: Tracking, results: Any, total: int) -> Outcome:
    ids = {r.metrics[TRIAL_ID] for r in results if r.metrics and TRIAL_ID in r.metrics}
    # every trial run carries the sweep's tag, whichever run it nests under (concurrent searches: their own)
    runs = search_all(track.client, track.experiment_id,
                      C.tag_filter({C.SWEEP: track.tags.get(C.SWEEP, track.sweep)}, status="FINISHED"))
    finished = sum(r.data.tags.get(C.TRIAL_ID) in ids for r in runs)
    return Outcome(finished, results.num_errors, max(total, len(results)), results)


def run_tuner(settings: SweepSettings, prepared: Prepared, track: Tracking, trainable: Callable,
              param_space: Mapping[str, Any], *, labels: TrialLabels,
              tune_config: tune.TuneConfig | None = None, bound: Mapping[str, Any] | None = None,
              reuse_actors: bool = True, parent_of: Callable[[Mapping[str, Any]], str] | None = None) -> Outcome:
    """Fit a new Tuner, or restore the sweep's Tuner if an earlier run of it was interrupted.

    ``parent_of`` (picklable) maps a trial's config to the MLflow run it nests under, when that is
    not the sweep's parent run (concurrent searches: each one's own run).
    """
    init_ray(settings)  # started and checked by the entry script (cluster.start_ray) unless a benchmark
    thread_settings = {"cpus_per_trial": settings.cpus_per_trial, "fail_once": settings.fail_once,
                       "fail_once_dir": str(settings.cache_dir / "fault_injection" / track.sweep),
                       "paper_excluded": prepared.paper_excluded, "mode": settings.mode,
                       "epoch_checkpoints": settings.epoch_checkpoints, "audio_encoder": prepared.audio_source,
                       "text_encoder": prepared.text_source, **(bound or {})}
    if settings.gpus_per_trial == AUTO:  # once per sweep: later Tuners (search arms) reuse the choice
        settings.gpus_per_trial = resolve_gpus_per_trial(settings, prepared, thread_settings, track)
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    # Features travel once through the object store, not by every trial re-reading files.
    wrapped = tune.with_resources(
        tune.with_parameters(trainable, data=prepared.table, settings=thread_settings), resources)
    storage = settings.storage_path()
    path = storage.rstrip("/") + "/" + track.sweep
    if tune.Tuner.can_restore(path):
        print(f"resuming sweep {track.sweep} from {path}")
        # Finished trials stay finished; trials that were running or pending when the driver
        # stopped run again; trials that ran out of retries stay FAILED.
        tuner = tune.Tuner.restore(path, trainable=wrapped, resume_unfinished=True)
    else:
        callback = tracking.MlflowTrialCallback(track.uri, track.experiment_id, track.parent_run_id,
                                                tags=track.tags, run_name=labels.name, trial_tags=labels.tags,
                                                params_of=full_params, parent_of=parent_of)
        config = tune_config or tune.TuneConfig()
        config.reuse_actors = reuse_actors  # off by default since Ray 2.9; ~2 s → ~0.2 s per trial here
        if not isinstance(config.search_alg, BasicVariantGenerator):
            # A Searcher runs behind Tune's limiter, which also sets how many trials wait. Without one
            # Tune keeps a single waiting trial, which takes a finished trial's reused actor and has the
            # actor starting for it killed: trials shorter than an actor's start-up ran one at a time
            # (per-arm searches on the demo: the first half of the trials in one slot of two). One trial
            # more than the slots waits for resources, and the searches' scheduler hands it the freed
            # actor (sweeps.studies.StudyScheduler.choose_trial_to_run), so starting actors live.
            slots = trial_slots(settings.cpus_per_trial, settings.gpus_per_trial)
            limit = settings.max_concurrent or (slots + 1 if slots else None)
            if limit:
                config.max_concurrent_trials = limit
        tuner = tune.Tuner(
            wrapped,
            param_space=dict(param_space),
            tune_config=config,
            run_config=tune.RunConfig(
                name=track.sweep,
                storage_path=storage if "://" in storage else str(Path(storage).resolve()),
                callbacks=[callback, progress.SweepProgress(labels), *tune_loggers()],
                failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                # num_to_keep forces an experiment snapshot whenever a trial checkpoints, i.e. when
                # it finishes: a killed driver then cannot forget a finished trial and rerun it.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                verbose=max(settings.verbose, 0),  # 0: SweepProgress's lines instead of Tune's boxes
            ),
        )
    try:
        with progress.tune_output(settings.verbose, progress.tune_log(settings, track.sweep)), only_given_loggers():
            results = tuner.fit()
    except KeyboardInterrupt:
        tracking.flush_writes()  # the trial callback's writes first: then nothing changes the runs behind us
        tracking.mark_orphans_killed(track.client, track.experiment_id, track.parent_run_id)
        tracking.end_parent(track.client, track.parent_run_id, "KILLED")
        raise
    tracking.flush_writes()  # Tune flushed them at the experiment's end; a restored callback too
    num_samples = tune_config.num_samples if tune_config is not None else 1
    return _outcome(track, results, expected_trials(param_space, num_samples))


def close_tracking(track: Tracking, outcome: Outcome | None) -> str:
    """Parent status from the trials: KILLED if interrupted (or no outcome), FAILED if any trial failed."""
    killed = tracking.mark_orphans_killed(track.client, track.experiment_id, track.parent_run_id)
    if outcome is None or outcome.interrupted or killed:
        status = "KILLED"
    else:
        status = "FAILED" if outcome.failed else "FINISHED"
    tracking.end_parent(track.client, track.parent_run_id, status)
    return status
