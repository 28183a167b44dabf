"""The MLflow store the analysis tests read (built once per session: ~70 runs)."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import fluent
from mlflow.tracking._tracking_service import utils as tracking_utils

from tests.analysis.mlflow_store import build_store


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_store(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture
def file_store(tmp_path, monkeypatch) -> str:
    """A researcher's own ``./mlruns`` (a ``file:`` store), set as MLflow's tracking URI for this test.

    MLflow 3 opens a file store only with MLFLOW_ALLOW_FILE_STORE; the fluent API's global URI and active
    experiment are restored after the test.
    """
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # set_tracking_uri sets it too; monkeypatch undoes it
    mlflow.set_tracking_uri(uri)
    return uri
