"""Python face of the mastering kernel (csrc/master.c, limiter.c): gain, expander and lookahead
true-peak limiter over interleaved float32 frames, with the output realigned to the input."""

from __future__ import annotations

from typing import Any

import numpy as np

from legato.checkpoints import load_kernel, save_kernel
from legato.kernels import check, lib, owned, view

from .params import MasterParams
from .plan import MasteringPlan


class MasterKernel:
    """One stream's mastering chain. ``process`` returns the frames ready so far (the input
    delayed by ``latency`` frames); ``finish`` returns the rest, so the output has exactly the
    input's length and output frame n is input frame n processed."""

    def __init__(
        self, channels: int, sample_rate: int, plan: MasteringPlan, params: MasterParams
    ) -> None:
        self.channels = channels
        self._state: Any = owned(
            lib.lg_master_new(
                channels,
                float(sample_rate),
                plan.gain_db,
                plan.expander_amount,
                params.expander_depth_db,
                params.expander_fast_ms,
                params.expander_slow_ms,
                params.ceiling_dbtp,
                params.lookahead_ms,
                params.release_ms,
            ),
            lib.lg_master_free,
            f"lwrp_master kernel, {channels} channels at {sample_rate} Hz",
        )
        self.latency = int(lib.lg_master_latency(self._state))

    def process(self, frames: np.ndarray) -> np.ndarray:
        """Feed float32 C-contiguous frames (n, channels); returns (<= n, channels)."""
        n = len(frames)
        out = np.empty((n, self.channels), dtype=np.float32)
        if n == 0:
            return out
        count = lib.lg_master_process(self._state, view(frames, "float"), n, view(out, "float"), n)
        check(count, "lg_master_process")
        return out[:count]

    def finish(self) -> np.ndarray:
        """End of stream: the frames still held back by the lookahead."""
        out = np.empty((self.latency, self.channels), dtype=np.float32)
        count = lib.lg_master_finish(self._state, view(out, "float"), self.latency)
        check(count, "lg_master_finish")
        return out[:count]

    def save(self) -> bytes:
        return save_kernel(lib.lg_master_save, self._state)

    def load(self, data: bytes, what: str) -> None:
        load_kernel(lib.lg_master_load, self._state, data, what)

    @property
    def limited(self) -> int:
        """Output frames the limiter turned down."""
        return int(lib.lg_master_limited(self._state))

    @property
    def max_reduction_db(self) -> float:
        return float(lib.lg_master_max_reduction_db(self._state))

    @property
    def nonfinite(self) -> int:
        """Non-finite input samples, processed as 0.0."""
        return int(lib.lg_master_nonfinite(self._state))
