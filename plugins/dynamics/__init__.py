"""dynamics: per-hop RMS and peak levels with MIDI velocity and dynamic marking, and ITU-R
BS.1770-4 loudness (momentary, short-term, gated integrated), EBU Tech 3342 loudness range and
4x-oversampled true peak, from the C kernels ``csrc/levels.c``, ``loudness.c`` and
``truepeak.c``."""

from __future__ import annotations

from collections.abc import Callable

from legato import hookimpl
from legato.stage import OutputSpec, StageType

from .mapping import MARKING_BOUNDS, marking_thresholds_db
from .params import DynamicsParams
from .stage import Dynamics

LEGATO_API_VERSION = 1

_DEFAULT_FLOOR = DynamicsParams().floor_db
_BOUNDS = ", ".join(
    f"{name} from {db:.1f}"
    for name, db in zip(
        ("p", "mp", "mf", "f", "ff"), marking_thresholds_db(_DEFAULT_FLOOR), strict=True
    )
)

DYNAMICS = StageType(
    name="dynamics",
    doc=(
        "Per-hop RMS and peak level, MIDI velocity and dynamic marking with the BS.1770-4 "
        "momentary and short-term loudness; at the end, integrated loudness, loudness range, "
        "true peak and the spread of levels."
    ),
    params=DynamicsParams,
    create=Dynamics,
    outputs=(
        OutputSpec(
            kind="dynamics",
            doc=(
                "One per hop, at its centre sample; a shorter last hop is reported at the end "
                "of the stream with its length. rms_db is the power mean over the hop's samples "
                "and channels (dBFS: a full-scale sine is -3.01), peak_db its largest absolute "
                "sample. velocity is linear in rms_db from 1 at floor_db to 127 at 0 dBFS; "
                "marking is the dynamic whose notation-program velocity (pp 33, p 49, mp 64, "
                "mf 80, f 96, ff 112) is nearest, so it begins at velocity "
                f"{', '.join(map(str, MARKING_BOUNDS))} for p ... ff (at the default floor, rms_db "
                f"{_BOUNDS}). momentary_lufs and short_term_lufs are the 400 ms and 3 s "
                "K-weighted loudness of the windows ending at the hop's end, counting the time "
                "before the stream as silence. dB values are floored at -120."
            ),
            rate="per_hop",
            fields={
                "length": "samples",
                "rms_db": "dBFS",
                "peak_db": "dBFS",
                "velocity": "MIDI 1-127",
                "marking": "pp|p|mp|mf|f|ff",
                "momentary_lufs": "LUFS",
                "short_term_lufs": "LUFS",
            },
        ),
        OutputSpec(
            kind="summary",
            doc=(
                "At end of stream (sample: its length). integrated_lufs is the BS.1770-4 gated "
                "loudness (None if no 400 ms block passes the -70 LUFS and relative gates), "
                "loudness_range_lu the EBU Tech 3342 range of the 3 s loudness (None if no "
                "window passes its gates). true_peak_dbtp is the 4x-oversampled peak, peak_db "
                "the sample peak, max_*_lufs the loudest window at any sample position, rms_db "
                "the power mean of the whole stream. dynamic_range_db is the 95th minus the 10th "
                "percentile of the full hops' rms_db above floor_db (None if none is). "
                "nonfinite_samples counts NaN/Inf input samples, measured as 0.0."
            ),
            rate="end",
            fields={
                "integrated_lufs": "LUFS",
                "loudness_range_lu": "LU",
                "true_peak_dbtp": "dBTP",
                "peak_db": "dBFS",
                "max_momentary_lufs": "LUFS",
                "max_short_term_lufs": "LUFS",
                "rms_db": "dBFS",
                "dynamic_range_db": "dB",
                "nonfinite_samples": "count",
            },
        ),
    ),
    input="multichannel",
)


@hookimpl
def register_stages(register: Callable[[StageType], None]) -> None:
    register(DYNAMICS)
