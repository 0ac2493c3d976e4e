"""The streaming onsets_flux stage: feeds blocks to the C detector and keeps the onset times
needed for the end-of-stream timing summary."""

from __future__ import annotations

from typing import Any

import numpy as np

from legato.kernels import lib, owned, view
from legato.stage import Event, StreamFormat

from .params import OnsetsFluxParams

BANDS_PER_OCTAVE = 24
"""Quarter-tone bands, so SuperFlux's maximum over neighbouring bands spans ±50 cents of
vibrato."""
FMIN_HZ = 30.0
FMAX_HZ = 17000.0
"""SuperFlux's filterbank range: the fundamentals and partials of pitched instruments."""


def _frames(ms: float, sample_rate: int, hop: int) -> int:
    return round(ms * sample_rate / 1000.0 / hop)


def new_detector(params: OnsetsFluxParams, sample_rate: int) -> Any:
    """A C detector for these params (owned: freed with the returned object)."""
    hop = params.hop
    import os
    env = os.environ.get
    state = lib.lg_onsets_new(
        sample_rate,
        params.window,
        hop,
        BANDS_PER_OCTAVE,
        FMIN_HZ,
        FMAX_HZ,
        params.compression,
        float(env("RELEASE", "10")),
        int(env("SPAN", "2")),
        int(env("PERSIST", "0")),
        _frames(params.pre_avg_ms, sample_rate, hop),
        _frames(params.post_avg_ms, sample_rate, hop),
        _frames(params.pre_max_ms, sample_rate, hop),
        _frames(params.post_max_ms, sample_rate, hop),
        float(env("LAMBDA", "2.5")),
        params.delta,
        params.silence_db,
        round(params.min_gap_ms * sample_rate / 1000.0),
    )
    return owned(state, lib.lg_onsets_free, f"onsets_flux at {sample_rate} Hz with {params}")


class OnsetsFlux:
    """One stream's onset detector."""

    def __init__(self, params: OnsetsFluxParams, fmt: StreamFormat) -> None:
        self._rate = fmt.sample_rate
        self._state = new_detector(params, fmt.sample_rate)
        self._samples = 0
        self._onsets: list[int] = []
        self._at = np.zeros(0, dtype=np.int64)
        self._strength = np.zeros(0, dtype=np.float64)

    def process(self, block: np.ndarray) -> list[Event]:
        block = np.ascontiguousarray(block, dtype=np.float32)
        n = len(block)
        self._samples += n
        cap = self._reserve(lib.lg_onsets_max_outputs(self._state, n))
        count = lib.lg_onsets_process(
            self._state, view(block, "float"), n, *self._outputs(), cap
        )
        return self._events(count)

    def finish(self) -> list[Event]:
        cap = self._reserve(lib.lg_onsets_max_outputs(self._state, -1))
        count = lib.lg_onsets_finish(self._state, *self._outputs(), cap)
        events = self._events(count)
        events.append(self._summary())
        return events

    def _reserve(self, needed: int) -> int:
        if len(self._at) < needed:
            self._at = np.zeros(needed, dtype=np.int64)
            self._strength = np.zeros(needed, dtype=np.float64)
        return len(self._at)

    def _outputs(self) -> tuple[Any, Any]:
        return view(self._at, "int64_t"), view(self._strength, "double")

    def _events(self, count: int) -> list[Event]:
        if count < 0:
            raise RuntimeError(f"onsets_flux kernel failed with code {count}")
        at = self._at[:count].tolist()
        self._onsets.extend(at)
        strength = self._strength[:count].tolist()
        return [
            {"kind": "onset", "sample": a, "strength": s}
            for a, s in zip(at, strength, strict=True)
        ]

    def _summary(self) -> Event:
        """Onset rate and inter-onset-interval statistics: the IOI coefficient of variation is
        how evenly the notes were played (0 for a perfectly steady pulse)."""
        seconds = self._samples / self._rate
        ioi = np.diff(np.asarray(self._onsets, dtype=np.float64)) / self._rate
        mean_ioi = float(ioi.mean()) if len(ioi) >= 1 else None
        cv = float(ioi.std() / ioi.mean()) if len(ioi) >= 2 and ioi.mean() > 0 else None
        return {
            "kind": "summary",
            "sample": self._samples,
            "onsets": len(self._onsets),
            "onset_rate_hz": len(self._onsets) / seconds if seconds > 0 else 0.0,
            "mean_ioi_s": mean_ioi,
            "ioi_cv": cv,
            "nonfinite_samples": int(lib.lg_onsets_nonfinite(self._state)),
        }
