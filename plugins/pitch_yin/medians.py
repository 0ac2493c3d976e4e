"""Medians of a whole stream's voiced frames in fixed memory: histograms fine enough that the
median is within half a cent (f0) and 5e-5 (confidence) of the exact one, however long the
stream. Kept values would grow by 16 bytes per voiced frame, about 5 MB an hour of playing."""

from __future__ import annotations

import math

import numpy as np

CENT_BINS = 128 * 100
"""One bin per cent over MIDI 0-128 (8.2 Hz to 13.3 kHz); frequencies outside fall in the end
bins."""
CONFIDENCE_BINS = 10_000


class Median:
    """Counts of values in ``bins`` equal bins of [``low``, ``high``); the median is read at bin
    centres (the mean of the two middle ones for an even count, as ``statistics.median``)."""

    def __init__(self, low: float, high: float, bins: int) -> None:
        self._low = low
        self._step = (high - low) / bins
        self._counts = np.zeros(bins, dtype=np.int64)  # calloc'd: untouched pages cost nothing
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


class VoicedMedians:
    """The medians of the voiced frames' f0 (on a cent scale) and confidence."""

    def __init__(self) -> None:
        self._cents = Median(0.0, 128.0 * 100.0, CENT_BINS)
        self._confidence = Median(0.0, 1.0, CONFIDENCE_BINS)

    @property
    def count(self) -> int:
        return self._cents.count

    def add(self, f0: float, confidence: float) -> None:
        self._cents.add(100.0 * (69.0 + 12.0 * math.log2(f0 / 440.0)))
        self._confidence.add(confidence)

    def f0(self) -> float | None:
        cents = self._cents.median()
        return None if cents is None else 440.0 * 2.0 ** ((cents / 100.0 - 69.0) / 12.0)

    def confidence(self) -> float | None:
        return self._confidence.median()
