"""Renders examples/scale.flac: a C-major scale on a plucked string (Karplus-Strong), 44.1 kHz
mono, one note every 0.5 s, so `legato run examples/scale.flac` has something real to analyse.

Run it again to regenerate the file; the output is deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 44100
NOTES = [48, 50, 52, 53, 55, 57, 59, 60]  # C3 .. C4
STEP = 0.5


def pluck(midi: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A Karplus-Strong string: a noise burst circulating in a damped delay line."""
    period = RATE / (440.0 * 2 ** ((midi - 69) / 12))
    # Loop delay is (delay + 1 - frac) samples plus half a sample from the averaging filter.
    delay = int(np.ceil(period - 1.5))
    frac = delay + 1.5 - period
    line = rng.uniform(-1, 1, delay + 1)
    out = np.empty(int(seconds * RATE))
    previous = 0.0
    for i in range(out.size):
        j = i % (delay + 1)
        value = (1 - frac) * line[j] + frac * line[(j + 1) % (delay + 1)]
        averaged = 0.996 * 0.5 * (value + previous)
        previous = value
        line[j] = averaged
        out[i] = value
    return out


def main() -> None:
    rng = np.random.default_rng(7)
    total = np.zeros(int((len(NOTES) * STEP + 1.0) * RATE))
    for index, midi in enumerate(NOTES):
        start = int((0.25 + index * STEP) * RATE)
        note = pluck(midi, 1.0, rng)
        total[start : start + note.size] += note
    total *= 0.5 / np.max(np.abs(total))
    sf.write(Path(__file__).with_name("scale.flac"), total.astype(np.float32), RATE)


if __name__ == "__main__":
    main()
