"""The seed's embedding figure: learned embeddings (UMAP) beside the human valence–arousal map.

The paper's third claim is that the head's last hidden layer (the input of its final Linear; see
``erc.model``), reduced to 2-D with UMAP, clusters by emotion the way the raters' valence–arousal
ratings do. This module draws that figure for any trial of any sweep and puts numbers next to it,
so that "aligns" is measured rather than eyeballed.

Two panels, one point per validation utterance of the trial's fold:

- left: the utterance at its mean human (valence, arousal) rating, coloured by its majority emotion;
- right: UMAP (seeded) of the learned embeddings, same colours.

Tied utterances (no unique majority) are drawn in grey behind the others and left out of every
number. Each class's centroid is marked in both panels.

Numbers (over the utterances with a unique majority; logged to the trial's run under ``embed/``):

- ``silhouette_va``: silhouette of the emotion classes at the (valence, arousal) ratings;
- ``silhouette_umap``: silhouette of the classes in the UMAP panel;
- ``centroid_spearman``: Spearman correlation between the pairwise distances of the class centroids
  in the two panels (1 = the classes are laid out in the same order of nearness);
- ``silhouette_embedding`` and ``centroid_spearman_embedding``: the same in the full embedding space,
  which does not depend on UMAP's (seeded, but arbitrary) global layout;
- ``n_utterances``, ``n_classes``: what the numbers were computed on.

Python API: :func:`embedding_figure` (a head and feature rows → PNG + numbers) and
:func:`run_embeddings` (a sweep's trial in MLflow → the same, logged back to the run).
Command line: ``python -m analysis embeddings --experiment NAME --arm outer-peakl --fold 0``.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: made on cluster heads and in CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.options import OUT_DIR, UmapSettings
from erc import contract as C
from erc.table import FeatureTable
from erc.vocab import EMOTIONS

CHECKPOINT = C.HEAD_CHECKPOINT
FIGURE_ARTIFACT_DIR = C.PLOTS_DIR
FIGURE_NAME = "embeddings.png"
DATA_ARTIFACT_DIR = C.EMBEDDINGS_DIR
METRIC_PREFIX = C.EMBED_PREFIX
# One fixed colour per class index (tab10 without its grey, which marks tied utterances).
CLASS_COLOURS = ("#17becf", "#9467bd", "#d62728", "#8c564b", "#ff7f0e", "#1f77b4", "#2ca02c")
TIE_COLOUR = "#c7c7c7"


class MissingCheckpointError(ValueError):
    """The trial's run has no ``checkpoint/head.pt`` artifact."""


class TooFewUtterancesError(ValueError):
    """Not enough validation utterances for UMAP (or for the numbers)."""


@dataclass
class EmbeddingResult:
    """What :func:`embedding_figure` made: the PNG, the numbers and the per-utterance coordinates."""

    path: Path
    metrics: dict[str, float]
    points: pd.DataFrame  # segment_id, majority, emotion, valence, arousal, umap_x, umap_y
    umap: dict[str, Any]
    embeddings: np.ndarray  # (N, E) the head's embeddings, rows as in ``points``
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None


# ---------------------------------------------------------------------------------------------- numbers


