"""Deprecated: the heads moved to :mod:`erc.heads` (one module per fusion). Import from there."""

from erc.heads import FUSIONS, PRESETS, BaseHead, Dropout, HeadConfig, build_head  # noqa: F401
from erc.heads.concat import ConcatHead  # noqa: F401
from erc.heads.outer import FeedForward, MixerBlock, TensorMixerHead, patchify  # noqa: F401
from erc.vocab import N_CLASSES, N_OUTPUTS  # noqa: F401
