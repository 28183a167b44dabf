"""erc.heads.attention: the softmax-weighted sum of the projected modalities recomputed by hand."""

from __future__ import annotations

import torch

from erc.heads import HeadConfig, build_head
from erc.heads.attention import AttentionHead
from erc.vocab import N_OUTPUTS
from tests.erc.heads._inputs import D_A, D_T, inputs, with_stats


def test_shape():
    head = build_head(HeadConfig(fusion="attention", proj_dim=5), D_A, D_T).eval()
    a, t = inputs(4)
    assert isinstance(head, AttentionHead)
    assert head(a, t).shape == (4, N_OUTPUTS) and head.embed(a, t).shape == (4, 5)


def test_attention_equals_the_equation():
    head = with_stats(build_head(HeadConfig(fusion="attention", proj_dim=4), D_A, D_T))
    head.reset_parameters(torch.Generator().manual_seed(2))
    head.eval()
    a, t = inputs(3)
    n = head.norm
    alpha, _ = head.weights(a, t)
    for b in range(3):
        a_proj = head.proj_audio.weight @ ((a[b] - n.audio_mean) / n.audio_std) + head.proj_audio.bias
        t_proj = head.proj_text.weight @ ((t[b] - n.text_mean) / n.text_std) + head.proj_text.bias
        g = torch.relu(head.gate_hidden.weight @ torch.cat([a_proj, t_proj]) + head.gate_hidden.bias)
        s = head.gate_scores.weight @ g + head.gate_scores.bias
        w_audio = torch.exp(s[0]) / (torch.exp(s[0]) + torch.exp(s[1]))
        torch.testing.assert_close(alpha[b], torch.stack([w_audio, 1 - w_audio]))
        z = w_audio * a_proj + (1 - w_audio) * t_proj
        h = torch.relu(head.hidden.weight @ z + head.hidden.bias)
        torch.testing.assert_close(head.embed(a, t)[b], h)
        torch.testing.assert_close(head(a, t)[b], n.outputs((head.out.weight @ h + head.out.bias)[None])[0])
    assert ((alpha > 0) & (alpha < 1)).all() and torch.allclose(alpha.sum(1), torch.ones(3))
