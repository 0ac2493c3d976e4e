"""Medians of a whole stream's voiced frames in fixed memory: histograms fine enough that the
median is within half a cent (f0) and 5e-4 (confidence) of the exact one, however long the
stream, sized to the stage's pitch range (a few tens of KB). Kept values would grow by 16 bytes
per voiced frame, about 5 MB an hour of playing."""

from __future__ import annotations

import copy
import math

import numpy as np

from legato.meters import Histogram

CENTS_MARGIN = 100.0
"""Room beyond the stage's fmin and fmax (parabolic interpolation can step slightly out);
frequencies further out fall in the end bins."""
CONFIDENCE_BINS = 1000


def median(histogram: Histogram) -> float | None:
    """The median read at bin centres (the mean of the two middle ones for an even count, as
    ``statistics.median``); None when empty."""
    n = histogram.count
    if not n:
        return None
    cumulative = histogram.cumulative()
    lower = int(np.searchsorted(cumulative, (n - 1) // 2 + 1))
    upper = int(np.searchsorted(cumulative, n // 2 + 1))
    return histogram.centre((lower + upper) / 2)


def cents(f0: float) -> float:
    """f0 as cents above MIDI note 0 (A4 = 440 Hz is 6900)."""
    return 100.0 * (69.0 + 12.0 * math.log2(f0 / 440.0))


class VoicedMedians:
    """The medians of the voiced frames' f0 (on a one-cent grid between ``fmin`` and ``fmax``)
    and confidence."""

    def __init__(self, fmin: float = 20.0, fmax: float = 8000.0) -> None:
        low, high = cents(fmin) - CENTS_MARGIN, cents(fmax) + CENTS_MARGIN
        self._cents = Histogram(low, high, math.ceil(high - low))
        self._confidence = Histogram(0.0, 1.0, CONFIDENCE_BINS)

    @property
    def count(self) -> int:
        return self._cents.count

    def add(self, f0: float, confidence: float) -> None:
        self.add_cents(cents(f0), confidence)

    def add_cents(self, f0_cents: float, confidence: float) -> None:
        """``add`` for an f0 already in cents above MIDI note 0 (as ``cents`` gives it)."""
        self._cents.add(f0_cents)
        self._confidence.add(confidence)

    def state(self) -> dict[str, bytes]:
        return {"cents": self._cents.state(), "confidence": self._confidence.state()}

    def restore(self, state: dict[str, bytes]) -> None:
        """Both histograms from ``state``, or (ValueError) neither."""
        cents, confidence = copy.deepcopy(self._cents), copy.deepcopy(self._confidence)
        cents.restore(state["cents"])
        confidence.restore(state["confidence"])
        self._cents, self._confidence = cents, confidence

    def f0(self) -> float | None:
        cents = median(self._cents)
        return None if cents is None else 440.0 * 2.0 ** ((cents / 100.0 - 69.0) / 12.0)

    def confidence(self) -> float | None:
        return median(self._confidence)
