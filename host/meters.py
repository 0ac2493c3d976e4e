"""Meters over the level kernels (csrc/loudness.c, truepeak.c), shared by the stages that measure:
ITU-R BS.1770-4 loudness with the EBU measures and true peak, over interleaved float32 frames
of shape (n, channels), and the floor of every reported dB value. Part of the plugin-facing API:
plugins never import each other, so what two stages share lives here."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .checkpoints import load_kernel, save_kernel
from .kernels import OutBuffers, check, ffi, frames_of, lib, owned, view

LOUDNESS_LAYOUTS = "1-5 channels (L R C Ls Rs) or 6 (5.1: L R C LFE Ls Rs)"

DB_FLOOR = -120.0
"""Every dB value reported is at least this: silence has no finite level and JSON has no -inf
(the dynamics kernel, csrc/dynamics.c, floors its readings at the same value)."""


def kweighting_coefficients(
    sample_rate: float,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The K-weighting biquads at this rate: ((b, a) of the shelf, (b, a) of the RLB high-pass)."""
    coeffs = [np.zeros(3) for _ in range(4)]
    status = lib.lg_kweighting_design(float(sample_rate), *(view(c, "double") for c in coeffs))
    if status != lib.LG_OK:
        raise ValueError(f"K-weighting is designed for 8000-384000 Hz, not {sample_rate}")
    return (coeffs[0], coeffs[1]), (coeffs[2], coeffs[3])


def check_loudness_format(sample_rate: int, channels: int) -> None:
    """ValueError naming what BS.1770 loudness cannot measure (a stream the kernel refuses)."""
    if not 1 <= channels <= 6:
        raise ValueError(f"BS.1770 loudness takes {LOUDNESS_LAYOUTS}, not {channels}")
    if not 8000 <= sample_rate <= 384000:
        raise ValueError(f"K-weighting is designed for 8000-384000 Hz, not {sample_rate}")


def defined(value: float) -> float | None:
    """A kernel's NaN (nothing measured yet, e.g. no block passed the gates) as None."""
    return None if math.isnan(value) else value


class Histogram:
    """Counts of a whole stream's values in ``bins`` equal bins of [``low``, ``high``) (values
    outside fall in the end bins), in fixed memory however long the stream: what a stage's
    summary reads medians or percentiles from. Values wait in a list and are binned ``BATCH``
    at a time; appending costs a fraction of a histogram update per value, which matters once
    per frame of every live session."""

    BATCH = 4096

    def __init__(self, low: float, high: float, bins: int) -> None:
        self.low = low
        self.step = (high - low) / bins
        self._counts = np.zeros(bins, dtype=np.int64)
        self._binned = 0
        self._pending: list[float] = []

    def add(self, value: float) -> None:
        self._pending.append(value)
        if len(self._pending) >= self.BATCH:
            self._flush()

    def extend(self, values: Iterable[float]) -> None:
        self._pending.extend(values)
        if len(self._pending) >= self.BATCH:
            self._flush()

    @property
    def count(self) -> int:
        return self._binned + len(self._pending)

    def cumulative(self) -> np.ndarray:
        """Running totals of the counts, bin by bin (every value added so far included)."""
        self._flush()
        return np.cumsum(self._counts)

    def centre(self, k: float) -> float:
        """The value at the centre of bin ``k``."""
        return self.low + (k + 0.5) * self.step

    def state(self) -> bytes:
        """The counts for a stage's checkpoint: the number of bins, then each bin holding any
        and its count (little-endian int64s)."""
        self._flush()
        (used,) = np.nonzero(self._counts)
        pairs = np.stack([used, self._counts[used]], axis=1).ravel()
        return np.concatenate([[len(self._counts)], pairs]).astype("<i8").tobytes()

    def restore(self, state: bytes) -> None:
        """The counts ``state`` gives (as ``state`` returned them); ValueError if they cannot be
        this histogram's, which is then unchanged."""
        if len(state) % 16 != 8:
            raise ValueError(f"{len(state)} bytes are not a histogram's state")
        values = np.frombuffer(state, dtype="<i8")
        bins, pairs = int(values[0]), values[1:].reshape(-1, 2)
        if bins != len(self._counts):
            raise ValueError(f"a histogram of {bins} bins, not {len(self._counts)}")
        index, count = pairs[:, 0], pairs[:, 1]
        if np.any(index < 0) or np.any(index >= bins) or np.any(count < 0):
            raise ValueError("a bin or count out of range")
        counts = np.zeros_like(self._counts)
        counts[index] = count
        self._counts = counts
        self._binned = int(counts.sum())
        self._pending.clear()

    def _flush(self) -> None:
        if not self._pending:
            return
        bins = np.floor((np.array(self._pending, dtype=np.float64) - self.low) / self.step)
        index = np.clip(bins, 0, len(self._counts) - 1).astype(np.int64)
        self._counts += np.bincount(index, minlength=len(self._counts))
        self._binned += len(self._pending)
        self._pending.clear()


