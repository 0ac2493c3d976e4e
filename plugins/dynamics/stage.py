"""The streaming dynamics stage: per-hop levels, velocity and marking with the loudness of the
windows ending at each hop, and an end-of-stream summary (loudness, range, peaks). A block is
one call into the dynamics kernel (a chain step); the Python left is building the events."""

from __future__ import annotations

import numpy as np

from legato.checkpoints import pack, reading, unpack
from legato.kernels import frames_of
from legato.stage import Event, StreamFormat

from .kernel import DynamicsKernel
from .mapping import MARKING_OF_VELOCITY, LevelSpread, velocity
from .params import DynamicsParams

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
        self.step = self._kernel.step
        self._spread = LevelSpread()
        self._hops = 0

    def process(self, block: np.ndarray) -> list[Event]:
        count = self.step.process(frames_of(block, self._channels))
        return self.events(count) if count else []

    def events(self, count: int) -> list[Event]:
        rms, peak, momentary, short_term = self.step.views
        return [
            self._event(self._hop, rms[k], peak[k], momentary[k], short_term[k])
            for k in range(count)
        ]

    def finish(self) -> list[Event]:
        events = []
        length, rms, peak, momentary, short_term = self._kernel.partial()
        if length:
            events = [self._event(length, rms, peak, momentary, short_term)]
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

    def _event(
        self, length: int, rms_db: float, peak_db: float, momentary: float, short_term: float
    ) -> Event:
        """The event of the next hop (``length`` frames long) from its readings."""
        if rms_db > self._floor:
            self._spread.add(rms_db)
        vel = velocity(rms_db, self._floor)
        sample = self._hops * self._hop + length // 2
        self._hops += 1
        return {
            "kind": "dynamics",
            "sample": sample,
            "length": length,
            "rms_db": rms_db,
            "peak_db": peak_db,
            "velocity": vel,
            "marking": MARKING_OF_VELOCITY[vel],
            "momentary_lufs": momentary,
            "short_term_lufs": short_term,
        }

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
