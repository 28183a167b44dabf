"""The reader of the KEMDy annotation layouts (:mod:`erc.data.layout`; DESIGN §2).

Columns are located by header name (``Segment ID``; the three ``Total Evaluation`` columns follow
it; the 10 evaluators are the last 30 columns) and data rows are recognised by a well-formed
segment id, never by fixed row offsets: releases differ in their header rows.

A reader returns every session its annotation files name (in their file names and in their
segment ids) and one record per segment: either a usable utterance (a dict of the columns of
``Corpus.utterances``) or an :class:`Exclusion`. Folds are cut from those sessions, so a session
whose every utterance is excluded keeps its place (DESIGN §2).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

from erc.data.layout import ANNOTATION_DIR, N_EVALUATORS, SEGMENT_ID, TOTAL, Layout
from erc.data.transcripts import TranscriptError, clean_transcript, read_transcript
from erc.labels import hard
from erc.vocab import EMOTIONS

SPELLINGS = {"disqust": "disgust"}  # the raw files misspell disgust


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
    """Index of the segment-id column and the header's width, from the header rows."""
    for row in rows[:10]:
        cells = [c.strip() for c in row]
        if SEGMENT_ID in cells:
            return cells.index(SEGMENT_ID), len(cells)
    raise ValueError(f"{path}: no {SEGMENT_ID!r} column in the header rows")


def parse_ratings(cells: list[str], seg_col: int) -> dict:
    """Votes, consensus valence/arousal from one well-formed data row."""
    total_emotion = cells[seg_col + 1].strip()
    if not total_emotion:
        raise RatingError(f"missing rating: {TOTAL} emotion")
    for word in total_emotion.split(";"):
        parse_emotion(word, TOTAL)
    valence = parse_score(cells[seg_col + 2], f"{TOTAL} valence")
    arousal = parse_score(cells[seg_col + 3], f"{TOTAL} arousal")
    votes = [0] * len(EMOTIONS)
    ratings: dict[str, list[float]] = {"valence": [], "arousal": []}
    evaluators = cells[-3 * N_EVALUATORS :]
    for i in range(N_EVALUATORS):
        emotion, val, aro = evaluators[3 * i : 3 * i + 3]
        where = f"evaluator {i + 1}"
        votes[parse_emotion(emotion, where)] += 1
        ratings["valence"].append(parse_score(val, f"{where} valence"))
        ratings["arousal"].append(parse_score(aro, f"{where} arousal"))
    return {
        "votes": votes,
        "valence": valence,
        "arousal": arousal,
        "valence_ratings": ratings["valence"],  # each evaluator's, for rater agreement
        "arousal_ratings": ratings["arousal"],
        "majority": int(hard(np.array(votes))),
        "total_emotion": total_emotion,
    }


def wav_duration(wav: Path) -> float:
    """A usable WAV's length in seconds; a RatingError naming why it is unusable otherwise."""
    if not wav.is_file():
        raise RatingError(f"missing wav: {wav}")
    try:
        info = sf.info(str(wav))
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:  # a corrupt or non-audio file
        raise RatingError(f"unreadable wav: {wav.name}: {err}") from None
    if info.frames == 0:
        raise RatingError(f"empty wav: {wav.name}")
    return info.frames / info.samplerate


class Exclusion(NamedTuple):
    """A segment (or an unrecognised row, named ``file:line``) left out, and why."""

    segment_id: str
    session: int
    reason: str


@dataclass
class LayoutRead:
    """One corpus as its annotation files describe it."""

    sessions: list[int]  # every session the annotation files name, whatever survives exclusion
    records: list[dict | Exclusion] = field(default_factory=list)


def annotation_files(root: Path, layout: Layout) -> list[tuple[Path, re.Match[str]]]:
    """The corpus's annotation files with their parsed names, in order; an error names what was expected."""
    corpus_dir = root / layout.directory
    files = sorted((corpus_dir / ANNOTATION_DIR).glob(layout.annotation_glob))
    if not files:
        raise FileNotFoundError(
            f"{corpus_dir}: no annotation files matching {ANNOTATION_DIR}/{layout.annotation_glob}"
        )
    named = [(path, layout.annotation_re.match(path.name)) for path in files]
    odd = [path.name for path, match in named if match is None]
    if odd:
        # A stray file would otherwise be read as (or instead of) a session and shift the folds.
        raise ValueError(f"{corpus_dir / ANNOTATION_DIR}: file names that name no session "
                         f"(expected {layout.annotation_re.pattern}): {odd}")
    return named  # type: ignore[return-value]


def read_layout(root: Path, layout: Layout) -> LayoutRead:
    """Every segment of one corpus (utterance dicts or exclusions) and every session it names."""
    read = LayoutRead(sessions=[])
    sessions: set[int] = set()
    for path, name in annotation_files(root, layout):
        file_session = int(name.group("session"))
        sessions.add(file_session)
        read.records.extend(_read_file(root, layout, path, file_session,
                                       name.groupdict().get("speaker"), sessions))
    read.sessions = sorted(sessions)
    return read


def _read_file(root: Path, layout: Layout, path: Path, file_session: int, speaker: str | None,
               sessions: set[int]) -> Iterator[dict | Exclusion]:
    """One annotation file's records; adds every session its segment ids name to ``sessions``."""
    rows = read_rows(path)
    seg_col, width = find_segment_column(rows, path)
    seen_data = False
    for line_no, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        ids = [c for c in cells if layout.segment_re.match(c)]
        if not ids:
            if seen_data and any(cells):
                where = f"{path.name}:{line_no}"
                yield Exclusion(where, file_session, f"unrecognised row: {where} has no segment id")
            continue
        seen_data = True
        segment_id = ids[0]
        match = layout.segment_re.match(segment_id)
        session = int(match.group("session"))  # type: ignore[union-attr]
        sessions.add(session)
        if speaker is not None and match.group("speaker") != speaker:  # type: ignore[union-attr]
            continue  # the other speaker's rows are rated in their own file
        if len(cells) != width or cells[seg_col] != segment_id:
            yield Exclusion(segment_id, session,
                            f"malformed row: {len(cells)} cells, expected {width} ({path.name}:{line_no})")
            continue
        try:
            record = parse_ratings(cells, seg_col)
        except RatingError as err:
            yield Exclusion(segment_id, session, str(err))
            continue
        wav = layout.wav_path(root, segment_id)
        try:
            duration = wav_duration(wav)
        except RatingError as err:
            yield Exclusion(segment_id, session, str(err))
            continue
        try:
            text_raw = read_transcript(wav.with_suffix(".txt"), layout.transcript_encoding)
        except TranscriptError as err:
            yield Exclusion(segment_id, session, str(err))
            continue
        text = clean_transcript(text_raw)
        if not text:
            yield Exclusion(segment_id, session, f"empty transcript after cleaning: {wav.with_suffix('.txt').name}")
            continue
        yield {
            "corpus": layout.name,
            "session": session,
            "segment_id": segment_id,
            "wav_path": str(wav.resolve()),
            "text": text,
            "text_raw": text_raw,
            "duration": duration,
            **record,
        }
