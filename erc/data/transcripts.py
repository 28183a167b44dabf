"""Transcript decoding and the one cleaning rule (DESIGN §2).

KEMDy transcribers mark non-speech events and dual spellings inline. The cleaning rule, applied
in this order:

1. ``(A)/(B)`` — a dual transcription (spelling A, pronunciation B): keep ``A``.
2. Event codes — a single ASCII letter followed by ``/`` (``b/`` breath, ``l/`` laughter,
   ``n/`` / ``N/`` noise, ``c/`` cough, ``u/`` unintelligible, ``o/`` …): removed.
3. Remaining markers ``*`` (unclear word), ``+`` (repetition), ``/`` and stray parentheses: removed.
4. Whitespace is collapsed and the ends stripped.

The raw text is kept next to the cleaned one, so a different rule can be applied later.
"""

from __future__ import annotations

import re
from pathlib import Path

_DUAL = re.compile(r"\(([^()]*)\)\s*/\s*\(([^()]*)\)")
_EVENT = re.compile(r"(?<![A-Za-z])[A-Za-z]/")
_MARKS = re.compile(r"[*+/()]")
_SPACE = re.compile(r"\s+")


def clean_transcript(raw: str) -> str:
    """Apply the module's cleaning rule to one transcript."""
    text = _DUAL.sub(r"\1", raw)
    text = _EVENT.sub(" ", text)
    text = _MARKS.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


class TranscriptError(ValueError):
    """A transcript that cannot be used; the message is the exclusion reason."""


def read_transcript(path: Path, encoding: str) -> str:
    """Read a transcript in its corpus's encoding; raise TranscriptError with a reason otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TranscriptError(f"missing transcript: {path}") from None
    except OSError as err:
        raise TranscriptError(f"unreadable transcript: {path}: {err}") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise TranscriptError(f"transcript not valid {encoding}: {path.name} ({err.reason} at byte {err.start})") from None
    text = text.lstrip("\ufeff").strip()
    if not text:
        raise TranscriptError(f"empty transcript: {path.name}")
    return text
