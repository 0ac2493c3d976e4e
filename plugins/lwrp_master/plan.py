"""The Loudness-War Restraint rule: classify a track by its integrated loudness and crest factor
and decide the processing, before any audio is seen (the stream is mastered as it arrives)."""

from __future__ import annotations

import math
from typing import Literal

import attrs

from .params import MasterParams

MasteringClass = Literal["compressed_loud", "dynamic_loud", "quiet", "unknown"]

CREST_SPAN_DB = 10.0
"""The expander's amount grows by 1 per this many dB of crest factor below the threshold: a
brickwall-limited master at 3-6 dB of crest gets the full amount, one just under the threshold
the minimum."""
MIN_AMOUNT = 0.1
MAX_AMOUNT = 1.0
"""Amount bounds: at least a gentle 1:1.1 expansion for any compressed track, at most 1:2."""
UNKNOWN_PEAK_DBTP = 0.0
"""A quiet track's peak when neither its true peak nor its crest factor is known: the worst
case, so the makeup gain cannot push it further into the limiter than the bound allows."""


@attrs.frozen
class MasteringPlan:
    """What the stage will do to the whole track: its class, the static gain, the expander's
    amount (0 = off), and whether the fallback chain was taken for want of measurements."""

    cls: MasteringClass
    gain_db: float
    expander_amount: float
    fallback: bool


def known(value: float | None) -> float | None:
    """A measurement, or None when it is unset or NaN."""
    return None if value is None or math.isnan(value) else value


def plan_mastering(params: MasterParams) -> MasteringPlan:
    """The rule. Loud and compressed: downward expansion (more the lower the crest) and a small
    gain reduction bringing the peak to the ceiling; loud and dynamic: untouched; quiet: makeup
    gain towards the target, bounded by max_makeup_db and by headroom. Without the loudness,
    or the crest factor of a loud track, the class is unknown and only the limiter acts: with
    nothing measured, leaving the track alone is the one choice that cannot make it worse."""
    lufs = known(params.integrated_lufs)
    crest = known(params.crest_db)
    if lufs is None:
        return MasteringPlan("unknown", 0.0, 0.0, fallback=True)
    if lufs <= params.loud_lufs:
        return MasteringPlan("quiet", makeup_db(params), 0.0, fallback=False)
    if crest is None:
        return MasteringPlan("unknown", 0.0, 0.0, fallback=True)
    if crest < params.compressed_crest_db:
        amount = (params.compressed_crest_db - crest) / CREST_SPAN_DB
        amount = min(max(amount, MIN_AMOUNT), MAX_AMOUNT)
        gain = max(-params.max_reduction_db, min(0.0, params.ceiling_dbtp - peak_dbtp(params)))
        return MasteringPlan("compressed_loud", gain, amount, fallback=False)
    return MasteringPlan("dynamic_loud", 0.0, 0.0, fallback=False)


def peak_dbtp(params: MasterParams) -> float:
    """The track's true peak, or its estimate: integrated loudness + crest factor (the sample
    peak over the RMS, with the loudness standing in for the RMS), or the worst case."""
    peak = known(params.true_peak_dbtp)
    if peak is not None:
        return peak
    lufs, crest = known(params.integrated_lufs), known(params.crest_db)
    return lufs + crest if lufs is not None and crest is not None else UNKNOWN_PEAK_DBTP


def makeup_db(params: MasterParams) -> float:
    """Gain towards target_lufs for a quiet track (integrated_lufs known), never negative, at
    most max_makeup_db, and small enough that the track's (estimated) true peak lands at most
    max_limiting_db above the ceiling."""
    lufs = known(params.integrated_lufs)
    if lufs is None:
        raise ValueError("makeup gain needs the integrated loudness")
    headroom = params.ceiling_dbtp + params.max_limiting_db - peak_dbtp(params)
    return max(0.0, min(params.target_lufs - lufs, params.max_makeup_db, headroom))


def expected_after(params: MasterParams, plan: MasteringPlan) -> dict[str, float | None]:
    """The plan's static estimate of the output's integrated loudness, crest factor and true
    peak: the input's plus the static gain, with the peak held at the ceiling, and what the
    limiter takes off the peaks the makeup gain pushes over the ceiling taken off the crest
    factor. Left out: the expander of a compressed-loud track (it lowers the loudness and
    raises the crest factor further, by an amount that depends on the music) and the limiting
    of a track's own peaks over the ceiling. None where the input's value is unknown."""
    lufs, crest = known(params.integrated_lufs), known(params.crest_db)
    measured = known(params.true_peak_dbtp) is not None or None not in (lufs, crest)
    peak = peak_dbtp(params) + plan.gain_db if measured else None
    pushed = 0.0 if peak is None else max(0.0, min(plan.gain_db, peak - params.ceiling_dbtp))
    return {
        "integrated_lufs": None if lufs is None else lufs + plan.gain_db,
        "crest_db": None if crest is None else max(0.0, crest - pushed),
        "true_peak_dbtp": params.ceiling_dbtp if peak is None else min(peak, params.ceiling_dbtp),
    }
