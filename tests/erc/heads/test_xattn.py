"""erc.heads.xattn: shapes, masking, the attention recomputed by hand, and training on cached sequences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from erc.heads import HeadConfig, build_head, model_size
from erc.heads.xattn import CrossAttention, XattnHead
from erc.sequences import MAX_FRAMES, MAX_TOKENS, SeqBatch, SequenceRows, Sequences
from erc.vocab import N_OUTPUTS
from tests.erc.heads._inputs import D_A, D_T, with_stats

LENGTHS_A, LENGTHS_T = [7, 3, 1], [2, 5, 4]


def sequences(seed: int = 0) -> tuple[SeqBatch, SeqBatch]:
    """Padded batches of 3 utterances of different lengths (padding filled with noise, not zeros)."""
    g = torch.Generator().manual_seed(seed)

    def batch(lengths: list[int], dim: int) -> SeqBatch:
        mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
        return SeqBatch(torch.randn(len(lengths), max(lengths), dim, generator=g), mask)
    return batch(LENGTHS_A, D_A), batch(LENGTHS_T, D_T)


def head(proj_dim: int = 8, heads: int = 2) -> XattnHead:
    h = with_stats(build_head(HeadConfig(fusion="xattn", proj_dim=proj_dim, xattn_heads=heads), D_A, D_T))
    h.reset_parameters(torch.Generator().manual_seed(2))
    return h.eval()


def test_shape_and_size():
    h = head()
    a, t = sequences()
    assert isinstance(h, XattnHead) and h.reads_sequences
    assert h(a, t).shape == (3, N_OUTPUTS) and h.embed(a, t).shape == (3, 8)
    size = model_size(h)
    assert size["model/params"] == sum(p.numel() for p in h.parameters())
    # the FLOPs are counted at the caps: at least the two projections of every position
    assert size["model/flops"] >= 2 * 8 * (MAX_FRAMES * D_A + MAX_TOKENS * D_T)


def test_config_checks_the_heads_divide_the_projection():
    with pytest.raises(ValueError, match="multiple of xattn_heads"):
        HeadConfig(fusion="xattn", proj_dim=6, xattn_heads=4)
    assert HeadConfig.paper(fusion="xattn").xattn_heads == 8


def test_padded_positions_change_nothing():
    h = head()
    a, t = sequences()
    before = h(a, t)
    g = torch.Generator().manual_seed(5)
    # new values at every padded position, and more padding at the end of both batches
    noisy_a = torch.where(a.mask[..., None], a.values, 100 * torch.randn(a.values.shape, generator=g))
    noisy_t = torch.where(t.mask[..., None], t.values, -50 * torch.randn(t.values.shape, generator=g))
    wider_a = SeqBatch(torch.cat([noisy_a, torch.randn(3, 4, D_A, generator=g)], 1),
                       torch.cat([a.mask, torch.zeros(3, 4, dtype=torch.bool)], 1))
    wider_t = SeqBatch(torch.cat([noisy_t, torch.randn(3, 2, D_T, generator=g)], 1),
                       torch.cat([t.mask, torch.zeros(3, 2, dtype=torch.bool)], 1))
    torch.testing.assert_close(h(wider_a, wider_t), before)
    # and an utterance alone, unpadded, gives what it gives in the batch
    alone = h(SeqBatch(a.values[1:2, :LENGTHS_A[1]], a.mask[1:2, :LENGTHS_A[1]]),
              SeqBatch(t.values[1:2, :LENGTHS_T[1]], t.mask[1:2, :LENGTHS_T[1]]))
    torch.testing.assert_close(alone[0], before[1])


def test_one_heads_attention_by_hand():
    torch.manual_seed(0)
    attn = CrossAttention(6, 3)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, 4, 6, generator=g), torch.randn(2, 5, 6, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    weights = attn.weights(x, y, mask)  # (B, H, N_x, N_y)
    d, head = 2, 1  # head 1 reads features 2..3 of the projections
    cols = slice(head * d, (head + 1) * d)
    for b in range(2):
        q = (x[b] @ attn.query.weight.T + attn.query.bias)[:, cols]
        k = (y[b] @ attn.key.weight.T + attn.key.bias)[:, cols]
        v = (y[b] @ attn.value.weight.T + attn.value.bias)[:, cols]
        real = mask[b]
        scores = q @ k[real].T / math.sqrt(d)
        by_hand = torch.exp(scores) / torch.exp(scores).sum(1, keepdim=True)  # softmax over the real keys
        torch.testing.assert_close(weights[b, head][:, real], by_hand)
        assert (weights[b, head][:, ~real] == 0).all()
        heads_out = torch.einsum("hnm,hmd->hnd", weights[b], (y[b] @ attn.value.weight.T + attn.value.bias)
                                 .view(5, 3, d).transpose(0, 1))
        torch.testing.assert_close(heads_out[head], by_hand @ v[real])


def test_attention_equals_torch_multihead_attention():
    attn = CrossAttention(8, 2)
    attn.eval()
    torch_attn = nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        torch_attn.in_proj_weight.copy_(torch.cat([attn.query.weight, attn.key.weight, attn.value.weight]))
        torch_attn.in_proj_bias.copy_(torch.cat([attn.query.bias, attn.key.bias, attn.value.bias]))
        torch_attn.out_proj.weight.copy_(attn.out.weight)
        torch_attn.out_proj.bias.copy_(attn.out.bias)
    torch_attn.eval()
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(3, 4, 8, generator=g), torch.randn(3, 6, 8, generator=g)
    mask = torch.arange(6)[None, :] < torch.tensor([6, 2, 4])[:, None]
    expected, _ = torch_attn(x, y, y, key_padding_mask=~mask)
    torch.testing.assert_close(attn(x, y, mask), expected)


def test_the_embedding_is_the_equation():
    h = head(proj_dim=4, heads=2)
    a, t = sequences()
    n = h.norm
    emb = h.embed(a, t)
    for b in range(3):
        a_real = (a.values[b, :LENGTHS_A[b]] - n.audio_mean) / n.audio_std
        t_real = (t.values[b, :LENGTHS_T[b]] - n.text_mean) / n.text_std
        a_proj, t_proj = h.proj_audio(a_real)[None], h.proj_text(t_real)[None]
        ones_a, ones_t = torch.ones(1, LENGTHS_A[b], dtype=torch.bool), torch.ones(1, LENGTHS_T[b], dtype=torch.bool)
        a_att = h.norm_audio(a_proj + h.audio_from_text(a_proj, t_proj, ones_t))[0]
        t_att = h.norm_text(t_proj + h.text_from_audio(t_proj, a_proj, ones_a))[0]
        z = torch.cat([a_att.mean(0), t_att.mean(0)])
        torch.testing.assert_close(emb[b], torch.relu(h.hidden.weight @ z + h.hidden.bias))


def test_normalisation_is_fitted_on_real_positions_only():
    rng = np.random.default_rng(0)
    lengths = np.array([3, 1, 4])
    values = rng.standard_normal((int(lengths.sum()), D_A)).astype(np.float16)
    store = Sequences(values, np.concatenate([[0], np.cumsum(lengths)]))
    text_store = Sequences(rng.standard_normal((6, D_T)).astype(np.float16), np.array([0, 2, 4, 6]))
    h = build_head(HeadConfig(fusion="xattn", proj_dim=4), D_A, D_T)
    h.fit_normalisation(SequenceRows(store, torch.device("cpu")), SequenceRows(text_store, torch.device("cpu")),
                        torch.ones(3, 2))
    torch.testing.assert_close(h.norm.audio_mean, torch.from_numpy(values.astype(np.float32).mean(0)))
    torch.testing.assert_close(h.norm.audio_std, torch.from_numpy(values.astype(np.float32).std(0, ddof=1)))


def test_restores_from_its_config_and_state_dict_and_refuses_layer_mixes():
    from erc.heads import from_state_dict
    from erc.layers import LayerConfig

    h = head()
    restored = from_state_dict(HeadConfig(fusion="xattn", proj_dim=8), h.state_dict())
    a, t = sequences()
    torch.testing.assert_close(restored(a, t), h(a, t), rtol=0, atol=0)
    with pytest.raises(ValueError, match="must be 'last'"):
        build_head(HeadConfig(fusion="xattn"), D_A, D_T, layers=LayerConfig(text_layer=-2))
