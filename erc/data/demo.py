"""A small synthetic corpus in the exact KEMDy19 and KEMDy20_v1_1 layouts (DESIGN §10).

The demo lets ``python sweeps/ablation.py`` run end to end on a machine with no data and no hub.
Its numbers should mean something, so the corpus carries learnable signal in both modalities.

How the signal is built
-----------------------
Each utterance draws a true emotion ``e`` (neutral most frequent, like the real corpora) and a
true valence/arousal point around the class prototype ``PROTOTYPES[e]`` (sd 0.35).

* **Audio carries arousal.** A harmonic "voice" whose loudness grows ×1.35 and whose pitch grows
  12 % per arousal point above 3, with a syllable-rate envelope that speeds up with arousal
  (speaker pitch: F ≈ 200 Hz, M ≈ 115 Hz, jittered per utterance).
* **Text carries valence.** Each transcript mixes 2–4 filler words with 2–4 sentiment words, each
  positive with probability ``sigmoid(2.5 · (valence − 3))``, plus class cue words for surprise
  and disgust (present in 85 % of those utterances).
* **Fear vs angry is separable only by combining modalities.** Both are aroused and negative.
  Audio adds a voice-quality bit (bright: flat spectral tilt; dark: steep tilt) and the text a
  word-set bit (set A or set B), both random per utterance; fear has (bright, A) or (dark, B),
  angry has (bright, B) or (dark, A). Each bit alone says nothing about fear vs angry (an XOR);
  only the pair does — the interaction a tensor (outer-product) fusion is meant to capture.

Ratings: 10 raters each vote the true class with probability 0.65 (0.4 for the 20 % of
"ambiguous" utterances, whose runner-up class gets 0.4), else a class near it in valence–arousal
space, so ties ("deuces") occur; each rates valence and arousal as the true value + N(0, 0.6),
rounded to 1–5. The Total Evaluation columns hold the tied-top emotions joined by ``;`` and the
raters' mean valence and arousal. Some votes are spelled ``disqust`` as in the real files.

Realism of the files: WAV lengths are log-normal (median 3 s, a few over 7 s), about 10 % are
44.1 kHz stereo (the rest 16 kHz mono), transcripts carry transcriber marks (``b/``, ``l/``,
``(A)/(B)``), KEMDy20 transcripts are cp949, KEMDy19 annotation files list both speakers' rows
of a session, and both annotation layouts have the two header rows of the real releases.

Default size: KEMDy19 10 sessions × 2 speakers × 25 = 500 utterances, KEMDy20 12 sessions × 2
speakers × 25 = 600 (12 sessions do not divide by 5: folds of 3, 3, 2, 2, 2 sessions).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from erc.atomic import Need
from erc.cache import build_once
from erc.data.layout import KEMDY19, KEMDY20, N_EVALUATORS, NUMBER, SEGMENT_ID, TIMES, TOTAL, Layout
from erc.vocab import EMOTIONS

VERSION = 2  # bump when the generator changes, so cached demo corpora are rebuilt
MARKER = "DEMO_CORPUS.json"
# the default size (see the module doc)
KEMDY19_SESSIONS, KEMDY20_SESSIONS, UTTERANCES_PER_SPEAKER = 10, 12, 25

# (valence, arousal) prototypes on the 1–5 scale, in EMOTIONS order.
PROTOTYPES = np.array([
    [3.3, 4.3],  # surprise
    [1.9, 4.0],  # fear
    [1.7, 4.1],  # angry
    [3.0, 2.4],  # neutral
    [4.3, 3.7],  # happy
    [1.8, 1.8],  # sad
    [2.0, 3.0],  # disgust
])
CLASS_PRIOR = np.array([0.10, 0.11, 0.11, 0.32, 0.15, 0.11, 0.10])

FILLER = ["오늘", "그냥", "우리", "회의", "학교", "어제", "밥", "집에", "친구", "시간", "그래서", "지금", "내일",
          "같이", "얘기", "일이", "거기", "했어", "있어", "봤어"]
POSITIVE = ["좋아", "행복해", "고마워", "재밌어", "최고야", "신나", "사랑해", "기뻐"]
NEGATIVE = ["싫어", "슬퍼", "짜증나", "힘들어", "화나", "무서워", "답답해", "속상해"]
CUES = {0: ["깜짝", "세상에", "어머"], 6: ["역겨워", "더러워", "징그러워"]}
XOR_WORDS = (["아마", "그런데", "혹시"], ["정말로", "그러니까", "사실은"])
MARKS = ["b/", "l/", "n/", "c/"]
DUALS = ["(그러니까)/(그니까)", "(그런데)/(근데)", "(그래서)/(그래가지고)"]


def _vote(rng: np.random.Generator, true: int, ambiguous: bool) -> tuple[np.ndarray, int]:
    """The raters' emotion indices for one utterance; also returns the runner-up class."""
    dist = np.linalg.norm(PROTOTYPES - PROTOTYPES[true], axis=1)
    near = np.exp(-dist / 0.8)
    near[true] = 0
    near /= near.sum()
    runner = int(rng.choice(len(EMOTIONS), p=near))
    p = near * 0.35
    p[true] = 0.65
    if ambiguous:
        p = near * 0.2
        p[true] += 0.4
        p[runner] += 0.4
    p /= p.sum()
    return rng.choice(len(EMOTIONS), size=N_EVALUATORS, p=p), runner


