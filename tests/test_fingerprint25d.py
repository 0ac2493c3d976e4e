"""The fingerprint25d stage and kernel through the real host path: each dimension against a plain
numpy reference written from its definition or a signal with a known answer, chunk invariance,
bad and degenerate input, the analysis window and the Python API."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legato.config.params import ParamsInvalid
from legato.errors import LegatoError
from legato.kernels import ffi, lib
from legato.meters import LoudnessMeter
from legato.plugins.fingerprint25d import (
    ALGORITHM_VERSION,
    DIMENSIONS,
    FINGERPRINT25D,
    GROUPS,
    NAMES,
    Fingerprint,
    fingerprint_array,
    fingerprint_file,
)
from legato.plugins.fingerprint25d.kernel import FingerprintKernel
from legato.testing import make_stage, run_blocks

RATE = 44100
BANDS = (20.0, 60.0, 250.0, 500.0, 2000.0, 4000.0, 8000.0, 20000.0)


def values(audio: np.ndarray, rate: int = RATE, blocks: list[int] | None = None) -> dict:
    """The fingerprint through the stage, by name."""
    (event,) = run_blocks("fingerprint25d", audio, rate, blocks)
    assert event["kind"] == "fingerprint"
    return dict(zip(event["names"], event["values"], strict=True))


def tone(freq: float, seconds: float, amp: float = 0.5, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, amp: float = 0.1, seed: int = 0, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (round(seconds * RATE), channels) if channels > 1 else round(seconds * RATE)
    return (amp * rng.standard_normal(shape)).astype(np.float32)


def bursts(bpm: float, seconds: float, seed: int = 0) -> np.ndarray:
    """Noise bursts with a 50 ms decay (drum-like hits) at every beat from t = 0."""
    rng = np.random.default_rng(seed)
    x = np.zeros(round(seconds * RATE))
    env = np.exp(-np.arange(round(0.3 * RATE)) / (0.05 * RATE))
    for start in np.round(np.arange(0, seconds, 60.0 / bpm) * RATE).astype(int):
        seg = 0.3 * rng.standard_normal(len(env)) * env
        end = min(len(x), start + len(seg))
        x[start:end] += seg[: end - start]
    return x.astype(np.float32)


def mixture(seconds: float, seed: int = 0, channels: int = 2) -> np.ndarray:
    """Tones, noise and level changes: something every dimension has to work on."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    mono = 0.2 * np.sin(2 * np.pi * 110 * t) + 0.1 * np.sin(2 * np.pi * 1234 * t)
    gain = np.repeat(rng.uniform(0.05, 1.0, n // 8820 + 1), 8820)[:n]
    out = np.stack([mono + 0.05 * rng.standard_normal(n) for _ in range(channels)], 1)
    out *= gain[:, None]
    out[n // 3 : n // 3 + RATE // 2] = 0.0
    return out.astype(np.float32)


# --- plain numpy references, written from the definitions -------------------------------------


def first_bin(hz: float, n: int, rate: int) -> int:
    return math.ceil(hz * n / rate - 1e-9)


def spectral_reference(audio: np.ndarray, rate: int = RATE) -> dict[str, float]:
    """Band shares, bass/mid and the spectral and harmonic means from centred Hann frames."""
    mono = audio.astype(np.float64)
    if mono.ndim == 2:
        mono = mono.sum(1) * (1.0 / mono.shape[1])
    n = 2 ** round(math.log2(0.1 * rate))
    hop = n // 2
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    count = -(-len(mono) // hop)
    padded = np.concatenate([np.zeros(hop), mono, np.zeros(n)])
    frames = padded[np.arange(count)[:, None] * hop + np.arange(n)[None, :]]
    power = np.abs(np.fft.rfft(frames * w, axis=1)) ** 2
    lo, hi = first_bin(20, n, rate), min(first_bin(min(rate / 2, 20000), n, rate), n // 2)
    ltas = power[:, lo:hi].sum(0)
    starts = [min(max(first_bin(b, n, rate), lo), hi) - lo for b in BANDS]
    band = np.array([ltas[a:b].sum() for a, b in itertools.pairwise(starts)])
    out = {name: 0.0 for name in NAMES}
    if band.sum() > 0:
        out.update(zip(GROUPS["frequency"], band / band.sum(), strict=True))
    bass, mid = band[:2].sum(), band[2:5].sum()
    out["bass_mid_db"] = float(np.clip(10 * np.log10(bass / mid), -60, 60))
    p = power[:, lo:hi]
    energy = p.sum(1)
    voiced = 2 * energy / (n * np.sum(w * w)) >= 1e-6
    if not voiced.any():
        return out
    p, energy = p[voiced], energy[voiced]
    hz = rate / n
    k = np.arange(lo, hi)
    out["centroid_hz"] = float(np.mean((p * k).sum(1) / energy * hz))
    first = np.argmax(np.cumsum(p, 1) >= 0.85 * energy[:, None], axis=1)
    out["rolloff_hz"] = float(np.mean((first + lo) * hz))
    floored = np.maximum(p, 1e-10 * energy[:, None] / p.shape[1])
    flat = np.exp(np.log(floored).mean(1)) / floored.mean(1)
    out["flatness"] = float(np.mean(np.minimum(flat, 1.0)))
    c_lo, c_hi = first_bin(220, n, rate), min(first_bin(3520, n, rate), hi)
    semis = 12 * np.log2(np.arange(c_lo, c_hi) * hz / 440)
    classes = (np.sign(semis) * np.floor(np.abs(semis) + 0.5)).astype(int) % 12
    classes = (classes + 9) % 12
    chroma = np.zeros((len(p), 12))
    for c in range(12):
        chroma[:, c] = power[voiced][:, c_lo:c_hi][:, classes == c].sum(1)
    share = chroma / chroma.sum(1, keepdims=True)
    out["chroma_energy"] = float(np.mean((12 * (share**2).sum(1) - 1) / 11))
    pairs = [
        max(0.0, float(np.corrcoef(chroma[i - 1], chroma[i])[0, 1]))
        for i in range(1, len(chroma))
        if voiced.nonzero()[0][i] == voiced.nonzero()[0][i - 1] + 1
    ]
    out["pitch_stability"] = float(np.mean(pairs)) if pairs else 0.0
    out["harmonic_ratio"] = float(np.mean([harmonicity(row, w, rate) for row in power[voiced]]))
    return out


def lag_autocorrelation(power: np.ndarray) -> np.ndarray:
    quarter = (len(power) - 1) // 2
    spectrum = np.concatenate([[0.0], power[1 : quarter + 1]])
    return np.fft.irfft(spectrum, n=2 * quarter)


def harmonicity(power: np.ndarray, window: np.ndarray, rate: int) -> float:
    r = lag_autocorrelation(power)
    rw = lag_autocorrelation(np.abs(np.fft.rfft(window)) ** 2)
    lo, hi = math.ceil(rate / 2000), math.floor(rate / 100)
    rho = r / r[0] * (rw[0] / rw)
    peaks = [rho[t] for t in range(lo, hi + 1) if rho[t - 1] < rho[t] >= rho[t + 1]]
    return min(max([0.0, *peaks]), 1.0)


def block_reference(audio: np.ndarray, rate: int = RATE) -> dict[str, float]:
    """Crest factor, silence ratio, the 1 s block variations and the stereo measures."""
    x = audio.astype(np.float64)
    x = x if x.ndim == 2 else x[:, None]
    ch = x.shape[1]
    block = round(0.1 * rate)
    rms = math.sqrt(np.mean(x**2))
    out = {"crest_db": 20 * math.log10(np.abs(x).max() / rms)}
    starts = range(0, len(x), block)
    silent = sum(len(x[s : s + block]) for s in starts if np.mean(x[s : s + block] ** 2) < 1e-6)
    out["silence_ratio"] = silent / len(x)
    groups = [x[s : s + 10 * block] for s in range(0, len(x) - 10 * block + 1, 10 * block)]
    loud = [g for g in groups if np.sum(g**2) / (10 * block * ch) >= 1e-6]
    crests = [10 * math.log10(np.abs(g).max() ** 2 / np.mean(g**2)) for g in loud]
    peaks = [np.abs(g).max() for g in loud]
    out["dynamic_range_variation_db"] = float(np.std(crests)) if len(crests) > 1 else 0.0
    out["peak_consistency"] = float(np.mean(peaks) / np.max(peaks)) if peaks else 1.0
    if ch >= 2:
        left, right = x[:, 0], x[:, 1]
        ll, rr, lr = left @ left, right @ right, left @ right
        out["stereo_width"] = (ll + rr - 2 * lr) / (2 * (ll + rr))
        out["phase_correlation"] = lr / math.sqrt(ll * rr)
    return out


def loudness_variation_reference(audio: np.ndarray, rate: int = RATE) -> float:
    """EBU Tech 3342 gating of the short-term loudness every 100 ms, then its deviation."""
    x = audio if audio.ndim == 2 else audio[:, None]
    block = round(0.1 * rate)
    meter = LoudnessMeter(rate, x.shape[1], report_hop=block)
    _, short_term = meter.process(x)
    full = np.arange(1, len(short_term) + 1) * block >= round(3 * rate)
    st_lufs = short_term[full]
    st_lufs = st_lufs[st_lufs > -70]
    gate = 10 * np.log10(np.mean(10 ** ((st_lufs + 0.691) / 10))) - 0.691 - 20
    kept = st_lufs[st_lufs > gate]
    return float(np.std(kept)) if len(kept) > 1 else 0.0


# --- the interface ------------------------------------------------------------------------------


def test_names_version_and_documentation_agree() -> None:
    assert lib.lg_fingerprint_version() == ALGORITHM_VERSION == 1
    assert lib.lg_fingerprint_dimensions() == len(NAMES) == len(DIMENSIONS) == 25
    assert tuple(d.name for d in DIMENSIONS) == NAMES
    assert sum(len(g) for g in GROUPS.values()) == 25
    assert [len(GROUPS[g]) for g in GROUPS] == [7, 3, 4, 3, 3, 3, 2]
    doc = FINGERPRINT25D.describe()["outputs"][0]["doc"]
    assert all(f"] {d.name} ({d.unit}, {d.range})" in doc for d in DIMENSIONS)


def test_event_fields() -> None:
    x = noise(1.5, channels=2)
    (event,) = run_blocks("fingerprint25d", x, RATE, [4096])
    assert event["sample"] == event["analysed_samples"] == len(x)
    assert event["version"] == ALGORITHM_VERSION
    assert event["names"] == list(NAMES)
    assert len(event["values"]) == 25 and all(isinstance(v, float) for v in event["values"])
    assert event["nonfinite_samples"] == 0


# --- frequency and dynamics ---------------------------------------------------------------------


@pytest.mark.parametrize("band", range(7))
def test_a_sine_puts_its_energy_in_its_band(band: int) -> None:
    centre = math.sqrt(BANDS[band] * BANDS[band + 1])
    v = values(tone(centre, 2.0))
    shares = [v[name] for name in GROUPS["frequency"]]
    assert sum(shares) == pytest.approx(1.0, abs=1e-12)
    assert shares[band] > 0.99


def test_bands_above_nyquist_are_empty_and_the_rest_sums_to_one() -> None:
    rate = 16000
    x = np.random.default_rng(3).standard_normal(rate * 2).astype(np.float32) * 0.1
    v = values(x, rate)
    assert v["air"] == 0.0
    assert sum(v[name] for name in GROUPS["frequency"]) == pytest.approx(1.0, abs=1e-12)
    ref = spectral_reference(x, rate)
    for name in GROUPS["frequency"]:
        assert v[name] == pytest.approx(ref[name], rel=1e-9, abs=1e-12)


def test_spectral_and_harmonic_dimensions_match_numpy() -> None:
    x = mixture(4.0, seed=1)
    v = values(x, blocks=[3000, 1])
    ref = spectral_reference(x)
    for group in ("frequency", "spectral", "harmonic"):
        for name in GROUPS[group]:
            assert v[name] == pytest.approx(ref[name], rel=1e-7, abs=1e-9), name
    assert v["bass_mid_db"] == pytest.approx(ref["bass_mid_db"], abs=1e-7)


@pytest.mark.parametrize("freq", [950.0, 3000.0])
def test_spectral_dimensions_of_pure_tones_match_numpy(freq: float) -> None:
    # far from the tone, bins fall below the flatness floor; 950 Hz has its period at 1.05 ms
    x = tone(freq, 1.0)
    v, ref = values(x), spectral_reference(x)
    for name in (*GROUPS["spectral"], *GROUPS["harmonic"]):
        assert v[name] == pytest.approx(ref[name], rel=1e-7, abs=1e-12), name


def test_the_mono_mix_is_the_mean_of_the_channels() -> None:
    # four identical channels: the mix has their level, so -62 dBFS frames have no energy
    for rms_db, voiced in ((-62.0, False), (-58.0, True)):
        x = np.tile(tone(1000.0, 1.0, amp=math.sqrt(2) * 10 ** (rms_db / 20))[:, None], (1, 4))
        v = values(x)
        assert (v["centroid_hz"] > 0) == voiced
        assert v["centroid_hz"] == pytest.approx(spectral_reference(x)["centroid_hz"], rel=1e-9)


def test_loudness_is_the_bs1770_meter_of_the_dynamics_stage() -> None:
    # EBU Tech 3341 case 1: a 1 kHz sine at -23 dBFS in both channels reads -23 LUFS
    x = tone(1000.0, 5.0, amp=10 ** (-23 / 20))
    x = np.stack([x, x], 1)
    v = values(x)
    (summary,) = [e for e in run_blocks("dynamics", x, RATE) if e["kind"] == "summary"]
    assert v["loudness_lufs"] == summary["integrated_lufs"]
    assert v["loudness_lufs"] == pytest.approx(-23.0, abs=0.1)


def test_loudness_of_short_and_silent_streams() -> None:
    short = tone(1000.0, 0.2)
    v = values(short)
    # ungated K-weighted power of the whole stream: within 0.2 LU of the 0.4 s block's loudness
    long = values(np.tile(short, 2))
    assert v["loudness_lufs"] == pytest.approx(long["loudness_lufs"], abs=0.2)
    assert values(np.zeros(RATE, np.float32))["loudness_lufs"] == -70.0


def test_crest_factor() -> None:
    assert values(tone(1000.0, 2.0))["crest_db"] == pytest.approx(10 * math.log10(2), abs=0.01)
    square = np.where(tone(100.0, 2.0) >= 0, 0.5, -0.5).astype(np.float32)
    assert values(square)["crest_db"] == pytest.approx(0.0, abs=1e-9)
    x = mixture(3.0, seed=2)
    assert values(x)["crest_db"] == pytest.approx(block_reference(x)["crest_db"], abs=1e-9)


def test_bass_mid_ratio() -> None:
    t = np.arange(2 * RATE) / RATE
    equal = (0.3 * np.sin(2 * np.pi * 100 * t) + 0.3 * np.sin(2 * np.pi * 1000 * t)).astype(
        np.float32
    )
    assert values(equal)["bass_mid_db"] == pytest.approx(0.0, abs=0.05)
    assert values(tone(100.0, 2.0))["bass_mid_db"] > 40
    assert values(tone(1000.0, 2.0))["bass_mid_db"] < -40


# --- temporal -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bpm", [70.0, 90.0, 120.0, 150.0])
def test_tempo_of_pulsed_noise(bpm: float) -> None:
    v = values(bursts(bpm, 20.0, seed=int(bpm)))
    assert v["tempo_bpm"] == pytest.approx(bpm, abs=2.0)
    assert v["rhythm_stability"] > 0.5
    assert v["transient_density"] == pytest.approx(bpm / 60.0, abs=1.0 / 20.0)


def test_noise_has_no_rhythm_and_few_transients() -> None:
    v = values(noise(20.0, seed=4))
    assert v["rhythm_stability"] < 0.05
    assert v["transient_density"] <= 0.1  # the start of the sound, at most a stray peak


def test_steady_tones_have_no_tempo() -> None:
    v = values(tone(440.0, 5.0))
    assert v["tempo_bpm"] == 0.0 and v["rhythm_stability"] == 0.0
    assert v["transient_density"] == pytest.approx(1 / 5.0)  # where the tone starts


def test_silence_ratio() -> None:
    on = tone(500.0, 1.0)
    quiet = noise(2.0, amp=10 ** (-70 / 20), seed=5)  # -70 dBFS RMS: below the -60 threshold
    x = np.concatenate([on, quiet, on])
    assert values(x)["silence_ratio"] == pytest.approx(0.5, abs=1e-12)
    y = np.concatenate([tone(500.0, 0.15), np.zeros(round(0.15 * RATE), np.float32)])
    assert values(y)["silence_ratio"] == pytest.approx(block_reference(y)["silence_ratio"])
    assert values(y)["silence_ratio"] == pytest.approx(1 / 3, abs=1e-12)
    z = mixture(3.3, seed=6)
    assert values(z)["silence_ratio"] == pytest.approx(block_reference(z)["silence_ratio"])


# --- spectral and harmonic ----------------------------------------------------------------------


def test_spectral_shape_of_a_sine_and_of_white_noise() -> None:
    sine = values(tone(1000.0, 3.0))
    white = values(noise(3.0, seed=7))
    hz = RATE / 4096
    assert sine["centroid_hz"] == pytest.approx(1000.0, abs=1.0)
    assert sine["rolloff_hz"] == pytest.approx(1000.0, abs=hz)
    assert sine["flatness"] < 1e-4
    assert white["centroid_hz"] == pytest.approx((20 + 20000) / 2, rel=0.01)
    assert white["rolloff_hz"] == pytest.approx(20 + 0.85 * 19980, rel=0.01)
    assert white["flatness"] == pytest.approx(math.exp(-np.euler_gamma), abs=0.01)


def test_harmonic_dimensions_of_tones_chords_and_noise() -> None:
    t = np.arange(3 * RATE) / RATE
    chord = sum(
        0.3 / k * np.sin(2 * np.pi * f * k * t) for f in (261.63, 329.63, 392.0) for k in (1, 2)
    ).astype(np.float32)
    a440 = values(tone(440.0, 3.0))
    triad = values(chord)
    white = values(noise(3.0, seed=8))
    assert a440["harmonic_ratio"] > 0.99 and triad["harmonic_ratio"] > 0.95
    assert white["harmonic_ratio"] < 0.35
    assert a440["pitch_stability"] > 0.99 and triad["pitch_stability"] > 0.99
    assert white["pitch_stability"] < 0.6
    assert a440["chroma_energy"] > 0.95
    assert 0.1 < triad["chroma_energy"] < 0.5
    assert white["chroma_energy"] < 0.05


# --- variation and stereo -----------------------------------------------------------------------


def test_variation_dimensions_match_numpy() -> None:
    x = mixture(8.0, seed=9)
    v = values(x, blocks=[10000, 3])
    ref = block_reference(x)
    assert v["dynamic_range_variation_db"] == pytest.approx(ref["dynamic_range_variation_db"])
    assert v["peak_consistency"] == pytest.approx(ref["peak_consistency"])
    assert v["loudness_variation_lu"] == pytest.approx(loudness_variation_reference(x), abs=0.02)
    assert v["loudness_variation_lu"] > 1.0


def test_loudness_variation_gates_like_ebu_tech_3342() -> None:
    # 18 dB quieter middle section: above the -20 LU relative gate, so it counts
    loud, quiet = noise(6.0, amp=0.1, seed=17), noise(6.0, amp=0.1 * 10 ** (-18 / 20), seed=18)
    x = np.concatenate([loud, quiet, loud])
    v = values(x)["loudness_variation_lu"]
    assert v == pytest.approx(loudness_variation_reference(x), abs=0.02)
    assert v > 6.0
    # 40 dB quieter: below the relative gate, so only the loud sections and the windows
    # straddling the changes count
    hushed = np.concatenate([loud, quiet * np.float32(10 ** (-22 / 20)), loud])
    h = values(hushed)["loudness_variation_lu"]
    assert h == pytest.approx(loudness_variation_reference(hushed), abs=0.02)
    assert h < v - 2.0


def test_steady_signals_do_not_vary() -> None:
    v = values(tone(1000.0, 6.0))
    assert v["dynamic_range_variation_db"] == pytest.approx(0.0, abs=1e-6)
    assert v["loudness_variation_lu"] == pytest.approx(0.0, abs=0.01)
    assert v["peak_consistency"] == pytest.approx(1.0, abs=1e-6)


def test_stereo_image() -> None:
    mono = noise(2.0, seed=10)
    same = values(np.stack([mono, mono], 1))
    assert same["stereo_width"] == 0.0 and same["phase_correlation"] == pytest.approx(1.0)
    opposite = values(np.stack([mono, -mono], 1))
    assert opposite["stereo_width"] == 1.0 and opposite["phase_correlation"] == -1.0
    apart = values(noise(2.0, seed=11, channels=2))
    assert apart["stereo_width"] == pytest.approx(0.5, abs=0.01)
    assert apart["phase_correlation"] == pytest.approx(0.0, abs=0.01)
    one_sided = values(np.stack([mono, np.zeros_like(mono)], 1))
    assert one_sided["phase_correlation"] == 0.0
    assert one_sided["stereo_width"] == pytest.approx(0.5)
    only = values(mono)
    assert only["stereo_width"] == 0.0 and only["phase_correlation"] == 1.0
    x = mixture(2.0, seed=12)
    x[:, 1] = 0.6 * x[:, 1] + 0.4 * x[:, 0]
    v, ref = values(x), block_reference(x)
    assert v["stereo_width"] == pytest.approx(ref["stereo_width"], rel=1e-9)
    assert v["phase_correlation"] == pytest.approx(ref["phase_correlation"], rel=1e-9)


# --- streaming invariants and bad input ---------------------------------------------------------

CHUNKED = mixture(2.5, seed=13)
CHUNKED[1234, 0] = np.nan
CHUNKED[4321, 1] = np.inf
WHOLE = run_blocks("fingerprint25d", CHUNKED, RATE)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 9000), min_size=1, max_size=6).filter(any))
def test_any_block_split_gives_identical_values(sizes: list[int]) -> None:
    assert run_blocks("fingerprint25d", CHUNKED, RATE, sizes) == WHOLE


def test_single_frame_blocks_and_determinism() -> None:
    x = CHUNKED[:6000]
    assert run_blocks("fingerprint25d", x, RATE, [1]) == run_blocks("fingerprint25d", x, RATE)


def test_a_result_mid_stream_changes_nothing_after() -> None:
    kernel = FingerprintKernel(RATE, 2)
    kernel.process(CHUNKED[:30000])
    early = kernel.result()
    assert kernel.result() == early
    kernel.process(CHUNKED[30000:])
    assert list(kernel.result()) == WHOLE[0]["values"]
    assert fingerprint_array(CHUNKED[:30000], RATE).values == early
    kernel.reset()
    kernel.process(CHUNKED)
    assert list(kernel.result()) == WHOLE[0]["values"]


@pytest.mark.parametrize(
    ("audio", "rate"),
    [
        (np.zeros((2 * RATE, 2), np.float32), RATE),
        (np.full(1, 0.5, np.float32), RATE),
        (np.zeros(1, np.float32), RATE),
        (tone(1000.0, 0.01), RATE),
        (noise(0.01, channels=2), RATE),
        (np.full((3000, 2), np.nan, np.float32), RATE),
        (np.full(5000, -np.inf, np.float32), RATE),
        (np.tile(tone(700.0, 0.5, rate=8000)[:, None], (1, 6)), 8000),
        (tone(5000.0, 0.5, rate=96000), 96000),
    ],
    ids=["silence", "one-sample", "one-zero", "10ms", "10ms-stereo", "nan", "inf", "6ch", "96k"],
)
def test_degenerate_input_gives_finite_documented_values(audio: np.ndarray, rate: int) -> None:
    (event,) = run_blocks("fingerprint25d", audio, rate)
    v = dict(zip(event["names"], event["values"], strict=True))
    assert all(math.isfinite(x) for x in event["values"])
    shares = sum(v[name] for name in GROUPS["frequency"])
    assert shares == pytest.approx(1.0, abs=1e-12) or shares == 0.0
    assert 0 <= v["silence_ratio"] <= 1 and -1 <= v["phase_correlation"] <= 1
    assert v["loudness_lufs"] >= -70.0
    assert event["nonfinite_samples"] == int(np.sum(~np.isfinite(audio)))
    if not np.any(np.nan_to_num(audio, posinf=0, neginf=0)):
        assert v["loudness_lufs"] == -70.0 and v["silence_ratio"] == 1.0 and shares == 0.0
        assert v["tempo_bpm"] == 0.0 and v["centroid_hz"] == 0.0 and v["crest_db"] == 0.0


def test_nonfinite_samples_read_as_zero() -> None:
    x = CHUNKED.copy()
    clean = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    assert values(x) == values(clean)


def test_invalid_streams_and_params_are_rejected() -> None:
    with pytest.raises(ValueError, match="1-6 channels"):
        make_stage("fingerprint25d", RATE, 8)
    with pytest.raises(ValueError, match="8000-384000 Hz"):
        make_stage("fingerprint25d", 4000, 1)
    with pytest.raises(ParamsInvalid):
        make_stage("fingerprint25d", RATE, 1, max_seconds=-1.0)
    for rate, channels in ((RATE, 0), (RATE, 7), (4000, 1), (400000, 2)):
        assert lib.lg_fingerprint_new(rate, channels) == ffi.NULL


# --- analysis window and the Python API ---------------------------------------------------------


def test_the_analysis_window_covers_the_first_max_seconds() -> None:
    x = mixture(3.0, seed=14)
    (event,) = run_blocks("fingerprint25d", x, RATE, [5000], max_seconds=1.0)
    assert event["sample"] == len(x) and event["analysed_samples"] == RATE
    assert event["values"] == run_blocks("fingerprint25d", x[:RATE], RATE)[0]["values"]
    assert fingerprint_array(x, RATE, max_seconds=1.0).values == tuple(event["values"])
    assert fingerprint_array(x, RATE, max_seconds=0).values == tuple(values(x).values())


def test_fingerprint_file_equals_the_stage(tmp_path) -> None:
    x = mixture(3.0, seed=15)
    path = tmp_path / "take.wav"
    sf.write(path, x, RATE, subtype="FLOAT")
    fp = fingerprint_file(path)
    assert fp.values == tuple(values(x).values())
    assert (
        fingerprint_file(path, max_seconds=1.0).values == fingerprint_array(x[:RATE], RATE).values
    )
    with pytest.raises(LegatoError):
        fingerprint_file(tmp_path / "missing.flac")


def test_fingerprint_value_object() -> None:
    fp = fingerprint_array(mixture(1.0, seed=16), RATE)
    assert fp.version == ALGORITHM_VERSION and fp.names == NAMES
    assert fp["tempo_bpm"] == fp.values[NAMES.index("tempo_bpm")]
    assert list(fp.stereo) == ["stereo_width", "phase_correlation"]
    assert fp.frequency == fp.group("frequency") and len(fp.dynamics) == 3
    assert Fingerprint.from_dict(fp.as_dict()) == fp
    bad = [
        {**fp.as_dict(), "version": 2},
        {**fp.as_dict(), "version": True},
        {**fp.as_dict(), "values": fp.as_dict()["values"][:24]},
        {**fp.as_dict(), "values": [math.nan] * 25},
        {**fp.as_dict(), "values": ["x"] * 25},
        {**fp.as_dict(), "names": list(reversed(NAMES))},
        {"version": 1},
    ]
    for data in bad:
        with pytest.raises(ValueError):
            Fingerprint.from_dict(data)
