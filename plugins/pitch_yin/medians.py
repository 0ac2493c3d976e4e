"""Medians of a whole stream's voiced frames in fixed memory: histograms fine enough that the
median is within half a cent (f0) and 5e-4 (confidence) of the exact one, however long the
stream, sized to the stage's pitch range (a few tens of KB). Kept values would grow by 16 bytes
per voiced frame, about 5 MB an hour of playing."""

from __future__ import annotations

import math

import numpy as np

CENTS_MARGIN = 100.0
"""Room beyond the stage's fmin and fmax (parabolic interpolation can step slightly out);
frequencies further out fall in the end bins."""
CONFIDENCE_BINS = 1000


class Median:
    """Counts of values in ``bins`` equal bins of [``low``, ``high``); the median is read at bin
    centres (the mean of the two middle ones for an even count, as ``statistics.median``)."""

    def __init__(self, low: float, high: float, bins: int) -> None:
        self._low = low
        self._step = (high - low) / bins
        self._counts = np.zeros(bins, dtype=np.int32)
        self.count = 0

    def add(self, value: float) -> None:
        k = int((value - self._low) / self._step)
        self._counts[min(max(k, 0), len(self._counts) - 1)] += 1
        self.count += 1

    def median(self) -> float | None:
        if not self.count:
            return None
        cumulative = np.cumsum(self._counts)
        lower = int(np.searchsorted(cumulative, (self.count - 1) // 2 + 1))
        upper = int(np.searchsorted(cumulative, self.count // 2 + 1))
        return self._low + self._step * ((lower + upper) / 2 + 0.5)


def cents(f0: float) -> float:
    """f0 as cents above MIDI note 0 (A4 = 440 Hz is 6900)."""
    return 100.0 * (69.0 + 12.0 * math.log2(f0 / 440.0))


class VoicedMedians:
    """The medians of the voiced frames' f0 (on a one-cent grid between ``fmin`` and ``fmax``)
    and confidence."""

    def __init__(self, fmin: float = 20.0, fmax: float = 8000.0) -> None:
        low, high = cents(fmin) - CENTS_MARGIN, cents(fmax) + CENTS_MARGIN
        self._cents = Median(low, high, math.ceil(high - low))
        self._confidence = Median(0.0, 1.0, CONFIDENCE_BINS)

    @property
    def count(self) -> int:
        return self._cents.count

    def add(self, f0: float, confidence: float) -> None:
        self._cents.add(cents(f0))
        self._confidence.add(confidence)

    def f0(self) -> float | None:
        cents = self._cents.median()
        return None if cents is None else 440.0 * 2.0 ** ((cents / 100.0 - 69.0) / 12.0)

    def confidence(self) -> float | None:
        return self._confidence.median()
