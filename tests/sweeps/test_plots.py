"""A trial's confusion figure: scikit-learn's numbers, drawn without importing scikit-learn in the trial."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
from sklearn.metrics import confusion_matrix

from sweeps.plots import confusion_rows
from tests.sweep_helpers import REPO, imported


def fit_result(majority: np.ndarray, logits: np.ndarray) -> SimpleNamespace:
    return SimpleNamespace(predictions=SimpleNamespace(majority=majority, logits=logits))


def test_confusion_rows_are_sklearns_row_normalised_matrix():
    rng = np.random.default_rng(0)
    k = 5
    majority = rng.integers(-1, k - 1, 60)  # ties (-1) left out; class k-1 never the majority: a row of zeros
    logits = rng.normal(size=(60, k)).astype(np.float32)
    rated = majority >= 0
    want = confusion_matrix(majority[rated], logits[rated].argmax(1), labels=list(range(k)), normalize="true")
    got = confusion_rows(fit_result(majority, logits), k)
    np.testing.assert_allclose(got, want)
    assert not got[k - 1].any() and np.allclose(got[:-1].sum(1), 1)


def test_a_trial_draws_its_confusion_without_importing_sklearn(tmp_path):
    # Every trial draws one; importing scikit-learn for it cost each trial worker ~1.8 s of CPU here.
    code = ("import numpy as np; from types import SimpleNamespace as S; from pathlib import Path; "
            "from sweeps.plots import confusion_png; "
            "r = S(predictions=S(majority=np.array([0, 1, 2, -1]), logits=np.eye(4, 3, dtype=np.float32))); "
            f"confusion_png(r, Path({str(tmp_path / 'c.png')!r}), ['a', 'b', 'c'])")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
    assert "matplotlib" in imported(proc.stderr) and "sklearn" not in imported(proc.stderr)
