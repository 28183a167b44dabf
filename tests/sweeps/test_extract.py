"""sweeps/extract.py: feature extraction as a Ray Data job on a multi-raylet cluster.

The cluster is ``ray.cluster_utils.Cluster`` as in tests/test_cluster.py: a head raylet with no CPU
and two workers. Each cluster-side build runs in its own driver process (as a sweep's driver would),
connected with ``ray.init(address=...)``; the test process compares the caches the builds publish.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pytest

from erc.encoders import build_demo_encoders
from erc.features import build_features, feature_meta
from erc.table import FeatureTable
from sweeps.extract import KILL_ENV
from tests.erc.features.forwards import Forwards
from tests.erc.features.test_cache import caches, make_corpus
from tests.sweep_helpers import REPO
from tests.test_cluster import LocalCluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    local = LocalCluster(workers=2)
    yield local
    local.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    corpus = make_corpus(root / "data")
    corpus.to_pickle(root / "corpus.pkl")
    audio_dir, text_dir = build_demo_encoders(root / "enc", corpus, seed=0)
    return corpus, root / "corpus.pkl", audio_dir, text_dir


def cluster_build(cluster: LocalCluster, setup, cache: Path, *, layers: str = "last", env: dict | None = None,
                  **extractor) -> subprocess.CompletedProcess:
    """``build_features`` with the cluster extractor, in a driver process joined to ``cluster``.
    Prints the published cache's directory on a line of its own (see :func:`published`)."""
    _, pickled, audio_dir, text_dir = setup
    script = textwrap.dedent(f"""
        import pandas as pd, ray
        from erc.features import build_features
        from sweeps.extract import ClusterExtractor
        PUBLISHED = {PUBLISHED!r}
        ray.init(address={cluster.address!r}, log_to_driver=False)
        ds = build_features(pd.read_pickle({str(pickled)!r}), {str(audio_dir)!r}, {str(text_dir)!r},
                            {str(cache)!r}, batch_seconds=8.0, layers={layers!r}, progress=False,
                            extractor=ClusterExtractor(**{extractor!r}))
        print(PUBLISHED, ds.cache_files[0]["filename"].rsplit("/", 1)[0], flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=400, env=env,
                          check=False)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


# The raylet's own messages (a killed actor's retry) reach the driver's stdout at any time, even after
# the last line the script prints: the cache directory is found by its tag, not by its position.
PUBLISHED = "published:"


def published(proc: subprocess.CompletedProcess) -> Path:
    lines = [line for line in proc.stdout.splitlines() if line.startswith(PUBLISHED)]
    assert len(lines) == 1, proc.stdout[-3000:]
    return Path(lines[0].removeprefix(PUBLISHED).strip())


def test_cluster_extraction_is_the_driver_extraction(cluster, setup, tmp_path, monkeypatch):
    corpus, _, audio_dir, text_dir = setup
    here = build_features(corpus, audio_dir, text_dir, tmp_path / "driver", batch_seconds=8.0, layers="all",
                          progress=False)
    proc = cluster_build(cluster, setup, tmp_path / "cluster", layers="all")  # the workers' logical GPUs
    assert proc.returncode == 0, proc.stderr[-3000:]
    there = published(proc)
    driver_dir = Path(here.cache_files[0]["filename"]).parent
    assert there.name == driver_dir.name  # the same cache key
    meta = feature_meta(there)
    assert meta["extracted_on"] == "cluster" and meta["device"] == "2 GPU actor(s)"
    assert feature_meta(driver_dir)["extracted_on"] == "driver"
    a, b = FeatureTable.from_dataset(here), FeatureTable.from_dataset(datasets.load_from_disk(there))
    assert list(a.segment_id) == list(b.segment_id)
    np.testing.assert_allclose(b.audio, a.audio, rtol=0, atol=1e-5)
    np.testing.assert_allclose(b.text, a.text, rtol=0, atol=1e-5)
    for key in ("audio_layers", "text_layers"):
        # float16 in both: a value within 1e-5 may round to the neighbouring float16
        np.testing.assert_allclose(getattr(b, key).take(slice(None)), getattr(a, key).take(slice(None)),
                                   rtol=1e-3, atol=1e-5)

    # Either cache is a hit for the other side: the driver reuses the cluster's without an encoder call …
    calls = Forwards(monkeypatch)
    reused = build_features(corpus, audio_dir, text_dir, tmp_path / "cluster", layers="all", progress=False)
    assert calls.n == 0 and Path(reused.cache_files[0]["filename"]).parent == there
    # … and a cluster run reuses the driver's without a job (its record is unchanged)
    proc = cluster_build(cluster, setup, tmp_path / "driver", layers="all")
    assert proc.returncode == 0 and published(proc) == driver_dir
    assert feature_meta(driver_dir)["extracted_on"] == "driver"


def test_a_killed_actor_is_restarted_and_its_unit_retried(cluster, setup, tmp_path):
    corpus, _, audio_dir, text_dir = setup
    marker = tmp_path / "kill"
    marker.mkdir()
    # CPU actors; the first actor to reach its second unit is SIGKILLed mid-job
    proc = cluster_build(cluster, setup, tmp_path / "cache", gpus=False, kill="2", kill_dir=str(marker))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (marker / "killed").exists()  # an actor did die
    meta = feature_meta(published(proc))
    assert meta["device"] == "2 CPU actor(s)"
    built = FeatureTable.from_dataset(datasets.load_from_disk(str(published(proc))))
    here = FeatureTable.from_dataset(build_features(corpus, audio_dir, text_dir, tmp_path / "driver",
                                                    batch_seconds=8.0, progress=False))
    np.testing.assert_allclose(built.audio, here.audio, rtol=0, atol=1e-5)
    np.testing.assert_allclose(built.text, here.text, rtol=0, atol=1e-5)


def test_actors_that_keep_dying_fail_the_build_clearly_and_publish_nothing(cluster, setup, tmp_path):
    cache = tmp_path / "cache"
    proc = cluster_build(cluster, setup, cache, gpus=False, actors=1, env={KILL_ENV: "1:always"})
    assert proc.returncode != 0
    assert "ExtractionError" in proc.stderr and "no cache was written" in proc.stderr
    assert caches(cache) == []  # nothing that looks like a cache …
    assert not any(p.name.startswith(".tmp-") for p in cache.iterdir())  # … and no build left behind