def _frames_ptr(frames: np.ndarray) -> Any:
    """The kernel's input pointer: NULL for an empty block, which has no data to point at."""
    return view(frames, "float") if len(frames) else ffi.NULL


class _Outputs:
    """Two growable float64 output buffers for a kernel that reports per hop."""

    def __init__(self) -> None:
        self.out = OutBuffers((np.float64, "double"), (np.float64, "double"), size=64)

    def run(
        self,
        process: Callable[..., int],
        state: Any,
        frames: np.ndarray,
        fed: int,
        hop: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feeds ``frames`` to the kernel's ``process`` with room for every boundary of a hop
        of ``hop`` frames they cross after the ``fed`` frames so far, and returns copies of
        what it wrote."""
        n = len(frames)
        needed = (fed % hop + n) // hop if hop > 0 else 0
        cap = self.out.reserve(needed)
        a, b = self.out.buffers
        count = process(state, _frames_ptr(frames), n, a.ptr, b.ptr, cap)
        check(count, process.__name__)
        return a.array[:count].copy(), b.array[:count].copy()


class LoudnessMeter:
    """BS.1770-4 loudness of a stream: momentary (400 ms), short-term (3 s), their maxima over
    every window position, gated integrated loudness and EBU Tech 3342 loudness range. With
    ``report_hop`` > 0, ``process`` returns the momentary and short-term loudness of the windows
    ending at every multiple of ``report_hop`` frames. Values are LUFS, -inf for silence."""

    def __init__(self, sample_rate: int, channels: int, report_hop: int = 0) -> None:
        check_loudness_format(sample_rate, channels)
        self.channels = channels
        self._hop = report_hop
        self._state = owned(
            lib.lg_loudness_new(sample_rate, channels, report_hop),
            lib.lg_loudness_free,
            f"loudness meter at {sample_rate} Hz, {channels} channels, report hop {report_hop}",
        )
        self._out = _Outputs()

    def process(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames = frames_of(block, self.channels)
        return self._out.run(lib.lg_loudness_process, self._state, frames, self.frames, self._hop)

    @property
    def momentary(self) -> float:
        return float(lib.lg_loudness_momentary(self._state))

    @property
    def short_term(self) -> float:
        return float(lib.lg_loudness_short_term(self._state))

    @property
    def max_momentary(self) -> float:
        return float(lib.lg_loudness_max_momentary(self._state))

    @property
    def max_short_term(self) -> float:
        return float(lib.lg_loudness_max_short_term(self._state))

    @property
    def integrated(self) -> float | None:
        """None until a 400 ms block passes the gates."""
        return defined(lib.lg_loudness_integrated(self._state))

    @property
    def loudness_range(self) -> float | None:
        """LU; None until a 3 s window passes the gates."""
        return defined(lib.lg_loudness_range(self._state))

    @property
    def frames(self) -> int:
        return int(lib.lg_loudness_frames(self._state))

    @property
    def nonfinite(self) -> int:
        return int(lib.lg_loudness_nonfinite(self._state))


class TruePeakMeter:
    """Maximum absolute value of the 4x-oversampled stream (1.0 = 0 dBTP), silence assumed
    before the stream and after the last frame fed."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self._state: Any = owned(
            lib.lg_truepeak_new(channels), lib.lg_truepeak_free, f"true peak, {channels} channels"
        )

    def process(self, block: np.ndarray) -> None:
        frames = frames_of(block, self.channels)
        status = lib.lg_truepeak_process(self._state, _frames_ptr(frames), len(frames))
        check(status, "lg_truepeak_process")

    def save(self) -> bytes:
        """A checkpoint of the meter (``legato.checkpoints``)."""
        return save_kernel(lib.lg_truepeak_save, self._state)

    def load(self, data: bytes, what: str) -> None:
        load_kernel(lib.lg_truepeak_load, self._state, data, what)

    @property
    def peak(self) -> float:
        return float(lib.lg_truepeak_max(self._state))

    def channel_peak(self, channel: int) -> float:
        if not 0 <= channel < self.channels:
            raise IndexError(channel)
        return float(lib.lg_truepeak_channel_max(self._state, channel))

    @property
    def nonfinite(self) -> int:
        return int(lib.lg_truepeak_nonfinite(self._state))
