"""BS.1770-4 loudness and true peak through the dynamics stage: K-weighting against the
published coefficients, the meter against a plain numpy reference, the EBU Tech 3341 / 3342 cases
and chunk invariance."""

from __future__ import annotations

import functools
import math

import ebu
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from legato.meters import LoudnessMeter, TruePeakMeter, kweighting_coefficients
from legato.testing import make_stage, run_blocks

SHELF_B48 = [1.53512485958697, -2.69169618940638, 1.19839281085285]
SHELF_A48 = [1.0, -1.69065929318241, 0.73248077421585]
HP_B48 = [1.0, -2.0, 1.0]
HP_A48 = [1.0, -1.99004745483398, 0.99007225036621]
"""ITU-R BS.1770-4 Annex 1, Tables 1 and 2."""


def summary(events: list[dict]) -> dict:
    (last,) = [e for e in events if e["kind"] == "summary"]
    return last


def hops(events: list[dict]) -> list[dict]:
    return [e for e in events if e["kind"] == "dynamics"]


# --- K-weighting -----------------------------------------------------------------------------


def test_kweighting_at_48k_is_the_published_filter() -> None:
    (sb, sa), (hb, ha) = kweighting_coefficients(48000)
    for got, want in ((sb, SHELF_B48), (sa, SHELF_A48), (hb, HP_B48), (ha, HP_A48)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def _response_db(b: np.ndarray, a: np.ndarray, freqs: np.ndarray, rate: float) -> np.ndarray:
    z = np.exp(-2j * np.pi * freqs / rate)
    return 20 * np.log10(np.abs(np.polyval(b[::-1], z) / np.polyval(a[::-1], z)))


@pytest.mark.parametrize("rate", [32000, 44100, 96000, 192000])
def test_kweighting_keeps_its_response_at_other_rates(rate: int) -> None:
    """Same analogue prototype: the response matches 48 kHz's below 12 kHz, where the bilinear
    warping of either rate is still small."""
    freqs = np.geomspace(10.0, 12000.0, 300)

    def total(r: float, f: np.ndarray) -> np.ndarray:
        (sb, sa), (hb, ha) = kweighting_coefficients(r)
        return _response_db(sb, sa, f, r) + _response_db(hb, ha, f, r)

    np.testing.assert_allclose(total(rate, freqs), total(48000, freqs), atol=0.05)
    # The gain at 997 Hz, which BS.1770's -0.691 LU offset cancels.
    at_997 = np.array([997.0])
    assert total(48000, at_997)[0] == pytest.approx(0.691, abs=0.001)
    assert total(rate, at_997)[0] == pytest.approx(0.691, abs=0.01)


def test_kweighting_rejects_unusable_rates() -> None:
    for rate in (4000, 1_000_000):
        with pytest.raises(ValueError, match="K-weighting"):
            kweighting_coefficients(rate)
    with pytest.raises(ValueError, match="1-5 channels"):
        LoudnessMeter(48000, 7)


# --- against a plain numpy reference ---------------------------------------------------------


def _biquad(x: np.ndarray, b: list[float], a: list[float]) -> np.ndarray:
    """Direct form I, one sample at a time."""
    y = np.zeros_like(x)
    x1 = x2 = y1 = y2 = 0.0
    for i, v in enumerate(x):
        out = b[0] * v + b[1] * x1 + b[2] * x2 - a[1] * y1 - a[2] * y2
        x2, x1, y2, y1 = x1, v, y1, out
        y[i] = out
    return y


def _kweight(x: np.ndarray) -> np.ndarray:
    """K-weighting at 48 kHz by convolution with the published cascade's impulse response,
    itself computed sample by sample (it decays below 1e-40 within one second)."""
    impulse = np.zeros(48000)
    impulse[0] = 1.0
    h = _biquad(_biquad(impulse, SHELF_B48, SHELF_A48), HP_B48, HP_A48)
    size = 1 << math.ceil(math.log2(len(x) + len(h)))
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: len(x)]


def _windowed(z: np.ndarray, width: int) -> np.ndarray:
    """Mean of z over the `width` samples ending at each sample, silence before the stream."""
    c = np.concatenate([np.zeros(width), np.cumsum(z)])
    return (c[width:] - c[:-width]) / width


