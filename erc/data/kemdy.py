"""Readers for the two KEMDy annotation layouts (DESIGN §2).

Columns are located by header name (``Segment ID``; the three ``Total Evaluation`` columns follow
it; the 10 evaluators are the last 30 columns) and data rows are recognised by a well-formed
segment id, never by fixed row offsets: releases differ in their header rows.

Each reader yields one record per segment: either a usable utterance (a dict of the columns of
``Corpus.utterances``) or an exclusion ``(segment_id, reason)``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from erc.data.transcripts import TranscriptError, clean_transcript, read_transcript
from erc.labels import EMOTIONS, hard

N_EVALUATORS = 10
SPELLINGS = {"disqust": "disgust"}  # the raw files misspell disgust


@dataclass(frozen=True)
class Layout:
    name: str  # the `corpus` column value
    directory: str  # folder under the data root
    annotation_glob: str
    segment_re: re.Pattern[str]
    transcript_encoding: str

    def wav_path(self, root: Path, segment_id: str) -> Path:
        session = int(self.segment_re.match(segment_id).group("session"))  # type: ignore[union-attr]
        if self.name == "KEMDy19":  # wav/Session01/Sess01_script01/Sess01_script01_M001.wav
            dialogue = segment_id.rsplit("_", 1)[0]
            return root / self.directory / "wav" / f"Session{session:02d}" / dialogue / f"{segment_id}.wav"
        return root / self.directory / "wav" / f"Session{session:02d}" / f"{segment_id}.wav"


KEMDY19 = Layout(
    name="KEMDy19",
    directory="KEMDy19",
    annotation_glob="Session*_[FM]_res.csv",
    segment_re=re.compile(r"^Sess(?P<session>\d+)_[A-Za-z]+\d+_(?P<speaker>[FM])\d+$"),
    transcript_encoding="utf-8",
)
KEMDY20 = Layout(
    name="KEMDy20",
    directory="KEMDy20_v1_1",
    annotation_glob="Sess*_eval.csv",
    segment_re=re.compile(r"^Sess(?P<session>\d+)_[A-Za-z]+\d+_User\d+(?P<speaker>[FM])_\d+$"),
    transcript_encoding="cp949",
)
LAYOUTS = (KEMDY19, KEMDY20)


class RatingError(ValueError):
    """A rating that cannot be used; the message is the exclusion reason."""


def parse_emotion(word: str, where: str) -> int:
    key = word.strip().lower()
    key = SPELLINGS.get(key, key)
    if not key:
        raise RatingError(f"missing rating: {where} emotion")
    if key not in EMOTIONS:
        raise RatingError(f"unknown emotion: {word.strip()!r} ({where})")
    return EMOTIONS.index(key)


def parse_score(cell: str, where: str) -> float:
    text = cell.strip()
    if not text:
        raise RatingError(f"missing rating: {where}")
    try:
        value = float(text)
    except ValueError:
        raise RatingError(f"non-numeric rating: {text!r} ({where})") from None
    if not math.isfinite(value):
        raise RatingError(f"non-numeric rating: {text!r} ({where})")
    return value


def read_rows(path: Path) -> list[list[str]]:
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "cp949"):
        try:
            return list(csv.reader(io.StringIO(data.decode(encoding), newline="")))
        except UnicodeDecodeError:
            continue
    raise ValueError(f"{path}: annotation file is neither UTF-8 nor cp949")


def find_segment_column(rows: list[list[str]], path: Path) -> tuple[int, int]:
    """Index of the `Segment ID` column and the header's width, from the header rows."""
    for row in rows[:10]:
        cells = [c.strip() for c in row]
        if "Segment ID" in cells:
            return cells.index("Segment ID"), len(cells)
    raise ValueError(f"{path}: no 'Segment ID' column in the header rows")


def parse_ratings(cells: list[str], seg_col: int) -> dict:
    """Votes, consensus valence/arousal from one well-formed data row."""
    total_emotion = cells[seg_col + 1].strip()
    if not total_emotion:
        raise RatingError("missing rating: Total Evaluation emotion")
    for word in total_emotion.split(";"):
        parse_emotion(word, "Total Evaluation")
    valence = parse_score(cells[seg_col + 2], "Total Evaluation valence")
    arousal = parse_score(cells[seg_col + 3], "Total Evaluation arousal")
    votes = [0] * len(EMOTIONS)
    evaluators = cells[-3 * N_EVALUATORS :]
    for i in range(N_EVALUATORS):
        emotion, val, aro = evaluators[3 * i : 3 * i + 3]
        where = f"evaluator {i + 1}"
        votes[parse_emotion(emotion, where)] += 1
        parse_score(val, f"{where} valence")
        parse_score(aro, f"{where} arousal")
    return {
        "votes": votes,
        "valence": valence,
        "arousal": arousal,
        "majority": int(hard(np.array(votes))),
        "total_emotion": total_emotion,
    }


def read_layout(root: Path, layout: Layout) -> Iterator[dict | tuple[str, str]]:
    """Every segment of one corpus: utterance dicts, or (segment_id, reason) exclusions."""
    corpus_dir = root / layout.directory
    files = sorted((corpus_dir / "annotation").glob(layout.annotation_glob))
    if not files:
        raise FileNotFoundError(
            f"{corpus_dir}: no annotation files matching annotation/{layout.annotation_glob}"
        )
    for path in files:
        rows = read_rows(path)
        seg_col, width = find_segment_column(rows, path)
        speaker = path.stem.split("_")[1] if layout is KEMDY19 else None
        seen_data = False
        for line_no, row in enumerate(rows, start=1):
            cells = [c.strip() for c in row]
            ids = [c for c in cells if layout.segment_re.match(c)]
            if not ids:
                if seen_data and any(cells):
                    yield (f"{path.name}:{line_no}", f"unrecognised row: {path.name}:{line_no} has no segment id")
                continue
            seen_data = True
            segment_id = ids[0]
            match = layout.segment_re.match(segment_id)
            if speaker is not None and match.group("speaker") != speaker:  # type: ignore[union-attr]
                continue  # the other speaker's rows are rated in their own file
            if len(cells) != width or cells[seg_col] != segment_id:
                yield (segment_id, f"malformed row: {len(cells)} cells, expected {width} ({path.name}:{line_no})")
                continue
            try:
                record = parse_ratings(cells, seg_col)
            except RatingError as err:
                yield (segment_id, str(err))
                continue
            wav = layout.wav_path(root, segment_id)
            if not wav.is_file():
                yield (segment_id, f"missing wav: {wav}")
                continue
            try:
                info = sf.info(str(wav))
            except (sf.LibsndfileError, RuntimeError, ValueError) as err:  # a corrupt or non-audio file
                yield (segment_id, f"unreadable wav: {wav.name}: {err}")
                continue
            if info.frames == 0:
                yield (segment_id, f"empty wav: {wav.name}")
                continue
            try:
                text_raw = read_transcript(wav.with_suffix(".txt"), layout.transcript_encoding)
            except TranscriptError as err:
                yield (segment_id, str(err))
                continue
            text = clean_transcript(text_raw)
            if not text:
                yield (segment_id, f"empty transcript after cleaning: {wav.with_suffix('.txt').name}")
                continue
            yield {
                "corpus": layout.name,
                "session": int(match.group("session")),  # type: ignore[union-attr]
                "segment_id": segment_id,
                "wav_path": str(wav.resolve()),
                "text": text,
                "text_raw": text_raw,
                "duration": info.frames / info.samplerate,
                **record,
            }
