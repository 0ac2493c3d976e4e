"""The streaming pitch_yin stage: feeds blocks to the C estimator, turns its frames into pitch
events with note names, and keeps the voiced frames' medians (in fixed memory) for the
end-of-stream summary."""

from __future__ import annotations

import copy
import functools
import math
from typing import Any

import numpy as np

from legato.checkpoints import load_kernel, pack, reading, save_kernel, unpack
from legato.kernels import Step, lib, owned
from legato.stage import Event, StreamFormat

from .medians import VoicedMedians
from .notes import note_at, semitones
from .params import PitchYinParams

CHECKPOINT = ("pitch_yin", 1)
"""The stage's checkpoint name and version (raised whenever what it holds changes)."""


def new_estimator(params: PitchYinParams, sample_rate: int) -> Any:
    """A C estimator for these params (owned: freed with the returned object)."""
    state = lib.lg_yin_new(
        float(sample_rate),
        params.window,
        params.hop,
        params.fmin,
        params.fmax,
        params.threshold,
        params.silence_db,
    )
    return owned(state, lib.lg_yin_free, f"pitch_yin at {sample_rate} Hz with {params}")


class PitchYin:
    """One stream's pitch tracker."""

    def __init__(self, params: PitchYinParams, fmt: StreamFormat) -> None:
        self._tuning = params.tuning
        self._hop = params.hop
        self._state = new_estimator(params, fmt.sample_rate)
        self._centre = lib.lg_yin_window(self._state) // 2
        self._frames = 0
        self._medians = VoicedMedians(params.fmin, params.fmax)
        self._a4_cents = 1200.0 * math.log2(params.tuning / 440.0)
        self.step = Step(
            "lg_yin_step",
            self._state,
            [(np.float64, "double"), (np.float64, "double"), (np.intc, "int")],
            functools.partial(lib.lg_yin_max_outputs, self._state),
            mono=True,
        )

    def process(self, block: np.ndarray) -> list[Event]:
        count = self.step.process(np.ascontiguousarray(block, dtype=np.float32))
        return self.events(count) if count else []

    def events(self, count: int) -> list[Event]:
        """Pitch events for the frames the step wrote; the note fields are None when unvoiced."""
        f0, confidence, voiced = self.step.views
        return [self._event(f0[k], confidence[k], voiced[k]) for k in range(count)]

    def finish(self) -> list[Event]:
        """Only complete frames are analysed: the samples of a final partial frame count in the
        summary's stream length but produce no pitch event."""
        voiced = self._medians.count
        return [
            {
                "kind": "summary",
                "sample": self.step.frames,
                "frames": self._frames,
                "voiced_frames": voiced,
                "median_f0": self._medians.f0(),
                "median_confidence": self._medians.confidence(),
                "nonfinite_samples": int(lib.lg_yin_nonfinite(self._state)),
            }
        ]

    def checkpoint(self) -> bytes:
        fields = {"frames": self._frames, "samples": self.step.frames}
        blobs = {"yin": save_kernel(lib.lg_yin_save, self._state), **self._medians.state()}
        return pack(*CHECKPOINT, fields, blobs)

    def restore(self, data: bytes) -> None:
        fields, blobs = unpack(data, *CHECKPOINT)
        with reading(CHECKPOINT[0]):
            frames, samples = int(fields["frames"]), int(fields["samples"])
            medians = copy.deepcopy(self._medians)
            medians.restore({"cents": blobs["cents"], "confidence": blobs["confidence"]})
            kernel = blobs["yin"]
        load_kernel(lib.lg_yin_load, self._state, kernel, CHECKPOINT[0])
        self._frames, self.step.frames, self._medians = frames, samples, medians

    def _event(self, f0: float, confidence: float, voiced: int) -> Event:
        sample = self._frames * self._hop + self._centre
        self._frames += 1
        if voiced:
            position = semitones(f0, self._tuning)
            midi, note, cents = note_at(position)
            self._medians.add_cents(100.0 * position + self._a4_cents, confidence)
        else:
            midi = note = cents = None
        return {
            "kind": "pitch",
            "sample": sample,
            "f0": f0,
            "voiced": bool(voiced),
            "confidence": confidence,
            "midi": midi,
            "note": note,
            "cents": cents,
        }