@dataclass(frozen=True)
class Voice:
    """Everything random about one utterance's audio, drawn up front: rendering it is then pure
    arithmetic, so it can run on any thread without touching the generator's order."""

    n: int
    sr: int
    f0: float
    vibrato_hz: float
    vibrato_phase: float
    tilt: float
    harmonic_phases: np.ndarray  # (H,) one per harmonic below the band limit
    rate: float
    envelope_phase: float
    loud: float
    noise: np.ndarray  # (n,)
    stereo_noise: np.ndarray | None  # (n,) the second channel's own noise, for a 44.1 kHz stereo file


def _voice(rng: np.random.Generator, seconds: float, sr: int, arousal: float, female: bool,
           bright: bool) -> Voice:
    """A harmonic voice: arousal raises loudness, pitch and syllable rate; `bright` flattens the tilt."""
    n = int(seconds * sr)
    f0 = (200.0 if female else 115.0) * rng.uniform(0.92, 1.08) * (1 + 0.12 * (arousal - 3))
    vibrato_hz, vibrato_phase = rng.uniform(0.3, 0.8), rng.uniform(0, 6.3)
    limit = min(7000.0, sr / 2 - 200)
    phases = np.array([rng.uniform(0, 6.3) for h in range(1, 30) if h * f0 <= limit])  # below the band limit
    rate = 2.5 + 0.8 * arousal  # syllables per second
    envelope_phase = rng.uniform(0, 3)
    return Voice(n=n, sr=sr, f0=f0, vibrato_hz=vibrato_hz, vibrato_phase=vibrato_phase, tilt=0.7 if bright else 2.2,
                 harmonic_phases=phases, rate=rate, envelope_phase=envelope_phase, loud=0.08 * 1.35 ** (arousal - 3),
                 noise=rng.normal(0, 0.004, n), stereo_noise=None)


def _render(voice: Voice) -> np.ndarray:
    """The voice's samples (float32; (n, 2) for a stereo file).

    Σ_h h^-tilt sin(hφ + c_h) = Im Σ_h b_h z^h with z = e^{iφ}, b_h = h^-tilt e^{ic_h}: one polynomial in z,
    evaluated by Horner's rule (two array passes per harmonic) instead of 29 sines of the whole
    signal, the demo's largest cost (its WAV files are byte-identical to the sines').
    """
    t = np.arange(voice.n) / voice.sr
    f0_t = voice.f0 * (1 + 0.05 * np.sin(2 * np.pi * voice.vibrato_hz * t + voice.vibrato_phase))
    z = np.exp(1j * (2 * np.pi * np.cumsum(f0_t) / voice.sr))  # e^{iφ}
    b = [h ** -voice.tilt * np.exp(1j * c) for h, c in enumerate(voice.harmonic_phases, start=1)]
    poly = np.full(voice.n, b[-1])
    for coefficient in reversed(b[:-1]):
        poly *= z
        poly += coefficient
    poly *= z
    wave = poly.imag.copy()
    wave /= np.abs(wave).max() + 1e-9
    envelope = np.clip(np.sin(np.pi * voice.rate * t + voice.envelope_phase), 0, None) ** 0.7
    edge = np.minimum(1, np.minimum(t, t[-1] - t) / 0.05)  # no clicks at the ends
    audio = np.clip(voice.loud * wave * envelope * edge + voice.noise, -0.99, 0.99).astype(np.float32)
    if voice.stereo_noise is not None:
        audio = np.stack([audio, audio * 0.9 + voice.stereo_noise.astype(np.float32)], axis=1)
    return audio