def _lufs(power: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return -0.691 + 10 * np.log10(power)


def _gated(power: np.ndarray, drop: float) -> np.ndarray:
    above = power[_lufs(power) > -70.0]
    return above[_lufs(above) > _lufs(np.mean(above)) - drop]


def _nearest_rank(values: np.ndarray, fraction: float) -> float:
    ordered = np.sort(values)
    return float(ordered[math.floor((len(ordered) - 1) * fraction + 0.5)])


def _varying_noise(seconds: float, channels: int, seed: int) -> np.ndarray:
    """Noise whose level jumps every half second between -50 and -5 dBFS, with gaps."""
    rng = np.random.default_rng(seed)
    n = round(seconds * 48000)
    levels = rng.uniform(-50.0, -5.0, size=math.ceil(seconds * 2))
    levels[rng.random(len(levels)) < 0.15] = -np.inf
    gain = np.repeat(10.0 ** (levels / 20.0), 24000)[:n]
    return (rng.standard_normal((n, channels)) * gain[:, None]).astype(np.float32)


def _assert_levels_match(got: np.ndarray, want: np.ndarray) -> None:
    """Equal to 1e-4 LU down to -90 LUFS; below that only rounding residue of the loud passages
    (around 1e-11 of their power) is left, so both must just be that quiet."""
    audible = want > -90.0
    np.testing.assert_allclose(got[audible], want[audible], atol=1e-4)
    assert np.all(got[~audible] < -85.0)


def test_meter_matches_numpy_reference() -> None:
    x = _varying_noise(12.0, 2, seed=1)
    hop = 480
    events = run_blocks("dynamics", x, 48000, [4800, 1, 12345, 0, 999], hop=hop)
    z = sum(_kweight(x[:, c].astype(np.float64)) ** 2 for c in range(2))
    momentary, short_term = _windowed(z, 19200), _windowed(z, 144000)
    ends = np.arange(hop, len(x) + 1, hop) - 1
    got = hops(events)[: len(ends)]
    for field, want in (("momentary_lufs", momentary), ("short_term_lufs", short_term)):
        _assert_levels_match(np.array([e[field] for e in got]), _lufs(want[ends]))
    ticks = np.arange(4800, len(x) + 1, 4800) - 1
    blocks = momentary[ticks[ticks >= 19200 - 1]]
    windows = short_term[ticks[ticks >= 144000 - 1]]
    kept = _lufs(_gated(windows, 20.0))
    s = summary(events)
    assert s["integrated_lufs"] == pytest.approx(
        float(_lufs(np.mean(_gated(blocks, 10.0)))), abs=0.01
    )
    want_range = _nearest_rank(kept, 0.95) - _nearest_rank(kept, 0.10)
    assert s["loudness_range_lu"] == pytest.approx(want_range, abs=0.02)
    assert s["max_momentary_lufs"] == pytest.approx(float(_lufs(momentary.max())), abs=1e-4)
    assert s["max_short_term_lufs"] == pytest.approx(float(_lufs(short_term.max())), abs=1e-4)


# --- EBU Tech 3341 / 3342 --------------------------------------------------------------------


@pytest.mark.parametrize("rate", [48000, 44100])
@pytest.mark.parametrize("case", [1, 2, 3, 4, 5, 6])
def test_tech3341_integrated(case: int, rate: int) -> None:
    s = summary(run_blocks("dynamics", ebu.integrated_case(case, rate), rate, hop=4096))
    want = -23.0 if case == 6 else ebu.INTEGRATED_EXPECTED[case]
    assert s["integrated_lufs"] == pytest.approx(want, abs=ebu.TOLERANCE_LU)
    if case in (1, 2):
        assert s["max_momentary_lufs"] == pytest.approx(want, abs=ebu.TOLERANCE_LU)
        assert s["max_short_term_lufs"] == pytest.approx(want, abs=ebu.TOLERANCE_LU)


def test_integrated_is_rate_independent() -> None:
    at = {
        r: summary(run_blocks("dynamics", ebu.integrated_case(5, r), r))["integrated_lufs"]
        for r in (44100, 48000)
    }
    assert at[44100] == pytest.approx(at[48000], abs=0.005)


@pytest.mark.parametrize("rate", [48000, 44100])
def test_tech3341_case9_short_term_steady(rate: int) -> None:
    hop = rate // 100
    events = hops(run_blocks("dynamics", ebu.short_term_steady(rate), rate, hop=hop))
    settled = [e["short_term_lufs"] for e in events if e["sample"] + hop // 2 >= 3 * rate]
    assert len(settled) > 1000
    np.testing.assert_allclose(settled, -23.0, atol=ebu.TOLERANCE_LU)


@pytest.mark.parametrize("rate", [48000, 44100])
def test_tech3341_case12_momentary_steady(rate: int) -> None:
    hop = rate // 200
    events = hops(run_blocks("dynamics", ebu.momentary_steady(rate), rate, hop=hop))
    settled = [e["momentary_lufs"] for e in events if e["sample"] + hop // 2 >= 0.4 * rate]
    assert len(settled) > 1800
    np.testing.assert_allclose(settled, -23.0, atol=ebu.TOLERANCE_LU)


@pytest.mark.parametrize("segment", range(1, 21))
def test_tech3341_case10_max_short_term(segment: int) -> None:
    meter = LoudnessMeter(48000, 2)
    meter.process(ebu.short_term_burst(segment))
    assert meter.max_short_term == pytest.approx(-23.0, abs=ebu.TOLERANCE_LU)


@pytest.mark.parametrize("segment", range(1, 21))
def test_tech3341_case13_max_momentary(segment: int) -> None:
    s = summary(run_blocks("dynamics", ebu.momentary_burst(segment), 48000, [4000, 333]))
    assert s["max_momentary_lufs"] == pytest.approx(-23.0, abs=ebu.TOLERANCE_LU)


@pytest.mark.parametrize("case", [1, 2, 3, 4])
def test_tech3342_loudness_range(case: int) -> None:
    s = summary(run_blocks("dynamics", ebu.range_case(case), 48000, hop=4096))
    assert s["loudness_range_lu"] == pytest.approx(
        ebu.RANGE_EXPECTED[case], abs=ebu.RANGE_TOLERANCE_LU
    )


def _within_true_peak_tolerance(measured_db: float, expected_db: float) -> bool:
    low, high = ebu.TRUE_PEAK_TOLERANCE_DB
    return expected_db + low <= measured_db <= expected_db + high


@pytest.mark.parametrize("rate", [48000, 44100])
@pytest.mark.parametrize("case", sorted(ebu.TRUE_PEAK_TONES))
def test_tech3341_true_peak_tones(case: int, rate: int) -> None:
    s = summary(run_blocks("dynamics", ebu.true_peak_tone(case, rate), rate, [1000, 7]))
    expected = ebu.TRUE_PEAK_TONES[case][3]
    assert _within_true_peak_tolerance(s["true_peak_dbtp"], expected)
    amplitude = ebu.TRUE_PEAK_TONES[case][1]
    assert s["true_peak_dbtp"] == pytest.approx(20 * math.log10(amplitude), abs=0.05)


@pytest.mark.parametrize("case", ebu.TRUE_PEAK_OFFSET_CASES)
def test_tech3341_true_peak_between_samples(case: int) -> None:
    x, true_peak = ebu.true_peak_offset(case)
    s = summary(run_blocks("dynamics", x, 48000, [2048, 5]))
    assert _within_true_peak_tolerance(s["true_peak_dbtp"], 0.0)
    assert s["true_peak_dbtp"] == pytest.approx(20 * math.log10(true_peak), abs=0.05)
    assert s["true_peak_dbtp"] >= s["peak_db"]


def _true_peak(x: np.ndarray) -> float:
    meter = TruePeakMeter(1)
    meter.process(x[:, None])
    return meter.peak


def test_true_peak_takes_silence_around_the_stream() -> None:
    """The interpolation before the first and after the last frame counts: padding the stream
    with silence changes nothing, and a short full-scale burst overshoots between samples."""
    rng = np.random.default_rng(3)
    burst = np.sign(rng.standard_normal(9)).astype(np.float32)
    silence = np.zeros(40, dtype=np.float32)
    assert _true_peak(burst) > 1.05
    assert _true_peak(burst) == _true_peak(np.concatenate([silence, burst, silence]))


# --- chunk invariance ------------------------------------------------------------------------


@functools.cache
def _invariance_signal() -> np.ndarray:
    """4.5 s at 8 kHz (past the 3 s window's first fresh sum), bursts, gaps and NaN/Inf."""
    x = _varying_noise(4.5, 2, seed=7)[::6].copy()
    x[1234, 0] = np.nan
    x[20000, 1] = np.inf
    return x


@functools.cache
def _whole_stream() -> list[dict]:
    return run_blocks("dynamics", _invariance_signal(), 8000, hop=97)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 4000), min_size=1, max_size=6).filter(any))
@example([1, 0, 96, 97, 98])
@example([13])
def test_chunk_invariance(sizes: list[int]) -> None:
    assert run_blocks("dynamics", _invariance_signal(), 8000, sizes, hop=97) == _whole_stream()


def test_single_samples_match_whole_stream() -> None:
    x = _invariance_signal()[:3000]
    assert run_blocks("dynamics", x, 8000, [1], hop=97) == run_blocks("dynamics", x, 8000, hop=97)


def test_rejects_layouts_without_loudness_weights() -> None:
    with pytest.raises(ValueError, match="1-5 channels"):
        make_stage("dynamics", 48000, channels=8)
