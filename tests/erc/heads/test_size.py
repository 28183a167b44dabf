"""erc.heads._size: trainable parameters and forward FLOPs per utterance, counted for every head."""

from __future__ import annotations

import pytest
import torch

from erc.contract import MODEL_FLOPS, MODEL_PARAMS
from erc.heads import HeadConfig, build_head, forward_flops, model_size, trainable_parameters
from erc.layers import LayerConfig
from erc.vocab import N_OUTPUTS
from tests.erc.heads._inputs import D_A, D_T, vector_fusions


def test_concat_size_by_hand():
    p = 16
    head = build_head(HeadConfig(fusion="concat", proj_dim=p), D_A, D_T)
    params = (D_A + 1) * p + (D_T + 1) * p + (2 * p + 1) * p + (p + 1) * N_OUTPUTS
    assert trainable_parameters(head) == params
    # a Linear(i, o) on one row: i·o multiply-adds = 2·i·o FLOPs (biases are not counted)
    assert forward_flops(head) == 2 * (D_A * p + D_T * p + 2 * p * p + p * N_OUTPUTS)
    assert model_size(head) == {MODEL_PARAMS: float(params), MODEL_FLOPS: float(forward_flops(head))}


def test_frozen_parameters_and_buffers_are_not_counted_and_the_mode_is_kept():
    head = build_head(HeadConfig(fusion="audio"), D_A, D_T).train()
    before = trainable_parameters(head)
    head.branch.proj.weight.requires_grad_(False)
    assert trainable_parameters(head) == before - head.branch.proj.weight.numel()
    forward_flops(head)
    assert head.training


@pytest.mark.parametrize("fusion", vector_fusions())  # a sequence head's size: its own test
def test_every_head_has_a_size_and_a_mixed_modality_counts_its_layers(fusion):
    layers = LayerConfig(audio_layer="weighted")
    plain = build_head(HeadConfig(fusion=fusion), D_A, D_T)
    mixed = build_head(HeadConfig(fusion=fusion), D_A, D_T, layers=layers, n_layers=(5, 0))
    assert mixed.example_inputs()[0].shape == (1, 5, D_A) and plain.example_inputs(3)[1].shape == (3, D_T)
    size = model_size(plain)
    assert size[MODEL_PARAMS] > 0 and size[MODEL_FLOPS] > 0
    assert trainable_parameters(mixed) == trainable_parameters(plain) + 5  # the layer weights
    if fusion != "text":  # the text head never mixes the audio layers
        assert forward_flops(mixed) == forward_flops(plain) + 2 * 5 * D_A  # the weighted sum over layers


def test_flops_grow_with_the_head():
    small, big = (build_head(HeadConfig(fusion="tfn", proj_dim=p), D_A, D_T) for p in (4, 8))
    assert forward_flops(big) > 2 * forward_flops(small)
    with torch.no_grad():
        assert torch.isfinite(big(*big.example_inputs())).all()