def _transcript(rng: np.random.Generator, true: int, valence: float, xor_bit: int) -> str:
    words = list(rng.choice(FILLER, size=rng.integers(2, 5)))
    n_sentiment = int(rng.integers(2, 5))
    share_pos = 1 / (1 + np.exp(-2.5 * (valence - 3)))  # valence 2 → 8 % positive words, 4 → 92 %
    for _ in range(n_sentiment):
        words.append(rng.choice(POSITIVE if rng.random() < share_pos else NEGATIVE))
    if true in CUES and rng.random() < 0.85:
        words.append(rng.choice(CUES[true]))
    words.append(rng.choice(XOR_WORDS[xor_bit]))
    rng.shuffle(words)
    if rng.random() < 0.15:
        words.insert(int(rng.integers(0, len(words) + 1)), rng.choice(DUALS))
    if rng.random() < 0.25:
        words.insert(int(rng.integers(0, len(words) + 1)), rng.choice(MARKS))
    return " ".join(words) + rng.choice([".", "?", "!", ""])


def _utterance(rng: np.random.Generator, female: bool) -> dict:
    true = int(rng.choice(len(EMOTIONS), p=CLASS_PRIOR))
    valence, arousal = np.clip(PROTOTYPES[true] + rng.normal(0, 0.35, 2), 1, 5)
    bright, xor_bit = int(rng.integers(0, 2)), int(rng.integers(0, 2))
    if true in (1, 2):  # fear: (bright, A) or (dark, B); angry: the other two combinations
        xor_bit = (1 - bright) if true == 1 else bright
    ambiguous = rng.random() < 0.2
    votes, _ = _vote(rng, true, ambiguous)
    seconds = float(np.clip(rng.lognormal(np.log(3.0), 0.45), 0.8, 12.0))
    hi_fi = rng.random() < 0.1  # 44.1 kHz stereo, as some real recordings are
    sr = 44100 if hi_fi else 16000
    voice = _voice(rng, seconds, sr, arousal, female, bool(bright))
    if hi_fi:
        voice = replace(voice, stereo_noise=rng.normal(0, 0.002, voice.n))
    words = []
    for v in votes:
        word = EMOTIONS[v]
        words.append("disqust" if word == "disgust" and rng.random() < 0.5 else word)
    val_r = np.clip(np.rint(valence + rng.normal(0, 0.6, N_EVALUATORS)), 1, 5).astype(int)
    aro_r = np.clip(np.rint(arousal + rng.normal(0, 0.6, N_EVALUATORS)), 1, 5).astype(int)
    counts = np.bincount(votes, minlength=len(EMOTIONS))
    top = [EMOTIONS[i] for i in np.flatnonzero(counts == counts.max())]
    return {
        "voice": voice, "sr": sr, "seconds": seconds,
        "text": _transcript(rng, true, valence, xor_bit),
        "total": (";".join(top), round(float(val_r.mean()), 1), round(float(aro_r.mean()), 1)),
        "raters": [(w, int(v), int(a)) for w, v, a in zip(words, val_r, aro_r)],
    }


def _write_wav(path: Path, audio: np.ndarray, sr: int) -> None:
    # Encoded in memory, written by Python: a full disk then raises OSError(ENOSPC) (libsndfile
    # writing the file itself reports only "System error."). The bytes are the same.
    buffer = io.BytesIO()
    sf.write(buffer, audio, sr, subtype="PCM_16", format="WAV")
    path.write_bytes(buffer.getvalue())


def estimated_bytes(kemdy19_sessions: int = KEMDY19_SESSIONS, kemdy20_sessions: int = KEMDY20_SESSIONS,
                    utterances_per_speaker: int = UTTERANCES_PER_SPEAKER) -> int:
    """About how much disk a demo corpus takes (mean WAV length × the sample-rate mix, plus the
    transcript and filesystem blocks): ~150 KB per utterance, ~170 MB for the default size."""
    n = (kemdy19_sessions + kemdy20_sessions) * 2 * utterances_per_speaker
    mean_seconds = 3.0 * np.exp(0.45**2 / 2)  # the log-normal length of _utterance
    bytes_per_second = 0.9 * 16000 * 2 + 0.1 * 44100 * 2 * 2  # 16 kHz mono, 10 % 44.1 kHz stereo
    return int(n * (mean_seconds * bytes_per_second + 8192))


def _dialogue_names(n: int) -> list[str]:
    return [f"script{i + 1:02d}" if i % 3 != 2 else f"impro{i // 3 + 1:02d}" for i in range(n)]


