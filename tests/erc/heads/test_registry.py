"""erc.heads (the package): fusions registered by module name, HeadConfig composed of every head's keys,
building and restoring heads."""

from __future__ import annotations

import dataclasses
import pickle
import typing

import pytest
import torch

from erc import heads
from erc.heads import FUSIONS, PRESETS, BaseConfig, BaseHead, HeadConfig, build_head, from_state_dict, get
from erc.heads.concat import ConcatHead
from erc.heads.outer import MixerConfig, TensorMixerHead
from erc.layers import LayerConfig
from erc.vocab import DEFAULT_FUSIONS, PRESET_NAMES, fusion_names
from tests.erc.heads._inputs import D_A, D_T, inputs, inputs_for, vector_fusions, with_stats


def test_fusions_are_the_modules_of_the_package_by_name():
    assert FUSIONS == fusion_names() and FUSIONS[:2] == DEFAULT_FUSIONS
    assert get("concat") is ConcatHead and get("outer") is TensorMixerHead
    for name in FUSIONS:
        head_cls = get(name)
        assert issubclass(head_cls, BaseHead) and issubclass(head_cls.Config, BaseConfig)
        assert head_cls.__module__ == f"erc.heads.{name}"
    with pytest.raises(ValueError, match=r"unknown fusion 'mlp'; registered: \['concat', 'outer'"):
        get("mlp")
    with pytest.raises(ValueError, match="unknown fusion 'mlp'"):
        HeadConfig(fusion="mlp")


def test_head_config_holds_every_heads_keys_once():
    names = [f.name for f in dataclasses.fields(HeadConfig)]
    assert len(names) == len(set(names))
    for name in FUSIONS:
        assert {f.name for f in dataclasses.fields(get(name).Config)} <= set(names)
        assert isinstance(HeadConfig(fusion=name), get(name).Config)  # each head gets the whole config
    # exactly the union of the heads' own keys: a new head's keys come with its module, nothing else
    assert set(names) == set().union(*({f.name for f in dataclasses.fields(get(n).Config)} for n in FUSIONS))
    assert {"fusion", "preset", "proj_dim", "dropout", "append_one", "standardise", "patch", "dim", "depth",
            "token_mult", "channel_mult", "n_classes", "n_dimensions"} <= set(names)
    assert typing.get_args(typing.get_type_hints(HeadConfig)["fusion"]) == FUSIONS
    # today's defaults: the demo preset
    assert HeadConfig() == HeadConfig.demo() == HeadConfig(fusion="outer", preset="demo", proj_dim=16, patch=4, dim=64,
                                                           depth=1, token_mult=4.0, channel_mult=0.5, dropout=0.0,
                                                           append_one=True, standardise=True)
    # the paper preset collects every class's values; configs travel to Ray workers by pickle
    assert dataclasses.asdict(HeadConfig.paper()) == {**dataclasses.asdict(HeadConfig()), "preset": "paper",
                                                      "proj_dim": 256, "patch": 16, "dim": 512, "depth": 12,
                                                      "xattn_heads": 8}
    assert set(PRESETS) == set(PRESET_NAMES) and PRESETS["paper"](depth=3) == HeadConfig.paper(depth=3)
    assert pickle.loads(pickle.dumps(HeadConfig.paper())) == HeadConfig.paper()
    assert HeadConfig.__module__ == "erc.heads" and heads.HeadConfig is HeadConfig
    assert MixerConfig.paper().dim == 512 and not hasattr(BaseConfig(), "dim")


@pytest.mark.parametrize("fusion", vector_fusions())  # a sequence head mixes no layers (its own test restores it)
def test_a_head_restores_from_its_config_and_state_dict(fusion):
    layers = LayerConfig(text_layer="weighted")
    head = with_stats(build_head(HeadConfig(fusion=fusion), D_A, D_T, layers=layers, n_layers=(0, 3)))
    head.reset_parameters(torch.Generator().manual_seed(1))
    with torch.no_grad():
        head.norm.text_mix.logits.copy_(torch.tensor([1.0, 0.0, -1.0]))
    restored = from_state_dict(HeadConfig(fusion=fusion), head.state_dict(), layers=layers)
    assert not restored.training and restored.layers == layers
    a, t = inputs(3)
    stack = torch.stack([t, 2 * t, -t], dim=1)  # (B, 3, D_T)
    torch.testing.assert_close(restored(a, stack), head.eval()(a, stack), rtol=0, atol=0)
    assert heads.layer_weights(head.state_dict()) == heads.layer_weights(head) == head.layer_weights()
    assert heads.layer_weights(head)["text"] == pytest.approx(torch.softmax(torch.tensor([1.0, 0.0, -1.0]), 0).tolist())


def test_the_deprecated_model_module_re_exports_the_heads():
    import erc.model

    assert erc.model.build_head is build_head and erc.model.HeadConfig is HeadConfig
    assert erc.model.FUSIONS == FUSIONS and erc.model.N_CLASSES == 7 and erc.model.PRESETS is PRESETS


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize(("n_classes", "n_dimensions"), [(4, 2), (6, 0)])
def test_every_head_sizes_its_outputs_to_the_corpus(fusion, n_classes, n_dimensions):
    # IEMOCAP's 4 classes with valence/arousal, CREMA-D's 6 without: class logits, then the dimensions
    head = build_head(HeadConfig(fusion=fusion, n_classes=n_classes, n_dimensions=n_dimensions), D_A, D_T)
    head.reset_parameters(torch.Generator().manual_seed(0))
    a, t = inputs_for(fusion, 3)
    assert head.eval()(a, t).shape == (3, n_classes + n_dimensions)
