"""erc.heads.text: the mirror of the audio-only baseline."""

from __future__ import annotations

import torch

from erc.heads import HeadConfig, build_head
from erc.heads.text import TextHead
from erc.vocab import N_OUTPUTS
from tests.erc.heads._inputs import D_A, D_T, inputs, with_stats


def test_shape_and_the_branch_reads_the_text():
    head = with_stats(build_head(HeadConfig(fusion="text", proj_dim=6), D_A, D_T)).eval()
    assert isinstance(head, TextHead) and head.branch.proj.in_features == D_T
    a, t = inputs(5)
    y, h = head(a, t, return_embedding=True)
    assert y.shape == (5, N_OUTPUTS) and h.shape == (5, 6)
    n, b = head.norm, head.branch
    torch.testing.assert_close(h, torch.relu(b.hidden(b.proj((t - n.text_mean) / n.text_std))))


def test_the_audio_input_does_not_reach_the_output():
    head = with_stats(build_head(HeadConfig(fusion="text"), D_A, D_T)).eval()
    a, t = inputs(4)
    other_a = torch.randn(4, D_A, generator=torch.Generator().manual_seed(9)) * 100
    torch.testing.assert_close(head(other_a, t), head(a, t), rtol=0, atol=0)
    assert not torch.equal(head(a, t + 1), head(a, t))
