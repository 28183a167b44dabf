"""Fusion heads: shapes, the tensor-fusion image, patching and the mixer against hand computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from erc.model import ConcatHead, HeadConfig, TensorMixerHead, build_head, patchify

D_A, D_T = 10, 14


def _inputs(b: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, D_A, generator=g), torch.randn(b, D_T, generator=g)


def _mixer(**sizes) -> dict:
    """TensorMixerHead keywords: the literal a' ⊗ t' unless asked, the paper's MLP ratios."""
    return {"d_audio": D_A, "d_text": D_T, "token_mult": 4.0, "channel_mult": 0.5, "dropout": 0.0,
            "append_one": False, **sizes}


def _with_stats(head):
    """Non-trivial normalisation so the tests also check that it is applied."""
    g = torch.Generator().manual_seed(1)
    head.set_normalisation(
        torch.randn(D_A, generator=g), torch.rand(D_A, generator=g) + 0.5,
        torch.randn(D_T, generator=g), torch.rand(D_T, generator=g) + 0.5,
        torch.tensor([3.0, 2.5]), torch.tensor([0.8, 1.2]),
    )
    return head


@pytest.mark.parametrize(
    "config, embed_dim",
    [
        (HeadConfig.demo(fusion="concat"), HeadConfig.demo().proj_dim),
        (HeadConfig.demo(fusion="outer"), HeadConfig.demo().dim),
        (HeadConfig(fusion="concat", proj_dim=6), 6),
        (HeadConfig(fusion="outer", proj_dim=12, patch=3, dim=8, depth=1), 8),
        (HeadConfig(fusion="outer", proj_dim=12, patch=4, dim=8, depth=3, append_one=False), 8),
    ],
)
def test_output_and_embedding_shapes(config, embed_dim):
    head = build_head(config, D_A, D_T).eval()
    a, t = _inputs(5)
    assert head(a, t).shape == (5, 9)
    assert head.embed(a, t).shape == (5, embed_dim)
    # forward = final Linear of the embedding (+ de-standardisation of valence/arousal)
    torch.testing.assert_close(head(a, t), head.norm.outputs(head.out(head.embed(a, t))))


def test_paper_preset_sizes_and_shape():
    cfg = HeadConfig.paper()
    assert (cfg.proj_dim, cfg.patch, cfg.dim, cfg.depth, cfg.token_mult, cfg.channel_mult) == (256, 16, 512, 12,
                                                                                                4.0, 0.5)
    head = build_head(cfg, 64, 48).eval()
    assert head.n_tokens == 256 and len(head.blocks) == 12
    block = head.blocks[0]
    assert block.token_mix[0].in_features == 256 and block.token_mix[0].out_features == 1024
    assert block.channel_mix[0].in_features == 512 and block.channel_mix[0].out_features == 256
    with torch.no_grad():
        assert head(torch.randn(1, 64), torch.randn(1, 48)).shape == (1, 9)


def test_size_override_beats_preset_and_bad_sizes_fail():
    assert HeadConfig.paper(depth=2).depth == 2 and HeadConfig.from_preset("paper", depth=2).dim == 512
    assert build_head(HeadConfig(fusion="outer"), D_A, D_T).append_one  # default: unimodal terms kept
    literal = build_head(HeadConfig(fusion="outer", append_one=False), D_A, D_T)
    assert not literal.append_one and literal.proj_audio.out_features == HeadConfig.demo().proj_dim
    with pytest.raises(ValueError, match="multiple of patch"):
        HeadConfig(fusion="outer", proj_dim=10, patch=4)
    with pytest.raises(ValueError, match="preset"):
        HeadConfig.from_preset("huge")


def test_reset_parameters_draws_from_the_given_generator_only():
    config = HeadConfig(fusion="outer", dropout=0.2)
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
    assert not torch.equal(other.proj_audio.weight, heads[0].proj_audio.weight)
    # the default initialisation's scale: U(±1/√fan_in)
    assert heads[0].proj_audio.weight.abs().max() <= 1 / D_A**0.5


