"""Shared fixtures: a small demo corpus written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from erc.data.demo import write_demo_corpus


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo corpus in both layouts (5 + 6 sessions, 4 utterances per speaker)."""
    return write_demo_corpus(tmp_path_factory.mktemp("demo") / "data", seed=0, kemdy19_sessions=5,
                             kemdy20_sessions=6, utterances_per_speaker=4)