def _write_corpus(root: Path, layout: Layout, rng: np.random.Generator, sessions: int, per_speaker: int,
                  pool: ThreadPoolExecutor) -> int:
    """One corpus in ``layout``: per session three dialogues, the two speakers taking turns.

    The generator is drawn from in one fixed order on this thread; the waves of a session are
    rendered on ``pool`` (NumPy releases the GIL), then written in order."""
    header = layout.header_rows()
    count = 0
    for s in range(1, sessions + 1):
        rows, clock, waves = [], 0.0, []
        dialogues = _dialogue_names(3)
        numbers = {(d, sp): 0 for d in dialogues for sp in "FM"}
        for k in range(2 * per_speaker):
            dialogue = dialogues[min(k * 3 // (2 * per_speaker), 2)]
            speaker = "FM"[k % 2]
            numbers[(dialogue, speaker)] += 1
            user = 2 * s - (speaker == "F")  # KEMDy20 numbers its speakers: User001F, User002M, …
            seg = layout.segment_name.format(session=s, dialogue=dialogue, speaker=speaker,
                                             number=numbers[(dialogue, speaker)], user=user)
            utt = _utterance(rng, female=speaker == "F")
            wav = layout.wav_path(root, seg)
            wav.parent.mkdir(parents=True, exist_ok=True)
            waves.append((wav, pool.submit(_render, utt["voice"]), utt["sr"]))
            wav.with_suffix(".txt").write_bytes(utt["text"].encode(layout.transcript_encoding))
            start, end = clock, clock + utt["seconds"]
            clock = end + float(rng.uniform(0.2, 1.5))
            cells = {NUMBER: [str(len(rows) + 1)], SEGMENT_ID: [seg], TOTAL: [str(v) for v in utt["total"]]}
            row = [cell for group in layout.columns
                   for cell in (cells[group.name] if group.cells != TIMES else [f"{start:.3f}", f"{end:.3f}"])]
            for r in utt["raters"]:
                row += list(map(str, r))
            rows.append(row)
            count += 1
        for wav, audio, sr in waves:
            _write_wav(wav, audio.result(), sr)
        # a per-speaker file lists the whole session too; the reader keeps its speaker's rows
        for speaker in ("F", "M") if layout.per_speaker else (None,):
            path = layout.annotation_path(root, s, speaker)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows(header + rows)
    return count


def write_demo_corpus(out_dir: str | Path, seed: int = 0, kemdy19_sessions: int = KEMDY19_SESSIONS,
                      kemdy20_sessions: int = KEMDY20_SESSIONS, utterances_per_speaker: int = UTTERANCES_PER_SPEAKER) -> Path:
    """Write the demo corpus to ``out_dir`` (both layouts) and return ``out_dir``.

    Deterministic for a seed. If ``out_dir`` already holds a complete demo corpus with the same
    settings it is reused; otherwise it is built once (:func:`erc.cache.build_once`: in a temporary
    sibling renamed into place, one builder at a time, the others wait and reuse), so an interrupted
    build never leaves a half-written corpus behind. ``out_dir`` must be empty, missing or a demo
    corpus. A full disk is a :class:`erc.atomic.DiskFullError` naming the directory and the space needed.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    settings = {"version": VERSION, "seed": seed, "kemdy19_sessions": kemdy19_sessions,
                "kemdy20_sessions": kemdy20_sessions, "utterances_per_speaker": utterances_per_speaker}
    sessions = {KEMDY19: kemdy19_sessions, KEMDY20: kemdy20_sessions}

    def load(path: Path) -> Path | None:
        try:
            return path if json.loads((path / MARKER).read_text())["settings"] == settings else None
        except (OSError, ValueError, KeyError):
            return None

    def build(tmp: Path, need: Need) -> None:
        need.require(estimated_bytes(kemdy19_sessions, kemdy20_sessions, utterances_per_speaker))
        rng = np.random.default_rng(seed)
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            counts = {layout.name: _write_corpus(tmp, layout, rng, n, utterances_per_speaker, pool)
                      for layout, n in sessions.items()}
        (tmp / MARKER).write_text(json.dumps({"settings": settings, "utterances": counts}, indent=1))

    return build_once(out_dir, build, load=load, what="the demo corpus",
                      replaceable=lambda path: (path / MARKER).is_file() or not any(path.iterdir()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m erc.data.demo",
        description="Write the synthetic demo corpus in the KEMDy19 + KEMDy20_v1_1 layouts.")
    parser.add_argument("out_dir", help="directory to create (holds KEMDy19/ and KEMDy20_v1_1/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kemdy19-sessions", type=int, default=KEMDY19_SESSIONS)
    parser.add_argument("--kemdy20-sessions", type=int, default=KEMDY20_SESSIONS)
    parser.add_argument("--utterances-per-speaker", type=int, default=UTTERANCES_PER_SPEAKER)
    args = parser.parse_args(argv)
    out = write_demo_corpus(args.out_dir, args.seed, args.kemdy19_sessions, args.kemdy20_sessions,
                            args.utterances_per_speaker)
    print(json.loads((out / MARKER).read_text()))
    print(f"demo corpus written to {out}")


if __name__ == "__main__":
    main()
