"""erc.heads.audio: the audio-only baseline reads the audio alone; its branch against its equations."""

from __future__ import annotations

import torch

from erc.heads import HeadConfig, build_head
from erc.heads.audio import AudioHead, Branch
from erc.vocab import N_OUTPUTS
from tests.erc.heads._inputs import D_A, D_T, inputs, with_stats


def test_shape_and_the_branch_equations():
    head = with_stats(build_head(HeadConfig(fusion="audio", proj_dim=6), D_A, D_T)).eval()
    assert isinstance(head, AudioHead) and isinstance(head.branch, Branch)
    assert head.branch.proj.in_features == D_A
    a, t = inputs(5)
    y, h = head(a, t, return_embedding=True)
    assert y.shape == (5, N_OUTPUTS) and h.shape == (5, 6)
    n, b = head.norm, head.branch
    expected_h = torch.relu(b.hidden(b.proj((a - n.audio_mean) / n.audio_std)))
    torch.testing.assert_close(h, expected_h)
    torch.testing.assert_close(y, n.outputs(b.out(expected_h)))


def test_the_text_input_does_not_reach_the_output():
    head = with_stats(build_head(HeadConfig(fusion="audio"), D_A, D_T)).eval()
    a, t = inputs(4)
    other_t = torch.randn(4, D_T, generator=torch.Generator().manual_seed(9)) * 100
    torch.testing.assert_close(head(a, other_t), head(a, t), rtol=0, atol=0)
    assert not torch.equal(head(a + 1, t), head(a, t))  # the audio does
    # no weight reads the text
    assert all("text" not in name for name, _ in head.named_parameters())
