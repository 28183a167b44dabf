"""What a sweep prints, fast: the progress callback driven by stand-in trials (no Ray runtime).

The callback only reads a trial's status, config, last result and error; simple stand-ins take a sweep
through steps, a retried failure and completions. The end-to-end check (a real sweep with stdout not a
terminal) is in tests/test_mlflow_ui.py, which runs a sweep anyway.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

from ray import cloudpickle

from sweeps import progress
from sweeps.naming import TrialLabels
from sweeps.progress import SweepProgress


@dataclass
class FakeTrial:
    trial_id: str
    config: dict
    status: str = "PENDING"
    last_result: dict = field(default_factory=dict)
    error_file: str | None = None
    num_failures: int = 0

    def get_error(self):
        return RuntimeError("Traceback (most recent call last):\n  ...\nValueError: bad batch") if self.num_failures else None

    def __str__(self) -> str:
        return self.trial_id


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def grid() -> list[FakeTrial]:
    return [FakeTrial(f"t{i}", {"fold": i % 2, "fusion": f, "labels": "peakl", "seed": 0})
            for i, f in enumerate(["outer", "concat", "outer"])]


def finish(cb: SweepProgress, trials: list[FakeTrial], i: int, acc: float) -> None:
    trials[i].last_result = {"selected/acc": acc, "selected/macro_f1": acc - 0.06, "valid/acc": 0.1,
                             "time_total_s": 12.4}
    cb.on_trial_complete(1, trials, trials[i])
    trials[i].status = "TERMINATED"  # Tune sets it after the callbacks ran


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    cb = SweepProgress(TrialLabels(), stream=out)
    trials = grid()
    cb.setup(total_num_samples=3)
    trials[0].status = trials[1].status = "RUNNING"
    cb.on_step_end(1, trials)  # no live status line in a log
    trials[1].num_failures = 1
    cb.on_trial_recover(1, trials, trials[1])
    finish(cb, trials, 0, 0.412)
    finish(cb, trials, 1, 0.3)
    trials[2].status = "RUNNING"
    finish(cb, trials, 2, 0.5)
    cb.on_experiment_end(trials)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\033" not in out.getvalue()
    assert lines[0] == ("fold 1  concat-peakl  attempt 1 failed, retrying: ValueError: bad batch "
                        "(traceback: MLflow run, errors/attempt_1.txt)")
    assert lines[1] == "[1/3]  fold 0  outer-peakl  acc 0.412  macro-F1 0.352  12 s"
    assert lines[2].startswith("[2/3]  fold 1  concat-peakl  acc 0.300") and lines[3].startswith("[3/3]")
    assert lines[4].startswith("3/3 finished · 0 running · 0 pending · ") and "ETA" not in lines[4]
    assert len(lines) == 5


def test_terminal_status_line_redraws_in_place():
    out = Terminal()
    cb = SweepProgress(TrialLabels(with_seed=True), stream=out)
    trials = grid()
    cb.setup(total_num_samples=3)
    trials[0].status = "RUNNING"
    cb.on_step_end(1, trials)
    assert out.getvalue() == "\r\033[K0/3 finished · 1 running · 2 pending · 0 s"
    finish(cb, trials, 0, 0.412)
    text = out.getvalue()
    # the status line is wiped, the trial's line printed above it, the status redrawn below
    assert "\r\033[K[1/3]  fold 0  outer-peakl  seed 0  acc 0.412" in text
    assert text.endswith("\r\033[K1/3 finished · 0 running · 2 pending · 0 s")
    for i in (1, 2):
        trials[i].status = "RUNNING"
        finish(cb, trials, i, 0.3)
    cb._done_here, trials[2].status = 3, "RUNNING"  # three finished in this session: an ETA appears
    assert "ETA" in cb.status(trials)


def test_trials_stopped_by_ctrl_c_are_not_counted_as_finished():
    out = io.StringIO()
    cb = SweepProgress(TrialLabels(), stream=out)
    trials = grid()
    trials[0].status = "TERMINATED"  # finished before this driver started (a resumed sweep)
    cb.setup(total_num_samples=3)
    trials[1].status = trials[2].status = "RUNNING"
    cb.on_step_end(1, trials)
    finish(cb, trials, 1, 0.3)
    trials[2].status = "TERMINATED"  # what Tune does to a running trial on SIGINT: no completion
    cb.on_experiment_end(trials)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[2/3]  fold 1  concat-peakl")
    assert lines[-1].startswith("2/3 finished · 0 running · 1 pending · ")


def test_picklable_without_its_stream_and_silent_without_a_console(capsys):
    cb = SweepProgress(TrialLabels(), stream=io.StringIO())
    again = cloudpickle.loads(cloudpickle.dumps(cb))
    assert again.labels == TrialLabels() and again._stream is None
    trials = grid()
    again.setup(total_num_samples=3)
    finish(again, trials, 0, 0.4)  # with -v (no tune_output around fit) Tune's own output is on screen
    assert capsys.readouterr().out == ""


def test_tune_output_diverts_tune_to_the_log_and_keeps_ours_on_screen(tmp_path, capsys):
    log = tmp_path / "sweep" / "tune.log"
    cb = SweepProgress(TrialLabels())
    trials = grid()
    cb.setup(total_num_samples=3)
    controller = logging.getLogger("ray.tune.execution.tune_controller")
    with progress.tune_output(0, log):
        print("╭── Trial t0 result ──╮")  # what Tune prints
        controller.error("Trial task failed for trial t1\nTraceback (most recent call last): ...")
        finish(cb, trials, 0, 0.4)
    captured = capsys.readouterr()
    assert captured.out == "[1/3]  fold 0  outer-peakl  acc 0.400  macro-F1 0.340  12 s\n"
    assert "Traceback" not in captured.err
    assert "Trial t0 result" in log.read_text() and "Trial task failed for trial t1" in log.read_text()
    with progress.tune_output(1, log):  # -v: nothing diverted, the callback keeps quiet
        print("Tune's box")
        finish(cb, trials, 1, 0.4)
    assert capsys.readouterr().out == "Tune's box\n"


def test_a_search_trial_is_named_by_its_study_and_parameters():
    from erc import contract as C

    trial = FakeTrial("s0", {"fusion": "outer", "labels": "peakl", "fold": 1, "lr": 0.00123, "dim": 64},
                      last_result={"valid/acc": 0.41, "score": 0.43, "time_total_s": 3})
    out = io.StringIO()
    cb = SweepProgress(TrialLabels(stage=C.SEARCH_STAGE), stream=out)
    cb.setup(total_num_samples=4)
    cb.on_trial_complete(1, [trial], trial)
    assert out.getvalue() == "[1/4]  outer-peakl fold1 lr=0.00123,dim=64  acc 0.410  3 s\n"


def test_header_names_corpus_encoders_trials_and_where_runs_go(tmp_path):
    from types import SimpleNamespace

    from sweeps.settings import SweepSettings

    settings = SweepSettings(cache_dir=tmp_path, folds=[0, 1], labels=["peakl"], max_concurrent=2)
    prepared = SimpleNamespace(corpus_name="KEMDy19", table=range(80), audio_encoder="a", text_encoder="t")
    track = SimpleNamespace(uri="http://127.0.0.1:5000", parent_run_id="abc", sweep="s1")
    lines = progress.header(settings, prepared, track, 4).splitlines()
    assert lines == [
        "sweep s1",
        "  corpus     KEMDy19, 80 utterances",
        "  encoders   a (audio), t (text)",
        "  trials     4 = 2 folds × 2 fusions × 1 labels, 1 CPU + auto GPU share each, at most 2 at once",
        ("  selection  epoch (acc) and early stopping on a dev split of each fold's training sessions; the "
         "held-out fold is only evaluated (oracle/* and best/* logged beside)"),
        "  runs       MLflow http://127.0.0.1:5000, experiment 'erc-sweeps', parent run abc",
        f"  tune log   {tmp_path}/reports/s1/tune.log (Tune's own output; -v shows it here)",
    ]
    paper = SweepSettings(cache_dir=tmp_path, folds=[0, 1], labels=["peakl"], protocol="paper")
    assert "on the held-out fold itself (select_on=valid" in progress.header(paper, prepared, track, 4)


QUIET_BARS = """
import sys
import datasets  # loaded before (it loads huggingface_hub): its switch and the hub's are set in place
from sweeps.progress import quiet_startup

quiet_startup(0)
assert "transformers" not in sys.modules  # not imported for the sake of its bars
import transformers.utils.logging as tf_logging

print(datasets.is_progress_bar_enabled(), tf_logging.is_progress_bar_enabled())
"""


def test_quiet_startup_off_a_terminal_turns_off_every_progress_bar_without_importing_transformers():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.endswith("DISABLE_PROGRESS_BARS")}
    proc = subprocess.run([sys.executable, "-c", QUIET_BARS], capture_output=True, text=True, timeout=120,
                          env=env, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "False"]
