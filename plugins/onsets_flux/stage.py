"""The streaming onsets_flux stage: feeds blocks to the C detector and keeps running
inter-onset-interval statistics for the end-of-stream timing summary."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from legato.checkpoints import load_kernel, pack, reading, save_kernel, unpack
from legato.kernels import Step, check, lib, owned, view
from legato.stage import Event, StreamFormat

from .params import OnsetsFluxParams

BANDS_PER_OCTAVE = 24
"""Quarter-tone bands, so the maximum over neighbouring bands absorbs ±50 cents of vibrato."""
FMIN_HZ = 30.0
FMAX_HZ = 17000.0
"""SuperFlux's band range: the fundamentals and the audible partials of pitched instruments."""
CHECKPOINT = ("onsets_flux", 1)
"""The stage's checkpoint name and version (raised whenever what it holds changes)."""
LEVEL_RELEASE_DB_PER_S = 10.0
"""How fast the level the compression knee follows falls: it tracks the dynamics of a phrase,
not the decay of single notes (plucked and struck notes fall 20-60 dB/s)."""


def _frames(ms: float, sample_rate: int, hop: int) -> int:
    return round(ms * sample_rate / 1000.0 / hop)


def new_detector(params: OnsetsFluxParams, sample_rate: int) -> Any:
    """A C detector for these params, freed with the returned object."""
    hop = params.hop
    state = lib.lg_onsets_new(
        sample_rate,
        params.window,
        hop,
        BANDS_PER_OCTAVE,
        FMIN_HZ,
        FMAX_HZ,
        params.compression,
        LEVEL_RELEASE_DB_PER_S,
        _frames(params.pre_avg_ms, sample_rate, hop),
        _frames(params.post_avg_ms, sample_rate, hop),
        _frames(params.pre_max_ms, sample_rate, hop),
        _frames(params.post_max_ms, sample_rate, hop),
        params.median_weight,
        params.delta,
        params.silence_db,
        round(params.min_gap_ms * sample_rate / 1000.0),
    )
    return owned(state, lib.lg_onsets_free, f"onsets_flux at {sample_rate} Hz with {params}")


class _Moments:
    """Running mean and standard deviation (Welford), so a session of any length keeps O(1)
    state for its summary."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self._m2 = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self._m2 += delta * (value - self.mean)

    @property
    def std(self) -> float:
        return (self._m2 / self.n) ** 0.5 if self.n else 0.0

    def state(self) -> list[float]:
        return [self.n, self.mean, self._m2]

    @classmethod
    def restored(cls, state: list[float]) -> _Moments:
        moments = cls()
        n, moments.mean, moments._m2 = state
        moments.n = int(n)
        if moments.n < 0:
            raise ValueError(f"a count of {moments.n}")
        return moments


class OnsetsFlux:
    """One stream's onset detector."""

    def __init__(self, params: OnsetsFluxParams, fmt: StreamFormat) -> None:
        self._rate = fmt.sample_rate
        self._state = new_detector(params, fmt.sample_rate)
        self._count = 0
        self._last: int | None = None
        self._ioi = _Moments()
        self.step = Step(
            "lg_onsets_step",
            self._state,
            [(np.int64, "int64_t"), (np.float64, "double")],
            functools.partial(lib.lg_onsets_max_outputs, self._state),
            mono=True,
        )

    def process(self, block: np.ndarray) -> list[Event]:
        count = self.step.process(np.ascontiguousarray(block, dtype=np.float32))
        return self.events(count) if count else []

    def finish(self) -> list[Event]:
        step = self.step
        step.grow(-1)  # the kernel's bound for a finish
        at, strength = step.arrays
        count = lib.lg_onsets_finish(
            self._state, view(at, "int64_t"), view(strength, "double"), len(at)
        )
        check(count, "lg_onsets_finish")
        events = self.events(count)
        events.append(self._summary())
        return events

    def checkpoint(self) -> bytes:
        fields = {
            "samples": self.step.frames,
            "count": self._count,
            "last": self._last,
            "ioi": self._ioi.state(),
        }
        return pack(*CHECKPOINT, fields, {"onsets": save_kernel(lib.lg_onsets_save, self._state)})

    def restore(self, data: bytes) -> None:
        fields, blobs = unpack(data, *CHECKPOINT)
        with reading(CHECKPOINT[0]):
            samples, count = int(fields["samples"]), int(fields["count"])
            last = None if fields["last"] is None else int(fields["last"])
            ioi = _Moments.restored(fields["ioi"])
            kernel = blobs["onsets"]
        load_kernel(lib.lg_onsets_load, self._state, kernel, CHECKPOINT[0])
        self.step.frames, self._count, self._last, self._ioi = samples, count, last, ioi

    def events(self, count: int) -> list[Event]:
        at, strength = (a[:count].tolist() for a in self.step.arrays)
        for sample in at:
            if self._last is not None:
                self._ioi.add((sample - self._last) / self._rate)
            self._last = sample
        self._count += count
        return [
            {"kind": "onset", "sample": a, "strength": s} for a, s in zip(at, strength, strict=True)
        ]

    def _summary(self) -> Event:
        """Onset rate and inter-onset-interval statistics: the IOI coefficient of variation is
        how evenly the notes were played (0 for a perfectly steady pulse)."""
        seconds = self.step.frames / self._rate
        ioi = self._ioi
        return {
            "kind": "summary",
            "sample": self.step.frames,
            "onsets": self._count,
            "onset_rate_hz": self._count / seconds if seconds > 0 else 0.0,
            "mean_ioi_s": ioi.mean if ioi.n >= 1 else None,
            "ioi_cv": ioi.std / ioi.mean if ioi.n >= 2 and ioi.mean > 0 else None,
            "nonfinite_samples": int(lib.lg_onsets_nonfinite(self._state)),
        }
