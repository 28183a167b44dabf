"""python -m erc.features: the command line builds a feature cache from a data root."""

from __future__ import annotations

import json
import os

import datasets
import pytest

from erc.features.__main__ import main
from tests.erc.features.test_cache import caches


def test_cli_builds_the_cache_from_a_data_root(tmp_path, capsys):
    from erc.data.demo import write_demo_corpus

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "--audio-encoder" in capsys.readouterr().out

    root = write_demo_corpus(tmp_path / "data", seed=0, kemdy19_sessions=5, kemdy20_sessions=5,
                             utterances_per_speaker=2)
    assert main(["--data", str(root), "--demo", "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "utterances: audio_vec 64-d, text_vec 128-d" in out
    [fp] = caches(tmp_path / "cache")
    meta = json.loads((tmp_path / "cache" / fp / "meta.json").read_text())
    assert meta["n_utterances"] == datasets.load_from_disk(str(tmp_path / "cache" / fp)).num_rows > 0
    # The demo encoders were built under the cache and are the ones recorded.
    assert os.path.samefile(meta["audio_encoder"]["name"], tmp_path / "cache" / "demo-encoders" / "audio")
