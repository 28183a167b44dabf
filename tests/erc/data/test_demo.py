import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.stats import spearmanr

from erc.data import load_corpus
from erc.data.demo import MARKER, POSITIVE, write_demo_corpus


def test_deterministic_for_a_seed(tmp_path):
    a = write_demo_corpus(tmp_path / "a", seed=3, kemdy19_sessions=5, kemdy20_sessions=5, utterances_per_speaker=2)
    b = write_demo_corpus(tmp_path / "b", seed=3, kemdy19_sessions=5, kemdy20_sessions=5, utterances_per_speaker=2)
    c = write_demo_corpus(tmp_path / "c", seed=4, kemdy19_sessions=5, kemdy20_sessions=5, utterances_per_speaker=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != MARKER)
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != MARKER)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files if f.suffix == ".csv")


def test_reuses_a_complete_corpus(tmp_path):
    out = write_demo_corpus(tmp_path / "d", kemdy19_sessions=5, kemdy20_sessions=5, utterances_per_speaker=1)
    stamp = (out / MARKER).stat().st_mtime_ns
    write_demo_corpus(tmp_path / "d", kemdy19_sessions=5, kemdy20_sessions=5, utterances_per_speaker=1)
    assert (out / MARKER).stat().st_mtime_ns == stamp
    assert json.loads((out / MARKER).read_text())["utterances"] == {"KEMDy19": 10, "KEMDy20": 10}


def test_realistic_files(demo_root):
    # The reader must cope with what real corpora hold: mixed rates and channel counts, transcriber
    # marks, cp949 transcripts, KEMDy19 files that list both speakers' rows.
    u = load_corpus(demo_root).utterances
    infos = [sf.info(p) for p in u.wav_path]
    formats = {(i.samplerate, i.channels) for i in infos}
    assert (44100, 2) in formats and (16000, 1) in formats
    assert sum(i.samplerate == 44100 for i in infos) < len(infos) / 3  # "about 10 %", not all of them
    assert 2.0 < np.median([i.duration for i in infos]) < 4.5
    assert any(mark in t for t in u.text_raw for mark in ("b/", "l/", "n/", "c/"))
    assert (u.text_raw != u.text).any()
    k20 = u[u.corpus == "KEMDy20"].wav_path.map(lambda p: Path(p).with_suffix(".txt").read_bytes())
    assert all(b.decode("cp949") for b in k20) and not all(b.isascii() for b in k20)
    with pytest.raises(UnicodeDecodeError):
        b"".join(k20).decode("utf-8")
    f_file = (demo_root / "KEMDy19" / "annotation" / "Session01_F_res.csv").read_text(encoding="utf-8")
    assert "Sess01_script01_F001" in f_file and "Sess01_script01_M001" in f_file


@pytest.mark.slow
def test_default_size_has_long_and_hifi_files_and_ties(tmp_path):
    # the full default corpus is what the main job uses: check the promised properties on it
    root = write_demo_corpus(tmp_path / "full")
    u = load_corpus(root).utterances
    assert len(u) == 1100
    infos = [sf.info(p) for p in u.wav_path]
    assert sum(i.duration > 7 for i in infos) >= 10
    assert sum(i.samplerate == 44100 and i.channels == 2 for i in infos) >= 50
    assert (u.majority == -1).sum() >= 20  # deuces
    # signal: arousal drives loudness, valence drives word choice
    rms = [np.sqrt(np.mean(sf.read(p, frames=16000)[0] ** 2)) for p in u.wav_path[:300]]
    assert spearmanr(rms, u.arousal[:300]).statistic > 0.4
    positive = u.text.map(lambda t: sum(w in t.split() for w in POSITIVE))
    assert spearmanr(positive, u.valence).statistic > 0.3


def test_a_voice_is_the_harmonic_sum_its_doc_states():
    """_render sums sin(hφ + c_h) as a polynomial in e^{iφ}: the same samples as the sines written out."""
    from erc.data.demo import _render, _voice

    rng = np.random.default_rng(5)
    voice = _voice(rng, 2.0, 16000, arousal=4.0, female=False, bright=True)
    t = np.arange(voice.n) / voice.sr
    phase = 2 * np.pi * np.cumsum(voice.f0 * (1 + 0.05 * np.sin(2 * np.pi * voice.vibrato_hz * t
                                                                + voice.vibrato_phase))) / voice.sr
    wave = sum(h ** -voice.tilt * np.sin(h * phase + c) for h, c in enumerate(voice.harmonic_phases, start=1))
    wave /= np.abs(wave).max() + 1e-9
    envelope = np.clip(np.sin(np.pi * voice.rate * t + voice.envelope_phase), 0, None) ** 0.7
    edge = np.minimum(1, np.minimum(t, t[-1] - t) / 0.05)
    expected = np.clip(voice.loud * wave * envelope * edge + voice.noise, -0.99, 0.99)
    assert len(voice.harmonic_phases) == 29 and voice.f0 * 29 <= 7000  # a low voice keeps every harmonic
    np.testing.assert_allclose(_render(voice), expected, rtol=0, atol=1e-6)
