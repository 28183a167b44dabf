"""sweeps/store.py: a new SQLite store is a copy of an empty one made before, and is the same store."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from erc.vocab import CACHE_ENV
from sweeps.store import empty_store_template, open_store


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "root"))
    return tmp_path / "root"


def _rows(db: Path, sql: str) -> list:
    with closing(sqlite3.connect(db)) as con:
        return con.execute(sql).fetchall()


def _use(uri: str, artifacts: Path) -> tuple[str, str]:
    client = open_store(uri)
    experiment = client.create_experiment("erc-sweeps", artifact_location=artifacts.as_uri())
    run = client.create_run(experiment, run_name="trial")
    client.log_metric(run.info.run_id, "acc", 0.5)
    client.set_terminated(run.info.run_id)
    return experiment, run.info.run_id


def test_the_first_store_leaves_a_template_and_the_next_is_made_from_it(cache_root, tmp_path, monkeypatch):
    template = empty_store_template()
    assert template.parent.parent == cache_root and not template.exists()
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"

    first_ids = _use(f"sqlite:///{first}", tmp_path / "a" / "artifacts")
    assert template.is_file()  # migrated once, kept without the Default experiment
    assert _rows(template, "SELECT * FROM experiments") == []
    assert _rows(template, "SELECT version_num FROM alembic_version") == _rows(
        first, "SELECT version_num FROM alembic_version")
    template_made = template.stat().st_mtime_ns

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # where MLflow puts a SQLite store's Default experiment
    second_ids = _use(f"sqlite:///{second}", tmp_path / "b" / "artifacts")
    assert template.stat().st_mtime_ns == template_made  # copied, not made again
    assert second_ids[0] == first_ids[0]  # the same experiment ids as a migrated store gives
    # the Default experiment is made per store, with that store's own artifact location
    [(default_location,)] = _rows(second, "SELECT artifact_location FROM experiments WHERE experiment_id = 0")
    assert default_location.startswith(str(tmp_path / "elsewhere"))
    assert _rows(second, "SELECT name, status FROM runs") == [("trial", "FINISHED")]
    assert _rows(second, "SELECT key, value FROM metrics") == [("acc", 0.5)]
    # the two stores hold the same tables
    tables = "SELECT name, sql FROM sqlite_master ORDER BY name"
    assert _rows(first, tables) == _rows(second, tables)


def test_a_damaged_template_is_not_used(cache_root, tmp_path):
    template = empty_store_template()
    template.parent.mkdir(parents=True)
    template.write_bytes(b"not a database")
    _, run_id = _use(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")
    assert _rows(tmp_path / "mlflow.db", "SELECT run_uuid FROM runs") == [(run_id,)]
    assert _rows(template, "SELECT * FROM experiments") == []  # replaced by a good one
