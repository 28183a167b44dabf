"""The one-run command line, python -m erc.train."""

from __future__ import annotations

import subprocess
import sys

import datasets
import numpy as np
import pytest
import torch

import erc.train as train_mod
from erc.config import RunConfig
from erc.predict import load_head, predict
from tests.synthetic import synthetic_features


def test_command_line(tmp_path, capsys):
    table = synthetic_features(n=400, seed=1)
    columns = {"segment_id": table.segment_id, "corpus": table.corpus, "session": table.session,
               "fold": table.fold, "audio_vec": table.audio, "text_vec": table.text, "votes": table.votes,
               "majority": table.majority, "valence": table.valence, "arousal": table.arousal}
    datasets.Dataset.from_dict(columns).save_to_disk(str(tmp_path / "feats"))
    code = train_mod.main(["--features", str(tmp_path / "feats"), "--fold", "1", "--fusion", "concat",
                           "--labels", "hard", "--epochs", "3", "--set", "focal_gamma=2",
                           "--save", str(tmp_path / "head.pt")])
    out = capsys.readouterr().out
    assert code == 0
    # the dev set is 3 of the 16 training sessions (erc.data.folds.dev_sessions)
    assert "260 train / 60 dev / 80 valid" in out and "selected epoch" in out and "on dev" in out and '"focal_gamma": 2.0' in out
    table_lines = out.split("selected epoch")[0].splitlines()
    rows = [line.split() for line in table_lines if line.strip() and line.split()[0].isdigit()]
    assert [r[0] for r in rows] == ["1", "2", "3"] and all(len(r) == 11 for r in rows)

    # the saved head is the selected epoch's: reloaded, it reproduces the printed accuracy
    saved = torch.load(tmp_path / "head.pt")
    config = RunConfig.from_flat(saved["config"])
    assert config.loss.focal_gamma == 2.0 and config.loss.labels == "hard" and config.head.fusion == "concat"
    _, valid = table.split(1)
    preds, _ = predict(load_head(config, saved["state_dict"]), valid, device="cpu")
    rated = preds.majority >= 0
    acc = float((preds.logits[rated].argmax(1) == preds.majority[rated]).mean())
    assert acc == pytest.approx(saved["metrics"]["acc"], abs=1e-6)
    assert not np.isnan(saved["metrics"]["acc"])

    with pytest.raises(SystemExit) as exit_info:
        train_mod.main(["--features", str(tmp_path / "feats"), "--set", "nonsense=1"])
    assert exit_info.value.code == 2 and "nonsense" in capsys.readouterr().err

    help_text = subprocess.run([sys.executable, "-m", "erc.train", "--help"], capture_output=True, text=True,
                               check=False)
    assert help_text.returncode == 0 and "--features" in help_text.stdout and "--fold" in help_text.stdout
