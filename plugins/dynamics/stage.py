"""The streaming dynamics stage: per-hop levels, velocity and marking with the loudness of the
windows ending at each hop, and an end-of-stream summary (loudness, range, peaks). A block is
one call into the dynamics kernel; the Python left is building the events."""

from __future__ import annotations

import numpy as np

from legato.checkpoints import pack, reading, unpack
from legato.kernels import frames_of
from legato.stage import Event, StreamFormat

from .kernel import DynamicsKernel
from .mapping import MARKING_OF_VELOCITY, LevelSpread, velocities, velocity
from .params import DynamicsParams

ARRAY_HOPS = 8
"""From this many hops in one block on, velocities are computed with numpy: below it numpy's
fixed cost per call exceeds the Python cost per value (live blocks hold a hop or two)."""

CHECKPOINT = ("dynamics", 1)
"""The stage's checkpoint name and version (raised whenever what it holds changes)."""
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
        self._kernel = DynamicsKernel(fmt.sample_rate, fmt.channels, params.hop)
        self._spread = LevelSpread()
        self._hops = 0

    def process(self, block: np.ndarray) -> list[Event]:
        rms, peak, momentary, short_term = self._kernel.process(frames_of(block, self._channels))
        if not rms:
            return []
        self._spread.add(filter(self._floor.__lt__, rms))  # levels above the floor
        return self._events(self._hop, rms, peak, momentary, short_term)

    def finish(self) -> list[Event]:
        events = []
        length, rms, peak, momentary, short_term = self._kernel.partial()
        if length:
            events = self._events(length, [rms], [peak], [momentary], [short_term])
        events.append(self._summary())
        return events

    def checkpoint(self) -> bytes:
        blobs = {"dynamics": self._kernel.save(), "spread": self._spread.state()}
        return pack(*CHECKPOINT, {"hops": self._hops}, blobs)

    def restore(self, data: bytes) -> None:
        fields, blobs = unpack(data, *CHECKPOINT)
        with reading(CHECKPOINT[0]):
            hops = int(fields["hops"])
            spread = LevelSpread()
            spread.restore(blobs["spread"])
            kernel = blobs["dynamics"]
        self._kernel.load(kernel, CHECKPOINT[0])
        self._hops, self._spread = hops, spread

    def _events(
        self,
        length: int,
        rms_db: list[float],
        peak_db: list[float],
        momentary: list[float],
        short_term: list[float],
    ) -> list[Event]:
        """One event per hop (each ``length`` frames long) from its readings."""
        count = len(rms_db)
        if count >= ARRAY_HOPS:
            vels = velocities(np.array(rms_db), self._floor).tolist()
        else:
            vels = [velocity(r, self._floor) for r in rms_db]
        first = self._hops * self._hop + length // 2
        self._hops += count
        hop = self._hop
        markings = MARKING_OF_VELOCITY
        return [
            {
                "kind": "dynamics",
                "sample": first + k * hop,
                "length": length,
                "rms_db": r,
                "peak_db": p,
                "velocity": v,
                "marking": markings[v],
                "momentary_lufs": m,
                "short_term_lufs": st,
            }
            for k, (r, p, v, m, st) in enumerate(
                zip(rms_db, peak_db, vels, momentary, short_term, strict=True)
            )
        ]

    def _summary(self) -> Event:
        kernel = self._kernel
        spread = self._spread
        return {
            "kind": "summary",
            "sample": kernel.frames,
            "integrated_lufs": kernel.integrated_lufs,
            "loudness_range_lu": kernel.loudness_range_lu,
            "true_peak_dbtp": kernel.true_peak_dbtp,
            "peak_db": kernel.peak_db,
            "max_momentary_lufs": kernel.max_momentary_lufs,
            "max_short_term_lufs": kernel.max_short_term_lufs,
            "rms_db": kernel.rms_db,
            "dynamic_range_db": (
                spread.percentile(SPREAD_HIGH) - spread.percentile(SPREAD_LOW)
                if spread.count
                else None
            ),
            "nonfinite_samples": kernel.nonfinite,
        }
