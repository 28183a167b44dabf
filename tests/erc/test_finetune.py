"""erc.finetune on the demo encoders: end-to-end model, training the encoders, exact resume, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from erc.config import RunConfig
from erc.data import load_corpus
from erc.encoders import load_audio_encoder, load_text_encoder
from erc.features import build_features
from erc.finetune import EndToEnd, FinetuneTrainer, collate
from erc.heads import build_head
from erc.inputs import build_inputs
from erc.protocol import join_lines
from erc.sequences import masked_mean
from erc.table import FeatureTable

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cfg(**flat) -> RunConfig:
    return RunConfig.from_flat({"batch_size": 4, "fusion": "concat", **flat})


@pytest.fixture(scope="module")
def corpus(demo_root):
    return load_corpus(demo_root, verbose=False)


@pytest.fixture(scope="module")
def table(corpus, demo_encoders, tmp_path_factory):
    return build_inputs(corpus, *demo_encoders, tmp_path_factory.mktemp("inputs"), progress=False)[0]


@pytest.fixture(scope="module")
def small(table):
    """A few short utterances per side, so a CPU epoch takes about a second."""
    train, valid = table.split(0)
    return _shortest(train, 12), _shortest(valid, 6)


def _shortest(rows, n: int):
    return rows.subset(np.argsort(rows.wave_len, kind="stable")[:n])


def test_untrained_end_to_end_model_reproduces_the_cached_vectors(corpus, demo_encoders, table, tmp_path):
    features = FeatureTable.from_dataset(build_features(corpus, *demo_encoders, tmp_path, progress=False))
    audio, text = load_audio_encoder(demo_encoders[0], "cpu"), load_text_encoder(demo_encoders[1], "cpu")
    model = EndToEnd(audio, text, build_head(cfg().head, audio.dim, text.dim)).eval()
    index = np.arange(0, len(table), 5)
    batch = collate(table, index, clean_text=True, max_tokens=0, pad_to=None, min_samples=audio.min_samples,
                    normalize=True, device=torch.device("cpu"))
    with torch.no_grad():
        a, t = model.vectors(batch)
    # the same pooling over the same (int16-stored) waveforms and token ids, in a padded batch
    np.testing.assert_allclose(a.numpy(), features.audio[index], atol=5e-3)
    np.testing.assert_allclose(t.numpy(), features.text[index], atol=1e-4)
    assert sorted({k.split(".")[0] for k in model.state_dict()}) == ["audio_encoder", "head", "text_encoder"]


def test_collate_pads_to_seven_seconds_and_cuts_tokens_like_the_tokenizer(table, corpus, demo_encoders):
    tokenizer = load_text_encoder(demo_encoders[1], "cpu").tokenizer
    index = np.array([0, 1, 2])
    fixed = collate(table, index, clean_text=False, max_tokens=5, pad_to=7 * 16000, min_samples=400,
                    normalize=True, device=torch.device("cpu"))
    assert fixed["values"].shape == (3, 7 * 16000) and bool(fixed["audio_mask"].all())  # padding in the pool
    assert fixed["ids"].shape[1] <= 5
    for k, i in enumerate(index):
        raw = join_lines(corpus.utterances.text_raw[i])
        expected = tokenizer(raw, truncation=True, max_length=5)["input_ids"]
        assert fixed["ids"][k, : len(expected)].tolist() == expected
    bucket = collate(table, index, clean_text=True, max_tokens=0, pad_to=None, min_samples=400, normalize=True,
                     device=torch.device("cpu"))
    assert bucket["values"].shape[1] == max(table.wave_len[index])
    assert bucket["audio_mask"].sum(1).tolist() == table.wave_len[index].tolist()
    w = bucket["values"][0, : table.wave_len[0]]
    assert float(w.mean()) == pytest.approx(0.0, abs=1e-4) and float(w.std()) == pytest.approx(1.0, abs=1e-2)


def _changed(before: dict, after: dict, prefix: str) -> tuple[int, int]:
    keys = [k for k in before if k.startswith(prefix) and before[k].is_floating_point()]
    return sum(not torch.equal(before[k], after[k]) for k in keys), len(keys)


def test_finetuning_changes_the_encoders_and_freezing_keeps_the_cnn(small, demo_encoders):
    train, valid = small
    for freeze in (False, True):
        trainer = FinetuneTrainer(cfg(epochs=1, freeze_cnn=freeze, encoder_lr=1e-3), train, valid,
                                  audio_encoder=demo_encoders[0], text_encoder=demo_encoders[1])
        before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.run_epoch()
        after = trainer.model.state_dict()
        cnn_changed, n_cnn = _changed(before, after, "audio_encoder.feature_extractor.")
        assert n_cnn > 0 and cnn_changed == (0 if freeze else n_cnn)
        assert _changed(before, after, "audio_encoder.encoder.")[0] > 0
        assert _changed(before, after, "text_encoder.encoder.")[0] > 0
        assert _changed(before, after, "head.")[0] > 0
        lrs = [g["lr"] for g in trainer.optimizer.param_groups]
        assert lrs == [1e-3, trainer.config.optim.lr]  # encoders, head
    assert FinetuneTrainer(cfg(), train, valid, audio_encoder=demo_encoders[0],
                           text_encoder=demo_encoders[1]).optimizer.param_groups[0]["lr"] == 1e-5


def test_validation_outputs_and_embeddings_are_the_heads_on_the_pooled_vectors(small, demo_encoders):
    train, valid = small
    trainer = FinetuneTrainer(cfg(epochs=1, fusion="outer"), train, valid, audio_encoder=demo_encoders[0],
                              text_encoder=demo_encoders[1], keep_embeddings=True)
    _, out, emb = trainer.evaluate()
    assert out.shape == (len(valid), 9) and emb.shape == (len(valid), trainer.config.head.dim)
    with torch.no_grad():
        trainer.model.eval()
        batch = trainer._collate(valid, np.arange(len(valid)))
        a, t = trainer.model.vectors(batch)
        torch.testing.assert_close(emb, trainer.head.embed(a, t), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out, trainer.head(a, t), rtol=1e-4, atol=1e-5)
    trainer.keep_embeddings = False
    _, plain, none = trainer.evaluate()
    assert none is None
    torch.testing.assert_close(plain, out, rtol=0, atol=0)


def test_a_restored_finetune_trainer_continues_exactly(small, demo_encoders):
    """Encoder dropout and LayerDrop draw from the global generators: the run owns and checkpoints them."""
    train, valid = small
    config = cfg(epochs=3, dropout=0.2, scheduler="cosine_restarts", restart_steps=2, seed=5)
    kwargs = {"audio_encoder": demo_encoders[0], "text_encoder": demo_encoders[1]}
    whole = FinetuneTrainer(config, train, valid, **kwargs)
    while not whole.done:
        whole.run_epoch()
    first = FinetuneTrainer(config, train, valid, **kwargs)
    first.run_epoch()
    state = first.state_dict()
    torch.manual_seed(123)  # whatever the process's own generators do in between
    np.random.seed(7)
    second = FinetuneTrainer(config, train, valid, **kwargs)
    second.load_state_dict(state)
    while not second.done:
        second.run_epoch()
    assert second.history == whole.history
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[key], value, rtol=0, atol=0)
    other = FinetuneTrainer(cfg(epochs=3, dropout=0.2, scheduler="cosine_restarts", restart_steps=2, seed=6),
                            train, valid, **kwargs)
    other.run_epoch()
    assert other.history[0] != whole.history[0]


def test_length_buckets_cover_every_row_once_with_less_padding(table, demo_encoders):
    train, valid = table.split(0)
    trainer = FinetuneTrainer(cfg(batch_size=4), train, valid.subset(np.arange(4)),
                              audio_encoder=demo_encoders[0], text_encoder=demo_encoders[1])
    batches = trainer._batches()
    rows = torch.cat(batches).tolist()
    assert sorted(rows) == list(range(len(train)))
    lengths = train.wave_len

    def padded(bs) -> int:
        return sum(len(b) * int(lengths[b.numpy()].max()) for b in bs)

    plain = super(FinetuneTrainer, trainer)._batches()
    assert padded(batches) < 0.9 * padded(plain)
    fixed = FinetuneTrainer(cfg(batch_size=4, audio_padding="fixed"), train, valid.subset(np.arange(4)),
                            audio_encoder=demo_encoders[0], text_encoder=demo_encoders[1])
    assert fixed.pad_to == 7 * 16000


def test_bf16_and_gradient_checkpointing_run_on_cpu(small, demo_encoders):
    train, valid = small
    kwargs = {"audio_encoder": demo_encoders[0], "text_encoder": demo_encoders[1]}
    plain = FinetuneTrainer(cfg(), train, valid, **kwargs)
    checkpointed = FinetuneTrainer(cfg(grad_checkpointing=True), train, valid, **kwargs)
    assert checkpointed.model.audio_encoder.is_activation_checkpointing
    assert checkpointed.model.text_encoder.is_activation_checkpointing
    index = torch.arange(4)
    with plain.rng.scope():
        plain.model.train()
        loss = plain.train_step(index)
    with checkpointed.rng.scope():
        checkpointed.model.train()
        loss_ckpt = checkpointed.train_step(index)
    assert loss_ckpt == pytest.approx(loss, rel=1e-5)  # same numbers, activations recomputed
    bf16 = FinetuneTrainer(cfg(precision="bf16"), train, valid, **kwargs)
    metrics = bf16.run_epoch()
    assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["train_loss"])


def test_finetune_dev_selection_and_raw_input_robustness(small, demo_encoders):
    """A dev set is evaluated every epoch; robustness feeds silent audio, an empty transcript and
    waveform noise through the encoders (no text noise on token ids)."""
    train, valid = small
    train, dev = train.subset(np.arange(8)), train.subset(np.arange(8, 12))
    trainer = FinetuneTrainer(cfg(epochs=2), train, valid, dev=dev, audio_encoder=demo_encoders[0],
                              text_encoder=demo_encoders[1])
    while not trainer.done:
        trainer.run_epoch()
    result = trainer.result()
    assert result.selected_on == "dev" and len(result.dev_history) == 2 and result.n_dev == 4
    robust = trainer.robustness(levels=(0.0, 1.0))
    assert set(robust) == {"missing_audio", "missing_text", "noise_audio_0", "noise_audio_1"}
    selected = {k: v for k, v in result.metrics.items() if k not in ("epoch", "train_loss")}
    assert robust["noise_audio_0"] == pytest.approx(selected, nan_ok=True)  # the selected weights
    assert robust["missing_audio"]["loss"] != selected["loss"] and robust["missing_text"]["loss"] != selected["loss"]
    assert robust["noise_audio_1"]["loss"] != selected["loss"]


def test_a_sequence_head_reads_the_encoders_states_and_masks(small, demo_encoders):
    train, valid = small
    trainer = FinetuneTrainer(cfg(epochs=1, fusion="xattn", proj_dim=8), train, valid,
                              audio_encoder=demo_encoders[0], text_encoder=demo_encoders[1])
    batch = trainer._collate(valid, np.arange(len(valid)))
    with torch.no_grad():
        trainer.model.eval()
        a, t = trainer.model.inputs(batch)
        # the sequences' masked mean and first token are the pooled vectors other heads read
        vec_a, vec_t = trainer.model.vectors(batch)
        torch.testing.assert_close(masked_mean(a.values, a.mask), vec_a)
        torch.testing.assert_close(t.values[:, 0], vec_t)
        assert a.mask.dtype == torch.bool and a.mask.any(1).all() and t.mask.any(1).all()
        before = trainer.head(a, t)
    trainer.run_epoch()
    assert trainer.history[-1]["epoch"] == 1 and before.shape == (len(valid), 9)
    # the standardisation is over real positions: finite, one value per feature
    assert torch.isfinite(trainer.head.norm.audio_std).all() and trainer.head.norm.audio_mean.shape == (a.shape[-1],)


def test_a_corpus_without_dimensions_finetunes_on_the_classes_alone(demo_encoders, tmp_path):
    """CREMA-D (no valence/arousal): the end-to-end model has 6 outputs, the loss is the classification
    loss alone, and no regression metric is reported (absent, not NaN), robustness included."""
    from erc.data.crema_d import write_fixture

    write_fixture(tmp_path / "data", actors=5, sentences=1)
    corpus = load_corpus(tmp_path / "data", verbose=False)
    assert corpus.dimensions == () and len(corpus.classes) == 6
    table = build_inputs(corpus, *demo_encoders, tmp_path / "inputs", progress=False)[0]
    train, valid = table.split(0)
    trainer = FinetuneTrainer(cfg(epochs=1, n_classes=6, n_dimensions=0), _shortest(train, 8), _shortest(valid, 6),
                              audio_encoder=demo_encoders[0], text_encoder=demo_encoders[1])
    while not trainer.done:
        trainer.run_epoch()
    metrics = trainer.result().metrics
    assert {"acc", "macro_f1", "loss", "cls_loss"} <= set(metrics)
    assert not {"reg_loss", "ccc_valence", "ccc_arousal"} & set(metrics)
    assert metrics["loss"] == pytest.approx(metrics["cls_loss"])
    robust = trainer.robustness(levels=(1.0,))
    assert all("ccc_valence" not in m for m in robust.values())
