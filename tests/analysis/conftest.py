"""The MLflow store the analysis tests read (built once per session: ~70 runs)."""

from __future__ import annotations

import pytest

from tests.analysis.mlflow_store import build_store


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_store(tmp_path_factory.mktemp("mlflow"))
