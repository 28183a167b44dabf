"""erc.protocol and the protocol items in training: the paper's recipe as ordinary config keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import erc.metrics as metrics_mod
import erc.protocol
from erc.config import RunConfig
from erc.metrics import ccc
from erc.protocol import FINETUNE_ONLY, PROTOCOLS, check_cached, protocol_values, select_rows
from erc.trainer import Trainer, fit
from erc.vocab import PROTOCOL_NAMES
from tests.synthetic import synthetic_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cfg(**flat) -> RunConfig:
    return RunConfig.from_flat(flat)


@pytest.fixture(scope="module")
def data():
    return synthetic_features(n=400, seed=0).split(0)


def test_every_protocol_item_is_a_config_key_and_cached_mode_keeps_what_applies():
    paper = PROTOCOLS["paper"]
    config = RunConfig.from_flat(paper)  # every item is an ordinary key
    assert config.loss.focal == "batch" and config.loss.focal_gamma == 2.0
    assert config.optim.lr == 1e-4 and config.optim.encoder_lr == 1e-5 and config.optim.batch_size == 8
    assert config.optim.scheduler == "cosine_restarts" and config.optim.patience == 5
    assert config.protocol.valid_ties == "excluded" and config.protocol.data_selection == "paper"
    # the paper picks its epoch on the fold it reports; the default on a dev split of the training sessions
    assert config.protocol.select_on == "valid" and RunConfig().protocol.select_on == "dev"
    assert not config.head.append_one and not config.head.standardise
    cached = protocol_values("paper", "cached")
    assert not set(cached) & set(FINETUNE_ONLY) and set(cached) | (set(FINETUNE_ONLY) & set(paper)) == set(paper)
    assert protocol_values("paper", "finetune") == paper and protocol_values("default", "cached") == {}
    with pytest.raises(ValueError, match="unknown protocol"):
        protocol_values("lightning", "cached")
    check_cached(cached)  # fine
    with pytest.raises(ValueError, match="max_tokens"):
        check_cached({**cached, "max_tokens": 64})
    with pytest.raises(ValueError, match="finetune"):
        Trainer(cfg(clean_text=False), *synthetic_features(n=100).split(0))


def test_learning_rate_follows_torch_cosine_warm_restarts_step_by_step(data):
    train, valid = data
    config = cfg(fusion="concat", batch_size=16, scheduler="cosine_restarts", restart_steps=3, restart_mult=2,
                 min_lr=1e-5, lr=1e-3)
    trainer = Trainer(config, train, valid)
    reference_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    reference = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(reference_opt, T_0=3, T_mult=2, eta_min=1e-5)
    ours, theirs = [], []
    for _ in range(2):  # two epochs = 40 steps: several restarts (3, 6, 12, 24 steps)
        for index in trainer._batches():
            trainer.train_step(index)
            reference.step()
            ours.append(trainer.optimizer.param_groups[0]["lr"])
            theirs.append(reference_opt.param_groups[0]["lr"])
    assert len(ours) == 40 and ours == pytest.approx(theirs, rel=1e-12)
    assert max(ours) > 9e-4 and min(ours) < 1e-4  # it really anneals and restarts
    assert cfg(fusion="concat").optim.scheduler == "none"
    constant = Trainer(cfg(fusion="concat"), train, valid)
    constant.train_epoch()
    assert constant.optimizer.param_groups[0]["lr"] == 1e-3


def test_early_stopping_stops_at_its_patience(data, monkeypatch):
    train, valid = data
    scripted = iter([0.1, 0.5, 0.3, 0.5, 0.4, 0.9, 0.9, 0.9])
    real = metrics_mod.evaluate_outputs
    monkeypatch.setattr(metrics_mod, "evaluate_outputs", lambda *a: {**real(*a), "acc": next(scripted)})
    r = fit(cfg(fusion="concat", epochs=8, patience=3), train, valid)
    # best at epoch 2; epochs 3, 4 (a tie is no improvement) and 5 are not better: stop after 5
    assert [h["epoch"] for h in r.history] == [1, 2, 3, 4, 5]
    assert r.stopped_early and r.selected_epoch == 2
    scripted = iter([0.1, 0.2, 0.3])
    monkeypatch.setattr(metrics_mod, "evaluate_outputs", lambda *a: {**real(*a), "acc": next(scripted)})
    assert not fit(cfg(fusion="concat", epochs=3, patience=1), train, valid).stopped_early


def test_paper_evaluation_leaves_ties_out_of_every_metric_ccc_included(data):
    train, valid = data
    ties = valid.majority < 0
    assert ties.sum() > 5
    default = fit(cfg(fusion="concat", epochs=2), train, valid)
    paper = fit(cfg(fusion="concat", epochs=2, valid_ties="excluded"), train, valid)
    assert default.n_valid == len(valid) and paper.n_valid == paper.n_valid_cls == int((~ties).sum())
    p = paper.predictions
    assert (p.majority >= 0).all() and set(p.segment_id) == set(valid.segment_id[~ties])
    for i, key in enumerate(("ccc_valence", "ccc_arousal")):
        assert paper.metrics[key] == pytest.approx(ccc(p.va_pred[:, i], p.va[:, i]), abs=1e-6)
    # same training (same seed), so the default's CCC over all rows differs only by the tied rows
    d = default.predictions
    assert default.metrics["ccc_valence"] == pytest.approx(ccc(d.va_pred[:, 0], d.va[:, 0]), abs=1e-6)
    assert paper.metrics["ccc_valence"] == pytest.approx(ccc(d.va_pred[~ties, 0], d.va[~ties, 0]), abs=1e-6)


def test_unstandardised_head_keeps_identity_buffers_and_raw_targets(data):
    train, valid = data
    trainer = Trainer(cfg(fusion="outer", standardise=False, append_one=False), train, valid)
    norm = trainer.head.norm
    assert torch.equal(norm.audio_mean, torch.zeros_like(norm.audio_mean))
    assert torch.equal(norm.target_std, torch.ones(2))
    assert not torch.equal(Trainer(cfg(fusion="outer"), train, valid).head.norm.audio_mean, norm.audio_mean)


def test_bf16_autocast_trains_on_cpu(data):
    train, valid = data
    r = fit(cfg(fusion="outer", epochs=2, precision="bf16"), train, valid)
    assert np.isfinite([r.metrics["loss"], r.metrics["acc"]]).all()
    assert r.predictions.logits.dtype == np.float32


def test_a_restored_trainer_continues_exactly(data):
    """state_dict after epoch 2, loaded into a fresh trainer, gives the uninterrupted run's epochs 3–4."""
    train, valid = data
    config = cfg(fusion="outer", epochs=4, dropout=0.2, scheduler="cosine_restarts", restart_steps=5, patience=3)
    whole = fit(config, train, valid)
    first = Trainer(config, train, valid)
    first.run_epoch()
    first.run_epoch()
    state = first.state_dict()
    second = Trainer(config, train, valid)
    second.load_state_dict(state)
    while not second.done:
        second.run_epoch()
    assert second.result().history == whole.history
    assert second.result().selected_epoch == whole.selected_epoch


def test_the_protocols_are_the_names_every_layer_knows_and_import_without_torch():
    assert tuple(PROTOCOLS) == PROTOCOL_NAMES
    # argument parsers list protocols and modes before torch loads
    code = ("import sys, erc.protocol as p; p.protocol_values('paper', 'cached'); "
            "assert 'torch' not in sys.modules and 'erc.data' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=Path(erc.protocol.__file__).parents[1])


def test_select_rows_leaves_out_the_given_ids():
    table = synthetic_features(n=50)
    kept = select_rows(table, "paper", table.segment_id[:5])
    assert len(kept) == 45 and select_rows(table, "all", None) is table
    with pytest.raises(ValueError, match="excluded segment ids"):
        select_rows(table, "paper", None)
