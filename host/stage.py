"""The stage interface: a self-describing stage *type* and the streaming *instance* it creates.

A stage type declares its parameters (an attrs class whose fields carry units and ranges), its
outputs and what audio it consumes, so `legato plugins`, `legato check`, docs and clients can read
its interface without running it (the Vamp descriptor idea).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import attrs
import numpy as np

if TYPE_CHECKING:
    from .kernels import Step

Event = dict[str, Any]
"""One analysis result: at least ``kind`` and ``sample`` (int, samples since stream start)."""


@attrs.frozen
class StreamFormat:
    """What a stage instance is fed: the session's sample rate and its channel count."""

    sample_rate: int
    channels: int


class Stage(Protocol):
    """A streaming stage instance. Blocks may have any length (including 0); results must not
    depend on how the stream was split."""

    def process(self, block: np.ndarray) -> list[Event]:
        """Consume the next block (float32, C-contiguous; shape (n,) for mono stages, (n, ch)
        otherwise) and return the events completed by it."""
        ...

    def finish(self) -> list[Event]:
        """End of stream: return the remaining events and any ``summary``."""
        ...


@runtime_checkable
class AudioStage(Protocol):
    """A stage whose output is audio (same rate and channel count as its input) plus events;
    downstream stages may consume that audio. Same chunk-invariance rule as ``Stage``."""

    def process_audio(self, block: np.ndarray) -> tuple[np.ndarray, list[Event]]:
        """Consume a block; return the output audio ready so far and the completed events."""
        ...

    def finish_audio(self) -> tuple[np.ndarray, list[Event]]:
        """End of stream: return the remaining audio (e.g. a limiter's lookahead) and events."""
        ...


@runtime_checkable
class SteppedStage(Protocol):
    """A stage whose block work is one C call, a ``legato.kernels.Step``. A pipeline's graph
    runs the steps of its stages in one C call per block (their input mixed down once) and
    asks a stage for its ``events`` only when its step wrote some outputs; so ``process(block)``
    must be ``events(step.process(block))``, everything else a block changes being kept by the
    kernel (``step.frames`` counts the samples)."""

    step: Step

    def events(self, count: int) -> list[Event]:
        """The events of the ``count`` outputs the step just wrote into ``step.arrays``."""
        ...


def param(
    default: Any,
    *,
    doc: str,
    unit: str = "",
    min: float | None = None,
    max: float | None = None,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """Declare a stage parameter: an attrs field whose metadata describes it to users."""
    meta = {"doc": doc, "unit": unit, "min": min, "max": max, "choices": choices}
    return attrs.field(default=default, metadata={"legato": meta}, kw_only=True)


@attrs.frozen
class ParamSpec:
    """A parameter as described to users (from the params class's field metadata)."""

    name: str
    type: str
    default: Any
    doc: str
    unit: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None


@attrs.frozen
class OutputSpec:
    """One kind of event a stage emits, the fields it carries (field -> unit) and its rate:
    ``per_hop`` (one every ``hop`` samples), ``variable`` (when something happens) or ``end``."""

    kind: str
    doc: str
    rate: Literal["per_hop", "variable", "end"]
    fields: Mapping[str, str]


InputKind = Literal["mono", "multichannel"]

MEASURES = ("integrated_lufs", "crest_db", "true_peak_dbtp")
"""What a track's fingerprint can tell a stage that plans from it, in a vocabulary shared by
fingerprinters and planners: integrated loudness (LUFS, BS.1770), crest factor (dB, sample
peak over RMS) and true peak (dBTP)."""


@attrs.frozen
class Fingerprinter:
    """Declares that a stage type fingerprints whole tracks, so the track library can use it
    (through the registry, never by import). Created with its default params and fed a track
    from its start, the stage emits at ``finish`` one ``fingerprint`` event whose ``values``
    are numbers in the order of ``names``. Results of different ``version``s are never mixed
    in caches. The library stops reading a track after ``window_s`` seconds (None: reads it
    all), the part the stage analyses with its default params. ``measures`` maps each of the
    ``MEASURES`` the fingerprint holds to the dimension holding it."""

    version: int
    names: tuple[str, ...]
    window_s: float | None = None
    measures: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class TrackPlan:
    """Declares how an audio stage plans from the track it is about to play (a playback
    pipeline's mastering): ``measurements`` maps params the host fills, when the config leaves
    them unset, to the measure (one of ``MEASURES``) of the track's fingerprint each takes;
    ``plan`` is the kind of the event
    the stage emits for an empty first block describing its plan, whose ``class_field`` names
    the treatment and whose fields in ``expected`` (measure -> field, for ``integrated_lufs``,
    ``crest_db``, ``true_peak_dbtp``) estimate the output. Players are told all of it."""

    measurements: Mapping[str, str]
    plan: str
    class_field: str = "class"
    expected: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class StageType:
    """Everything the host needs to validate, describe and instantiate a stage."""

    name: str
    doc: str
    params: type
    create: Callable[[Any, StreamFormat], Stage]
    outputs: tuple[OutputSpec, ...]
    input: InputKind = "mono"
    produces_audio: bool = False
    """True for stages whose output audio can feed other stages (e.g. mastering)."""
    check: Callable[[Any], list[tuple[str, str]]] | None = None
    """Cross-field validation: returns (param name, message) pairs for invalid combinations."""
    fingerprinter: Fingerprinter | None = None
    """Set when the stage can fingerprint library tracks (see ``Fingerprinter``)."""
    track_plan: TrackPlan | None = None
    """Set when the stage plans from a library track's fingerprint (see ``TrackPlan``)."""

    def param_specs(self) -> list[ParamSpec]:
        return param_specs(self.params)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description, as printed by `legato plugins`."""
        return {
            "type": self.name,
            "doc": self.doc,
            "input": self.input,
            "produces_audio": self.produces_audio,
            "params": describe_params(self.params),
            "outputs": [
                {"kind": o.kind, "doc": o.doc, "rate": o.rate, "fields": dict(o.fields)}
                for o in self.outputs
            ],
            "fingerprinter": None
            if self.fingerprinter is None
            else attrs.asdict(self.fingerprinter),
            "track_plan": None if self.track_plan is None else attrs.asdict(self.track_plan),
        }


def param_specs(cls: type) -> list[ParamSpec]:
    """The user-facing description of every field of a params class declared with ``param``."""
    specs = []
    for field in attrs.fields(attrs.resolve_types(cls)):
        meta = field.metadata.get("legato", {})
        specs.append(
            ParamSpec(
                name=field.name,
                type=getattr(field.type, "__name__", str(field.type)),
                default=field.default,
                doc=meta.get("doc", ""),
                unit=meta.get("unit", ""),
                min=meta.get("min"),
                max=meta.get("max"),
                choices=meta.get("choices"),
            )
        )
    return specs


def describe_params(cls: type) -> list[dict[str, Any]]:
    """JSON-ready parameter descriptions, as printed by `legato plugins`."""
    return [attrs.asdict(p) for p in param_specs(cls)]
