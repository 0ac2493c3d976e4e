"""The EBU loudness test signals, generated from their published definitions (EBU Tech 3341
Table 1 and Tech 3342 Table 1) instead of read from the EBU test-set files.

Levels are per-channel sine peak levels in dBFS; every tone is 1 kHz and stereo signals carry the
same tone on both channels. Cases 7/8 of Tech 3341 and 5/6 of Tech 3342 are authentic programme
material and cannot be generated. Each generator takes the sample rate (48 kHz in the tables;
the definitions make sense at 44.1 kHz too) and returns float32 frames of shape (n, channels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOLERANCE_LU = 0.1
"""Tech 3341: momentary, short-term and integrated loudness within ±0.1 LU."""
RANGE_TOLERANCE_LU = 1.0
"""Tech 3342: loudness range within ±1 LU."""
TRUE_PEAK_TOLERANCE_DB = (-0.4, 0.2)
"""Tech 3341: true peak within -0.4 / +0.2 dB of the expected level."""

INTEGRATED_CASES: dict[int, tuple[tuple[float, float], ...]] = {
    1: ((-23.0, 20.0),),
    2: ((-33.0, 20.0),),
    3: ((-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)),
    4: ((-72.0, 10.0), (-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0), (-72.0, 10.0)),
    5: ((-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)),
}
"""Tech 3341 cases 1-5: stereo (level dBFS, seconds) segments; I = -23 LUFS except case 2
(-33); cases 1 and 2 also expect M and S at that level."""
INTEGRATED_EXPECTED = {1: -23.0, 2: -33.0, 3: -23.0, 4: -23.0, 5: -23.0}

CASE6_LEVELS = (-28.0, -28.0, -24.0, -30.0, -30.0)
"""Tech 3341 case 6: 20 s of 5.0 (L R C Ls Rs) at these levels; I = -23 LUFS."""

RANGE_CASES: dict[int, tuple[float, ...]] = {
    1: (-20.0, -30.0),
    2: (-20.0, -15.0),
    3: (-40.0, -20.0),
    4: (-50.0, -35.0, -20.0, -35.0, -50.0),
}
"""Tech 3342 cases 1-4: stereo 20 s segments at these levels, with the expected range."""
RANGE_EXPECTED = {1: 10.0, 2: 5.0, 3: 20.0, 4: 15.0}

TRUE_PEAK_TONES: dict[int, tuple[int, float, float, float]] = {
    15: (4, 0.50, 0.0, -6.0),
    16: (4, 0.50, 45.0, -6.0),
    17: (6, 0.50, 60.0, -6.0),
    18: (8, 0.50, 67.5, -6.0),
    19: (4, 1.41, 45.0, 3.0),
}
"""Tech 3341 cases 15-19: (fs divisor of the frequency, peak amplitude, phase in degrees,
expected maximum true peak in dBTP) of a stereo sine with 10 ms fades."""
TRUE_PEAK_OFFSET_CASES = (20, 21, 22, 23)
"""Tech 3341 cases 20-23, all expecting 0.0 dBTP."""


def _tone(levels_db: np.ndarray, rate: int, freq: float = 1000.0) -> np.ndarray:
    """A phase-continuous sine whose per-sample peak level follows levels_db."""
    t = np.arange(len(levels_db)) / rate
    return 10.0 ** (levels_db / 20.0) * np.sin(2.0 * np.pi * freq * t)


def _frames(*channels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.stack(channels, axis=1), dtype=np.float32)


def _segments(segments: Sequence[tuple[float, float]], rate: int) -> np.ndarray:
    """Levels (dB, -inf for silence) of consecutive (level, seconds) segments, sample by sample."""
    return np.concatenate([np.full(round(sec * rate), float(db)) for db, sec in segments])


def stereo_steps(segments: Sequence[tuple[float, float]], rate: int = 48000) -> np.ndarray:
    """A stereo 1 kHz tone through consecutive (level dBFS, seconds) segments; -inf is silence."""
    x = _tone(_segments(segments, rate), rate)
    return _frames(x, x)


def integrated_case(case: int, rate: int = 48000) -> np.ndarray:
    """Tech 3341 case 1-6."""
    if case == 6:
        n = 20 * rate
        return _frames(*(_tone(np.full(n, db), rate) for db in CASE6_LEVELS))
    return stereo_steps(INTEGRATED_CASES[case], rate)


def short_term_steady(rate: int = 48000) -> np.ndarray:
    """Tech 3341 case 9: 1.34 s at -20 dBFS then 1.66 s at -30 dBFS, five times. Every 3 s
    window holds one of each, so S = -23.0 LUFS from 3 s on."""
    return stereo_steps(((-20.0, 1.34), (-30.0, 1.66)) * 5, rate)


def momentary_steady(rate: int = 48000) -> np.ndarray:
    """Tech 3341 case 12: 0.18 s at -20 dBFS then 0.22 s at -30 dBFS, 25 times. Every 400 ms
    window holds one of each, so M = -23.0 LUFS from 400 ms on."""
    return stereo_steps(((-20.0, 0.18), (-30.0, 0.22)) * 25, rate)


def short_term_burst(segment: int, rate: int = 48000) -> np.ndarray:
    """Tech 3341 case 10, segment 1-20: a 3 s burst at -23 dBFS after (segment - 1) x 0.15 s of
    silence, then 1 s of silence: the burst lands at a different place relative to any 100 ms
    update grid each time, and max S must read -23.0 LUFS for every one."""
    pad = (segment - 1) * 0.15
    return stereo_steps(((-np.inf, pad), (-23.0, 3.0), (-np.inf, 1.0)), rate)


def momentary_burst(segment: int, rate: int = 48000) -> np.ndarray:
    """Tech 3341 case 13, segment 1-20: a 400 ms burst at -23 dBFS after (segment - 1) x 20 ms of
    silence, then 1 s of silence; max M must read -23.0 LUFS for every one."""
    pad = (segment - 1) * 0.02
    return stereo_steps(((-np.inf, pad), (-23.0, 0.4), (-np.inf, 1.0)), rate)


def range_case(case: int, rate: int = 48000) -> np.ndarray:
    """Tech 3342 case 1-4."""
    return stereo_steps([(db, 20.0) for db in RANGE_CASES[case]], rate)


def _faded(x: np.ndarray, rate: int, fade_s: float = 0.01) -> np.ndarray:
    """Raised-cosine fade-in and fade-out, so the tone's own onset adds no overshoot."""
    n = round(fade_s * rate)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    out = x.copy()
    out[:n] *= ramp
    out[len(out) - n :] *= ramp[::-1]
    return out


