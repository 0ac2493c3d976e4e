"""pitch_yin: fundamental frequency, voicing and note name per hop with YIN (de Cheveigné &
Kawahara, JASA 2002), in the C kernel ``csrc/yin.c``."""

from __future__ import annotations

from collections.abc import Callable

from legato import hookimpl
from legato.stage import OutputSpec, StageType

from .params import PitchYinParams, check
from .stage import PitchYin

LEGATO_API_VERSION = 1

PITCH_YIN = StageType(
    name="pitch_yin",
    doc=(
        "Monophonic pitch with YIN: one estimate per hop (f0, voicing, confidence, nearest "
        "equal-tempered note and cents off it) and a summary. Frame k analyses samples "
        "[k*hop, k*hop + W) as soon as they have arrived and is reported at the window centre; "
        "W is the window param, or larger when fmin needs it at the stream's rate. A partial "
        "frame at the end of the stream is not analysed."
    ),
    params=PitchYinParams,
    create=PitchYin,
    outputs=(
        OutputSpec(
            kind="pitch",
            doc=(
                "One analysis frame, at sample k*hop + W//2. f0 is 0.0 when unvoiced (no dip of "
                "d' below threshold, or silence); confidence is 1 - d' at the chosen dip "
                "(0 for silence, reported for unvoiced frames too); midi, note (sharps, C4 = "
                "MIDI 60) and cents (from the nearest note, -50 to +50, A4 = tuning) are None "
                "when unvoiced."
            ),
            rate="per_hop",
            fields={
                "f0": "Hz",
                "voiced": "bool",
                "confidence": "ratio",
                "midi": "MIDI note",
                "note": "name",
                "cents": "cents",
            },
        ),
        OutputSpec(
            kind="summary",
            doc=(
                "At end of stream: sample is the stream length; frames analysed, voiced frames, "
                "median f0 and median confidence over the voiced frames (None if there are "
                "none; read from fixed-size histograms, within half a cent and 5e-4 of the "
                "exact medians, so a long stream costs no memory), and how many non-finite "
                "input samples were read as silence."
            ),
            rate="end",
            fields={
                "frames": "count",
                "voiced_frames": "count",
                "median_f0": "Hz",
                "median_confidence": "ratio",
                "nonfinite_samples": "count",
            },
        ),
    ),
    input="mono",
    check=check,
)


@hookimpl
def register_stages(register: Callable[[StageType], None]) -> None:
    register(PITCH_YIN)
