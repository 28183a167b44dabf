"""A cached sweep of the cross-attention head end to end: ``--fusions xattn`` builds the sequence cache
when it is missing, and the trial trains on it and logs its size (DESIGN §13)."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from erc import contract as C
from erc.sequences import MAX_FRAMES, MAX_TOKENS
from tests.sweep_helpers import children, run, sweep_command

pytestmark = pytest.mark.slow


def test_a_cached_xattn_sweep_builds_the_sequence_cache_and_trains_on_it(demo_root, demo_encoders, demo_cache,
                                                                          tmp_path):
    cache = demo_cache
    cmd = sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0", "--fusions", "xattn",
                        "--labels", "soft", "--epochs", "1")
    proc = run(cmd, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [store] = [p for p in (cache / "sequences").iterdir() if p.is_dir() and p.name.startswith("seq-")]
    meta = json.loads((store / "meta.json").read_text())
    assert (meta["max_frames"], meta["max_tokens"], meta["dtype"]) == (MAX_FRAMES, MAX_TOKENS, "float16")
    assert meta["n_utterances"] > 0 and meta["bytes"] > 0

    client = MlflowClient(f"sqlite:///{cache / 'mlflow.db'}")
    [trial] = children(client)
    assert trial.info.status == "FINISHED" and trial.data.params["fusion"] == "xattn"
    assert trial.data.metrics[C.MODEL_PARAMS] > 0 and trial.data.metrics[C.MODEL_FLOPS] > 0
    assert "selected/acc" in trial.data.metrics
