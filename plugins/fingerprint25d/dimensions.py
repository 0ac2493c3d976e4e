"""The 25 dimensions of the track fingerprint: names (from the C kernel, in output order),
groups, units, ranges and definitions. The kernel header ``csrc/fingerprint.h`` holds the same
definitions; this table is what users and `legato plugins` read."""

from __future__ import annotations

from typing import Final

import attrs

from legato.kernels import ffi, lib

ALGORITHM_VERSION: Final = 1
"""Version of the values: a cache keyed on it (database, ``.25d`` sidecar) is invalid once it
changes. Equals the kernel's ``lg_fingerprint_version()``."""


@attrs.frozen
class Dimension:
    """One fingerprint value: its name, group, unit, range and definition."""

    name: str
    group: str
    unit: str
    range: str
    doc: str


_SPECTRAL_FRAMES = (
    "mean over the spectral frames with energy (Hann window of the power of two nearest "
    "100 ms, hop half of it, mono mix, frames whose mean square in 20 Hz - 20 kHz is at "
    "least -60 dBFS) of a per-frame value from the power-spectrum bins with "
    "20 Hz <= f < min(20 kHz, Nyquist); 0 without such frames."
)
_VARIATION_BLOCKS = (
    "over the complete 1 s blocks from the stream start whose mean square (all channels) is at "
    "least -60 dBFS"
)


def _band(name: str, lo: float, hi: float) -> Dimension:
    return Dimension(
        name,
        "frequency",
        "fraction",
        "0..1",
        f"Share of the mono mix's energy from {lo:g} to {hi:g} Hz in its long-term power "
        "spectrum (spectral frames, bins by centre frequency) between 20 Hz and 20 kHz. The "
        "seven bands sum to 1, or are all 0 when that range holds no energy (silence); bands "
        "above the Nyquist frequency are 0.",
    )