def test_dropout_masks_follow_the_heads_generator():
    head = build_head(HeadConfig(fusion="outer", dropout=0.5), D_A, D_T).train()
    a, t = _inputs(4)
    outs = []
    for _ in range(2):
        head.use_generator(torch.Generator().manual_seed(3))
        torch.manual_seed(len(outs))  # a different global state each time
        outs.append(head(a, t))
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.equal(head.eval()(a, t), outs[0])  # eval: no dropout


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
    head = _with_stats(TensorMixerHead(**_mixer(proj_dim=6, patch=3, dim=4, depth=1))).eval()
    a, t = _inputs(3)
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
    head = TensorMixerHead(**_mixer(proj_dim=6, patch=3, dim=4, depth=1, append_one=True)).eval()
    a, t = _inputs(2)
    img = head.fuse(a, t)
    assert img.shape == (2, 6, 6)  # projected to P-1 = 5, then the 1: image stays P×P
    a_proj, t_proj = head.proj_audio(a), head.proj_text(t)
    torch.testing.assert_close(img[:, :5, 5], a_proj)  # a' ⊗ 1
    torch.testing.assert_close(img[:, 5, :5], t_proj)  # 1 ⊗ t'
    torch.testing.assert_close(img[:, 5, 5], torch.ones(2))
    torch.testing.assert_close(img[:, :5, :5], torch.einsum("bi,bj->bij", a_proj, t_proj))


def test_mixer_embedding_equals_equations():
    """embed() = mean_tokens(LN(blocks(Linear(patches)))) with token mixing along the token axis."""
    head = _with_stats(TensorMixerHead(**_mixer(proj_dim=8, patch=4, dim=6, depth=2))).eval()
    a, t = _inputs(4)
    x = patchify(head.fuse(a, t), 4) @ head.patch_embed.weight.T + head.patch_embed.bias  # (B, 4, 6)
    for blk in head.blocks:
        tm, cm = blk.token_mix, blk.channel_mix
        y = F.layer_norm(x, (6,), blk.token_norm.weight, blk.token_norm.bias).transpose(1, 2)  # (B, dim, N)
        y = F.linear(F.gelu(F.linear(y, tm[0].weight, tm[0].bias)), tm[3].weight, tm[3].bias)
        x = x + y.transpose(1, 2)
        y = F.layer_norm(x, (6,), blk.channel_norm.weight, blk.channel_norm.bias)
        x = x + F.linear(F.gelu(F.linear(y, cm[0].weight, cm[0].bias)), cm[3].weight, cm[3].bias)
    expected = F.layer_norm(x, (6,), head.final_norm.weight, head.final_norm.bias).mean(dim=1)
    torch.testing.assert_close(head.embed(a, t), expected)
    assert blk.token_mix[0].in_features == 4 and blk.token_mix[0].out_features == 16  # 4 × tokens
    assert blk.channel_mix[0].out_features == 3  # 0.5 × dim


def test_concat_head_equals_equations_and_destandardises():
    head = _with_stats(ConcatHead(d_audio=D_A, d_text=D_T, proj_dim=5, dropout=0.0)).eval()
    a, t = _inputs(3)
    n = head.norm
    z = torch.cat([head.proj_audio((a - n.audio_mean) / n.audio_std), head.proj_text((t - n.text_mean) / n.text_std)], 1)
    h = torch.relu(head.hidden(z))
    torch.testing.assert_close(head.embed(a, t), h)
    raw = head.out(h)
    out = head(a, t)
    torch.testing.assert_close(out[:, :7], raw[:, :7])
    torch.testing.assert_close(out[:, 7:], raw[:, 7:] * torch.tensor([0.8, 1.2]) + torch.tensor([3.0, 2.5]))


def test_normalisation_is_saved_and_constant_features_are_safe():
    head = build_head(HeadConfig(fusion="outer", proj_dim=4, patch=2, dim=4, depth=1), D_A, D_T)
    head.set_normalisation(torch.ones(D_A), torch.zeros(D_A), torch.zeros(D_T), torch.ones(D_T),
                           torch.zeros(2), torch.ones(2))
    assert torch.equal(head.norm.audio_std, torch.ones(D_A))  # std 0 → 1, no division by zero
    sd = head.state_dict()
    for key in ("audio_mean", "audio_std", "text_mean", "text_std", "target_mean", "target_std"):
        assert f"norm.{key}" in sd
    a, t = _inputs(2)
    assert torch.isfinite(head(a, t)).all()
