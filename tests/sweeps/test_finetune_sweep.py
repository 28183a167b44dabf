"""``sweeps/ablation.py --mode finetune`` end to end: real Ray, real MLflow, the demo encoders fine-tuned."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from erc import contract as C
from tests.sweep_helpers import children, parents, run, sweep_command

pytestmark = pytest.mark.slow


def test_finetune_grid_trial_fails_after_an_epoch_and_resumes_in_its_own_run(demo_root, demo_encoders, tmp_path):
    cache = tmp_path / "cache"
    cmd = sweep_command("ablation.py", demo_root, demo_encoders, cache, "--mode", "finetune", "--protocol", "paper",
                        "--folds", "0,1", "--fusions", "concat", "--labels", "soft", "--epochs", "2")
    proc = run(cmd, cwd=tmp_path, env={"ERC_FAIL_ONCE": "fold0-concat-soft@1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "inputs: 88 utterances" in proc.stdout and "paper protocol: " in proc.stdout
    assert "per-metric best epochs" in proc.stdout  # the paper protocol's second, optimistic report
    client = MlflowClient(f"sqlite:///{cache / 'mlflow.db'}")
    [parent] = parents(client)
    assert parent.data.tags[C.MODE] == "finetune" and parent.data.tags[C.PROTOCOL] == "paper"
    runs = children(client)
    assert sorted(r.info.run_name for r in runs) == ["fold0-concat-soft", "fold1-concat-soft"]  # one run each
    for r in runs:
        params, tags = r.data.params, r.data.tags
        assert r.info.status == "FINISHED" and tags[C.MODE] == "finetune"
        # the paper protocol's items are the run's params; --epochs overrides its 30
        assert params["focal"] == "batch" and params["encoder_lr"] == "1e-05" and params["epochs"] == "2"
        assert params["audio_padding"] == "fixed" and params["valid_ties"] == "excluded"
        history = client.get_metric_history(r.info.run_id, C.VALID_PREFIX + "acc")
        assert sorted(m.step for m in history) == [1, 2]  # no epoch twice, also in the resumed run
        for metric, best in (("acc", max), ("ccc_valence", max), ("loss", min)):  # best/* = best of the history
            values = [m.value for m in client.get_metric_history(r.info.run_id, C.VALID_PREFIX + metric)]
            assert r.data.metrics[C.BEST_PREFIX + metric] == pytest.approx(best(values)), metric
        assert tags[C.ATTEMPTS] == ("2" if r.info.run_name == "fold0-concat-soft" else "1")
        assert {a.path for a in client.list_artifacts(r.info.run_id, C.CHECKPOINT_DIR)} == {C.MODEL_CHECKPOINT}
    resumed = next(r for r in runs if r.info.run_name == "fold0-concat-soft")
    error = client.download_artifacts(resumed.info.run_id, C.error_artifact(1), str(tmp_path))
    assert "after epoch 1" in Path(error).read_text()
    saved = torch.load(client.download_artifacts(resumed.info.run_id, C.MODEL_CHECKPOINT, str(tmp_path)),
                       weights_only=False)
    assert set(saved) == {"config", "state_dict"} and saved["config"]["clean_text"] is False
    assert {k.split(".")[0] for k in saved["state_dict"]} == {"audio_encoder", "text_encoder", "head"}
