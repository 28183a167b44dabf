"""The sweep's MLflow store: its address, reachable, opened (MLflow loads only to open it; never Ray or torch).

A finished sweep's rerun (:mod:`sweeps.finished`) reads the store before anything else loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from erc.atomic import build_lock

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


def default_tracking_uri(cache_dir: Path) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite file in the cache dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(cache_dir / 'mlflow.db').resolve()}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any trial starts, when the tracking server does not answer."""
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=timeout).raise_for_status()
        except requests.RequestException as err:
            raise ConnectionError(
                f"MLflow tracking server {uri} is not reachable ({err.__class__.__name__}: {err}). "
                "Start it (mlflow server --host … --port …) or pass another --tracking-uri."
            ) from None
    else:
        open_store(uri)


def open_store(uri: str) -> MlflowClient:
    """A client on ``uri``, with a SQLite store's tables created by one process at a time.

    MLflow creates and migrates a new SQLite database without a lock, so two sweeps started at
    once on a fresh cache both die in the migration (``table _alembic_tmp_… already exists``).
    The first client of a URI in a process builds the store (MLflow caches it per process), so
    holding a lock beside the database while it is created is enough.
    """
    from mlflow.tracking import MlflowClient  # seconds to import: only once a store is opened

    if not uri.startswith("sqlite:///"):
        return MlflowClient(uri)
    db = Path(uri.removeprefix("sqlite:///"))
    with build_lock(db.parent / f".{db.name}.lock"):
        client = MlflowClient(uri)  # the constructor builds the store
        client.search_experiments(max_results=1)
    return client
