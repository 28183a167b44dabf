"""A trial's own figures: its validation confusion matrix, and the layer weights a mixing head learned.

matplotlib is imported inside the functions (the Agg backend: trials have no display).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from erc.vocab import EMOTIONS

if TYPE_CHECKING:
    from erc.trainer import FitResult


def confusion_rows(result: FitResult, n_classes: int) -> np.ndarray:
    """(K, K) confusion of the selected epoch's validation predictions, each row a fraction of its majority
    class (a class without utterances: a row of zeros); utterances without a majority class left out."""
    import torch

    from erc.metrics import confusion_matrix

    p = result.predictions
    rated = p.majority >= 0
    counts = confusion_matrix(torch.as_tensor(p.majority[rated]).long(),
                              torch.as_tensor(p.logits[rated].argmax(1)).long(), n_classes).numpy()
    return counts / np.maximum(counts.sum(1, keepdims=True), 1)


def confusion_png(result: FitResult, path: Path, classes: Sequence[str] = EMOTIONS) -> None:
    """The selected epoch's confusion matrix on the validation utterances that have a majority class;
    ``classes`` name the corpus's classes in output order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    cm = confusion_rows(result, k)
    # fixed margins instead of tight_layout: it draws every label twice (a third of a trial's plotting)
    fig = plt.figure(figsize=(6, 5))
    ax = fig.add_axes((0.2, 0.2, 0.75, 0.7))
    ax.imshow(cm, cmap="viridis", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(cm):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="black" if value > 0.5 else "white")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted class", ylabel="majority class",
           title="validation confusion (rows: majority class)")
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def layer_weights_png(weights: Mapping[str, Sequence[float]], path: Path) -> None:
    """One bar chart per encoder: each layer's softmax weight, against the uniform mix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(weights), figsize=(5 * len(weights), 3.5), squeeze=False)
    for ax, (modality, values) in zip(axes[0], weights.items(), strict=True):
        ax.bar(range(len(values)), values)
        ax.axhline(1 / len(values), color="grey", linestyle=":", label="uniform")
        ax.set(title=f"{modality} encoder", xlabel="layer (0 = embeddings)", ylabel="softmax weight")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