def true_peak_tone(case: int, rate: int = 48000, seconds: float = 1.0) -> np.ndarray:
    """Tech 3341 case 15-19."""
    divisor, amplitude, phase_deg, _ = TRUE_PEAK_TONES[case]
    n = np.arange(round(seconds * rate))
    x = amplitude * np.sin(2.0 * np.pi * n / divisor + np.deg2rad(phase_deg))
    x = _faded(x, rate)
    return _frames(x, x)


def _lowpass(cutoff: float, half: int) -> np.ndarray:
    """Kaiser-windowed sinc low-pass (cutoff in cycles per sample), unit gain at DC."""
    m = np.arange(-half, half + 1)
    h = 2.0 * cutoff * np.sinc(2.0 * cutoff * m) * np.kaiser(len(m), 10.0)
    return h / h.sum()


def true_peak_offset(case: int, rate: int = 48000) -> tuple[np.ndarray, float]:
    """Tech 3341 case 20-23, reconstructed from the Table 1 description: at 4 fs, a sine at fs/6
    (amplitude 0.5) holding one period of fs/4 at full scale, band-limited to 0.45 fs and
    decimated by 4 starting at sample case - 20, so each case samples the same waveform a
    different quarter-sample off its peak. Returns the frames and the waveform's true peak
    (the maximum of the band-limited 4 fs signal), which the table rounds to 0.0 dBTP."""
    up = 4 * rate
    n = up
    freq = np.full(n, rate / 6.0)
    amp = np.full(n, 0.5)
    period = up // (rate // 4)
    mid = n // 2
    freq[mid : mid + period] = rate / 4.0
    amp[mid : mid + period] = 1.0
    phase = 2.0 * np.pi * np.cumsum(freq) / up
    x4 = _faded(amp * np.sin(phase), up)
    band = np.convolve(x4, _lowpass(0.45 / 4.0, 512), mode="same")
    x = band[case - 20 :: 4]
    return _frames(x, x), float(np.max(np.abs(band)))
