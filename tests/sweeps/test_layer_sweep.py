"""A sweep over every encoder layer end to end: ``--layers all``, features extracted as a Ray Data job
(``--extract-on cluster`` on the sweep's own Ray), a ``weighted`` head logging its layer weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from erc import contract as C
from tests.sweep_helpers import children, run, sweep_command

pytestmark = pytest.mark.slow


def test_weighted_heads_log_their_layer_weights(demo_root, demo_encoders, tmp_path):
    config = tmp_path / "weighted.yaml"
    config.write_text("audio_layer: weighted\ntext_layer: weighted\n")
    cache = tmp_path / "cache"
    cmd = sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0", "--fusions", "concat",
                        "--labels", "soft", "--epochs", "2", "--config", str(config), "--layers", "all",
                        "--extract-on", "cluster")
    proc = run(cmd, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [feature_dir] = [p for p in (cache / "features").iterdir() if p.is_dir() and not p.name.startswith(".")]
    meta = json.loads((feature_dir / "meta.json").read_text())
    assert meta["extracted_on"] == "cluster" and meta["layers"] == "all"

    client = MlflowClient(f"sqlite:///{cache / 'mlflow.db'}")
    [trial] = children(client)
    assert trial.data.params["audio_layer"] == "weighted" and trial.data.params["text_layer"] == "weighted"
    weights = {}
    for modality, n_layers in (("audio", 3), ("text", 3)):  # demo encoders: embeddings + 2 layers
        histories = [client.get_metric_history(trial.info.run_id, f"{C.LAYER_WEIGHT_PREFIX}{modality}_{i}")
                     for i in range(n_layers)]
        assert all(sorted(m.step for m in h) == [1, 2] for h in histories), modality  # one value per epoch
        per_epoch = np.array([[m.value for m in sorted(h, key=lambda m: m.step)] for h in histories])
        np.testing.assert_allclose(per_epoch.sum(0), 1.0, atol=1e-5)  # a softmax over the layers
        weights[modality] = per_epoch
    artifacts = {a.path for a in client.list_artifacts(trial.info.run_id)}
    assert C.LAYER_WEIGHTS_FILE in artifacts and "plots" in artifacts
    assert "plots/layer_weights.png" in {a.path for a in client.list_artifacts(trial.info.run_id, "plots")}
    saved = json.loads(Path(client.download_artifacts(trial.info.run_id, C.LAYER_WEIGHTS_FILE)).read_text())
    epoch = saved["epoch"]
    for modality in ("audio", "text"):
        np.testing.assert_allclose(saved[modality], weights[modality][:, epoch - 1], atol=1e-6)

    # A config reading layers that the cache would not hold is a usage error, before any work.
    proc = run(sweep_command("ablation.py", demo_root, demo_encoders, cache, "--config", str(config)), cwd=tmp_path)
    assert proc.returncode == 2 and "--layers all" in proc.stderr
