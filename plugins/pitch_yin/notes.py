"""Equal-tempered note naming: f0 to the nearest MIDI note, its name and the cents off it."""

from __future__ import annotations

import math

NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
"""Pitch classes from C, with sharps."""


NAMED = range(-12, 140)
"""The notes whose names are made once (C-2 to G10, far beyond any pitch range): naming a
frame's note is then a lookup."""
_NAMES = tuple(f"{NAMES[midi % 12]}{midi // 12 - 1}" for midi in NAMED)


def note_name(midi: int) -> str:
    """Scientific pitch notation: MIDI 60 is C4, 61 is C#4."""
    k = midi - NAMED.start
    return _NAMES[k] if 0 <= k < len(_NAMES) else f"{NAMES[midi % 12]}{midi // 12 - 1}"


def semitones(f0: float, tuning: float) -> float:
    """f0 > 0 as a fractional MIDI note number, with A4 (MIDI 69) at ``tuning`` Hz."""
    return 69.0 + 12.0 * math.log2(f0 / tuning)


def note_at(position: float) -> tuple[int, str, float]:
    """(MIDI note, name such as "C#5", cents from it in [-50, +50)) nearest to a fractional
    MIDI note number (``semitones``)."""
    midi = math.floor(position + 0.5)
    return midi, note_name(midi), 100.0 * (position - midi)


def nearest_note(f0: float, tuning: float) -> tuple[int, str, float]:
    """``note_at`` of f0 > 0, with A4 (MIDI 69) at ``tuning`` Hz; MIDI 60 is C4 (scientific
    pitch notation)."""
    return note_at(semitones(f0, tuning))
