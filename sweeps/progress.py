"""What a sweep prints while it runs: a short header, one line per finished trial, a live status line.

By default (verbosity 0) Tune's own console output (configuration and result boxes, its start-up hints,
the per-trial error boxes and tracebacks) goes to a log file beside the sweep's report instead of the
screen, and :class:`SweepProgress` prints::

    [ 7/30] fold 3  outer-peakl  acc 0.412  macro-F1 0.351  12 s

On a terminal a status line (finished / running / pending, elapsed, ETA) redraws in place under those
lines; anywhere else (a log file, CI, ``ray submit``) every line is a plain line, no carriage returns.
``-v`` gives Tune's own output back (``-vv`` adds every epoch's result); ``-q`` keeps only the header,
failures and the report.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ray.tune import Callback
from ray.tune.result import TIME_TOTAL_S

from erc import contract as C
from erc.vocab import REPORTS_DIR
from sweeps.naming import TrialLabels
from sweeps.settings import DEFAULT, QUIET, VERBOSE

# (logged key, shown name) of the metrics on a finished trial's line; the selected epoch's value when the
# trial reports one, else its last epoch's.
LINE_METRICS = (("acc", "acc"), ("macro_f1", "macro-F1"))
REDRAW_S = 0.5  # a terminal's status line is redrawn at most this often
PLAIN_STATUS_S = 300  # elsewhere, a plain status line when nothing was printed for this long
ETA_AFTER = 3  # finished trials before an ETA is shown
TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
TOKEN_AUTH_NOTICE = "Token authentication is enabled for this Ray cluster"

# The console while Tune's own output is diverted (set by tune_output); None: Tune prints as usual and
# SweepProgress keeps quiet.
_console: IO[str] | None = None
_level = DEFAULT
_quieted = False


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def tune_log(settings: Any, sweep: str) -> Path:
    """Where Tune's own console output goes below ``-v``: beside the sweep's report."""
    return Path(settings.cache_dir) / REPORTS_DIR / sweep / "tune.log"


def selection_line(flat: Mapping[str, Any]) -> str:
    """Where a sweep's trials choose their epoch (DESIGN §14), said in the header."""
    from erc.config import RunConfig  # torch: only once a sweep starts

    config = RunConfig.from_flat(flat)
    metric = config.select_metric
    if config.protocol.select_on == "valid":
        return (f"epoch ({metric}) and early stopping on the held-out fold itself (select_on=valid, the "
                "paper's way): selected = oracle, optimistic")
    return (f"epoch ({metric}) and early stopping on a dev split of each fold's training sessions; the "
            "held-out fold is only evaluated (oracle/* and best/* logged beside)")


