"""erc.heads.outer: the tensor-fusion image, patching and the mixer against hand computations; its own
config keys; its seeded numbers pinned; checkpoints of the earlier layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from erc.heads import HeadConfig, build_head
from erc.heads.outer import MixerBlock, MixerConfig, TensorMixerHead, patchify
from tests.erc.heads._inputs import D_A, D_T, checksum, inputs, with_stats


def _mixer(**keys) -> TensorMixerHead:
    """The literal a' ⊗ t' unless asked, the paper's MLP ratios."""
    config = MixerConfig(**{"append_one": False, **keys})
    return TensorMixerHead(config=config, d_audio=D_A, d_text=D_T)


@pytest.mark.parametrize(
    "config, embed_dim",
    [
        (HeadConfig.demo(fusion="outer"), HeadConfig.demo().dim),
        (HeadConfig(fusion="outer", proj_dim=12, patch=3, dim=8, depth=1), 8),
        (HeadConfig(fusion="outer", proj_dim=12, patch=4, dim=8, depth=3, append_one=False), 8),
    ],
)
def test_output_and_embedding_shapes(config, embed_dim):
    head = build_head(config, D_A, D_T).eval()
    a, t = inputs(5)
    assert head(a, t).shape == (5, 9)
    assert head.embed(a, t).shape == (5, embed_dim)


def test_paper_preset_sizes_and_shape():
    cfg = HeadConfig.paper()
    assert (cfg.proj_dim, cfg.patch, cfg.dim, cfg.depth, cfg.token_mult, cfg.channel_mult) == (256, 16, 512, 12,
                                                                                                4.0, 0.5)
    assert MixerConfig.paper() == MixerConfig(preset="paper", proj_dim=256, patch=16, dim=512, depth=12)
    head = build_head(cfg, 64, 48).eval()
    assert head.n_tokens == 256 and len(head.blocks) == 12
    block = head.blocks[0]
    assert block.token_mixing.fn[0].in_features == 256 and block.token_mixing.fn[0].out_features == 1024
    assert block.channel_mixing.fn[0].in_features == 512 and block.channel_mixing.fn[0].out_features == 256
    with torch.no_grad():
        assert head(torch.randn(1, 64), torch.randn(1, 48)).shape == (1, 9)


def test_size_override_beats_preset_and_bad_sizes_fail():
    assert HeadConfig.paper(depth=2).depth == 2 and HeadConfig.from_preset("paper", depth=2).dim == 512
    assert build_head(HeadConfig(fusion="outer"), D_A, D_T).config.append_one  # default: unimodal terms kept
    literal = build_head(HeadConfig(fusion="outer", append_one=False), D_A, D_T)
    assert literal.proj_audio.out_features == HeadConfig.demo().proj_dim
    with pytest.raises(ValueError, match="multiple of patch"):
        HeadConfig(fusion="outer", proj_dim=10, patch=4)
    with pytest.raises(ValueError, match="multiple of patch"):
        MixerConfig(proj_dim=10, patch=4)
    with pytest.raises(ValueError, match="depth"):
        HeadConfig(fusion="outer", depth=0)
    HeadConfig(fusion="concat", proj_dim=10, patch=4)  # the mixer's keys mean nothing to another head
    with pytest.raises(ValueError, match="preset"):
        HeadConfig.from_preset("huge")


def test_patchify_row_major_blocks():
    img = torch.arange(2 * 6 * 6, dtype=torch.float32).reshape(2, 6, 6)
    patches = patchify(img, 3)  # (2, 4, 9)
    assert patches.shape == (2, 4, 9)
    for b in range(2):
        for i in range(2):
            for j in range(2):
                block = img[b, 3 * i : 3 * i + 3, 3 * j : 3 * j + 3]
                torch.testing.assert_close(patches[b, 2 * i + j], block.reshape(-1))


def test_outer_product_image_equals_hand_computation():
    head = with_stats(_mixer(proj_dim=6, patch=3, dim=4, depth=1)).eval()
    a, t = inputs(3)
    n = head.norm
    seen = {}

    def grab(module, inputs, output):  # returns None: the output is left alone
        seen["patches"] = inputs[0]

    head.patch_embed.register_forward_hook(grab)
    head(a, t)
    for b in range(3):
        a_proj = head.proj_audio.weight @ ((a[b] - n.audio_mean) / n.audio_std) + head.proj_audio.bias
        t_proj = head.proj_text.weight @ ((t[b] - n.text_mean) / n.text_std) + head.proj_text.bias
        image = torch.outer(a_proj, t_proj)  # (6, 6)
        torch.testing.assert_close(head.fuse(a, t)[b], image)
        # the mixer sees the 2×2 grid of 3×3 blocks, row-major
        expected = torch.stack([image[3 * i : 3 * i + 3, 3 * j : 3 * j + 3].reshape(-1) for i in range(2) for j in range(2)])
        torch.testing.assert_close(seen["patches"][b], expected)


def test_append_one_keeps_unimodal_terms():
    head = _mixer(proj_dim=6, patch=3, dim=4, depth=1, append_one=True).eval()
    a, t = inputs(2)
    img = head.fuse(a, t)
    assert img.shape == (2, 6, 6)  # projected to P-1 = 5, then the 1: image stays P×P
    a_proj, t_proj = head.proj_audio(a), head.proj_text(t)
    torch.testing.assert_close(img[:, :5, 5], a_proj)  # a' ⊗ 1
    torch.testing.assert_close(img[:, 5, :5], t_proj)  # 1 ⊗ t'
    torch.testing.assert_close(img[:, 5, 5], torch.ones(2))
    torch.testing.assert_close(img[:, :5, :5], torch.einsum("bi,bj->bij", a_proj, t_proj))


