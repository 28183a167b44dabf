"""erc.heads._base: the output layout, the shared config keys, input normalisation and layer mixing,
and the plumbing every head inherits (forward, seeded weights, seeded dropout)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import numpy as np
import pytest
import torch
from torch import nn

from erc.heads import FUSIONS, HeadConfig, build_head
from erc.heads._base import NORM, BaseConfig, BaseHead, Dropout, InputNorm, split_output
from erc.layers import LayerConfig, LayerRows, Layers
from erc.vocab import N_CLASSES, N_DIMENSIONS, N_OUTPUTS
from tests.erc.heads._inputs import D_A, D_T, inputs, inputs_for, with_stats


class TinyHead(BaseHead):
    """The smallest head: the standardised inputs side by side, one Linear."""

    def __init__(self, **kw) -> None:
        super().__init__(config=kw.pop("config", BaseConfig(fusion="concat")), **kw)
        self.out = nn.Linear(self.d_audio + self.d_text, N_OUTPUTS)

    def embed(self, a, t):
        return torch.cat(self.norm.inputs(a, t), dim=1)


def test_the_output_is_class_logits_then_the_dimensions():
    y = torch.arange(2 * N_OUTPUTS).reshape(2, N_OUTPUTS)
    logits, dims = split_output(y)
    assert logits.shape == (2, N_CLASSES) and dims.shape == (2, N_DIMENSIONS)
    assert torch.equal(torch.cat([logits, dims], 1), y)
    assert dims[0].tolist() == [7, 8]  # valence, arousal last
    logits, dims = split_output(y.numpy())  # numpy alike
    assert isinstance(logits, np.ndarray) and dims[1].tolist() == [16, 17]


def test_shared_keys_are_checked_and_frozen():
    config = BaseConfig()
    assert (config.fusion, config.preset, config.proj_dim) == ("outer", "demo", 16)
    with pytest.raises(FrozenInstanceError):
        config.proj_dim = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"unknown fusion 'mlp'; registered: \['concat', 'outer'"):
        BaseConfig(fusion="mlp")
    with pytest.raises(ValueError, match="preset"):
        BaseConfig(preset="huge")
    with pytest.raises(ValueError, match="dropout"):
        BaseConfig(dropout=1.0)
    with pytest.raises(ValueError, match="proj_dim"):
        BaseConfig(proj_dim=0)
    # presets: each class's own values, overrides beat them
    assert BaseConfig.paper().proj_dim == 256 and BaseConfig.paper(proj_dim=8).proj_dim == 8
    assert BaseConfig.demo() == BaseConfig() and BaseConfig.paper().preset == "paper"
    with pytest.raises(ValueError, match="preset"):
        BaseConfig.from_preset("huge")


def test_outputs_leave_logits_alone_and_map_the_dimensions_back():
    head = with_stats(TinyHead(d_audio=D_A, d_text=D_T)).eval()
    a, t = inputs(3)
    raw = head.out(head.embed(a, t))
    out = head(a, t)
    torch.testing.assert_close(out[:, :N_CLASSES], raw[:, :N_CLASSES])
    torch.testing.assert_close(out[:, N_CLASSES:], raw[:, N_CLASSES:] * torch.tensor([0.8, 1.2]) + torch.tensor([3.0, 2.5]))
    n = head.norm
    torch.testing.assert_close(head.embed(a, t), torch.cat([(a - n.audio_mean) / n.audio_std,
                                                            (t - n.text_mean) / n.text_std], 1))


@pytest.mark.parametrize("fusion", FUSIONS)
def test_forward_with_the_embedding_is_forward_and_embed_in_one_pass(fusion):
    head = with_stats(build_head(HeadConfig(fusion=fusion, dropout=0.3), D_A, D_T)).eval()
    a, t = inputs_for(fusion, 4)
    y, h = head(a, t, return_embedding=True)
    torch.testing.assert_close(y, head(a, t), rtol=0, atol=0)
    torch.testing.assert_close(h, head.embed(a, t), rtol=0, atol=0)
    torch.testing.assert_close(y, head.norm.outputs(head.readout(h)), rtol=0, atol=0)
    head.train().use_generator(torch.Generator().manual_seed(0))
    y_train, _ = head(a, t, return_embedding=True)
    assert y_train.shape == (4, N_OUTPUTS) and not torch.equal(y_train, y)  # training: dropout


def test_normalisation_is_one_submodule_saved_with_the_head_and_constant_features_are_safe():
    head = TinyHead(d_audio=D_A, d_text=D_T)
    head.set_normalisation(torch.ones(D_A), torch.zeros(D_A), torch.zeros(D_T), torch.ones(D_T),
                           torch.zeros(2), torch.ones(2))
    assert torch.equal(head.norm.audio_std, torch.ones(D_A))  # std 0 → 1, no division by zero
    a, t = inputs(2)
    assert torch.isfinite(head(a, t)).all()
    sd = head.state_dict()
    stats = ("audio_mean", "audio_std", "text_mean", "text_std", "target_mean", "target_std")
    assert {k for k in sd if k.startswith(f"{NORM}.")} == {f"norm.{s}" for s in stats}  # no mixes: no keys
    assert head.norm is getattr(head, NORM)
    assert BaseHead.input_sizes(sd) == (D_A, D_T, (0, 0))


def test_layer_mixes_belong_to_the_normalisation_and_are_rebuilt_from_saved_state():
    layers = LayerConfig(audio_layer="weighted", text_layer="weighted")
    head = TinyHead(d_audio=D_A, d_text=D_T, layers=layers, n_layers=(4, 2))
    assert head.norm.mix("audio").logits.shape == (4,) and head.norm.text_mix.mean.shape == (2, D_T)
    with torch.no_grad():
        head.norm.audio_mix.logits.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    sd = head.state_dict()
    assert {"norm.audio_mix.logits", "norm.audio_mix.mean", "norm.text_mix.std"} <= set(sd)
    assert BaseHead.input_sizes(sd) == (D_A, D_T, (4, 2))
    weights = head.layer_weights()
    assert weights["audio"] == pytest.approx(torch.softmax(torch.arange(4.0), 0).tolist())
    assert weights["text"] == pytest.approx([0.5, 0.5])
    norm = InputNorm.from_state_dict({k[len("norm."):]: v for k, v in sd.items() if k.startswith("norm.")})
    assert norm.layer_weights() == weights
    # (B, L, D) stacks in, mixed per layer-standardised then weighted
    g = torch.Generator().manual_seed(0)
    stack_a, stack_t = torch.randn(3, 4, D_A, generator=g), torch.randn(3, 2, D_T, generator=g)
    expected = torch.einsum("l,bld->bd", torch.softmax(torch.arange(4.0), 0), stack_a)
    torch.testing.assert_close(head.norm.inputs(stack_a, stack_t)[0], expected)
    # a weighted modality needs its stack, and only a weighted one has a mix
    with pytest.raises(ValueError, match="audio_layer='weighted' with 0 layers"):
        TinyHead(d_audio=D_A, d_text=D_T, layers=LayerConfig(audio_layer="weighted"))
    with pytest.raises(ValueError, match="text_layer='last' with 3 layers"):
        TinyHead(d_audio=D_A, d_text=D_T, n_layers=(0, 3))


def test_fitting_the_normalisation_reads_every_stack_per_layer():
    g = np.random.default_rng(0)
    stack = (g.standard_normal((20, 3, D_A)) * np.array([1.0, 10.0, 100.0])[None, :, None]).astype(np.float16)
    audio = LayerRows(Layers(stack), torch.device("cpu"))
    text = torch.as_tensor(g.standard_normal((20, D_T)), dtype=torch.float32)
    va = torch.as_tensor(g.uniform(1, 5, (20, 2)), dtype=torch.float32)
    head = TinyHead(d_audio=D_A, d_text=D_T, layers=LayerConfig(audio_layer="weighted"), n_layers=(3, 0))
    head.fit_normalisation(audio, text, va)
    mean, std = Layers(stack).mean_std()
    torch.testing.assert_close(head.norm.audio_mix.mean, torch.from_numpy(mean))
    torch.testing.assert_close(head.norm.audio_mix.std, torch.from_numpy(std))
    # the mixed modality passes the head's own standardisation unchanged; the other is standardised
    assert torch.equal(head.norm.audio_mean, torch.zeros(D_A)) and torch.equal(head.norm.audio_std, torch.ones(D_A))
    torch.testing.assert_close(head.norm.text_mean, text.mean(0))
    torch.testing.assert_close(head.norm.target_std, va.std(0))
    with pytest.raises(ValueError, match="no layer mix for its audio"):
        TinyHead(d_audio=D_A, d_text=D_T).fit_normalisation(audio, text, va)


def test_a_head_reads_the_config_class_it_declares():
    with pytest.raises(TypeError, match="TensorMixerHead reads a MixerConfig"):
        from erc.heads.outer import TensorMixerHead

        TensorMixerHead(config=BaseConfig(), d_audio=D_A, d_text=D_T)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_reset_parameters_draws_from_the_given_generator_only(fusion):
    config = HeadConfig(fusion=fusion, dropout=0.2)
    heads = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)  # constructors draw from the global RNG; reset must overwrite all of it
        head = build_head(config, D_A, D_T)
        head.reset_parameters(torch.Generator().manual_seed(7))
        heads.append(head)
    for (name, p), q in zip(heads[0].named_parameters(), heads[1].parameters(), strict=True):
        assert torch.equal(p, q), name
    other = build_head(config, D_A, D_T)
    other.reset_parameters(torch.Generator().manual_seed(8))

    def first_linear(head: BaseHead) -> nn.Linear:  # every head's first layer is a Linear on an input
        return next(m for m in head.modules() if isinstance(m, nn.Linear))

    assert not torch.equal(first_linear(other).weight, first_linear(heads[0]).weight)
    # the default initialisation's scale: U(±1/√fan_in)
    assert first_linear(heads[0]).weight.abs().max() <= 1 / first_linear(heads[0]).in_features**0.5


@pytest.mark.parametrize("fusion", FUSIONS)
def test_dropout_masks_follow_the_heads_generator(fusion):
    head = build_head(HeadConfig(fusion=fusion, dropout=0.5), D_A, D_T).train()
    a, t = inputs_for(fusion, 4)
    outs = []
    for _ in range(2):
        head.use_generator(torch.Generator().manual_seed(3))
        torch.manual_seed(len(outs))  # a different global state each time
        outs.append(head(a, t))
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.equal(head.eval()(a, t), outs[0])  # eval: no dropout


def test_dropout_scales_the_kept_values_and_is_off_in_eval():
    drop = Dropout(0.25)
    drop.generator = torch.Generator().manual_seed(0)
    x = torch.ones(1000)
    y = drop(x)
    assert y.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert 0.2 < (y == 0).float().mean() < 0.3
    assert torch.equal(drop.eval()(x), x) and torch.equal(Dropout(0.0)(x), x)