def class_centroids(points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes present, (C, D) mean point of each), classes in index order."""
    classes = np.unique(labels)
    return classes, np.stack([points[labels == c].mean(axis=0) for c in classes])


def _silhouette(points: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    n_labels = len(np.unique(labels))
    if not 2 <= n_labels <= len(labels) - 1:
        return float("nan")
    return float(silhouette_score(points, labels, metric="euclidean"))


def _centroid_spearman(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> float:
    """Spearman ρ between the pairwise centroid distances of the classes in spaces ``a`` and ``b``."""
    from scipy.spatial.distance import pdist
    from scipy.stats import spearmanr

    _, ca = class_centroids(a, labels)
    _, cb = class_centroids(b, labels)
    if len(ca) < 3:  # fewer than 3 pairs: no rank correlation
        return float("nan")
    da, db = pdist(ca), pdist(cb)
    if np.ptp(da) == 0 or np.ptp(db) == 0:
        return float("nan")
    return float(spearmanr(da, db).statistic)


def alignment_metrics(
    va: np.ndarray, umap_xy: np.ndarray, embeddings: np.ndarray, majority: np.ndarray
) -> dict[str, float]:
    """The alignment numbers over the utterances with a unique majority (``majority >= 0``).

    ``va``: (N, 2) valence, arousal; ``umap_xy``: (N, 2); ``embeddings``: (N, E); ``majority``: (N,).
    A number that is undefined (one class only, fewer than three classes for a rank correlation) is NaN.
    """
    keep = np.asarray(majority) >= 0
    labels = np.asarray(majority)[keep]
    va, umap_xy, embeddings = (np.asarray(x, dtype=np.float64)[keep] for x in (va, umap_xy, embeddings))
    return {
        "silhouette_va": _silhouette(va, labels),
        "silhouette_umap": _silhouette(umap_xy, labels),
        "centroid_spearman": _centroid_spearman(va, umap_xy, labels),
        "silhouette_embedding": _silhouette(embeddings, labels),
        "centroid_spearman_embedding": _centroid_spearman(va, embeddings, labels),
        "n_utterances": float(keep.sum()),
        "n_classes": float(len(np.unique(labels))),
    }


# ---------------------------------------------------------------------------------------------- UMAP


def umap_2d(embeddings: np.ndarray, settings: UmapSettings | None = None) -> np.ndarray:
    """Seeded 2-D UMAP of (N, E) embeddings; too few rows is a :class:`TooFewUtterancesError`."""
    settings = settings or UmapSettings()
    n = len(embeddings)
    if n < settings.min_utterances():
        raise TooFewUtterancesError(
            f"UMAP with n_neighbors={settings.n_neighbors} needs at least {settings.min_utterances()} "
            f"utterances, got {n}; use a fold with more validation utterances or a smaller n_neighbors "
            "(--n-neighbors)"
        )
    with warnings.catch_warnings():
        # "n_jobs value 1 overridden to 1 by setting random_state": the seed is the point here.
        warnings.filterwarnings("ignore", message=".*n_jobs value.*", category=UserWarning)
        import umap

        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=settings.n_neighbors,
            min_dist=settings.min_dist,
            metric=settings.metric,
            random_state=settings.random_state,
        )
        return np.asarray(reducer.fit_transform(np.asarray(embeddings, dtype=np.float32)), dtype=np.float64)


# ---------------------------------------------------------------------------------------------- figure


def _panel(ax, xy: np.ndarray, majority: np.ndarray, title: str, xlabel: str, ylabel: str) -> None:
    ties = majority < 0
    if ties.any():
        ax.scatter(xy[ties, 0], xy[ties, 1], s=10, c=TIE_COLOUR, alpha=0.6, linewidths=0, zorder=1)
    for c in np.unique(majority[~ties]):
        sel = majority == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=14, c=CLASS_COLOURS[c], alpha=0.7, linewidths=0, zorder=2)
        cx, cy = xy[sel].mean(axis=0)
        ax.scatter([cx], [cy], s=160, c=CLASS_COLOURS[c], marker="X", edgecolors="black", linewidths=1.2,
                   zorder=4)
        ax.annotate(EMOTIONS[c], (cx, cy), xytext=(6, 6), textcoords="offset points", fontsize=8,
                    weight="bold", zorder=5)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.25)


def _fmt(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3f}"


def draw_figure(points: pd.DataFrame, metrics: Mapping[str, float], path: str | Path, title: str | None = None) -> Path:
    """The two-panel PNG from :class:`EmbeddingResult`-style points and numbers."""
    majority = points["majority"].to_numpy()
    va = points[["valence", "arousal"]].to_numpy(dtype=float)
    xy = points[["umap_x", "umap_y"]].to_numpy(dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.6))
    fig.subplots_adjust(left=0.06, right=0.84, bottom=0.1, top=0.83, wspace=0.22)
    _panel(axes[0], va, majority, f"human ratings — silhouette {_fmt(metrics['silhouette_va'])}",
           "valence (mean rating, 1–5)", "arousal (mean rating, 1–5)")
    _panel(axes[1], xy, majority, f"UMAP of learned embeddings — silhouette {_fmt(metrics['silhouette_umap'])}",
           "UMAP 1", "UMAP 2")
    handles = [
        plt.Line2D([], [], marker="o", ls="", color=CLASS_COLOURS[c], label=f"{EMOTIONS[c]} ({int((majority == c).sum())})")
        for c in range(len(EMOTIONS)) if (majority == c).any()
    ]
    n_ties = int((majority < 0).sum())
    if n_ties:
        handles.append(plt.Line2D([], [], marker="o", ls="", color=TIE_COLOUR, label=f"tie ({n_ties})"))
    handles.append(plt.Line2D([], [], marker="X", ls="", color="white", markeredgecolor="black",
                              markersize=10, label="class centroid"))
    fig.legend(handles=handles, loc="center right", fontsize=8, title="majority emotion", title_fontsize=8)
    sub = (f"centroid-distance Spearman ρ (ratings vs UMAP) {_fmt(metrics['centroid_spearman'])}; "
           f"in the full embedding space: silhouette {_fmt(metrics['silhouette_embedding'])}, "
           f"ρ {_fmt(metrics['centroid_spearman_embedding'])}; "
           f"n = {int(metrics['n_utterances'])} with a unique majority")
    fig.suptitle((title + "\n" if title else "") + sub, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def validation_rows(features: Any, fold: int) -> FeatureTable:
    """The validation rows of ``fold`` from a feature dataset (path, ``datasets.Dataset`` or FeatureTable)."""
    table = _load_features(features) if isinstance(features, str | Path) else features
    if not isinstance(table, FeatureTable):
        table = FeatureTable.from_dataset(table)
    return table.split(fold)[1]


def embedding_figure(
    head: Any,
    valid: Any,
    path: str | Path,
    config: Mapping[str, Any] | None = None,
    umap: UmapSettings | None = None,
    title: str | None = None,
) -> EmbeddingResult:
    """Embed ``valid`` rows with ``head``, draw the two panels to ``path`` and compute the numbers.

    ``head``: a fusion head (``erc.predict.load_head``, ``erc.model.build_head``); ``valid``: a
    ``FeatureTable`` (e.g. from :func:`validation_rows`); ``config``: the head's flat run config (only
    its ``device`` is used; None = auto).
    """
    from erc.predict import predict

    umap = umap or UmapSettings()
    cols = valid
    n = len(cols)
    if n < umap.min_utterances():
        raise TooFewUtterancesError(
            f"{n} validation utterances are too few for UMAP with n_neighbors={umap.n_neighbors} "
            f"(needs at least {umap.min_utterances()}); use a bigger fold or a smaller n_neighbors (--n-neighbors)"
        )
    _, emb = predict(head, cols, device=(config or {}).get("device", "auto"), return_embeddings=True)
    assert emb is not None
    xy = umap_2d(emb, umap)
    majority = cols.majority.astype(np.int64)
    va = cols.va.astype(np.float64)
    metrics = alignment_metrics(va, xy, emb, majority)
    notes = []
    if metrics["n_classes"] < 3:
        notes.append(f"only {int(metrics['n_classes'])} emotion class(es) with a unique majority in these rows: "
                     "the centroid rank correlations are undefined")
    points = pd.DataFrame({
        "segment_id": cols.segment_id,
        "majority": majority,
        "emotion": [EMOTIONS[m] if m >= 0 else "tie" for m in majority],
        "valence": va[:, 0],
        "arousal": va[:, 1],
        "umap_x": xy[:, 0],
        "umap_y": xy[:, 1],
    })
    out = draw_figure(points, metrics, path, title=title)
    settings = {"n_components": 2, **umap.__dict__}
    return EmbeddingResult(path=out, metrics=metrics, points=points, umap=settings, embeddings=emb, notes=notes)


# ---------------------------------------------------------------------------------------------- MLflow


def _load_features(path: str | Path):
    import datasets

    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"feature cache {path} does not exist (pass --features DIR to point at a copy)")
    try:
        return datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"{path} is not a saved feature dataset (datasets.save_to_disk): {err}") from None


def download_checkpoint(client, run, dest: str | Path) -> dict[str, Any]:
    """``{'config', 'state_dict'}`` from the run's ``checkpoint/head.pt``; absent = MissingCheckpointError."""
    import torch

    run_id = run.info.run_id
    name = run.info.run_name or run_id
    listed = {a.path for a in client.list_artifacts(run_id, C.CHECKPOINT_DIR)}
    if CHECKPOINT not in listed:
        raise MissingCheckpointError(
            f"run {run_id} ({name}) has no artifact {CHECKPOINT}"
            + (f" (its {C.CHECKPOINT_DIR}/ holds: {', '.join(sorted(listed))})" if listed
               else f" (no {C.CHECKPOINT_DIR}/ artifacts)")
            + "; the trial's checkpoint is logged when it finishes — rerun the sweep command to complete it"
        )
    local = client.download_artifacts(run_id, CHECKPOINT, str(dest))
    payload = torch.load(local, map_location="cpu", weights_only=True)
    if not isinstance(payload, Mapping) or "config" not in payload or "state_dict" not in payload:
        raise ValueError(f"{CHECKPOINT} of run {run_id} ({name}) is not a {{'config', 'state_dict'}} checkpoint")
    return dict(payload)


