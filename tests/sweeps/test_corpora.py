"""Sweeps on the other corpora (issue 24): a smoke grid on each generated corpus in its release layout, and
the KEMDy19 → KEMDy20 cross-corpus sweep on the demo. Real Ray, real MLflow, subprocesses as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from erc import contract as C
from erc.data import crema_d, iemocap, load_corpus, manifest, msp_podcast
from erc.encoders import build_demo_encoders
from erc.vocab import NO_FOLD, REGRESSION_METRICS
from tests.sweep_helpers import REPO, children, parents, run, sweep_command

pytestmark = pytest.mark.slow

WRITERS = {"iemocap": iemocap.write_fixture, "msp_podcast": msp_podcast.write_fixture,
           "crema_d": crema_d.write_fixture, "manifest": manifest.write_fixture}
GRID = ("--smoke-test", "--fusions", "concat", "--labels", "soft,peakl", "-q")


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_sweep_runs_on_each_generated_corpus(tmp_path: Path, name: str):
    written = WRITERS[name](tmp_path / "data", seed=0)
    data = written if written.is_file() else written.parent  # the manifest is a file, the rest a release folder
    corpus = load_corpus(data, verbose=False)
    encoders = build_demo_encoders(tmp_path / "encoders", corpus, seed=0)
    proc = run(sweep_command("ablation.py", data, encoders, tmp_path / "cache", *GRID), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'cache' / 'mlflow.db'}")
    runs = children(client)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    official = set(corpus.splits.values()) == {"official"}
    # an official partition: one trial per (arm, seed) on fold NO_FOLD; else the smoke test's fold 0
    assert {int(r.data.params[C.FOLD]) for r in runs} == {NO_FOLD if official else 0}
    assert {int(r.data.params["n_classes"]) for r in runs} == {len(corpus.classes)}
    metrics = runs[0].data.metrics
    has_ccc = all(C.SELECTED_PREFIX + m in metrics for m in REGRESSION_METRICS)
    assert has_ccc == bool(corpus.dimensions)  # CREMA-D: absent, not NaN
    (parent,) = parents(client)
    agreement = {k for k in parent.data.metrics if k.startswith(C.AGREEMENT_PREFIX)}
    assert C.agreement_metric(corpus.utterances["corpus"].iloc[0], "alpha_categories") in agreement
    report = next((tmp_path / "cache" / "reports").glob("*/report.md")).read_text()
    assert "Rater agreement" in report
    if name == "crema_d":
        assert "carries no emotion" in parent.data.tags[C.CORPUS_NOTES] and "carries no emotion" in report
        assert "no CCC rows" in report


def test_cross_corpus_sweep_on_the_demo(demo_root: Path, demo_encoders: tuple[Path, Path], tmp_path: Path):
    # the small demo corpus of the fixtures: both of its corpora, in their two layouts
    cmd = sweep_command("ablation.py", demo_root, demo_encoders, tmp_path / "cache", "--train-corpus", "kemdy19",
                        "--test-corpus", "kemdy20", "--fusions", "concat", "--labels", "soft,peakl", "--epochs", "1",
                        "--repeats", "2", "-q")
    proc = run(cmd, cwd=REPO, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cross-corpus: train on all of kemdy19, evaluate on all of kemdy20" in proc.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'cache' / 'mlflow.db'}")
    runs = children(client)
    assert len(runs) == 4 and {int(r.data.params[C.FOLD]) for r in runs} == {NO_FOLD}  # (arm, seed) trials
    corpus = load_corpus(demo_root, verbose=False)
    sizes = corpus.utterances.groupby("corpus").size()
    assert {int(r.data.params[C.N_VALID]) for r in runs} == {int(sizes["KEMDy20"])}
    assert {r.data.tags[C.CORPUS] for r in runs} <= {"kemdy19 -> kemdy20"}


def test_cross_corpus_flags_go_together(tmp_path: Path):
    cmd = [*sweep_command("ablation.py", Path("unused"), (Path(), Path()), tmp_path / "cache")[:2],
           "--cache-dir", str(tmp_path / "cache"), "--train-corpus", "kemdy19"]
    proc = run(cmd, cwd=REPO, timeout=120)
    assert proc.returncode != 0 and "--train-corpus and --test-corpus go together" in proc.stderr
