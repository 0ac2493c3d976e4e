"""A pipeline's stages run in one C call per block (``lg_chain_run``, csrc/chain.h), for the
pipelines whose every stage is a ``SteppedStage`` reading the stream: a live session's block
then enters Python once, not once per stage, and the channel mean is made once in C."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..kernels import check, ffi, lib, view
from ..stage import SteppedStage


class Chain:
    """The steps of ``stages`` (in order) for a stream of ``channels`` channels."""

    def __init__(self, stages: Sequence[SteppedStage], channels: int) -> None:
        self._steps = [stage.step for stage in stages]
        self._pointers = ffi.new("lg_step *[]", [step.c for step in self._steps])
        self._counts = ffi.new("int[]", len(self._steps))
        self._channels = channels
        self._mix = np.empty(0, dtype=np.float32)
        self._mix_view: Any = ffi.NULL

    def run(self, frames: np.ndarray) -> Any:
        """Feed every step ``frames`` (C-contiguous float32, shape (n, channels)); returns the
        count each step wrote (a C ``int[]``, indexed like the stages)."""
        n = len(frames)
        if n > len(self._mix) and self._channels > 1:
            self._mix = np.empty(n, dtype=np.float32)
            self._mix_view = view(self._mix, "float")
        data = view(frames, "float") if n else ffi.NULL
        total = len(self._steps)
        first = 0
        while True:
            failed = lib.lg_chain_run(
                self._pointers, total, first, data, n, self._channels, self._mix_view, self._counts
            )
            if failed == total:
                return self._counts
            step = self._steps[check(failed, "lg_chain_run")]
            if self._counts[failed] != lib.LG_ERR_CAPACITY:
                check(self._counts[failed], step.name)
            step.grow(n)  # that step consumed nothing: it runs again, with the rest after it
            first = failed
