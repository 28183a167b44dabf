"""erc.heads.late: the late-fusion head is the mean of an audio head and a text head."""

from __future__ import annotations

import torch

from erc.heads import HeadConfig, build_head
from erc.heads.late import LateHead
from erc.vocab import N_OUTPUTS
from tests.erc.heads._inputs import D_A, D_T, inputs, with_stats


def test_outputs_are_the_mean_of_its_audio_and_text_heads():
    config = {"proj_dim": 6, "dropout": 0.3}
    late = with_stats(build_head(HeadConfig(fusion="late", **config), D_A, D_T))
    late.reset_parameters(torch.Generator().manual_seed(3))
    late.eval()
    assert isinstance(late, LateHead)
    # the audio and text heads with the late head's branch weights and normalisation
    parts = []
    for modality in ("audio", "text"):
        part = with_stats(build_head(HeadConfig(fusion=modality, **config), D_A, D_T)).eval()
        part.branch.load_state_dict(getattr(late, f"{modality}_branch").state_dict())
        parts.append(part)
    a, t = inputs(5)
    y, h = late(a, t, return_embedding=True)
    assert y.shape == (5, N_OUTPUTS) and h.shape == (5, 12)
    torch.testing.assert_close(y, (parts[0](a, t) + parts[1](a, t)) / 2)
    torch.testing.assert_close(h, torch.cat([parts[0].embed(a, t), parts[1].embed(a, t)], dim=1))
    # both modalities reach it
    assert not torch.equal(late(a + 1, t), y) and not torch.equal(late(a, t + 1), y)
