"""The streaming dynamics stage: per-hop levels, velocity and marking with the loudness of the
windows ending at each hop, and an end-of-stream summary (loudness, range, peaks)."""

from __future__ import annotations

import numpy as np

from legato.kernels import frames_of
from legato.meters import (
    LevelMeter,
    LoudnessMeter,
    TruePeakMeter,
    amplitude_db,
    finite_db,
    finite_dbs,
    power_db,
)
from legato.stage import Event, StreamFormat

from .mapping import LevelSpread, marking, velocities, velocity
from .params import DynamicsParams

ARRAY_HOPS = 8
"""From this many hops in one block on, the per-hop values are computed with numpy: below it
numpy's fixed cost per call exceeds the Python cost per value (live blocks hold a hop or two)."""

SPREAD_LOW = 0.10
SPREAD_HIGH = 0.95
"""dynamic_range_db spans these percentiles of the per-hop RMS, as EBU Tech 3342 spans the
short-term loudness: the 95th ignores the few loudest hops, the 10th the fades and gaps."""


class Dynamics:
    """One stream's level, loudness and true-peak meters."""

    def __init__(self, params: DynamicsParams, fmt: StreamFormat) -> None:
        self._hop = params.hop
        self._floor = params.floor_db
        self._channels = fmt.channels
        self._loudness = LoudnessMeter(fmt.sample_rate, fmt.channels, report_hop=params.hop)
        self._levels = LevelMeter(fmt.channels, params.hop)
        self._true_peak = TruePeakMeter(fmt.channels)
        self._spread = LevelSpread()
        self._hops = 0

    def process(self, block: np.ndarray) -> list[Event]:
        frames = frames_of(block, self._channels)
        mean_square, peak = self._levels.process(frames)
        momentary, short_term = self._loudness.process(frames)
        self._true_peak.process(frames)
        rms_db = power_db(mean_square)
        self._spread.add(rms_db[rms_db > self._floor].tolist())
        return self._events(self._hop, rms_db, amplitude_db(peak), momentary, short_term)

    def finish(self) -> list[Event]:
        events = []
        length, mean_square, peak = self._levels.partial()
        if length:
            events = self._events(
                length,
                power_db(np.array([mean_square])),
                amplitude_db(np.array([peak])),
                np.array([self._loudness.momentary]),
                np.array([self._loudness.short_term]),
            )
        events.append(self._summary())
        return events

    def _events(
        self,
        length: int,
        rms_db: np.ndarray,
        peak_db: np.ndarray,
        momentary: np.ndarray,
        short_term: np.ndarray,
    ) -> list[Event]:
        """One event per hop (each ``length`` frames long) from its levels; built for a whole
        block at once, since per-hop Python work would cost more than the meters."""
        count = len(rms_db)
        if count >= ARRAY_HOPS:
            vels = velocities(rms_db, self._floor).tolist()
            moments = finite_dbs(momentary).tolist()
            shorts = finite_dbs(short_term).tolist()
        else:
            vels = [velocity(r, self._floor) for r in rms_db.tolist()]
            moments = [finite_db(m) for m in momentary.tolist()]
            shorts = [finite_db(v) for v in short_term.tolist()]
        first = self._hops * self._hop + length // 2
        self._hops += count
        return [
            {
                "kind": "dynamics",
                "sample": first + k * self._hop,
                "length": length,
                "rms_db": r,
                "peak_db": p,
                "velocity": v,
                "marking": name,
                "momentary_lufs": m,
                "short_term_lufs": st,
            }
            for k, (r, p, v, name, m, st) in enumerate(
                zip(
                    rms_db.tolist(),
                    peak_db.tolist(),
                    vels,
                    [marking(v) for v in vels],
                    moments,
                    shorts,
                    strict=True,
                )
            )
        ]

    def _summary(self) -> Event:
        loudness = self._loudness
        spread = self._spread
        return {
            "kind": "summary",
            "sample": self._levels.frames,
            "integrated_lufs": loudness.integrated,
            "loudness_range_lu": loudness.loudness_range,
            "true_peak_dbtp": float(amplitude_db(self._true_peak.peak)),
            "peak_db": float(amplitude_db(self._levels.peak)),
            "max_momentary_lufs": finite_db(loudness.max_momentary),
            "max_short_term_lufs": finite_db(loudness.max_short_term),
            "rms_db": float(power_db(self._levels.mean_square)),
            "dynamic_range_db": (
                spread.percentile(SPREAD_HIGH) - spread.percentile(SPREAD_LOW)
                if spread.count
                else None
            ),
            "nonfinite_samples": self._levels.nonfinite,
        }
