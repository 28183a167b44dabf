"""A full disk while building a shared cache: a clear error naming the path and the space needed,
nothing that looks complete left behind, and the next run builds it again (issue 16, case 6).

The disk is made "full" with a file-size limit on the building process (RLIMIT_FSIZE; Python ignores
SIGXFSZ, so writes past the limit fail with EFBIG, as they fail with ENOSPC on a full disk), which
works for any user on any Linux; ``require_space`` is checked against a real filesystem's free space.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from erc.atomic import DiskFullError, disk_full_errors, free_bytes, require_space
from tests.sweep_helpers import REPO

BUILD = textwrap.dedent("""
    import resource, sys
    from erc.atomic import DiskFullError
    from erc.data import load_corpus
    what, out, limit, root, audio, text = sys.argv[1:7]
    corpus = load_corpus(root, verbose=False) if what != "corpus" else None
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
    try:
        if what == "corpus":
            from erc.data.demo import write_demo_corpus
            write_demo_corpus(out, seed=0, kemdy19_sessions=5, kemdy20_sessions=6, utterances_per_speaker=4)
        elif what == "encoders":
            from erc.data.demo_encoders import build_demo_encoders
            build_demo_encoders(out, corpus)
        elif what == "inputs":
            from erc.inputs import build_inputs
            build_inputs(corpus, audio, text, out, progress=False)
        else:
            from erc.features import build_features
            build_features(corpus, audio, text, out, progress=False)
    except DiskFullError as err:
        print(err)
        sys.exit(3)
""")


def _build_under_limit(what: str, out: Path, limit: int, demo_root: Path, encoders: tuple[Path, Path]) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", BUILD, what, str(out), str(limit), str(demo_root), *map(str, encoders)],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env, check=False)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 3, f"{what}: expected DiskFullError, got rc {proc.returncode}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_demo_corpus_on_a_full_disk(demo_root, demo_encoders, tmp_path):
    out = tmp_path / "demo" / "data"
    message = _build_under_limit("corpus", out, 50_000, demo_root, demo_encoders)  # a WAV is ~150 KB
    assert f"cannot write the demo corpus at {out}" in message
    from erc.atomic import human
    from erc.data.demo import estimated_bytes

    assert "File too large" in message and f"it needs about {human(estimated_bytes(5, 6, 4))}" in message
    assert not out.exists() and [p.name for p in out.parent.iterdir() if p.is_dir()] == []
    from erc.data.demo import MARKER, write_demo_corpus

    write_demo_corpus(out, seed=0, kemdy19_sessions=5, kemdy20_sessions=6, utterances_per_speaker=4)
    assert (out / MARKER).is_file()


@pytest.mark.slow
def test_demo_encoders_on_a_full_disk(demo_root, demo_encoders, tmp_path):
    out = tmp_path / "encoders"
    message = _build_under_limit("encoders", out, 100_000, demo_root, demo_encoders)  # weights ~1 MB
    assert f"cannot write the demo encoders at {out}" in message and "it needs about" in message
    from erc.data import load_corpus
    from erc.data.demo_encoders import DEMO_MARKER, build_demo_encoders

    assert not (out / DEMO_MARKER).exists() and not list(out.parent.glob(".tmp-*"))

    build_demo_encoders(out, load_corpus(demo_root, verbose=False))
    assert (out / DEMO_MARKER).is_file()


@pytest.mark.slow
def test_feature_cache_on_a_full_disk(demo_root, demo_encoders, tmp_path):
    out = tmp_path / "features"
    message = _build_under_limit("features", out, 40_000, demo_root, demo_encoders)  # the Arrow file ~70 KB
    assert f"cannot write the feature cache at {out}" in message and "it needs about" in message
    assert not list(out.glob("*/meta.json")) and not list(out.glob(".tmp-*"))
    from erc.data import load_corpus
    from erc.features import build_features

    ds = build_features(load_corpus(demo_root, verbose=False), *map(str, demo_encoders), out, progress=False)
    assert ds.num_rows > 0 and len(list(out.glob("*/meta.json"))) == 1


@pytest.mark.slow
def test_input_cache_on_a_full_disk(demo_root, demo_encoders, tmp_path):
    out = tmp_path / "inputs"
    message = _build_under_limit("inputs", out, 40_000, demo_root, demo_encoders)  # waveforms ~8 MB
    assert f"cannot write the input cache at {out}" in message and "it needs about" in message
    assert not list(out.glob("*/meta.json")) and not list(out.glob(".tmp-*"))
    from erc.data import load_corpus
    from erc.inputs import build_inputs

    table, path = build_inputs(load_corpus(demo_root, verbose=False), *map(str, demo_encoders), out, progress=False)
    assert len(table) > 0 and (path / "meta.json").is_file()


def test_a_build_that_cannot_fit_is_refused_before_it_starts(tmp_path):
    free = free_bytes(tmp_path)
    with pytest.raises(DiskFullError) as caught:
        require_space(tmp_path / "cache" / "x", free + 2**30, "the feature cache")
    text = str(caught.value)
    assert f"cannot write the feature cache at {tmp_path / 'cache' / 'x'}" in text and "not enough free space" in text
    assert "it needs about" in text and caught.value.errno == 28


def test_only_a_full_disk_becomes_disk_full_error(tmp_path):
    with pytest.raises(ValueError), disk_full_errors(tmp_path, "x"):
        raise ValueError("unrelated")
    with pytest.raises(DiskFullError, match="No space left on device"), disk_full_errors(tmp_path, "x", 10):
        raise OSError(28, "No space left on device")
    with pytest.raises(DiskFullError, match="took only part of a write"), disk_full_errors(tmp_path, "x"):
        raise OSError("4581106 requested and 19936 written")  # numpy's np.save on a full disk
    # libraries that keep only the OS error's text (safetensors)
    with pytest.raises(DiskFullError, match="it needs about 2.0 KB"), disk_full_errors(tmp_path, "x", 2048):
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
