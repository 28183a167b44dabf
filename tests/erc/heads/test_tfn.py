"""erc.heads.tfn: the Tensor Fusion Network's fused vector and MLP recomputed by hand."""

from __future__ import annotations

import torch

from erc.heads import HeadConfig, build_head
from erc.heads.tfn import TensorFusionHead
from erc.vocab import N_OUTPUTS
from tests.erc.heads._inputs import D_A, D_T, inputs, with_stats


def test_shape():
    head = build_head(HeadConfig(fusion="tfn", proj_dim=5), D_A, D_T).eval()
    a, t = inputs(4)
    assert isinstance(head, TensorFusionHead)
    assert head(a, t).shape == (4, N_OUTPUTS) and head.embed(a, t).shape == (4, 5)
    assert head.fuse(a, t).shape == (4, 36)  # (P+1)²


def test_tfn_equals_the_equation():
    head = with_stats(build_head(HeadConfig(fusion="tfn", proj_dim=4), D_A, D_T)).eval()
    a, t = inputs(3)
    n = head.norm
    for b in range(3):
        a_proj = head.proj_audio.weight @ ((a[b] - n.audio_mean) / n.audio_std) + head.proj_audio.bias
        t_proj = head.proj_text.weight @ ((t[b] - n.text_mean) / n.text_std) + head.proj_text.bias
        a1, t1 = torch.cat([a_proj, torch.ones(1)]), torch.cat([t_proj, torch.ones(1)])
        z = torch.stack([a1[i] * t1[j] for i in range(5) for j in range(5)])  # vec, row-major
        torch.testing.assert_close(head.fuse(a, t)[b], z)
        # z holds a' ⊗ t', a' (last column), t' (last row) and the 1
        assert z[-1] == 1 and torch.allclose(z[4:-1:5], a_proj) and torch.allclose(z[20:24], t_proj)
        h1 = torch.relu(head.hidden1.weight @ z + head.hidden1.bias)
        h = torch.relu(head.hidden2.weight @ h1 + head.hidden2.bias)
        torch.testing.assert_close(head.embed(a, t)[b], h)
        y = head.out.weight @ h + head.out.bias
        torch.testing.assert_close(head(a, t)[b], head.norm.outputs(y[None])[0])
