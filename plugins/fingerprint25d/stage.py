"""The streaming fingerprint25d stage: feeds the analysis window to the kernel and reports the
fingerprint at the end of the stream."""

from __future__ import annotations

import numpy as np

from legato.checkpoints import pack, reading, unpack
from legato.stage import Event, StreamFormat

from .dimensions import ALGORITHM_VERSION, NAMES
from .fingerprint import window_frames
from .kernel import FingerprintKernel
from .params import Fingerprint25dParams

CHECKPOINT = ("fingerprint25d", 1)
"""The stage's checkpoint name and version (raised whenever what it holds changes)."""


class Fingerprint25d:
    """One stream's fingerprint; no events until ``finish``."""

    def __init__(self, params: Fingerprint25dParams, fmt: StreamFormat) -> None:
        self._kernel = FingerprintKernel(fmt.sample_rate, fmt.channels)
        self._limit = window_frames(fmt.sample_rate, params.max_seconds)
        self._samples = 0

    def process(self, block: np.ndarray) -> list[Event]:
        fed = self._kernel.frames
        if self._limit is None:
            self._kernel.process(block)
        elif fed < self._limit:
            self._kernel.process(block[: self._limit - fed])
        self._samples += len(block)
        return []

    def checkpoint(self) -> bytes:
        return pack(*CHECKPOINT, {"samples": self._samples}, {"kernel": self._kernel.save()})

    def restore(self, data: bytes) -> None:
        fields, blobs = unpack(data, *CHECKPOINT)
        with reading(CHECKPOINT[0]):
            samples, kernel = int(fields["samples"]), blobs["kernel"]
        self._kernel.load(kernel, CHECKPOINT[0])
        self._samples = samples

    def finish(self) -> list[Event]:
        return [
            {
                "kind": "fingerprint",
                "sample": self._samples,
                "version": ALGORITHM_VERSION,
                "values": list(self._kernel.result()),
                "names": list(NAMES),
                "analysed_samples": self._kernel.frames,
                "nonfinite_samples": self._kernel.nonfinite,
            }
        ]