def test_mixer_embedding_equals_equations():
    """embed() = mean_tokens(LN(blocks(Linear(patches)))) with token mixing along the token axis."""
    head = with_stats(_mixer(proj_dim=8, patch=4, dim=6, depth=2)).eval()
    a, t = inputs(4)
    x = patchify(head.fuse(a, t), 4) @ head.patch_embed.weight.T + head.patch_embed.bias  # (B, 4, 6)
    for blk in head.blocks:
        tm, cm = blk.token_mixing, blk.channel_mixing
        y = F.layer_norm(x, (6,), tm.norm.weight, tm.norm.bias).transpose(1, 2)  # (B, dim, N)
        y = F.linear(F.gelu(F.linear(y, tm.fn[0].weight, tm.fn[0].bias)), tm.fn[3].weight, tm.fn[3].bias)
        x = x + y.transpose(1, 2)
        y = F.layer_norm(x, (6,), cm.norm.weight, cm.norm.bias)
        x = x + F.linear(F.gelu(F.linear(y, cm.fn[0].weight, cm.fn[0].bias)), cm.fn[3].weight, cm.fn[3].bias)
    expected = F.layer_norm(x, (6,), head.final_norm.weight, head.final_norm.bias).mean(dim=1)
    torch.testing.assert_close(head.embed(a, t), expected)
    assert tm.fn[0].in_features == 4 and tm.fn[0].out_features == 16  # 4 × tokens
    assert cm.fn[0].out_features == 3  # 0.5 × dim


# Computed with the head before it moved to erc.heads (erc/model.py): the same seed must keep giving the
# same weights (parameter creation and draw order), outputs and dropout masks.
PINNED_CHECKSUM = 5801.799138604081
PINNED_ROW0 = [-0.26271742582321167, 0.027337752282619476, 0.3775225877761841, 0.26664453744888306,
               -0.06515726447105408, 0.5922385454177856, -0.1440550833940506, -0.008161231875419617,
               0.06515191495418549]
PINNED_ROW0_DROPOUT = [-0.21369367837905884, 0.05740351974964142, 0.1931735724210739, 0.15924018621444702,
                       0.02242230623960495, 0.3088095188140869, -0.17060056328773499, 0.08108848333358765,
                       0.10026776790618896]


def test_a_seed_gives_the_weights_outputs_and_dropout_masks_it_always_gave():
    g = torch.Generator().manual_seed(5)
    a, t = torch.randn(6, D_A, generator=g), torch.randn(6, D_T, generator=g)
    for dropout, row0 in ((0.0, PINNED_ROW0), (0.3, PINNED_ROW0_DROPOUT)):
        torch.manual_seed(123)
        # two blocks, as the pins were taken (the demo preset has one since)
        head = build_head(HeadConfig(fusion="outer", dropout=dropout, depth=2), D_A, D_T)
        head.reset_parameters(torch.Generator().manual_seed(7))
        assert len(list(head.parameters())) == 34
        assert checksum(head) == pytest.approx(PINNED_CHECKSUM, rel=1e-12)
        head.train().use_generator(torch.Generator().manual_seed(3))
        torch.testing.assert_close(head(a, t)[0], torch.tensor(row0), rtol=0, atol=1e-5)
        torch.testing.assert_close(head.eval()(a, t)[0], torch.tensor(PINNED_ROW0), rtol=0, atol=1e-5)


# a block's keys before the PreNormResidual layout (token_norm, token_mix, channel_norm, channel_mix), in order
OLD_BLOCK_KEYS = [f"blocks.0.{part}" for part in (
    "token_norm.weight", "token_norm.bias", "token_mix.0.weight", "token_mix.0.bias", "token_mix.3.weight",
    "token_mix.3.bias", "channel_norm.weight", "channel_norm.bias", "channel_mix.0.weight", "channel_mix.0.bias",
    "channel_mix.3.weight", "channel_mix.3.bias")]


def test_a_checkpoint_of_the_earlier_block_layout_loads():
    config = HeadConfig(fusion="outer", proj_dim=4, patch=2, dim=4, depth=1)
    head = with_stats(build_head(config, D_A, D_T))
    head.reset_parameters(torch.Generator().manual_seed(0))
    new = head.state_dict()
    blocks = [k for k in new if k.startswith("blocks.")]
    assert len(blocks) == len(OLD_BLOCK_KEYS)
    old = {OLD_BLOCK_KEYS[blocks.index(k)] if k in blocks else k: v for k, v in new.items()}
    fresh = build_head(config, D_A, D_T)
    fresh.load_state_dict(old)  # strict: every key found
    for key, value in new.items():
        assert torch.equal(fresh.state_dict()[key], value), key
    a, t = inputs(3)
    torch.testing.assert_close(fresh.eval()(a, t), head.eval()(a, t), rtol=0, atol=0)


def test_mixer_blocks_are_keyword_only():
    with pytest.raises(TypeError):
        MixerBlock(4, 8, 16, 4, 0.0)  # type: ignore[misc]
