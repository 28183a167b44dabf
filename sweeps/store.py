"""The sweep's MLflow store: its address, reachable, opened (MLflow loads only to open it; never Ray or torch).

A finished sweep's rerun (:mod:`sweeps.finished`) reads the store before anything else loads.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from erc.atomic import build_lock
from erc.vocab import cache_root

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from sweeps.settings import SweepSettings


def default_tracking_uri(cache_dir: Path) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite file in the cache dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(cache_dir / 'mlflow.db').resolve()}"


def store_uri(settings: SweepSettings) -> str:
    """The sweep's store URI: ``--tracking-uri``, else :func:`default_tracking_uri` of its cache."""
    return settings.tracking_uri or default_tracking_uri(settings.cache_dir)


def tracking_uri(settings: SweepSettings) -> str:
    """The sweep's store URI, checked: an unreachable server is an error before any work starts."""
    uri = store_uri(settings)
    check_reachable(uri)
    return uri


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

    A new SQLite store starts as a copy of an empty one this MLflow version made before
    (:func:`empty_store_template`): its ~100 migrations take about 2 s, the copy milliseconds.
    """
    from mlflow.tracking import MlflowClient  # seconds to import: only once a store is opened

    if not uri.startswith("sqlite:///"):
        return MlflowClient(uri)
    db = Path(uri.removeprefix("sqlite:///"))
    with build_lock(db.parent / f".{db.name}.lock"):
        template = empty_store_template()
        copied = not db.exists() and _copy_template(template, db)
        fresh = not copied and not db.exists()
        client = _client(uri)
        if fresh:
            _save_template(db, template)
    return client


def _client(uri: str) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)  # the constructor builds (or checks) the store
    client.search_experiments(max_results=1)
    return client


def empty_store_template() -> Path:
    """Where an empty SQLite store of this MLflow version is kept: under the cache root, one per version
    (a store's schema is its MLflow's)."""
    from mlflow.version import VERSION  # loaded already by the client that opens the store

    return cache_root() / "mlflow-store" / f"empty-{VERSION}.db"


def _copy_template(template: Path, db: Path) -> bool:
    """``db`` as a copy of ``template``, published by one rename; False when there is none to copy."""
    if not template.is_file():
        return False
    try:  # a damaged template is not used, and is replaced by the store made instead
        with closing(sqlite3.connect(f"file:{template}?mode=ro", uri=True)) as con:
            ok = con.execute("PRAGMA quick_check").fetchone() == ("ok",) and con.execute(
                "SELECT version_num FROM alembic_version").fetchone() is not None
    except sqlite3.Error:
        ok = False
    if not ok:
        return False
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f".{db.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(template, tmp)
        os.rename(tmp, db)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def _save_template(db: Path, template: Path) -> None:
    """Keep the store just made, still empty, as the template of later ones. Its Default experiment is
    left out: MLflow makes it again in each store, with that store's artifact location. Best effort (a
    read-only cache root only means the next store is migrated again)."""
    tmp = template.with_name(f".{template.name}.{os.getpid()}.tmp")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(db)) as src, closing(sqlite3.connect(tmp)) as dst:
            src.backup(dst)
            with dst:
                dst.execute("DELETE FROM experiment_tags")
                dst.execute("DELETE FROM experiments")
        os.rename(tmp, template)
    except (OSError, sqlite3.Error):
        tmp.unlink(missing_ok=True)
