"""An example third-party stage: zero-crossing rate per hop, in pure numpy."""

from __future__ import annotations

import attrs
import numpy as np

from legato import hookimpl
from legato.stage import Event, OutputSpec, StageType, StreamFormat, param

LEGATO_API_VERSION = 1


@attrs.frozen
class ZeroCrossingParams:
    hop: int = param(256, doc="samples per reading", unit="samples", min=1, max=65536)


class ZeroCrossings:
    """Counts sign changes per hop; keeps the previous sample so any block split agrees."""

    def __init__(self, params: ZeroCrossingParams, fmt: StreamFormat) -> None:
        self.hop = params.hop
        self.rate = fmt.sample_rate
        self.previous: float | None = None
        self.count = 0
        self.filled = 0
        self.position = 0

    def process(self, block: np.ndarray) -> list[Event]:
        events: list[Event] = []
        for value in block.tolist():
            if self.previous is not None and (self.previous < 0.0) != (value < 0.0):
                self.count += 1
            self.previous = value
            self.filled += 1
            self.position += 1
            if self.filled == self.hop:
                events.append(
                    {
                        "kind": "zero_crossings",
                        "sample": self.position - self.hop,
                        "rate_hz": self.count * self.rate / self.hop,
                    }
                )
                self.count = self.filled = 0
        return events

    def finish(self) -> list[Event]:
        return [{"kind": "summary", "sample": self.position}]


ZERO_CROSSINGS = StageType(
    name="zero_crossings",
    doc="Zero-crossing rate per hop.",
    params=ZeroCrossingParams,
    create=ZeroCrossings,
    outputs=(
        OutputSpec("zero_crossings", "sign changes per second", "per_hop", {"rate_hz": "Hz"}),
    ),
)


@hookimpl
def register_stages(register):
    register(ZERO_CROSSINGS)
