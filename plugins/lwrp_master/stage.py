"""The streaming lwrp_master stage: plans the processing from the track's measurements, runs the
mastering kernel over the stream and meters what comes out."""

from __future__ import annotations

import math

import numpy as np

from legato.checkpoints import pack, reading, unpack
from legato.kernels import frames_of
from legato.meters import DB_FLOOR, TruePeakMeter
from legato.stage import Event, StreamFormat

from .kernel import MasterKernel
from .params import MasterParams
from .plan import MasteringPlan, expected_after, known, plan_mastering

CHECKPOINT = ("lwrp_master", 1)
"""The stage's checkpoint name and version (raised whenever what it holds changes)."""


def _db(amplitude: float) -> float:
    """dBFS floored at the dynamics stage's DB_FLOOR (silence), to stay finite in JSON."""
    return 20.0 * math.log10(amplitude) if amplitude > 10.0 ** (DB_FLOOR / 20.0) else DB_FLOOR


class LwrpMaster:
    """One stream's mastering: an audio stage (``process_audio``/``finish_audio``), and usable
    as an events-only stage (``process``/``finish``) where its audio is not wanted."""

    def __init__(self, params: MasterParams, fmt: StreamFormat) -> None:
        if not 8000 <= fmt.sample_rate <= 384000:
            raise ValueError(f"mastering runs at 8000-384000 Hz, not {fmt.sample_rate}")
        self.plan: MasteringPlan = plan_mastering(params)
        self._params = params
        self._channels = fmt.channels
        self._kernel = MasterKernel(fmt.channels, fmt.sample_rate, self.plan, params)
        self._meter = TruePeakMeter(fmt.channels)
        self._frames = 0
        self._announced = False
        self._finished = False

    @property
    def latency(self) -> int:
        """Frames the output lags the input until ``finish_audio`` returns the rest."""
        return self._kernel.latency

    def process_audio(self, block: np.ndarray) -> tuple[np.ndarray, list[Event]]:
        if self._finished:
            raise RuntimeError("lwrp_master: process_audio after finish_audio")
        frames = frames_of(block, self._channels)
        self._frames += len(frames)
        out = self._kernel.process(frames)
        self._meter.process(out)
        return out, self._announce()

    def finish_audio(self) -> tuple[np.ndarray, list[Event]]:
        if self._finished:
            raise RuntimeError("lwrp_master: finish_audio called twice")
        self._finished = True
        events = self._announce()
        tail = self._kernel.finish()
        self._meter.process(tail)
        kernel = self._kernel
        events.append(
            {
                "kind": "summary",
                "sample": self._frames,
                "limited_samples": kernel.limited,
                "max_gain_reduction_db": kernel.max_reduction_db,
                "output_true_peak_dbtp": _db(self._meter.peak),
                "nonfinite_samples": kernel.nonfinite,
            }
        )
        return tail, events

    def process(self, block: np.ndarray) -> list[Event]:
        return self.process_audio(block)[1]

    def checkpoint(self) -> bytes:
        fields = {"frames": self._frames, "announced": self._announced, "finished": self._finished}
        blobs = {"master": self._kernel.save(), "meter": self._meter.save()}
        return pack(*CHECKPOINT, fields, blobs)

    def restore(self, data: bytes) -> None:
        """The plan is not in the checkpoint: it follows from the params, which must be the
        same (the kernel's checkpoint checks the gain and expander it was made with)."""
        fields, blobs = unpack(data, *CHECKPOINT)
        with reading(CHECKPOINT[0]):
            frames = int(fields["frames"])
            announced, finished = bool(fields["announced"]), bool(fields["finished"])
            master, meter = blobs["master"], blobs["meter"]
        backup = self._meter.save()
        self._meter.load(meter, CHECKPOINT[0])
        try:
            self._kernel.load(master, CHECKPOINT[0])
        except Exception:
            self._meter.load(backup, CHECKPOINT[0])
            raise
        self._frames, self._announced, self._finished = frames, announced, finished

    def finish(self) -> list[Event]:
        return self.finish_audio()[1]

    def _announce(self) -> list[Event]:
        """The plan, once, at sample 0."""
        if self._announced:
            return []
        self._announced = True
        plan, params = self.plan, self._params
        return [
            {
                "kind": "mastering",
                "sample": 0,
                "class": plan.cls,
                "fallback": plan.fallback,
                "gain_db": plan.gain_db,
                "expander_amount": plan.expander_amount,
                "ceiling_dbtp": params.ceiling_dbtp,
                "integrated_lufs": known(params.integrated_lufs),
                "crest_db": known(params.crest_db),
                **{f"expected_{k}": v for k, v in expected_after(params, plan).items()},
            }
        ]
