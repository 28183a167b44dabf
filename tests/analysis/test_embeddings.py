"""The embedding figure (issue 10) from a real finished sweep: UMAP of a trial's head beside the ratings."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from analysis.__main__ import main
from analysis.embeddings import (
    CHECKPOINT,
    MissingCheckpointError,
    TooFewUtterancesError,
    alignment_metrics,
    download_checkpoint,
    embedding_figure,
    validation_rows,
)
from analysis.runs import find_trial_run
from erc import contract as C
from erc.config import RunConfig
from erc.model import build_head
from erc.predict import load_head
from erc.trainer import fit
from tests.sweep_helpers import children, parents, run, sweep_command
from tests.synthetic import synthetic_features

pytestmark = pytest.mark.slow

METRICS = ("silhouette_va", "silhouette_umap", "centroid_spearman", "silhouette_embedding",
           "centroid_spearman_embedding", "n_utterances", "n_classes")


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A finished one-trial sweep (fold 0, outer-peakl, demo-size head) on a demo corpus big enough for UMAP.

    (With ``--data`` the sweep defaults to the paper-size mixer, a GPU workload: ``--preset demo``.)
    """
    from erc.data import load_corpus
    from erc.data.demo import write_demo_corpus
    from erc.encoders import build_demo_encoders

    tmp = tmp_path_factory.mktemp("embeddings_sweep")
    root = write_demo_corpus(tmp / "data", seed=0, kemdy19_sessions=5, kemdy20_sessions=5,
                             utterances_per_speaker=10)
    encoders = build_demo_encoders(tmp / "encoders", load_corpus(root, verbose=False))
    cache = tmp / "cache"
    # Checkpoint on validation loss: on a fold this small the paper's accuracy selection keeps epoch 1 (an
    # untrained head that predicts "neutral" for everything), and this test needs a head that learned.
    hparams = tmp / "hparams.yaml"
    hparams.write_text("select_metric: loss\n")
    proc = run(sweep_command("ablation.py", root, encoders, cache, "--folds", "0", "--fusions", "outer",
                             "--labels", "peakl", "--preset", "demo", "--epochs", "8", "--config", str(hparams)),
               cwd=tmp, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    uri = f"sqlite:///{cache / 'mlflow.db'}"
    client = MlflowClient(uri)
    [trial] = children(client)
    assert trial.info.status == "FINISHED" and trial.data.tags["arm"] == "outer-peakl"
    assert trial.data.params["select_metric"] == "loss" and trial.data.metrics["selected/epoch"] > 1
    return {"uri": uri, "client": client, "run": trial, "parent": parents(client)[0], "tmp": tmp}


def _printed(text: str) -> dict[str, float]:
    return {m: float(v) for m, v in re.findall(r"embed/(\w+)\s+(-?[\d.]+)", text)}


def test_cli_draws_and_logs_the_figure_for_a_finished_trial(sweep_store, tmp_path, capsys):
    client, trial = sweep_store["client"], sweep_store["run"]
    run_id = trial.info.run_id
    out = tmp_path / "fig"
    start = time.time()
    assert main(["embeddings", "--experiment", "erc-sweeps", "--arm", "outer-peakl", "--fold", "0",
                 "--tracking-uri", sweep_store["uri"], "--out", str(out)]) == 0
    print(f"embeddings CLI: {time.time() - start:.1f} s")
    printed = _printed(capsys.readouterr().out)
    assert set(printed) == set(METRICS)

    # the PNG: two panels side by side
    png = out / "embeddings.png"
    image = plt_imread(png)
    assert image.shape[1] > 1.8 * image.shape[0] > 500

    # one point per validation utterance of fold 0, at its human ratings
    n_valid = int(trial.data.params[C.N_VALID])
    points = pd.read_csv(out / "points.csv")
    assert len(points) == n_valid and points[["umap_x", "umap_y"]].notna().all().all()
    valid = validation_rows(trial.data.tags[C.FEATURES], 0)
    assert list(points.segment_id) == [str(s) for s in valid.segment_id]
    np.testing.assert_allclose(points.valence, valid.valence, rtol=1e-6)
    np.testing.assert_allclose(points.arousal, valid.arousal, rtol=1e-6)
    assert printed["n_utterances"] == (valid.majority >= 0).sum() == (points.majority >= 0).sum()

    # logged to the trial's own run: the figure, the coordinates and the numbers (as printed)
    logged = client.get_run(run_id)
    assert "plots/embeddings.png" in {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"embeddings/points.csv", "embeddings/alignment.json"} <= {
        a.path for a in client.list_artifacts(run_id, "embeddings")}
    for name in METRICS:
        assert logged.data.metrics[f"embed/{name}"] == pytest.approx(printed[name], abs=5e-4), name
    for name in ("silhouette_va", "silhouette_umap", "silhouette_embedding"):
        assert -1 <= printed[name] <= 1
    assert printed["n_classes"] >= 3
    assert -1 <= printed["centroid_spearman"] <= 1 and -1 <= printed["centroid_spearman_embedding"] <= 1

    # seeded: a second run draws the same layout and the same numbers; --no-log changes nothing in MLflow
    again = tmp_path / "again"
    assert main(["embeddings", "--experiment", "erc-sweeps", "--sweep", sweep_store["parent"].info.run_id,
                 "--arm", "outer-peakl", "--fold", "0", "--seed", "0", "--tracking-uri", sweep_store["uri"],
                 "--out", str(again), "--no-log"]) == 0
    assert _printed(capsys.readouterr().out) == printed
    np.testing.assert_allclose(pd.read_csv(again / "points.csv")[["umap_x", "umap_y"]],
                               points[["umap_x", "umap_y"]], atol=1e-5)
    assert len(client.get_metric_history(run_id, "embed/silhouette_umap")) == 1


def plt_imread(path: Path) -> np.ndarray:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(path)


def _untrained(config, state_dict, seed: int):
    """The same architecture with fresh weights (keeping the trained input/target normalisation)."""
    config = config if isinstance(config, RunConfig) else RunConfig.from_flat(config)
    head = build_head(config.head, state_dict["norm.audio_mean"].shape[0], state_dict["norm.text_mean"].shape[0])
    head.reset_parameters(torch.Generator().manual_seed(seed))
    fresh = head.state_dict()
    fresh.update({k: v for k, v in state_dict.items() if k.startswith("norm.")})
    return load_head(config, fresh)


HEAD_DEPENDENT = ("silhouette_umap", "centroid_spearman", "silhouette_embedding", "centroid_spearman_embedding")


def test_trained_and_untrained_heads_give_different_alignment(sweep_store, tmp_path):
    client, trial = sweep_store["client"], sweep_store["run"]
    sweep, found = find_trial_run(client, "erc-sweeps", "outer-peakl", 0)
    assert found.info.run_id == trial.info.run_id and sweep.parent_run_id == sweep_store["parent"].info.run_id
    ckpt = download_checkpoint(client, found, tmp_path)
    valid = validation_rows(trial.data.tags[C.FEATURES], 0)
    a = embedding_figure(load_head(ckpt["config"], ckpt["state_dict"]), valid, tmp_path / "trained.png",
                         config=ckpt["config"])
    assert a.path.is_file()
    for seed in range(2):
        b = embedding_figure(_untrained(ckpt["config"], ckpt["state_dict"], seed), valid,
                             tmp_path / f"untrained{seed}.png", config=ckpt["config"])
        print("trained vs untrained:", {k: (round(a.metrics[k], 3), round(b.metrics[k], 3)) for k in METRICS})
        # the left panel is the raters' and does not depend on the head; the right one does
        assert a.metrics["silhouette_va"] == b.metrics["silhouette_va"]
        assert a.metrics["n_utterances"] == b.metrics["n_utterances"]
        assert not np.allclose(a.embeddings, b.embeddings)
        assert not np.allclose(a.points[["umap_x", "umap_y"]], b.points[["umap_x", "umap_y"]])
        assert max(abs(a.metrics[k] - b.metrics[k]) for k in HEAD_DEPENDENT) > 0.05


def test_training_clusters_the_embeddings_by_emotion(tmp_path):
    """On features with known structure, a trained head's embeddings cluster by emotion; fresh ones do not."""
    train, valid = synthetic_features(n=600, seed=0).split(0)
    result = fit(RunConfig.from_flat({"fusion": "outer", "labels": "peakl", "epochs": 8, "select_metric": "loss",
                                      "device": "cpu"}), train, valid, return_embeddings=True)
    assert result.metrics["macro_f1"] > 0.5  # it learned
    head = load_head(result.config, result.state_dict)
    a = embedding_figure(head, valid, tmp_path / "trained.png", config=result.config.to_flat())
    # the saved head reproduces the selected epoch's validation embeddings
    np.testing.assert_allclose(a.embeddings, result.embeddings, rtol=1e-4, atol=1e-5)
    fresh = [embedding_figure(_untrained(result.config, result.state_dict, seed), valid,
                              tmp_path / f"untrained{seed}.png", config=result.config.to_flat()).metrics for seed in range(3)]
    print("trained:", {k: round(a.metrics[k], 3) for k in HEAD_DEPENDENT},
          "untrained:", [{k: round(m[k], 3) for k in HEAD_DEPENDENT} for m in fresh])
    for key in ("silhouette_umap", "silhouette_embedding"):
        assert a.metrics[key] > max(m[key] for m in fresh) + 0.1, key
    assert a.metrics["silhouette_umap"] > 0


def test_missing_checkpoint_and_missing_features_are_clear_errors(sweep_store, tmp_path, capsys):
    client, parent = sweep_store["client"], sweep_store["parent"]
    real = sweep_store["run"]
    # a finished trial of the same sweep whose checkpoint never made it to the store
    tags = {k: v for k, v in real.data.tags.items() if not k.startswith(("mlflow.", "ray."))}
    bare = client.create_run(parent.info.experiment_id, run_name="fold3-outer-peakl",
                             tags={**tags, "fold": "3", "mlflow.parentRunId": parent.info.run_id}).info.run_id
    client.set_terminated(bare, status="FINISHED")
    args = ["embeddings", "--experiment", "erc-sweeps", "--arm", "outer-peakl", "--tracking-uri", sweep_store["uri"],
            "--out", str(tmp_path / "out")]

    assert main([*args, "--fold", "3"]) == 2
    err = capsys.readouterr().err
    assert bare in err and CHECKPOINT in err and "fold3-outer-peakl" in err
    with pytest.raises(MissingCheckpointError, match=bare):
        download_checkpoint(client, client.get_run(bare), tmp_path)
    assert not (tmp_path / "out").exists()

    # an arm/fold the sweep does not have: says what it does have
    assert main([*args, "--fold", "4"]) == 2
    err = capsys.readouterr().err
    assert "no grid trial with arm 'outer-peakl', fold 4" in err and "outer-peakl fold 0" in err

    # a feature cache that is gone (e.g. a sweep run on another machine): points at --features
    assert main([*args, "--fold", "0", "--features", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "does not exist" in err and "--features" in err


def test_too_few_utterances_for_umap_is_a_clear_error(tmp_path):
    cols = synthetic_features(n=200, seed=1)
    head = build_head(RunConfig.from_flat({"fusion": "outer"}).head, cols.audio.shape[1], cols.text.shape[1])
    few = cols.subset(range(12))
    with pytest.raises(TooFewUtterancesError, match=r"12 validation utterances .*UMAP .*n_neighbors=15.*at least 16"):
        embedding_figure(head, few, tmp_path / "few.png")
    assert not (tmp_path / "few.png").exists()
    # enough rows for a smaller neighbourhood is fine
    from analysis.embeddings import UmapSettings

    result = embedding_figure(head, few, tmp_path / "few.png", umap=UmapSettings(n_neighbors=5))
    assert result.path.is_file() and len(result.points) == 12


def test_alignment_numbers_on_known_layouts():
    rng = np.random.default_rng(0)
    centres = np.array([[1.5, 4.5], [2.0, 2.0], [4.5, 4.0], [3.0, 3.0], [4.0, 1.5]])  # 5 classes in (v, a)
    labels = np.repeat(np.arange(5), 40)
    va = centres[labels] + 0.15 * rng.standard_normal((200, 2))
    # an embedding that is a rotated, scaled copy of the ratings plus extra noise dimensions
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    emb = np.hstack([3 * va @ rot, 0.05 * rng.standard_normal((200, 6))])
    aligned = alignment_metrics(va, 3 * va @ rot, emb, labels)
    assert aligned["centroid_spearman"] == pytest.approx(1.0)
    assert aligned["centroid_spearman_embedding"] == pytest.approx(1.0)
    assert aligned["silhouette_va"] > 0.7 and aligned["silhouette_umap"] > 0.7
    assert aligned["n_classes"] == 5 and aligned["n_utterances"] == 200

    # the same clusters with the classes' places permuted: tight clusters, unrelated layout
    perm = np.array([3, 4, 1, 0, 2])
    shuffled = centres[perm][labels] + 0.15 * rng.standard_normal((200, 2))
    moved = alignment_metrics(va, shuffled, emb, labels)
    assert moved["silhouette_umap"] > 0.7 and moved["centroid_spearman"] < 0.5

    # tied utterances (majority -1) are left out of every number, however they lie
    ties = np.full(30, -1)
    far = 100 + rng.standard_normal((30, 2))
    with_ties = alignment_metrics(np.vstack([va, far]), np.vstack([3 * va @ rot, far]),
                                  np.vstack([emb, np.hstack([far, np.zeros((30, 6))])]),
                                  np.concatenate([labels, ties]))
    assert with_ties == pytest.approx(aligned)

    # two classes: a silhouette exists, a rank correlation of one distance does not
    two = alignment_metrics(va[:80], va[:80], emb[:80], labels[:80])
    assert np.isfinite(two["silhouette_va"]) and np.isnan(two["centroid_spearman"])
