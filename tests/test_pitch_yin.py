"""pitch_yin through the real host path: the C difference function against a plain numpy YIN,
accuracy on tones, octave choice on harmonic notes, voicing of silence and noise, chunk
invariance, bad samples and params validation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from legato.config.params import ParamsInvalid, build_params
from legato.kernels import ffi, lib, owned, view
from legato.plugins.pitch_yin.notes import nearest_note
from legato.testing import registry, run_blocks

DEFAULTS = {"fmin": 40.0, "fmax": 2000.0, "threshold": 0.15, "silence_db": -60.0}


def estimator(sr: float, window: int = 2048, hop: int = 512, **kw: float) -> Any:
    p = {**DEFAULTS, **kw}
    state = lib.lg_yin_new(sr, window, hop, p["fmin"], p["fmax"], p["threshold"], p["silence_db"])
    return owned(state, lib.lg_yin_free, "yin")


def c_difference(y: Any, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lags = lib.lg_yin_max_lag(y) + 1
    d, dn = np.zeros(lags), np.zeros(lags)
    frame = np.ascontiguousarray(frame, dtype=np.float32)
    assert lib.lg_yin_frame_cmnd(y, view(frame, "float"), view(d, "double"), view(dn, "double"))
    return d, dn


def ref_difference(x: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """YIN steps 2-3 by definition: d(tau) = sum_{j<w} (x_j - x_{j+tau})^2, w = W - max_lag."""
    x = np.asarray(x, dtype=np.float64)
    w = len(x) - max_lag
    d = np.array([np.sum((x[:w] - x[tau : tau + w]) ** 2) for tau in range(max_lag + 1)])
    dn = np.ones_like(d)
    running = np.cumsum(d[1:])
    dn[1:] = d[1:] * np.arange(1, max_lag + 1) / np.where(running > 0, running, 1.0)
    return d, dn


def ref_yin(x: np.ndarray, sr: float, threshold: float) -> tuple[float, float, bool]:
    """Plain YIN for one frame with the default lag range: (f0 or 0, confidence, voiced)."""
    lo, hi = max(2, math.floor(sr / DEFAULTS["fmax"])), math.ceil(sr / DEFAULTS["fmin"])
    d, dn = ref_difference(x, hi)
    tau = lo
    best = None
    while tau <= hi:
        if dn[tau] < threshold:
            while tau < hi and dn[tau + 1] < dn[tau]:
                tau += 1
            if tau == lo and dn[lo - 1] < dn[lo]:
                while tau < hi and dn[tau + 1] < threshold:
                    tau += 1
            else:
                best = tau
                break
        tau += 1
    if best is None:
        best = lo + int(np.argmin(dn[lo : hi + 1]))
        return 0.0, float(np.clip(1 - dn[best], 0, 1)), False
    shift = 0.0
    if best < hi:
        curv = d[best - 1] - 2 * d[best] + d[best + 1]
        if curv > 0:
            shift = float(np.clip(0.5 * (d[best - 1] - d[best + 1]) / curv, -1, 1))
    return sr / (best + shift), float(np.clip(1 - dn[best], 0, 1)), True


def harmonic(f0: float, sr: int, seconds: float, amps: list[float], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    x = sum(
        a * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi))
        for k, a in enumerate(amps, 1)
        if f0 * k < sr / 2
    )
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def pitches(events: list[dict]) -> list[dict]:
    return [e for e in events if e["kind"] == "pitch"]


def cents(f: float, ref: float) -> float:
    return 1200.0 * math.log2(f / ref)


# -- the kernel's difference function ---------------------------------------------------------


@pytest.mark.parametrize(("sr", "window"), [(44100, 2048), (48000, 2048), (22050, 1500)])
def test_difference_and_cmnd_match_numpy_on_random_frames(sr: int, window: int) -> None:
    rng = np.random.default_rng(sr)
    y = estimator(sr, window)
    max_lag = lib.lg_yin_max_lag(y)
    assert max_lag == math.ceil(sr / 40.0)
    for frame in (
        rng.standard_normal(window),
        harmonic(rng.uniform(50, 900), sr, window / sr + 0.01, [1, 0.5, 0.3], 1)[:window],
    ):
        frame = frame.astype(np.float32)
        d, dn = c_difference(y, frame)
        rd, rdn = ref_difference(frame, max_lag)
        assert np.abs(d - rd).max() <= 1e-12 * rd.max()
        assert np.abs(dn - rdn).max() <= 1e-10


def test_effective_window_grows_when_fmin_needs_it() -> None:
    """At 96 kHz a 2048 window cannot hold the 2400-sample lag of 40 Hz: the smallest power of
    two leaving an integration window of half that lag is used, 4096."""
    y = estimator(96000)
    assert lib.lg_yin_max_lag(y) == 2400
    assert lib.lg_yin_window(y) == 4096
    frame = np.random.default_rng(3).standard_normal(4096).astype(np.float32)
    d, dn = c_difference(y, frame)
    rd, rdn = ref_difference(frame, 2400)
    assert np.abs(d - rd).max() <= 1e-12 * rd.max()
    assert np.abs(dn - rdn).max() <= 1e-10
    events = pitches(run_blocks("pitch_yin", harmonic(41.2, 96000, 0.5, [1, 0.5]), 96000))
    assert events[0]["sample"] == 2048
    assert abs(cents(np.median([e["f0"] for e in events]), 41.2)) < 10
    assert lib.lg_yin_window(estimator(44100)) == 2048


def test_stage_matches_numpy_yin_frame_by_frame() -> None:
    """Threshold, local-minimum walk, unvoiced fallback and interpolation on d, against the
    reference on frames that are tonal, noisy or in between (hop = window: disjoint frames)."""
    sr, window = 44100, 2048
    rng = np.random.default_rng(11)
    parts = []
    for i in range(24):
        tone = harmonic(rng.uniform(45, 1900), sr, window / sr + 0.01, [1, 0.6, 0.4, 0.2], i)
        noise = rng.standard_normal(window) * rng.choice([0.0, 0.05, 0.3, 1.0])
        parts.append(tone[:window] + noise)
    audio = np.concatenate(parts).astype(np.float32)
    events = pitches(run_blocks("pitch_yin", audio, sr, hop=window))
    assert len(events) == len(parts)
    voiced = 0
    for k, event in enumerate(events):
        f0, confidence, is_voiced = ref_yin(audio[k * window : (k + 1) * window], sr, 0.15)
        assert event["voiced"] == is_voiced
        assert event["f0"] == pytest.approx(f0, rel=1e-9)
        assert event["confidence"] == pytest.approx(confidence, abs=1e-9)
        voiced += is_voiced
    assert 0 < voiced < len(events)


# -- accuracy and voicing ---------------------------------------------------------------------


@pytest.mark.parametrize("sr", [44100, 48000])
def test_sine_tones_across_the_range(sr: int) -> None:
    errors = []
    for i, f in enumerate(np.geomspace(40.0, 2000.0, 25)):
        tone = harmonic(f, sr, 0.12, [1.0], i)
        events = pitches(run_blocks("pitch_yin", tone, sr))
        assert events and all(e["voiced"] for e in events), f
        errors.append(abs(cents(float(np.median([e["f0"] for e in events])), f)))
    assert np.median(errors) <= 10.0
    assert max(errors) <= 10.0


@pytest.mark.parametrize(
    "amps",
    [
        [1.0, 0.7, 0.5, 0.35, 0.25, 0.18],  # bright, decaying
        [1.0, 0.3, 0.1],  # mellow
        [0.1, 1.0, 0.8, 0.6, 0.4, 0.3],  # weak fundamental
        [1.0, 0.0, 0.4, 0.0, 0.2, 0.0, 0.1],  # odd harmonics only (clarinet-like)
    ],
)
def test_harmonic_notes_report_the_right_octave(amps: list[float]) -> None:
    sr = 44100
    for i, f in enumerate([55.0, 98.0, 196.0, 329.63, 523.25, 880.0, 1318.5]):
        note = harmonic(f, sr, 0.15, amps, i)
        hiss = np.random.default_rng(i).standard_normal(len(note)).astype(np.float32)
        noisy = note + 0.005 * hiss
        voiced = [e for e in pitches(run_blocks("pitch_yin", noisy, sr)) if e["voiced"]]
        assert len(voiced) >= 4, f
        assert abs(cents(float(np.median([e["f0"] for e in voiced])), f)) < 20, f


def test_silence_is_unvoiced_with_zero_confidence() -> None:
    sr = 44100
    quiet = np.random.default_rng(0).standard_normal(sr // 2) * 10 ** (-70 / 20)
    for audio in (np.zeros(sr // 2, dtype=np.float32), quiet.astype(np.float32)):
        events = run_blocks("pitch_yin", audio, sr)
        frames = pitches(events)
        assert frames
        for e in frames:
            assert e["voiced"] is False and e["f0"] == 0.0 and e["confidence"] == 0.0
            assert e["midi"] is None and e["note"] is None and e["cents"] is None
        summary = events[-1]
        assert summary["voiced_frames"] == 0 and summary["median_f0"] is None


def test_white_noise_is_unvoiced_or_low_confidence() -> None:
    sr = 44100
    noise = (0.3 * np.random.default_rng(5).standard_normal(sr)).astype(np.float32)
    frames = pitches(run_blocks("pitch_yin", noise, sr))
    assert sum(e["voiced"] for e in frames) <= 0.05 * len(frames)
    assert np.median([e["confidence"] for e in frames]) < 0.5


# -- events, summary and streaming ------------------------------------------------------------


def test_event_positions_notes_and_summary() -> None:
    sr, f = 48000, 440.0 * 2 ** (3 / 12)  # C5
    audio = np.concatenate([harmonic(f, sr, 0.5, [1, 0.5]), np.zeros(sr // 2, np.float32)])
    events = run_blocks("pitch_yin", audio, sr, hop=480)
    frames = pitches(events)
    assert [e["sample"] for e in frames] == [k * 480 + 1024 for k in range(len(frames))]
    assert len(frames) == (len(audio) - 2048) // 480 + 1
    first = frames[0]
    assert (first["midi"], first["note"]) == (72, "C5") and abs(first["cents"]) < 1
    summary = events[-1]
    assert summary["kind"] == "summary" and summary["sample"] == len(audio)
    assert summary["frames"] == len(frames)
    assert summary["voiced_frames"] == sum(e["voiced"] for e in frames) > 0
    assert abs(cents(summary["median_f0"], f)) < 1
    assert 0.9 < summary["median_confidence"] <= 1.0
    assert summary["nonfinite_samples"] == 0
    baroque = pitches(run_blocks("pitch_yin", harmonic(415.0, sr, 0.1, [1]), sr, tuning=415.0))
    assert baroque[0]["note"] == "A4" and abs(baroque[0]["cents"]) < 1


@pytest.mark.parametrize(
    ("f0", "expected"),
    [(27.5, (21, "A0")), (261.6256, (60, "C4")), (277.1826, (61, "C#4")), (4186.01, (108, "C8"))],
)
def test_nearest_note_names(f0: float, expected: tuple[int, str]) -> None:
    midi, name, off = nearest_note(f0, 440.0)
    assert (midi, name) == expected and abs(off) < 0.01
    sharp = nearest_note(f0 * 2 ** (49 / 1200), 440.0)
    flat = nearest_note(f0 * 2 ** (-49 / 1200), 440.0)
    assert sharp[:2] == flat[:2] == expected
    assert sharp[2] == pytest.approx(49, abs=0.01) and flat[2] == pytest.approx(-49, abs=0.01)


def test_summary_medians_across_batches_and_reads() -> None:
    """Frames enter the histograms a batch at a time: reading the medians mid-stream and
    streams longer than a batch give the same medians as one exact computation."""
    from legato.meters import Histogram
    from legato.plugins.pitch_yin.medians import VoicedMedians

    rng = np.random.default_rng(5)
    f0s = 440.0 * 2.0 ** rng.uniform(-3.0, 2.0, 3 * Histogram.BATCH + 17)
    medians = VoicedMedians(40.0, 2000.0)
    for k, f0 in enumerate(f0s.tolist()):
        medians.add(f0, 0.5)
        if k in (0, Histogram.BATCH - 1, Histogram.BATCH + 3):
            seen = np.sort(f0s[: k + 1])
            got = medians.f0()
            assert got is not None and medians.count == k + 1
            middle = (seen[k // 2], seen[(k + 1) // 2])
            assert 1200 * math.log2(got / middle[0]) >= -0.51
            assert 1200 * math.log2(got / middle[1]) <= 0.51
    assert medians.count == len(f0s) and medians.confidence() == pytest.approx(0.5, abs=6e-4)


def test_note_names_from_the_table_match_the_rule() -> None:
    from legato.plugins.pitch_yin.notes import NAMES, note_name

    for midi in range(-40, 200):
        assert note_name(midi) == f"{NAMES[midi % 12]}{midi // 12 - 1}"


def _stream() -> np.ndarray:
    sr = 44100
    rng = np.random.default_rng(2)
    return np.concatenate(
        [
            harmonic(196.0, sr, 0.1, [1, 0.5, 0.3]),
            (0.2 * rng.standard_normal(2000)).astype(np.float32),
            harmonic(740.0, sr, 0.08, [0.2, 1, 0.5]),
            np.zeros(1500, np.float32),
        ]
    )


STREAM = _stream()
WHOLE = run_blocks("pitch_yin", STREAM, 44100, hop=300)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.one_of(st.integers(0, 3), st.integers(0, 3000)), min_size=1, max_size=12).filter(
        any
    )
)
def test_chunk_invariance(block_sizes: list[int]) -> None:
    assert run_blocks("pitch_yin", STREAM, 44100, block_sizes, hop=300) == WHOLE


def test_tiny_blocks_equal_one_block() -> None:
    assert run_blocks("pitch_yin", STREAM[:6000], 44100, [1, 0, 2], hop=300) == run_blocks(
        "pitch_yin", STREAM[:6000], 44100, hop=300
    )


def test_nonfinite_samples_are_counted_and_do_not_poison_later_frames() -> None:
    sr, hop = 44100, 512
    clean = harmonic(330.0, sr, 0.5, [1, 0.5, 0.25])
    bad = clean.copy()
    bad[3000:3010] = np.nan
    bad[5000] = np.inf
    bad[5001] = -np.inf
    got = run_blocks("pitch_yin", bad, sr, [700, 333])
    want = run_blocks("pitch_yin", clean, sr)
    assert got[-1]["nonfinite_samples"] == 12
    frames_got, frames_want = pitches(got), pitches(want)
    assert len(frames_got) == len(frames_want)
    for k, (g, w) in enumerate(zip(frames_got, frames_want, strict=True)):
        assert all(math.isfinite(g[f]) for f in ("f0", "confidence"))
        if k * hop > 5001:  # the frame starts after the last bad sample
            assert g == w
    assert all(g["voiced"] for g in frames_got)


# -- parameters and kernel contract -----------------------------------------------------------


def stage_type() -> Any:
    return registry().stage_type("pitch_yin")


def test_defaults_and_description() -> None:
    params = build_params(stage_type(), {})
    assert (params.window, params.hop, params.fmin, params.fmax) == (2048, 512, 40.0, 2000.0)
    assert (params.silence_db, params.tuning) == (-60.0, 440.0)
    assert 0.1 <= params.threshold <= 0.2
    described = stage_type().describe()
    assert described["input"] == "mono"
    kinds = {o["kind"]: o for o in described["outputs"]}
    assert set(kinds["pitch"]["fields"]) == {"f0", "voiced", "confidence", "midi", "note", "cents"}
    assert kinds["pitch"]["rate"] == "per_hop" and kinds["summary"]["rate"] == "end"
    assert all(p["doc"] for p in described["params"])


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"hop": 4096, "window": 2048}, "hop"),
        ({"fmin": 500.0, "fmax": 400.0}, "fmin"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"window": 2048.5}, "window"),
        ({"window": 16}, "window"),
        ({"silence_db": 3.0}, "silence_db"),
        ({"tuning": 1000.0}, "tuning"),
        ({"fmax": float("nan")}, "fmax"),
        ({"treshold": 0.1}, "treshold"),
    ],
)
def test_invalid_params_are_rejected(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ParamsInvalid) as err:
        build_params(stage_type(), raw)
    assert key in {e.key for e in err.value.errors}


def test_kernel_rejects_bad_params_and_small_caps() -> None:
    assert lib.lg_yin_new(44100, 2048, 4096, 40.0, 2000.0, 0.15, -60.0) == ffi.NULL
    assert lib.lg_yin_new(44100, 2048, 512, 2000.0, 40.0, 0.15, -60.0) == ffi.NULL
    assert lib.lg_yin_new(0, 2048, 512, 40.0, 2000.0, 0.15, -60.0) == ffi.NULL
    assert lib.lg_yin_new(44100, 2048, 512, 40.0, 2000.0, math.nan, -60.0) == ffi.NULL
    y = estimator(44100)
    block = np.zeros(4096, dtype=np.float32)
    out = np.zeros(8)
    voiced = np.zeros(8, dtype=np.intc)
    args = (view(block, "float"), 4096, view(out, "double"), view(out, "double"))
    assert lib.lg_yin_max_outputs(y, 4096) == 5
    assert lib.lg_yin_process(y, *args, view(voiced, "int"), 4) == -2
    assert lib.lg_yin_max_outputs(y, 4096) == 5  # nothing was consumed
    assert lib.lg_yin_process(y, *args, view(voiced, "int"), 5) == 5
    assert lib.lg_yin_process(y, args[0], -1, *args[2:], view(voiced, "int"), 8) == -1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(20.0, 8000.0), st.floats(0.0, 1.0, exclude_max=True)),
        min_size=1,
        max_size=300,
    )
)
def test_summary_medians_in_fixed_memory_are_within_half_a_cent(
    frames: list[tuple[float, float]],
) -> None:
    """The summary's medians come from fixed-size histograms (a long stream must not grow the
    stage): f0 within half a cent of the exact median's middle values, confidence within 5e-4."""
    from legato.plugins.pitch_yin.medians import VoicedMedians

    medians = VoicedMedians(20.0, 8000.0)
    for f0, confidence in frames:
        medians.add(f0, confidence)
    f0s = sorted(f for f, _ in frames)
    low, high = f0s[(len(f0s) - 1) // 2], f0s[len(f0s) // 2]
    got = medians.f0()
    assert got is not None
    assert 1200 * math.log2(got / low) >= -0.51 and 1200 * math.log2(got / high) <= 0.51
    confidences = sorted(c for _, c in frames)
    c_low, c_high = confidences[(len(frames) - 1) // 2], confidences[len(frames) // 2]
    assert c_low - 6e-4 <= medians.confidence() <= c_high + 6e-4
