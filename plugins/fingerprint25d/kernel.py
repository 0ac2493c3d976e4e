"""Python face of the fingerprint kernel (``csrc/fingerprint.c``): feed interleaved float32
frames, read the 25 values at any time."""

from __future__ import annotations

from typing import Any

import numpy as np

from legato.checkpoints import load_kernel, save_kernel
from legato.kernels import check, frames_of, lib, owned, view

MAX_CALL_FRAMES = 1 << 20
"""Frames per kernel call, so any block length fits the kernel's int count."""


class FingerprintKernel:
    """One stream's fingerprint state. Not thread-safe; one stream per instance."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        if not 1 <= channels <= 6:
            raise ValueError(
                f"fingerprint25d takes 1-6 channels (the BS.1770 layouts), not {channels}"
            )
        if not 8000 <= sample_rate <= 384000:
            raise ValueError(f"fingerprint25d takes 8000-384000 Hz, not {sample_rate}")
        self.sample_rate = sample_rate
        self.channels = channels
        self._state: Any = owned(
            lib.lg_fingerprint_new(sample_rate, channels),
            lib.lg_fingerprint_free,
            f"fingerprint at {sample_rate} Hz, {channels} channels",
        )
        self._out = np.zeros(lib.lg_fingerprint_dimensions())
        self._out_ptr = view(self._out, "double")

    def process(self, frames: np.ndarray) -> None:
        """Feed (n, channels) frames (1-D arrays count as mono)."""
        data = frames_of(frames, self.channels)
        for start in range(0, len(data), MAX_CALL_FRAMES):
            part = data[start : start + MAX_CALL_FRAMES]
            status = lib.lg_fingerprint_process(self._state, view(part, "float"), len(part))
            check(status, "lg_fingerprint_process")

    def result(self) -> tuple[float, ...]:
        """The 25 values for the frames fed so far, as if the stream ended here."""
        check(lib.lg_fingerprint_result(self._state, self._out_ptr), "lg_fingerprint_result")
        return tuple(self._out.tolist())

    def save(self) -> bytes:
        return save_kernel(lib.lg_fingerprint_save, self._state)

    def load(self, data: bytes, what: str) -> None:
        load_kernel(lib.lg_fingerprint_load, self._state, data, what)

    def reset(self) -> None:
        lib.lg_fingerprint_reset(self._state)

    @property
    def frames(self) -> int:
        return int(lib.lg_fingerprint_frames(self._state))

    @property
    def nonfinite(self) -> int:
        """Non-finite input samples so far; each was read as 0.0."""
        return int(lib.lg_fingerprint_nonfinite(self._state))

    @property
    def onsets(self) -> int:
        return int(lib.lg_fingerprint_onsets(self._state))
