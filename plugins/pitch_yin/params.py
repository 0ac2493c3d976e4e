"""Parameters of the pitch_yin stage, with the reasoning behind each default.

Defaults follow de Cheveigné & Kawahara, "YIN, a fundamental frequency estimator for speech and
music" (JASA 111(4), 2002), and the settings YIN-family trackers use for instruments (aubio's
yin/yinfast, pYIN by Mauch & Dixon, ICASSP 2014).
"""

from __future__ import annotations

import attrs

from legato.stage import param


@attrs.frozen
class PitchYinParams:
    """Analysis window, lag range, voicing decisions and the note-naming reference."""

    window: int = param(
        2048,
        doc=(
            "Analysis window W. It must hold the longest searched lag, ceil(sr / fmin), plus the "
            "integration window w = W minus that lag: 2048 at 44.1/48 kHz with fmin = 40 Hz "
            "gives w = 945/848 samples, a full period of every f0 above 47/57 Hz and 0.86/0.71 of "
            "the lowest. If w would be shorter than half the longest lag (e.g. at 96 kHz), the "
            "smallest power of two for which it is not is used instead, and events are "
            "centred on that window."
        ),
        unit="samples",
        min=64,
        max=65536,
    )
    hop: int = param(
        512,
        doc=(
            "Frame step: one pitch estimate every hop samples (11.6 ms at 44.1 kHz), finer than "
            "the shortest notes of fast passages."
        ),
        unit="samples",
        min=1,
        max=65536,
    )
    fmin: float = param(
        40.0,
        doc=(
            "Lowest f0 searched: just below E1 (41.2 Hz), the open string of a four-string "
            "bass and the contrabass, and fits a 2048 window at 44.1/48 kHz. Lower it for "
            "organ pedals or a five-string bass (the window grows if it no longer fits)."
        ),
        unit="Hz",
        min=16.0,
        max=10000.0,
    )
    fmax: float = param(
        2000.0,
        doc=(
            "Highest f0 searched: a little above B6 (1976 Hz), the practical top of violin "
            "and flute melodies; raise it for piccolo or whistles. Shorter lags are not "
            "searched, which keeps dips at fractions of a low note's period out of the "
            "candidates."
        ),
        unit="Hz",
        min=50.0,
        max=20000.0,
    )
    threshold: float = param(
        0.15,
        doc=(
            "YIN absolute threshold on the cumulative mean normalised difference d'. The paper "
            "evaluated 0.1 on speech; 0.15 is aubio's default and the mean of pYIN's default "
            "threshold prior, a compromise that keeps breathy or bowed instrument tones voiced "
            "while an octave-up dip (deep only when odd harmonics are weak) stays above it. "
            "Frames with no dip below it are unvoiced."
        ),
        min=0.01,
        max=1.0,
    )
    silence_db: float = param(
        -60.0,
        doc=(
            "Frames whose RMS over the window is below this are silent: unvoiced with "
            "confidence 0 (YIN's normalised difference finds periodicity in faint hum and "
            "reverberation tails). dB relative to full scale 1.0."
        ),
        unit="dBFS",
        min=-150.0,
        max=0.0,
    )
    tuning: float = param(
        440.0,
        doc="Frequency of A4 for note names and cents (e.g. 415 for baroque pitch).",
        unit="Hz",
        min=380.0,
        max=500.0,
    )


def check(params: PitchYinParams) -> list[tuple[str, str]]:
    """Cross-field constraints the kernel relies on."""
    problems = []
    if params.hop > params.window:
        problems.append(
            (
                "hop",
                f"must not exceed window ({params.window}), got {params.hop}: samples would "
                "be skipped",
            )
        )
    if params.fmin >= params.fmax:
        problems.append(("fmin", f"must be below fmax ({params.fmax} Hz), got {params.fmin} Hz"))
    return problems
