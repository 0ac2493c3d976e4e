"""Equal-tempered note naming: f0 to the nearest MIDI note, its name and the cents off it."""

from __future__ import annotations

import math

NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
"""Pitch classes from C, with sharps."""


def nearest_note(f0: float, tuning: float) -> tuple[int, str, float]:
    """(MIDI note, name such as "C#5", cents from it in [-50, +50)) for f0 > 0, with A4 (MIDI 69)
    at ``tuning`` Hz; MIDI 60 is C4 (scientific pitch notation)."""
    semitones = 69.0 + 12.0 * math.log2(f0 / tuning)
    midi = math.floor(semitones + 0.5)
    return midi, f"{NAMES[midi % 12]}{midi // 12 - 1}", 100.0 * (semitones - midi)