DIMENSIONS: Final = (
    _band("sub_bass", 20, 60),
    _band("bass", 60, 250),
    _band("low_mid", 250, 500),
    _band("mid", 500, 2000),
    _band("upper_mid", 2000, 4000),
    _band("presence", 4000, 8000),
    _band("air", 8000, 20000),
    Dimension(
        "loudness_lufs",
        "dynamics",
        "LUFS",
        "-70..",
        "ITU-R BS.1770-4 gated integrated loudness (the dynamics stage's meter); a stream "
        "shorter than one 400 ms gating block gets the ungated K-weighted loudness of all of "
        "it. Floored at -70 LUFS, the absolute gate, so silence is -70.",
    ),
    Dimension(
        "crest_db",
        "dynamics",
        "dB",
        "0..",
        "20 log10(sample peak / RMS): the largest absolute sample of any channel over the RMS "
        "of all samples of all channels (a sine 3.01, a square wave 0; 0 for silence). Sample "
        "peak, not true peak: what a limiter at 0 dBFS leaves shows as a low crest either way.",
    ),
    Dimension(
        "bass_mid_db",
        "dynamics",
        "dB",
        "-60..60",
        "10 log10(energy 20-250 Hz / energy 250 Hz - 4 kHz) of the long-term spectrum; +-60 "
        "when only one side has energy, 0 when neither has.",
    ),
    Dimension(
        "tempo_bpm",
        "temporal",
        "BPM",
        "0 or 60..200",
        "The tempo T (0.05 BPM grid) maximising w(T) * mean of c(k * 60 / T) for k = 1..4 "
        "beats, c the normalised autocorrelation of the onset envelope (SuperFlux detection "
        "function of the onsets_flux kernel on the mono mix, window N/4, hop N/8: 23 and "
        "11.6 ms at 44.1 kHz; first-order 0.5 Hz high-pass) at a lag in seconds, w a log-normal "
        "prior on 120 BPM with one octave of deviation (librosa's). 0 when no tempo scores "
        "above 0 (silence, steady tones, streams shorter than a few envelope frames). Like "
        "every autocorrelation tempo, it may land an octave off where a pattern repeats every "
        "two beats more exactly than every beat (kick and snare alternating).",
    ),
    Dimension(
        "rhythm_stability",
        "temporal",
        "ratio",
        "0..1",
        "The mean of c(k * 60 / tempo) over k = 1..4 beats, clamped at 1: how strongly the "
        "onset envelope repeats one to four beats later across the whole analysis (a steady "
        "pulse near 1, free rhythm or noise near 0; 0 without a tempo).",
    ),
    Dimension(
        "transient_density",
        "temporal",
        "1/s",
        "0..",
        "Onsets per second of stream. An onset is an envelope frame that is the maximum within "
        "+-30 ms, exceeds the mean within +-100 ms by 2 Np (the onsets_flux stage's delta, "
        "above the flux peaks of stationary noise), lies at least 30 ms after the previous one "
        "and whose window has a mean square of at least -60 dBFS.",
    ),
    Dimension(
        "silence_ratio",
        "temporal",
        "fraction",
        "0..1",
        "Share of the stream's frames in 100 ms blocks (from the stream start; the last, "
        "shorter block judged on its own frames) whose mean square over all channels is below "
        "-60 dBFS.",
    ),
    Dimension(
        "centroid_hz",
        "spectral",
        "Hz",
        "0..20000",
        "Power-weighted mean frequency, " + _SPECTRAL_FRAMES,
    ),
    Dimension(
        "rolloff_hz",
        "spectral",
        "Hz",
        "0..20000",
        "Lowest bin frequency at which the cumulative power reaches 85 % of the frame's, "
        + _SPECTRAL_FRAMES,
    ),
    Dimension(
        "flatness",
        "spectral",
        "ratio",
        "0..1",
        "Geometric over arithmetic mean of the bin powers (each floored at 1e-10 of their "
        "mean): a sine near 0, the periodogram of white noise 0.56 (e^-γ); " + _SPECTRAL_FRAMES,
    ),
    Dimension(
        "harmonic_ratio",
        "harmonic",
        "ratio",
        "0..1",
        "The highest local maximum, at lags of 1-20 ms (periods of 50-1000 Hz), of the "
        "frame's autocorrelation (content below fs/4, DC removed, even lags) normalised at lag "
        "0 and divided by the Hann window's own (Boersma 1993), clamped to 0..1: a periodic "
        "frame near 1, white noise about 0.2; " + _SPECTRAL_FRAMES,
    ),
    Dimension(
        "pitch_stability",
        "harmonic",
        "ratio",
        "0..1",
        "Mean over pairs of consecutive spectral frames with energy of the Pearson correlation "
        "of their chroma vectors, floored at 0: held notes and chords near 1, changing harmony "
        "lower, white noise about 0.4 (the frames overlap by half). 0 without such pairs.",
    ),
    Dimension(
        "chroma_energy",
        "harmonic",
        "ratio",
        "0..1",
        "Concentration (12 Σ p² - 1) / 11 of the chroma vector p (bin powers from 220 to "
        "3520 Hz summed by nearest equal-tempered pitch class, normalised to sum 1): 0 for "
        "all pitch classes equal, 1 for a single one; " + _SPECTRAL_FRAMES,
    ),
    Dimension(
        "dynamic_range_variation_db",
        "variation",
        "dB",
        "0..",
        "Standard deviation of the blocks' crest factors (sample peak over RMS, dB) "
        + _VARIATION_BLOCKS
        + "; 0 below two blocks.",
    ),
    Dimension(
        "loudness_variation_lu",
        "variation",
        "LU",
        "0..",
        "Standard deviation of the BS.1770 short-term (3 s) loudness taken every 100 ms once "
        "3 s have been fed, over the values passing the EBU Tech 3342 gates (-70 LUFS "
        "absolute, 20 LU below their power mean); 0 below two values.",
    ),
    Dimension(
        "peak_consistency",
        "variation",
        "ratio",
        "0..1",
        "Mean block sample peak over the largest block sample peak, "
        + _VARIATION_BLOCKS
        + ": 1 when every second peaks alike (a limited master), lower for dynamic material; "
        "1 without blocks.",
    ),
    Dimension(
        "stereo_width",
        "stereo",
        "ratio",
        "0..1",
        "E[S²] / (E[M²] + E[S²]) over the stream, M = (L + R) / 2 and S = (L - R) / 2 from "
        "the first two channels: 0 for identical channels and mono, 0.5 uncorrelated, 1 "
        "opposite.",
    ),
    Dimension(
        "phase_correlation",
        "stereo",
        "ratio",
        "-1..1",
        "Σ LR / sqrt(Σ L² Σ R²) over the stream from the first two channels: 1 identical, 0 "
        "uncorrelated or one channel silent, -1 opposite; 1 for mono and silence.",
    ),
)

NAMES: Final = tuple(
    ffi.string(lib.lg_fingerprint_name(i)).decode() for i in range(lib.lg_fingerprint_dimensions())
)
"""The kernel's dimension names in output order (the same as ``DIMENSIONS``; a test checks)."""

GROUP_NAMES: Final = (
    "frequency",
    "dynamics",
    "temporal",
    "spectral",
    "harmonic",
    "variation",
    "stereo",
)
GROUPS: Final = {g: tuple(d.name for d in DIMENSIONS if d.group == g) for g in GROUP_NAMES}
"""Dimension names by group, in output order."""


def describe() -> str:
    """One line per dimension: index, name, unit, range, definition (for the stage's docs)."""
    return " ".join(
        f"[{i}] {d.name} ({d.unit}, {d.range}): {d.doc}" for i, d in enumerate(DIMENSIONS)
    )
