"""erc.heads.lmf: Low-rank Multimodal Fusion recomputed rank by rank; its rank key."""

from __future__ import annotations

import pytest
import torch

from erc.heads import HeadConfig, build_head
from erc.heads.lmf import LowRankConfig, LowRankFusionHead
from erc.vocab import N_OUTPUTS
from tests.erc.heads._inputs import D_A, D_T, inputs, with_stats


def test_shape_and_the_rank_key():
    head = build_head(HeadConfig(fusion="lmf", proj_dim=5, rank=3), D_A, D_T).eval()
    assert isinstance(head, LowRankFusionHead) and head.audio_factors.out_features == 15
    a, t = inputs(4)
    assert head(a, t).shape == (4, N_OUTPUTS) and head.embed(a, t).shape == (4, 5)
    assert HeadConfig().rank == LowRankConfig().rank == 4 and HeadConfig.paper().rank == 4
    with pytest.raises(ValueError, match="rank"):
        HeadConfig(fusion="lmf", rank=0)
    HeadConfig(fusion="concat", rank=0)  # LMF's key means nothing to another head


def test_lmf_equals_the_equation():
    p, r = 4, 3
    head = with_stats(build_head(HeadConfig(fusion="lmf", proj_dim=p, rank=r), D_A, D_T)).eval()
    a, t = inputs(3)
    n = head.norm
    w, bias = head.rank_weights.weight[0], head.rank_weights.bias[0]
    for b in range(3):
        a_proj = head.proj_audio.weight @ ((a[b] - n.audio_mean) / n.audio_std) + head.proj_audio.bias
        t_proj = head.proj_text.weight @ ((t[b] - n.text_mean) / n.text_std) + head.proj_text.bias
        a1, t1 = torch.cat([a_proj, torch.ones(1)]), torch.cat([t_proj, torch.ones(1)])
        h = bias + sum(w[k] * (head.audio_factors.weight[k * p:(k + 1) * p] @ a1)
                       * (head.text_factors.weight[k * p:(k + 1) * p] @ t1) for k in range(r))
        torch.testing.assert_close(head.embed(a, t)[b], h)
        # = TFN's bilinear form with the weight W = Σ_r w_r A_r ⊗ T_r, never formed by the head
        full = sum(w[k] * torch.einsum("pi,pj->pij", head.audio_factors.weight[k * p:(k + 1) * p],
                                       head.text_factors.weight[k * p:(k + 1) * p]) for k in range(r))
        torch.testing.assert_close(h, torch.einsum("pij,i,j->p", full, a1, t1) + bias)
        torch.testing.assert_close(head(a, t)[b], n.outputs((head.out.weight @ h + head.out.bias)[None])[0])
