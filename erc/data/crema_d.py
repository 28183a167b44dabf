"""CREMA-D (``CREMA-D/``): reader and fixture writer from one layout (DESIGN §2).

* ``AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav`` (actors 1001–1091; 12 sentences, each read in
  every emotion, so the text carries no emotion: the text arm sees one of 12 fixed sentences).
* ``processedResults/tabulatedVotes.csv``: ``"",A,D,F,H,N,S,fileName,numResponses,agreement,emoVote,…``;
  the first column is 100000 × queryType + clip number, and queryType 1 is voice only: those rows are
  the audio votes (2 is face only, 3 audio-visual). ``emoVote`` joins tied emotions with ``:``.

Six classes (A, D, F, H, N, S), five folds by actor, no valence/arousal (NaN; no dimensions).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from erc.data.kemdy import Exclusion, RatingError, wav_duration
from erc.data.registry import CorpusRead, CorpusSpec, majority, no_vote_reason
from erc.data.synth import write_wav

RELEASE = "CREMA-D"
AUDIO_DIR = "AudioWAV"
VOTES = "processedResults/tabulatedVotes.csv"
CLIP_NAME = "{actor}_{sentence}_{emotion}_{level}"
CLIP_RE = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]+)$")
QUERY_SCALE = 100000  # the key column: QUERY_SCALE × queryType + clip number
VOICE, FACE, AUDIOVISUAL = 1, 2, 3  # queryType
CATEGORIES = ("A", "D", "F", "H", "N", "S")  # the vote columns, in the file's order
VOTE_COLUMNS = ["", *CATEGORIES, "fileName", "numResponses", "agreement", "emoVote", "meanEmoResp", "meanEmoRespNorm"]
TIE = ":"
SIX = {"A": "angry", "D": "disgust", "F": "fear", "H": "happy", "N": "neutral", "S": "sad"}
CLASS_SETS = {"six": SIX}
EMOTION_CODES = {"ANG": "A", "DIS": "D", "FEA": "F", "HAP": "H", "NEU": "N", "SAD": "S"}  # file name → vote column
LEVELS = ("LO", "MD", "HI", "XX")
SENTENCES = {
    "IEO": "It's eleven o'clock.", "TIE": "That is exactly what happened.", "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.", "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.", "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.", "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.", "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}


def audio_path(release: Path, clip: str) -> Path:
    return release / AUDIO_DIR / f"{clip}.wav"


# --------------------------------------------------------------------------- reader
def read_votes(release: Path) -> dict[str, dict[str, str]]:
    """The voice-only rows of tabulatedVotes.csv by clip name."""
    path = release / VOTES
    if not path.is_file():
        raise FileNotFoundError(f"{release}: no {VOTES}")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    voice = {}
    for row in rows:
        key = int(float(row[""]))
        if key // QUERY_SCALE == VOICE:
            voice[row["fileName"].strip()] = row
    return voice


def read(release: Path, classes: str) -> CorpusRead:
    class_set = SPEC.class_set(classes)
    names = SPEC.classes(classes)
    voice = read_votes(release)
    clips = sorted(set(voice) | {p.stem for p in (release / AUDIO_DIR).glob("*.wav")})
    actors = sorted({int(m["actor"]) for c in clips if (m := CLIP_RE.match(c))})
    out = CorpusRead(classes=names, dimensions=(), groups=actors)
    for clip in clips:
        m = CLIP_RE.match(clip)
        if m is None:
            out.records.append(Exclusion(clip, -1, f"unrecognised clip name: {clip!r}"))
            continue
        actor = int(m["actor"])
        try:
            out.records.append(_record(release, clip, m, voice.get(clip), class_set, classes, names))
        except RatingError as err:
            out.records.append(Exclusion(clip, actor, str(err)))
    return out


def _record(release: Path, clip: str, m: re.Match[str], row: dict[str, str] | None, class_set: dict[str, str],
            set_name: str, names: tuple[str, ...]) -> dict:
    if row is None:
        raise RatingError(f"no voice-only votes: {clip} has no queryType {VOICE} row in {VOTES}")
    votes = [0.0] * len(names)
    for category in CATEGORIES:
        cell = row[category].strip()
        try:
            count = float(cell) if cell else 0.0
        except ValueError:
            raise RatingError(f"non-numeric vote count: {cell!r} ({category})") from None
        if category in class_set:
            votes[names.index(class_set[category])] += count
    if sum(votes) == 0:
        raise RatingError(no_vote_reason(set_name, names))
    if m["sentence"] not in SENTENCES:
        raise RatingError(f"unknown sentence: {m['sentence']!r}")
    wav = audio_path(release, clip)
    duration = wav_duration(wav)
    text = SENTENCES[m["sentence"]]
    return {
        "session": int(m["actor"]), "segment_id": clip, "wav_path": str(wav.resolve()), "text": text,
        "text_raw": text, "votes": votes, "majority": majority(votes), "total_emotion": row["emoVote"].strip(),
        "duration": duration, "valence": float("nan"), "arousal": float("nan"),
    }


# --------------------------------------------------------------------------- fixture writer
@dataclass
class Clip:
    """One clip as the files hold it: its votes per queryType (CATEGORIES order), and whether its WAV exists."""

    name: str
    votes: dict[int, list[int]] = field(default_factory=dict)
    wav: bool = True
    arousal: float = 3.0


def emo_vote(votes: list[int]) -> str:
    top = max(votes)
    return TIE.join(c for c, v in zip(CATEGORIES, votes) if v == top)


def write_release(release: Path, clips: list[Clip], rng: np.random.Generator) -> None:
    rows = []
    for number, clip in enumerate(clips, start=1):
        for query, votes in sorted(clip.votes.items()):
            n = sum(votes)
            rows.append([QUERY_SCALE * query + number, *votes, clip.name, n, round(max(votes) / n, 4) if n else 0,
                         emo_vote(votes), round(float(rng.uniform(40, 80)), 2), round(float(rng.normal()), 3)])
        if clip.wav:
            write_wav(audio_path(release, clip.name), rng, clip.arousal, female=int(clip.name[:4]) % 2 == 0)
    rows.sort(key=lambda r: r[0])
    path = release / VOTES
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([VOTE_COLUMNS, *rows])


AROUSAL = {"A": 4.1, "D": 3.0, "F": 4.0, "H": 3.7, "N": 2.4, "S": 1.8}


def random_clip(rng: np.random.Generator, actor: int, sentence: str, emotion: str) -> Clip:
    true = CATEGORIES.index(EMOTION_CODES[emotion])
    votes = {}
    for query in (VOICE, FACE, AUDIOVISUAL):
        p = np.full(len(CATEGORIES), 0.3 / (len(CATEGORIES) - 1))
        p[true] = 0.7 if query == VOICE else 0.85
        p /= p.sum()
        votes[query] = np.bincount(rng.choice(len(CATEGORIES), size=int(rng.integers(6, 11)), p=p),
                                   minlength=len(CATEGORIES)).tolist()
    level = "XX" if emotion == "NEU" else str(rng.choice(LEVELS[:3]))
    return Clip(name=CLIP_NAME.format(actor=actor, sentence=sentence, emotion=emotion, level=level), votes=votes,
                arousal=float(np.clip(AROUSAL[CATEGORIES[true]] + rng.normal(0, 0.3), 1, 5)))


def write_fixture(root: Path, *, seed: int = 0, actors: int = 10, sentences: int = 2) -> Path:
    """A generated CREMA-D in its release layout under ``root`` (actors 1001…); returns the release folder."""
    rng = np.random.default_rng(seed)
    release = Path(root) / RELEASE
    clips = [random_clip(rng, 1001 + a, sentence, emotion) for a in range(actors)
             for sentence in list(SENTENCES)[:sentences] for emotion in EMOTION_CODES]
    write_release(release, clips, rng)
    return release


SPEC = CorpusSpec(
    name="CREMA-D",
    release=RELEASE,
    categories=CATEGORIES,
    class_sets=CLASS_SETS,
    scale=None,
    split="actor",
    read=read,
)
