"""Parameters of the onsets_flux stage, with the reasoning behind each default.

Defaults follow SuperFlux (Böck & Widmer, DAFx 2013) and the peak picking of Böck, Krebs &
Schedl, "Evaluating the online capabilities of onset detection methods" (ISMIR 2012), translated
to magnitudes normalised by the window sum and natural logarithms.
"""

from __future__ import annotations

import attrs

from legato.stage import param


@attrs.frozen
class OnsetsFluxParams:
    """How the onset detection function is computed and how its peaks are picked."""

    window: int = param(
        1024,
        doc=(
            "Analysis window (Hann). 23 ms at 44.1 kHz: long enough to resolve the quarter-tone "
            "bands above ~1.5 kHz, short enough to separate fast notes."
        ),
        unit="samples",
        min=128,
        max=16384,
    )
    hop: int = param(
        256,
        doc="Frame step: the time grid of the detection function (5.8 ms at 44.1 kHz).",
        unit="samples",
        min=16,
        max=4096,
    )
    compression: float = param(
        1000.0,
        doc=(
            "γ in ln(1 + γ·|X|), |X| normalised by the window sum (a full-scale sinusoid peaks "
            "at 0.5). The knee γ·|X| = 1 sits at a partial of about -54 dBFS, where SuperFlux's "
            "log10(1 + |X|) on un-normalised 2048-point magnitudes puts it: louder content "
            "counts in relative (dB) terms whatever the playing level, the noise floor below "
            "the knee adds little flux."
        ),
        min=1.0,
        max=1e6,
    )
    delta: float = param(
        2.5,
        doc=(
            "How far the flux peak must rise above the local mean, in nepers summed over the "
            "filter bands: SuperFlux's threshold 1.1 (log10) expressed in natural logarithms."
        ),
        unit="Np",
        min=0.0,
        max=1000.0,
    )
    pre_avg_ms: float = param(
        100.0,
        doc="Past context of the moving-mean threshold (SuperFlux: 100-150 ms).",
        unit="ms",
        min=0.0,
        max=2000.0,
    )
    post_avg_ms: float = param(
        30.0,
        doc=(
            "Future context of the moving-mean threshold, so a peak must also stand out against "
            "what follows it; adds latency."
        ),
        unit="ms",
        min=0.0,
        max=500.0,
    )
    pre_max_ms: float = param(
        30.0,
        doc="A peak must be the largest flux value this far back.",
        unit="ms",
        min=0.0,
        max=500.0,
    )
    post_max_ms: float = param(
        30.0,
        doc=(
            "A peak must be the largest flux value this far ahead, so the rising part of one "
            "attack does not fire before its maximum; adds latency."
        ),
        unit="ms",
        min=0.0,
        max=500.0,
    )
    min_gap_ms: float = param(
        30.0,
        doc=(
            "Minimum time between reported onsets (SuperFlux's 'combine'); about the limit "
            "below which two attacks fuse perceptually."
        ),
        unit="ms",
        min=0.0,
        max=1000.0,
    )
    silence_db: float = param(
        -60.0,
        doc=(
            "No onsets where every frame from the peak to the end of the lookahead is quieter "
            "than this (mean square re full scale)."
        ),
        unit="dBFS",
        min=-150.0,
        max=0.0,
    )


def check(params: OnsetsFluxParams) -> list[tuple[str, str]]:
    """Cross-field constraints the kernel relies on."""
    problems = []
    if params.hop > params.window:
        problems.append(
            ("hop", f"must not exceed window ({params.window}), got {params.hop}: samples would "
             "be skipped")
        )
    return problems
