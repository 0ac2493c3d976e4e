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
        self._counts = np.zeros(bins, dtype=np.int64)
        self.count = 0

    def add_many(self, values: list[float]) -> None:
        if not values:
            return
        bins = np.floor((np.array(values, dtype=np.float64) - self._low) / self._step)
        top = len(self._counts) - 1
        index = np.clip(bins, 0, top).astype(np.int64)
        self._counts += np.bincount(index, minlength=len(self._counts))
        self.count += len(values)

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
    and confidence. Frames wait in two short lists and enter the histograms BATCH at a time:
    appending to a list is a fraction of the cost of a histogram update per frame."""

    BATCH = 1024

    def __init__(self, fmin: float = 20.0, fmax: float = 8000.0) -> None:
        low, high = cents(fmin) - CENTS_MARGIN, cents(fmax) + CENTS_MARGIN
        self._cents = Median(low, high, math.ceil(high - low))
        self._confidence = Median(0.0, 1.0, CONFIDENCE_BINS)
        self._pending_cents: list[float] = []
        self._pending_confidence: list[float] = []

    @property
    def count(self) -> int:
        return self._cents.count + len(self._pending_cents)

    def add(self, f0: float, confidence: float) -> None:
        self.add_cents(cents(f0), confidence)

    def add_cents(self, f0_cents: float, confidence: float) -> None:
        """``add`` for an f0 already in cents above MIDI note 0 (as ``cents`` gives it)."""
        self._pending_cents.append(f0_cents)
        self._pending_confidence.append(confidence)
        if len(self._pending_cents) >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        self._cents.add_many(self._pending_cents)
        self._confidence.add_many(self._pending_confidence)
        self._pending_cents.clear()
        self._pending_confidence.clear()

    def f0(self) -> float | None:
        self._flush()
        cents = self._cents.median()
        return None if cents is None else 440.0 * 2.0 ** ((cents / 100.0 - 69.0) / 12.0)

    def confidence(self) -> float | None:
        self._flush()
        return self._confidence.median()