def header(settings: Any, prepared: Any, track: Any, n_trials: int) -> str:
    """The lines a sweep starts with: corpus, encoders, trials, where the runs go."""
    gpus = settings.gpus_per_trial  # a fraction, or "auto" until the probe has measured one
    per_trial = f"{settings.cpus_per_trial:g} CPU" + (f" + {gpus} GPU share" if isinstance(gpus, str)
                                                      else f" + {gpus:g} GPU" if gpus else "")
    grid = (f"{len(settings.folds)} folds × {len(settings.fusions)} fusions × {len(settings.labels)} labels"
            + (f" × {settings.repeats} seeds" if getattr(settings, "repeats", 1) > 1 else ""))
    rows = [
        ("corpus", f"{prepared.corpus_name}, {len(prepared.table)} utterances"),
        ("encoders", f"{prepared.audio_encoder} (audio), {prepared.text_encoder} (text)"),
        ("trials", f"{n_trials} = {grid}, {per_trial} each"
                   + (f", at most {settings.max_concurrent} at once" if settings.max_concurrent else "")),
        ("selection", selection_line(settings.base_config())),
        ("runs", f"MLflow {track.uri}, experiment {settings.experiment!r}, parent run {track.parent_run_id}"),
    ]
    rows[1:1] = [("agreement", line) for line in agreement_lines(getattr(prepared, "agreement", None))]
    rows[1:1] = [("note", note) for note in getattr(prepared, "notes", [])]
    if settings.verbose < VERBOSE:
        rows.append(("tune log", f"{tune_log(settings, track.sweep)} (Tune's own output; -v shows it here)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join([f"sweep {track.sweep}", *(f"  {k.ljust(width)}  {v}" for k, v in rows)])


def agreement_lines(table: Any) -> list[str]:
    """One line per corpus: Krippendorff's α of the categories and each dimension, Fleiss' κ where defined."""
    if table is None:
        return []
    lines = []
    for row in table.to_dict("records"):
        parts = [f"α categories {row['alpha_categories']:.3f}"]
        parts += [f"α {key.removeprefix('alpha_')} {value:.3f}" for key, value in row.items()
                  if key.startswith("alpha_") and key != "alpha_categories" and not math.isnan(value)]  # NaN: none
        if row.get("fleiss_kappa") is not None and not math.isnan(row["fleiss_kappa"]):
            parts.append(f"Fleiss κ {row['fleiss_kappa']:.3f}")
        lines.append(f"{row['corpus']} ({row['n_items']} items): " + ", ".join(parts))
    return lines


class _DivertTrialFailures(logging.Filter):
    """Tune logs a failed attempt with its whole traceback; send it to the log file instead of the screen.

    SweepProgress prints one line per failure, and the traceback is kept in the trial's MLflow run
    (``errors/attempt_N.txt``) and in Tune's error file.
    """

    def __init__(self, sink: IO[str]) -> None:
        super().__init__()
        self.sink = sink

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Trial task failed"):
            self.sink.write(logging.Formatter().format(record) + "\n")
            self.sink.flush()
            return False
        return True


@contextlib.contextmanager
def tune_output(verbose: int, log_file: Path) -> Iterator[None]:
    """Around ``Tuner.fit``: below ``-v``, Tune's console output goes to ``log_file``, ours to the screen."""
    global _console, _level
    if verbose >= VERBOSE:
        yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    controller = logging.getLogger("ray.tune.execution.tune_controller")
    with log_file.open("a", encoding="utf-8") as sink:
        divert = _DivertTrialFailures(sink)
        controller.addFilter(divert)
        _console, _level = sys.stdout, verbose
        try:
            with contextlib.redirect_stdout(sink):
                yield
        finally:
            controller.removeFilter(divert)
            _console, _level = None, DEFAULT


class _DropNotice(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def quiet_startup(verbose: int) -> None:
    """Below ``-v``, hide library chatter that says nothing about the sweep.

    Ray announces that a new local cluster uses token authentication (its default; the warning when it
    is *disabled* stays); MLflow announces creating its database tables; progress bars that are not on a
    terminal (Hugging Face's model loading and dataset saving) would write carriage-return redraws into
    a log.
    """
    global _quieted
    if verbose >= VERBOSE or _quieted:
        return
    _quieted = True
    logging.getLogger(TOKEN_AUTH_LOGGER).addFilter(_DropNotice(TOKEN_AUTH_NOTICE))
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    if not sys.stderr.isatty():
        # Read when each library is imported (transformers takes huggingface_hub's switch): a library not
        # loaded yet is not imported here for the sake of its bars (transformers alone is ~1 s, and a
        # sweep on built caches never loads it).
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        if "huggingface_hub.utils" in sys.modules:
            sys.modules["huggingface_hub.utils"].disable_progress_bars()
        if "datasets" in sys.modules:
            sys.modules["datasets"].disable_progress_bars()
        if "transformers.utils.logging" in sys.modules:
            sys.modules["transformers.utils.logging"].disable_progress_bar()


def _value(result: Mapping[str, Any], key: str) -> float | None:
    for name in (C.SELECTED_PREFIX + key, C.VALID_PREFIX + key, key):
        value = result.get(name)
        if isinstance(value, int | float):
            return float(value)
    return None


def trial_label(config: Mapping[str, Any], labels: TrialLabels | None = None) -> str:
    """``fold 3  outer-peakl`` (``  seed 1`` with repeats); a search trial by its run name."""
    if labels is not None and labels.stage == C.SEARCH_STAGE:
        return labels.name(config)
    with_seed = labels is not None and labels.with_seed
    parts = []
    if C.FOLD in config:
        parts.append(f"fold {config[C.FOLD]}")
    if C.FUSION in config and C.LABELS in config:
        parts.append(C.arm_name(config[C.FUSION], config[C.LABELS]))
    if with_seed and C.SEED in config:
        parts.append(f"seed {config[C.SEED]}")
    return "  ".join(parts)


class SweepProgress(Callback):
    """One line per finished (or failed) trial and a status line, on the driver.

    Picklable (Tune keeps callbacks in its experiment state for ``Tuner.restore``): it holds no stream;
    it writes to the console that :func:`tune_output` set aside, and prints nothing when there is none
    (with ``-v`` Tune's own output is on screen instead).
    """

    def __init__(self, labels: TrialLabels | None = None, metrics: Sequence[tuple[str, str]] = LINE_METRICS,
                 stream: IO[str] | None = None) -> None:
        self.labels = labels
        self.metrics = tuple(metrics)
        self._stream = stream  # tests; otherwise the console of tune_output
        self._reset()

    def _reset(self) -> None:
        self._total = 0
        self._start = time.monotonic()
        self._done_here = 0
        self._status_shown = False
        self._last_redraw = 0.0
        self._last_line = time.monotonic()
        # Trial ids known to have finished: completions seen here, and trials already TERMINATED when this
        # driver first saw them (a resumed sweep). Tune marks trials it stops on Ctrl-C TERMINATED too,
        # without a completion: the status must not count those as finished.
        self._finished: set[str] | None = None

    def _known_finished(self, trials: Sequence[Any]) -> set[str]:
        if self._finished is None:
            self._finished = {t.trial_id for t in trials if str(t.status) == "TERMINATED"}
        return self._finished

    def __getstate__(self) -> dict:
        return {"labels": self.labels, "metrics": self.metrics}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._stream = None
        self._reset()

    # ------------------------------------------------------------------ output

    def _out(self) -> IO[str] | None:
        return self._stream if self._stream is not None else _console

    def _tty(self, out: IO[str]) -> bool:
        return hasattr(out, "isatty") and out.isatty()

    def _level(self) -> int:
        return DEFAULT if self._stream is not None else _level

    def _print(self, line: str, trials: Sequence[Any] | None = None, finishing: Any = None) -> None:
        out = self._out()
        if out is None:
            return
        if self._status_shown:
            out.write("\r\033[K")  # a terminal: wipe the status line, print above it, redraw it
            self._status_shown = False
        out.write(line + "\n")
        self._last_line = time.monotonic()
        if trials is not None and self._tty(out):
            self._draw_status(out, trials, finishing)
        out.flush()

    def status(self, trials: Sequence[Any], finishing: Any = None) -> str:
        """``12/30 finished · 2 running · 16 pending · 1m02s · ETA 1m40s`` (failed when any)."""
        finished = self._known_finished(trials)
        counts = Counter(str(t.status) for t in trials
                         if not (str(t.status) == "TERMINATED" and t.trial_id not in finished))
        if finishing is not None and str(finishing.status) != "TERMINATED":  # Tune sets it after the callbacks
            counts[str(finishing.status)] -= 1
            counts["TERMINATED"] += 1
        total = max(self._total, len(trials))
        done = counts["TERMINATED"]
        pending = total - done - counts["RUNNING"] - counts["ERROR"]
        elapsed = time.monotonic() - self._start
        parts = [f"{done}/{total} finished", f"{counts['RUNNING']} running", f"{max(pending, 0)} pending"]
        if counts["ERROR"]:
            parts.append(f"{counts['ERROR']} failed")
        parts.append(duration(elapsed))
        remaining = total - done - counts["ERROR"]
        if self._done_here >= ETA_AFTER and remaining > 0:
            parts.append("ETA " + duration(elapsed / self._done_here * remaining))
        return " · ".join(parts)

    def _draw_status(self, out: IO[str], trials: Sequence[Any], finishing: Any = None) -> None:
        out.write("\r\033[K" + self.status(trials, finishing))
        self._status_shown = True
        self._last_redraw = time.monotonic()

    def _counter(self, trials: Sequence[Any], trial: Any) -> str:
        total = max(self._total, len(trials))
        finished = self._known_finished(trials)
        done = sum(1 for t in trials if t is trial or t.trial_id in finished)
        return f"[{done:>{len(str(total))}}/{total}]"

    def trial_line(self, trials: Sequence[Any], trial: Any) -> str:
        result = trial.last_result or {}
        parts = [self._counter(trials, trial), trial_label(trial.config, self.labels) or f"trial {trial}"]
        for key, name in self.metrics:
            value = _value(result, key)
            if value is not None:
                parts.append(f"{name} {value:.3f}")
        if C.RESULT_SCORE in result and not any(_value(result, k) is not None for k, _ in self.metrics):
            parts.append(f"score {float(result[C.RESULT_SCORE]):.3f}")
        if TIME_TOTAL_S in result:
            parts.append(duration(float(result[TIME_TOTAL_S])))
        return "  ".join(parts)

    def _failure_line(self, trial: Any, final: bool) -> str:
        # As the MLflow callback does: the driver's local error file first (the copy get_error reads
        # from storage appears only after the next sync).
        local = Path(trial.error_file) if getattr(trial, "error_file", None) else None
        if local is not None and local.is_file():
            text = local.read_text(errors="replace").strip().splitlines()
        else:
            error = trial.get_error() if hasattr(trial, "get_error") else None
            text = str(error).strip().splitlines() if error is not None else []
        reason = text[-1].strip()[:160] if text else "no error text"
        attempt = getattr(trial, "num_failures", 0) or 1
        what = "FAILED, out of retries" if final else f"attempt {attempt} failed, retrying"
        label = trial_label(trial.config, self.labels) or f"trial {trial}"
        return f"{label}  {what}: {reason} (traceback: MLflow run, {C.ERRORS_DIR}/attempt_{attempt}.txt)"

    # ------------------------------------------------------------------ Tune callbacks

    def setup(self, stop: Any = None, num_samples: Any = None, total_num_samples: Any = None, **info) -> None:
        self._reset()
        self._total = int(total_num_samples or 0)

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        out = self._out()
        if out is None or self._level() <= QUIET:
            return
        now = time.monotonic()
        if self._tty(out):
            if now - self._last_redraw >= REDRAW_S:
                self._draw_status(out, trials)
                out.flush()
        elif now - self._last_line >= PLAIN_STATUS_S:
            self._print(self.status(trials))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._known_finished(trials).add(trial.trial_id)
        self._done_here += 1
        if self._level() > QUIET:
            self._print(self.trial_line(trials, trial), trials, finishing=trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._print(self._failure_line(trial, final=False), trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._print(self._failure_line(trial, final=True), trials)

    def on_experiment_end(self, trials: list, **info) -> None:
        if self._out() is not None and self._level() > QUIET:
            self._print(self.status(trials))
