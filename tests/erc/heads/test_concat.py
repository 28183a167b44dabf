"""erc.heads.concat: the concatenation head against its equations, and its seeded numbers pinned."""

from __future__ import annotations

import pytest
import torch

from erc.heads import HeadConfig, build_head
from erc.heads._base import BaseConfig
from erc.heads.concat import ConcatHead
from tests.erc.heads._inputs import D_A, D_T, checksum, inputs, with_stats


def test_shapes_and_the_embedding_width():
    for config, width in ((HeadConfig.demo(fusion="concat"), HeadConfig.demo().proj_dim),
                          (HeadConfig(fusion="concat", proj_dim=6), 6)):
        head = build_head(config, D_A, D_T).eval()
        assert isinstance(head, ConcatHead)
        a, t = inputs(5)
        assert head(a, t).shape == (5, 9) and head.embed(a, t).shape == (5, width)


def test_concat_head_equals_equations_and_destandardises():
    head = with_stats(ConcatHead(config=BaseConfig(fusion="concat", proj_dim=5), d_audio=D_A, d_text=D_T)).eval()
    a, t = inputs(3)
    n = head.norm
    z = torch.cat([head.proj_audio((a - n.audio_mean) / n.audio_std), head.proj_text((t - n.text_mean) / n.text_std)], 1)
    h = torch.relu(head.hidden(z))
    torch.testing.assert_close(head.embed(a, t), h)
    raw = head.out(h)
    out = head(a, t)
    torch.testing.assert_close(out[:, :7], raw[:, :7])
    torch.testing.assert_close(out[:, 7:], raw[:, 7:] * torch.tensor([0.8, 1.2]) + torch.tensor([3.0, 2.5]))


def test_dropout_sits_between_the_embedding_and_the_output_layer():
    head = ConcatHead(config=BaseConfig(fusion="concat", dropout=0.5), d_audio=D_A, d_text=D_T).train()
    head.use_generator(torch.Generator().manual_seed(0))
    a, t = inputs(4)
    torch.testing.assert_close(head.embed(a, t), head.eval().embed(a, t), rtol=0, atol=0)  # embed: no dropout
    head.train()
    y, h = head(a, t, return_embedding=True)
    assert not torch.equal(y, head.norm.outputs(head.out(h)))  # the output saw a dropped embedding


# Computed with the head before it moved to erc.heads (erc/model.py): the same seed must keep giving the
# same weights (parameter creation and draw order) and the same outputs.
PINNED_CHECKSUM = -0.371197311906144
PINNED_ROW0 = [0.4030108153820038, 0.24408552050590515, 0.10319623351097107, 0.04481348767876625,
               -0.467193603515625, 0.20335347950458527, -0.151791051030159, -0.011698190122842789,
               -0.014872714877128601]


def test_a_seed_gives_the_weights_and_outputs_it_always_gave():
    torch.manual_seed(123)
    head = build_head(HeadConfig(fusion="concat"), D_A, D_T)
    head.reset_parameters(torch.Generator().manual_seed(7))
    assert [tuple(p.shape) for p in head.parameters()] == [(16, 10), (16,), (16, 14), (16,), (16, 32), (16,),
                                                           (9, 16), (9,)]
    assert checksum(head) == pytest.approx(PINNED_CHECKSUM, rel=1e-12)
    g = torch.Generator().manual_seed(5)
    a, t = torch.randn(6, D_A, generator=g), torch.randn(6, D_T, generator=g)
    torch.testing.assert_close(head.eval()(a, t)[0], torch.tensor(PINNED_ROW0), rtol=0, atol=1e-5)
