"""From levels to the musical: MIDI velocity, dynamic markings, and the spread of per-hop levels
(dynamic range)."""

from __future__ import annotations

import bisect
import itertools
import math

import numpy as np

from legato.meters import DB_FLOOR, Histogram

MARKINGS = ("pp", "p", "mp", "mf", "f", "ff")
MARKING_VELOCITIES = (33, 49, 64, 80, 96, 112)
"""The velocities notation programs (MuseScore, Sibelius) play for pp ... ff."""
MARKING_BOUNDS = tuple(
    math.ceil((low + high) / 2) for low, high in itertools.pairwise(MARKING_VELOCITIES)
)
"""Lowest velocity of p, mp, mf, f and ff (41, 57, 72, 88, 104): the midpoints between
MARKING_VELOCITIES, so each velocity gets the marking whose own velocity is nearest."""


def velocity(rms_db: float, floor_db: float) -> int:
    """MIDI velocity 1-127, linear in dB: 1 at or below floor_db, 127 at 0 dBFS and above
    (round half up; truncating instead of flooring differs only below 0, which clamps to 1).
    Called once per hop of every live session, hence the plain arithmetic."""
    position = (rms_db - floor_db) / -floor_db
    vel = 1 + int(126.0 * position + 0.5)
    return 1 if vel < 1 else 127 if vel > 127 else vel


def marking(vel: int) -> str:
    """The dynamic marking whose notation-program velocity is nearest to vel."""
    return MARKINGS[bisect.bisect_right(MARKING_BOUNDS, vel)]


MARKING_OF_VELOCITY = tuple(marking(vel) for vel in range(128))
"""``marking`` of every MIDI velocity, for a lookup per hop."""


def marking_thresholds_db(floor_db: float) -> tuple[float, ...]:
    """The rms_db at which p, mp, mf, f and ff begin for this floor (for documentation)."""
    return tuple(floor_db - floor_db * (bound - 1.5) / 126.0 for bound in MARKING_BOUNDS)


class LevelSpread:
    """Percentiles of a long series of dB levels in fixed memory: a histogram of 0.01 dB bins
    from DB_FLOOR to +40 dBFS (louder levels share the top bin), read at the bin centre."""

    STEP = 0.01
    TOP = 40.0

    def __init__(self) -> None:
        self._levels = Histogram(DB_FLOOR, self.TOP, round((self.TOP - DB_FLOOR) / self.STEP))

    def add(self, level_db: float) -> None:
        self._levels.add(level_db)

    @property
    def count(self) -> int:
        return self._levels.count

    def state(self) -> bytes:
        return self._levels.state()

    def restore(self, state: bytes) -> None:
        self._levels.restore(state)

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile (rank round((n - 1) * fraction)), as EBU Tech 3342 takes its
        loudness-range percentiles."""
        n = self.count
        if n == 0:
            raise ValueError("no levels")
        rank = math.floor((n - 1) * fraction + 0.5)
        k = int(np.searchsorted(self._levels.cumulative(), rank, side="right"))
        return self._levels.centre(k)