def _check_dims(state_dict: Mapping[str, Any], valid: FeatureTable, features: str) -> None:
    for key, col in (("norm.audio_mean", "audio"), ("norm.text_mean", "text")):
        want, have = int(state_dict[key].shape[0]), int(getattr(valid, col).shape[1])
        if want != have:
            raise ValueError(f"the head was trained on {col} of size {want}, but {features} holds size {have}: "
                             "pass the feature cache the sweep trained on with --features")


def run_embeddings(
    experiment: str,
    arm: str,
    fold: int,
    sweep: str | None = None,
    seed: int | str | None = None,
    features: str | Path | None = None,
    out_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    log_to_mlflow: bool = True,
    umap: UmapSettings | None = None,
    verbose: bool = True,
) -> EmbeddingResult:
    """The figure and numbers for one trial of a sweep in MLflow, logged back to that trial's run.

    Finds the grid trial (arm, fold[, seed]) of the sweep (default: the latest), loads its saved head
    (``checkpoint/head.pt``) and the feature cache it trained on (its ``features`` tag, or ``features``),
    embeds the fold's validation utterances, and writes ``<out_dir>/embeddings.png`` (default
    ``analysis_out/<sweep>/embeddings/<run name>``) plus the per-utterance coordinates. With
    ``log_to_mlflow`` the PNG goes to the run as ``plots/embeddings.png``, the coordinates and settings
    under ``embeddings/``, and the numbers as ``embed/*`` metrics.
    """
    from mlflow.entities import Metric

    from analysis.reader import find_trial_run, run_value
    from analysis.selection import get_client
    from erc.predict import load_head

    umap = umap or UmapSettings()
    client = get_client(tracking_uri)
    sw, run = find_trial_run(client, experiment, arm, fold, sweep=sweep, seed=seed)
    run_id, name = run.info.run_id, run.info.run_name or run.info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = download_checkpoint(client, run, tmp)
    feature_dir = features or run.data.tags.get(C.FEATURES)
    if not feature_dir and sw.parent_run_id is not None:
        feature_dir = client.get_run(sw.parent_run_id).data.tags.get(C.FEATURES)
    if not feature_dir:
        raise ValueError(f"run {run_id} ({name}) has no '{C.FEATURES}' tag; pass the feature cache with --features")
    valid = validation_rows(_load_features(feature_dir), fold)
    _check_dims(ckpt["state_dict"], valid, str(feature_dir))
    notes = []
    n_valid = run_value(run, C.N_VALID)
    if n_valid is not None and str(n_valid).isdigit() and int(n_valid) != len(valid):
        notes.append(f"fold {fold} of {feature_dir} has {len(valid)} validation utterances but the run "
                     f"validated on {n_valid}: these features are not the ones it trained on")
        warnings.warn(notes[-1], stacklevel=2)
    config = ckpt["config"]
    head = load_head(config, ckpt["state_dict"])
    out = Path(out_dir) if out_dir else Path(OUT_DIR) / _slug(sw.name) / "embeddings" / _slug(name)
    out.mkdir(parents=True, exist_ok=True)
    seed_tag = run_value(run, C.SEED)
    title = (f"{name}: {arm}, fold {fold}" + (f", seed {seed_tag}" if seed_tag else "")
             + f" — sweep {sw.name}, run {run_id[:8]}")
    result = embedding_figure(head, valid, out / FIGURE_NAME, config=config, umap=umap, title=title)
    result.run_id = run_id
    result.notes = notes + result.notes
    points_csv = out / "points.csv"
    result.points.to_csv(points_csv, index=False)
    summary = out / "alignment.json"
    summary.write_text(json.dumps({
        "run_id": run_id, "run_name": name, "sweep": sw.name, "arm": arm, "fold": fold,
        "seed": seed_tag, "features": str(feature_dir), "umap": result.umap,
        "metrics": {k: (v if np.isfinite(v) else None) for k, v in result.metrics.items()},
    }, indent=1))
    if verbose:
        print(format_metrics(result.metrics, header=f"{name} ({run_id}), {len(valid)} validation utterances"))
        for note in result.notes:
            print(f"note: {note}")
        print(f"figure: {result.path}")
    if log_to_mlflow:
        import time

        client.log_artifact(run_id, str(result.path), artifact_path=FIGURE_ARTIFACT_DIR)
        client.log_artifact(run_id, str(points_csv), artifact_path=DATA_ARTIFACT_DIR)
        client.log_artifact(run_id, str(summary), artifact_path=DATA_ARTIFACT_DIR)
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(METRIC_PREFIX + k, float(v), now, 0)
                                          for k, v in result.metrics.items() if np.isfinite(v)])
        if verbose:
            print(f"logged to run {run_id}: {FIGURE_ARTIFACT_DIR}/{FIGURE_NAME}, {METRIC_PREFIX}* metrics")
    return result


def format_metrics(metrics: Mapping[str, float], header: str | None = None) -> str:
    lines = [header] if header else []
    width = max(len(METRIC_PREFIX + k) for k in metrics)
    for key, value in metrics.items():
        shown = f"{int(value)}" if key.startswith("n_") and np.isfinite(value) else _fmt(value)
        lines.append(f"  {METRIC_PREFIX + key:<{width}}  {shown}")
    return "\n".join(lines)


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)) or "run"
