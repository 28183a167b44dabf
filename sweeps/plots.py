"""A trial's own figures: its validation confusion matrix, and the layer weights a mixing head learned.

matplotlib is imported inside the functions (the Agg backend: trials have no display).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from erc.vocab import EMOTIONS

if TYPE_CHECKING:
    from erc.trainer import FitResult


def confusion_png(result: FitResult, path: Path) -> None:
    """The selected epoch's confusion matrix on the validation utterances that have a majority class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    p = result.predictions
    rated = p.majority >= 0
    fig, ax = plt.subplots(figsize=(6, 5))
    ConfusionMatrixDisplay.from_predictions(p.majority[rated], p.logits[rated].argmax(1),
                                            labels=list(range(len(EMOTIONS))), display_labels=EMOTIONS,
                                            normalize="true", values_format=".2f", ax=ax, colorbar=False,
                                            xticks_rotation=45)
    ax.set_title("validation confusion (rows: majority class)")
    fig.tight_layout()
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
