"""Shared fixtures: a small demo corpus written once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# One OpenMP thread per test process and the processes it starts (before anything imports torch; a value
# set by the user stays): the tests run one xdist worker per CPU, so torch's default of one thread per
# CPU in each process only oversubscribed the CPUs, and waiting OpenMP threads spin. Measured on 2 CPUs
# (tests/erc + three benchmark smoke tests, -n 2): 12 % less CPU, 9 % less wall time. Trials and the
# extraction actors still set their own thread counts (--cpus-per-trial), as in a user's run.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# No Ray usage reporting from the tests (and none is possible: CI has no internet). It also spares every
# Ray Data job its usage-collection actor, a process of ~3 s CPU here.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from erc.data.demo import write_demo_corpus  # after the thread setting above


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject.toml): one worker per CPU, at most 4. A test that runs a sweep already
    keeps about two CPUs busy (Ray's trial workers), so more workers than CPUs only add contention."""
    return max(1, min(os.cpu_count() or 1, 4))


@pytest.fixture(autouse=True)
def no_tracking_uri_from_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without ``MLFLOW_TRACKING_URI``: ``mlflow.set_tracking_uri`` also sets it in
    ``os.environ``, so one test's store would otherwise become every later test's (and subprocess's)
    default. A test that wants it sets it through ``monkeypatch``, which undoes it."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo corpus in both layouts (5 + 6 sessions, 4 utterances per speaker)."""
    return write_demo_corpus(tmp_path_factory.mktemp("demo") / "data", seed=0, kemdy19_sessions=5,
                             kemdy20_sessions=6, utterances_per_speaker=4)


@pytest.fixture(scope="session")
def demo_encoders(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Demo encoders (random small wav2vec2 + RoBERTa) for the small demo corpus, saved to disk."""
    from erc.data import load_corpus
    from erc.encoders import build_demo_encoders

    return build_demo_encoders(tmp_path_factory.mktemp("encoders"), load_corpus(demo_root, verbose=False))


@pytest.fixture(scope="session")
def demo_features(demo_root: Path, demo_encoders: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
                  ) -> Path:
    """The small demo corpus's feature cache (last layer), built once per test worker by the call a sweep
    makes (a cache is current for whichever process reads it). Read it through :func:`demo_cache`."""
    from erc.data import load_corpus
    from erc.features.cache import build_features

    features = tmp_path_factory.mktemp("demo-features") / "features"
    build_features(load_corpus(demo_root, verbose=False), *demo_encoders, features, progress=False)
    return features


@pytest.fixture
def demo_cache(demo_features: Path, tmp_path: Path) -> Path:
    """``tmp_path / "cache"`` holding a copy of :func:`demo_features`: the ``--cache-dir`` of a sweep on the
    small demo that a test runs for what comes after the features (building them cost each such sweep
    ~9 s of CPU here, and the tests about building start from an empty cache)."""
    cache = tmp_path / "cache"
    shutil.copytree(demo_features, cache / "features")
    return cache


@pytest.fixture
def one_torch_thread():
    """One torch thread per run, as the sweep gives each trial (extra threads only add contention here)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
