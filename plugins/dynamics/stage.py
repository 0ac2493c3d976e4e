"""The streaming dynamics stage: per-hop levels, velocity and marking with the loudness of the
windows ending at each hop, and an end-of-stream summary (loudness, range, peaks)."""

from __future__ import annotations

import numpy as np

from legato.stage import Event, StreamFormat

from .mapping import LevelSpread, amplitude_db, finite_db, marking, power_db, velocity
from .meters import LevelMeter, LoudnessMeter, TruePeakMeter, frames_of
from .params import DynamicsParams

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
        rms_db = power_db(mean_square).tolist()
        peak_db = amplitude_db(peak).tolist()
        self._spread.add([r for r in rms_db if r > self._floor])
        events = [
            self._event(self._hops + k, self._hop, r, p, m, s)
            for k, (r, p, m, s) in enumerate(
                zip(rms_db, peak_db, momentary.tolist(), short_term.tolist(), strict=True)
            )
        ]
        self._hops += len(events)
        return events

    def finish(self) -> list[Event]:
        events = []
        length, mean_square, peak = self._levels.partial()
        if length:
            events.append(
                self._event(
                    self._hops,
                    length,
                    float(power_db(mean_square)),
                    float(amplitude_db(peak)),
                    self._loudness.momentary,
                    self._loudness.short_term,
                )
            )
        events.append(self._summary())
        return events

    def _event(
        self, index: int, length: int, rms_db: float, peak_db: float, m: float, s: float
    ) -> Event:
        vel = velocity(float(rms_db), self._floor)
        return {
            "kind": "dynamics",
            "sample": index * self._hop + length // 2,
            "length": length,
            "rms_db": float(rms_db),
            "peak_db": float(peak_db),
            "velocity": vel,
            "marking": marking(vel),
            "momentary_lufs": finite_db(m),
            "short_term_lufs": finite_db(s),
        }

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
