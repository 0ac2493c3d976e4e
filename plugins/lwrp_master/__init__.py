"""lwrp_master: Loudness-War Restraint mastering. Classifies a track by its integrated loudness
and crest factor (from its fingerprint) and masters the stream accordingly, always finishing
with a lookahead true-peak limiter, in the C kernels ``csrc/master.c`` and ``limiter.c``."""

from __future__ import annotations

from collections.abc import Callable

from legato import hookimpl
from legato.stage import OutputSpec, StageType, TrackPlan

from .kernel import MasterKernel
from .params import MasterParams, check
from .plan import MasteringPlan, expected_after, plan_mastering
from .stage import LwrpMaster

LEGATO_API_VERSION = 1

__all__ = [
    "LWRP_MASTER",
    "LwrpMaster",
    "MasterKernel",
    "MasterParams",
    "MasteringPlan",
    "expected_after",
    "plan_mastering",
]

LWRP_MASTER = StageType(
    name="lwrp_master",
    doc=(
        "Loudness-War Restraint mastering; outputs audio (same rate, channels and length as "
        "its input, output sample n from input sample n). From the track's integrated loudness "
        "and crest factor (params, from its fingerprint): loud (> loud_lufs) and compressed "
        "(crest < compressed_crest_db) tracks get a downward expander restoring the dips after "
        "attacks (amount (compressed_crest_db - crest) / 10, from 0.1 to 1) and a small gain "
        "reduction bringing the estimated peak to the ceiling (at most max_reduction_db), "
        "never compression; loud dynamic tracks are left alone; quiet tracks get makeup gain "
        "towards target_lufs, bounded by max_makeup_db and by headroom (estimated peak at most "
        "max_limiting_db over the ceiling); without the measurements, only the limiter acts. "
        "Every class ends with a lookahead true-peak limiter: the output's 4x-oversampled "
        "peak, as the project's true-peak meter measures it, stays at or below ceiling_dbtp. "
        "The output lags the input by about 2 * lookahead_ms + 1 ms until the end of the "
        "stream returns the rest; it is bit-identical for any split of the stream. Non-finite "
        "input samples are processed as 0.0."
    ),
    params=MasterParams,
    create=LwrpMaster,
    track_plan=TrackPlan(
        measurements={"integrated_lufs": "integrated_lufs", "crest_db": "crest_db"},
        plan="mastering",
        class_field="class",
        expected={
            "integrated_lufs": "expected_integrated_lufs",
            "crest_db": "expected_crest_db",
            "true_peak_dbtp": "expected_true_peak_dbtp",
        },
    ),
    outputs=(
        OutputSpec(
            kind="mastering",
            doc=(
                "Once, at sample 0: the track's class (compressed_loud, dynamic_loud, quiet, or "
                "unknown when the measurements needed are missing: fallback is then true), the "
                "static gain, the expander's amount (0 = off), the ceiling, the "
                "measurements the plan used (None when unknown) and the plan's static estimate "
                "of the output's loudness, crest factor and true peak (input plus static "
                "gain, peak held at the ceiling; the expander's further effect is left out)."
            ),
            rate="variable",
            fields={
                "class": "compressed_loud|dynamic_loud|quiet|unknown",
                "fallback": "bool",
                "gain_db": "dB",
                "expander_amount": "ratio",
                "ceiling_dbtp": "dBTP",
                "integrated_lufs": "LUFS",
                "crest_db": "dB",
                "expected_integrated_lufs": "LUFS",
                "expected_crest_db": "dB",
                "expected_true_peak_dbtp": "dBTP",
            },
        ),
        OutputSpec(
            kind="summary",
            doc=(
                "At end of stream (sample: its length): how many sample positions the limiter "
                "turned down, its deepest gain reduction, the output's true peak as the "
                "project's true-peak meter measures it (floored at -120), and the non-finite "
                "input samples processed as 0.0."
            ),
            rate="end",
            fields={
                "limited_samples": "count",
                "max_gain_reduction_db": "dB",
                "output_true_peak_dbtp": "dBTP",
                "nonfinite_samples": "count",
            },
        ),
    ),
    input="multichannel",
    produces_audio=True,
    check=check,
)


@hookimpl
def register_stages(register: Callable[[StageType], None]) -> None:
    register(LWRP_MASTER)
