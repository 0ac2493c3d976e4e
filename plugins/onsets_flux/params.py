"""Parameters of the onsets_flux stage and the reasoning behind each default.

The detection function follows SuperFlux (Böck & Widmer, DAFx 2013); the threshold is the
moving median plus offset of Bello et al., "A tutorial on onset detection in music signals"
(IEEE TASLP 2005); the windows follow Böck, Krebs & Schedl, "Evaluating the online capabilities
of onset detection methods" (ISMIR 2012).
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
            "Analysis window (Hann). 23 ms at 44.1 kHz: separates notes 30 ms apart and resolves "
            "quarter tones above ~1.5 kHz. 2048 resolves low notes better at half the time "
            "resolution."
        ),
        unit="samples",
        min=128,
        max=16384,
    )
    hop: int = param(
        256,
        doc="Frame step, the time grid of the detection function (5.8 ms at 44.1 kHz).",
        unit="samples",
        min=16,
        max=4096,
    )
    compression: float = param(
        100.0,
        doc=(
            "γ in ln(1 + γ·|X| / level), level the loudest recent band (held, falling 10 dB/s): "
            "the knee sits 40 dB below it. Louder content counts in relative (dB) terms at any "
            "playing level or input gain; reverb tails, leakage and noise further down, which "
            "a listener does not hear as new notes, are compressed linearly and add little."
        ),
        min=1.0,
        max=1e5,
    )
    delta: float = param(
        2.0,
        doc=(
            "How far a flux peak must rise above the weighted local median, in nepers summed over "
            "the bands (a partial appearing 20 dB above the knee adds ln(1 + 10) = 2.4). Above "
            "the flux peaks of stationary white, pink and brown noise."
        ),
        unit="Np",
        min=0.0,
        max=1000.0,
    )
    median_weight: float = param(
        2.0,
        doc=(
            "λ in threshold = λ·median(flux) + delta: the threshold rises with the flux of "
            "sustained, fluctuating sound (bowing, breath, noise), whose peaks reach about twice "
            "its median."
        ),
        min=0.0,
        max=100.0,
    )
    pre_avg_ms: float = param(
        100.0,
        doc="Past context of the moving-median threshold.",
        unit="ms",
        min=0.0,
        max=2000.0,
    )
    post_avg_ms: float = param(
        30.0,
        doc=(
            "Future context of the moving-median threshold, so a peak also stands out against "
            "what follows it. Adds latency."
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
            "A peak must be the largest flux value this far ahead, so an attack fires at its "
            "maximum, not on its way up. Adds latency."
        ),
        unit="ms",
        min=0.0,
        max=500.0,
    )
    min_gap_ms: float = param(
        30.0,
        doc=(
            "Minimum time between reported onsets (SuperFlux's 'combine'): about the interval "
            "below which two attacks fuse for a listener."
        ),
        unit="ms",
        min=0.0,
        max=1000.0,
    )
    silence_db: float = param(
        -60.0,
        doc=(
            "No onsets where every frame from the peak to the end of the lookahead is quieter "
            "than this (mean square, dB re full scale): hiss, hum and room noise of a quiet "
            "recording are not notes."
        ),
        unit="dBFS",
        min=-150.0,
        max=0.0,
    )


def check(params: OnsetsFluxParams) -> list[tuple[str, str]]:
    """Cross-field constraints the kernel relies on."""
    if params.hop > params.window:
        return [("hop", f"must not exceed window ({params.window}), got {params.hop}")]
    return []
