"""The onsets_flux stage through the real host: the C detection function against a plain numpy
reference, detection accuracy on generated note sequences, silence/noise/steady tones, the
calibrated onset position, chunk invariance, latency and bad input."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legato.config.params import ParamsInvalid
from legato.kernels import ffi, lib, view
from legato.plugins.onsets_flux import stage as onsets_stage
from legato.plugins.onsets_flux.params import OnsetsFluxParams
from legato.testing import make_stage, run_blocks

SR = 44100
TOLERANCE_S = 0.05
"""The MIREX onset evaluation window."""


def onsets(events: list[dict]) -> list[dict]:
    return [e for e in events if e["kind"] == "onset"]


def summary(events: list[dict]) -> dict:
    (last,) = [e for e in events if e["kind"] == "summary"]
    return last


# --- signals -----------------------------------------------------------------------------------


def harmonic_note(rng: np.random.Generator, f0: float, seconds: float, tau: float) -> np.ndarray:
    """A plucked/struck harmonic tone: 1 ms attack, partials decaying faster the higher they
    are, random phases and a random spectral envelope; peak 1."""
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for h in range(1, 16):
        if h * f0 > 0.45 * SR:
            break
        amplitude = rng.uniform(0.3, 1.0) / h * np.exp(-t * (1.0 + h / 3.0) / tau)
        y += amplitude * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 6.3))
    y *= np.minimum(1.0, t / 0.001)
    return y / np.max(np.abs(y))


def note_sequence(
    rng: np.random.Generator,
    seconds: float,
    level_db: Callable[[], float],
    pitch: Callable[[], float],
    gap: Callable[[], float],
) -> tuple[np.ndarray, list[float]]:
    """Notes at random times that ring on under the next ones; returns audio and onset times."""
    x = np.zeros(int(seconds * SR))
    truth: list[float] = []
    t = 0.2
    while t < seconds - 0.6:
        note = harmonic_note(rng, pitch(), min(1.5, seconds - t), rng.uniform(0.15, 0.8))
        i = int(t * SR)
        x[i : i + len(note)] += note * 10 ** (level_db() / 20)
        truth.append(i / SR)
        t += gap()
    return x, truth


def plucked(rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    return note_sequence(
        rng, 8.0, lambda: rng.uniform(-30, -6), lambda: rng.uniform(80, 1200),
        lambda: rng.uniform(0.1, 0.5),
    )  # fmt: skip


def repeated(rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    f0 = rng.uniform(110, 880)
    return note_sequence(
        rng, 8.0, lambda: rng.uniform(-12, -6), lambda: f0, lambda: rng.uniform(0.12, 0.35)
    )


def dynamics(rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """Loud, medium and soft notes (28 dB apart at the extremes) in random order."""
    return note_sequence(
        rng, 8.0, lambda: float(rng.choice([-6.0, -20.0, -34.0])),
        lambda: rng.uniform(80, 1200), lambda: rng.uniform(0.1, 0.5),
    )  # fmt: skip


def legato(rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """A continuous harmonic tone whose pitch steps by 2 to 7 semitones every 150-500 ms, with
    no amplitude change at the steps: the only cue is the new pitch. It walks within two octaves
    above 233 Hz, where a 1024-sample window resolves the harmonics."""
    seconds = 8.0
    changes = [0.2]
    semitones = [int(rng.integers(0, 25))]
    while changes[-1] < seconds - 0.5:
        changes.append(changes[-1] + rng.uniform(0.15, 0.5))
        step = int(rng.choice([2, 3, 4, 5, 7])) * int(rng.choice([-1, 1]))
        semitones.append(semitones[-1] + (step if 0 <= semitones[-1] + step <= 24 else -step))
    f = np.zeros(int(seconds * SR))
    for start, semi in zip(changes, semitones, strict=True):
        f[int(start * SR) :] = 233.0 * 2 ** (semi / 12)
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(0.5 / h * np.sin(h * phase) for h in range(1, 10))
    t = np.arange(len(x)) / SR
    x *= np.clip((t - 0.2) / 0.01, 0, 1)
    return 0.5 * x / np.max(np.abs(x)), [int(c * SR) / SR for c in changes]


def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.normal(size=n))
    f = np.arange(len(spectrum), dtype=float)
    f[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(f), n)


def with_noise(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Light white noise: -50 dBFS RMS."""
    return x + rng.normal(size=len(x)) * 10 ** (-50 / 20)


# --- evaluation --------------------------------------------------------------------------------


def match(truth: list[float], found: list[float]) -> list[float]:
    """Signed errors (s) of the matched pairs within ±50 ms; each reference and each detection
    is matched at most once, closest pairs first."""
    pairs = sorted(
        (abs(f - r), i, j)
        for i, r in enumerate(truth)
        for j, f in enumerate(found)
        if abs(f - r) <= TOLERANCE_S
    )
    used_r: set[int] = set()
    used_f: set[int] = set()
    errors = []
    for _, i, j in pairs:
        if i not in used_r and j not in used_f:
            used_r.add(i)
            used_f.add(j)
            errors.append(found[j] - truth[i])
    return errors


def scores(
    make: Callable[[np.random.Generator], tuple[np.ndarray, list[float]]],
    noisy: bool,
    seed: int,
    takes: int = 3,
) -> tuple[float, np.ndarray]:
    """F-measure over several generated takes, and the timing errors of the hits."""
    rng = np.random.default_rng(seed)
    hits, n_truth, n_found, errors = 0, 0, 0, []
    for _ in range(takes):
        x, truth = make(rng)
        if noisy:
            x = with_noise(rng, x)
        found = [e["sample"] / SR for e in onsets(run_blocks("onsets_flux", x, SR))]
        matched = match(truth, found)
        hits += len(matched)
        n_truth += len(truth)
        n_found += len(found)
        errors.extend(matched)
    return 2 * hits / (n_truth + n_found), np.asarray(errors)


# --- the detection function against numpy -----------------------------------------------------


def reference_flux(x: np.ndarray, params: OnsetsFluxParams) -> np.ndarray:
    """The detection function of csrc/onsets.h, written out with numpy."""
    n, hop = params.window, params.hop
    nfft = 1 << max(4, (n - 1).bit_length())
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    window /= window.sum()
    count = (len(x) - n) // hop + 1
    frames = np.stack([x[k * hop : k * hop + n] for k in range(count)]).astype(np.float64)
    mag = np.abs(np.fft.rfft(frames * window, nfft))
    # Triangular bands on the 440 * 2^(i/24) Hz grid, merged where grid points share a bin.
    bpo, fmin = onsets_stage.BANDS_PER_OCTAVE, onsets_stage.FMIN_HZ
    top = min(onsets_stage.FMAX_HZ, SR / 2)
    grid = range(math.floor(bpo * math.log2(fmin / 440)), math.ceil(bpo * math.log2(top / 440)) + 1)
    bins: list[int] = []
    for i in grid:
        b = math.floor(440 * 2 ** (i / bpo) * nfft / SR + 0.5)
        if b > nfft // 2:
            break
        if not bins or b != bins[-1]:
            bins.append(b)
    bank = np.zeros((nfft // 2 + 1, len(bins) - 2))
    for b, (lo, mid, hi) in enumerate(zip(bins, bins[1:], bins[2:], strict=False)):
        bank[lo:mid, b] = np.arange(mid - lo) / (mid - lo)
        bank[mid:hi, b] = (hi - np.arange(mid, hi)) / (hi - mid)
    bands = mag @ bank
    widened = bands.copy()
    widened[:, 1:] = np.maximum(widened[:, 1:], bands[:, :-1])
    widened[:, :-1] = np.maximum(widened[:, :-1], bands[:, 1:])
    decay = 10 ** (-onsets_stage.LEVEL_RELEASE_DB_PER_S / 20 * hop / SR)
    floor = 10 ** (params.silence_db / 20) / math.sqrt(2)
    level = np.zeros(count)
    held = 0.0
    for k in range(count):
        held = max(held * decay, bands[k].max())
        level[k] = held
    mu = max(1, round(n / (4 * hop)))
    persist = -(-n // hop)
    flux = np.zeros(count - persist)
    for j in range(count - persist):
        now = bands[j : j + persist + 1].min(axis=0)
        past = [widened[i] for i in range(j - mu - 2, j - mu + 1) if i >= 0]
        ref = np.max(past, axis=0) if past else np.zeros(bands.shape[1])
        knee = max(level[j + persist], floor) / params.compression
        flux[j] = np.log1p(np.maximum(now - ref, 0) / (knee + ref)).sum()
    return flux


@pytest.mark.parametrize(("window", "hop"), [(1024, 256), (2048, 256), (1000, 300)])
def test_detection_function_matches_numpy(window: int, hop: int) -> None:
    rng = np.random.default_rng(window + hop)
    x, _ = plucked(rng)
    x = with_noise(rng, x[: 2 * SR]).astype(np.float32)
    params = OnsetsFluxParams(window=window, hop=hop)
    detector = onsets_stage.new_detector(params, SR)
    out = np.zeros(len(x) // hop + 1)
    count = lib.lg_onsets_flux(detector, view(x, "float"), len(x), view(out, "double"), len(out))
    want = reference_flux(x, params)
    assert count == len(want)
    np.testing.assert_allclose(out[:count], want, rtol=1e-9, atol=1e-9 * want.max())
    assert want.max() > 10 * np.median(want)


# --- detection on generated music ---------------------------------------------------------------


@pytest.mark.parametrize("noisy", [False, True], ids=["clean", "noisy"])
@pytest.mark.parametrize(
    "make", [plucked, repeated, dynamics, legato], ids=["plucked", "repeated", "dynamics", "legato"]
)
def test_f_measure_on_note_sequences(
    make: Callable[[np.random.Generator], tuple[np.ndarray, list[float]]], noisy: bool
) -> None:
    f, errors = scores(make, noisy, seed=7)
    assert f >= 0.9
    assert abs(errors.mean()) < 0.005
    assert np.abs(errors).max() < 0.015


def test_onset_position_is_calibrated_on_isolated_attacks() -> None:
    """A note at a random sub-frame position, at levels 40 dB apart: the estimate lands within
    a few ms of the first sample of the attack, without a systematic offset."""
    rng = np.random.default_rng(3)
    errors = []
    for level_db in (-46.0, -26.0, -6.0):
        for _ in range(8):
            x = np.zeros(SR)
            start = int(rng.integers(SR // 4, SR // 2))
            note = harmonic_note(rng, rng.uniform(100, 1000), 0.5, 0.4)
            x[start : start + len(note)] = note * 10 ** (level_db / 20)
            (event,) = onsets(run_blocks("onsets_flux", x, SR))
            errors.append((event["sample"] - start) / SR)
    errors_ms = 1000 * np.asarray(errors)
    assert abs(errors_ms.mean()) < 2.0
    assert np.abs(errors_ms).max() < 5.0


# --- nothing to detect -------------------------------------------------------------------------


def steady(rng: np.random.Generator, kind: str) -> np.ndarray:
    t = np.arange(5 * SR) / SR
    if kind == "white":
        return 0.03 * rng.normal(size=len(t))
    if kind == "pink":
        p = pink_noise(rng, len(t))
        return 0.03 * p / p.std()
    if kind == "sine":
        return 0.5 * np.sin(2 * np.pi * 440 * t)
    if kind == "vibrato":
        phase = 2 * np.pi * np.cumsum(440 * (1 + 0.03 * np.sin(2 * np.pi * 6 * t))) / SR
        return sum(0.3 / h * np.sin(h * phase) for h in range(1, 8))
    raise ValueError(kind)


def test_no_onsets_in_silence() -> None:
    events = run_blocks("onsets_flux", np.zeros(3 * SR), SR)
    assert onsets(events) == []
    assert summary(events)["onsets"] == 0


def test_no_onsets_in_near_silence() -> None:
    """Hiss below the silence threshold, with a quiet click in it, is not a note."""
    rng = np.random.default_rng(5)
    x = 10 ** (-75 / 20) * rng.normal(size=3 * SR)
    x[SR : SR + 20] += 10 ** (-70 / 20)
    assert onsets(run_blocks("onsets_flux", x, SR)) == []


@pytest.mark.parametrize("kind", ["white", "pink", "sine", "vibrato"])
def test_no_onsets_in_steady_sound(kind: str) -> None:
    """A sound that is there from the first sample on has one onset, at its start."""
    x = steady(np.random.default_rng(11), kind)
    found = onsets(run_blocks("onsets_flux", x, SR))
    assert len(found) == 1
    assert found[0]["sample"] < 0.03 * SR


# --- streaming ----------------------------------------------------------------------------------


def short_take() -> np.ndarray:
    rng = np.random.default_rng(21)
    x, _ = note_sequence(
        rng, 1.6, lambda: rng.uniform(-20, -6), lambda: rng.uniform(100, 900), lambda: 0.12
    )
    return with_noise(rng, x).astype(np.float32)


SHORT = short_take()
WHOLE = run_blocks("onsets_flux", SHORT, SR)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 3) | st.integers(4, 9000), min_size=1, max_size=8).filter(any))
def test_chunk_invariance(sizes: list[int]) -> None:
    assert len(onsets(WHOLE)) >= 5
    assert run_blocks("onsets_flux", SHORT, SR, block_sizes=sizes) == WHOLE


def test_onsets_arrive_within_the_documented_latency() -> None:
    """Fed one hop at a time, each onset is reported once the frames of the lookahead exist."""
    params = OnsetsFluxParams()
    detector = onsets_stage.new_detector(params, SR)
    latency = params.window + lib.lg_onsets_latency(detector) * params.hop
    _, stage = make_stage("onsets_flux", SR)
    fed = 0
    for start in range(0, len(SHORT), params.hop):
        block = SHORT[start : start + params.hop]
        fed += len(block)
        for event in onsets(stage.process(block)):
            assert fed - event["sample"] <= latency
    assert onsets(stage.finish()) == []


def test_finish_flushes_an_onset_near_the_end() -> None:
    """A note starting ~45 ms before the end is decided at finish, with the lookahead there is."""
    rng = np.random.default_rng(4)
    x = np.zeros(SR, dtype=np.float32)
    start = SR - 2000
    x[start:] = 0.3 * harmonic_note(rng, 440.0, 2000 / SR, 0.5)
    _, stage = make_stage("onsets_flux", SR)
    assert onsets(stage.process(x)) == []
    (event,) = onsets(stage.finish())
    assert abs(event["sample"] - start) < 0.005 * SR


# --- summary ------------------------------------------------------------------------------------


def test_summary_reports_rate_and_timing_consistency() -> None:
    rng = np.random.default_rng(8)
    x = np.zeros(6 * SR)
    starts = [int((0.5 + 0.5 * k + rng.uniform(-0.02, 0.02)) * SR) for k in range(10)]
    for s in starts:
        note = 0.3 * harmonic_note(rng, rng.uniform(200, 800), 0.45, 0.3)
        x[s : s + len(note)] += note
    events = run_blocks("onsets_flux", x, SR)
    found = [e["sample"] for e in onsets(events)]
    got = summary(events)
    ioi = np.diff(found) / SR
    assert len(found) == 10
    assert got["sample"] == len(x)
    assert got["onsets"] == 10
    assert got["onset_rate_hz"] == pytest.approx(10 / 6)
    assert got["mean_ioi_s"] == pytest.approx(ioi.mean())
    assert got["ioi_cv"] == pytest.approx(ioi.std() / ioi.mean())
    assert got["mean_ioi_s"] == pytest.approx(0.5, abs=0.01)
    assert got["ioi_cv"] < 0.05


def test_summary_without_intervals() -> None:
    rng = np.random.default_rng(9)
    x = np.zeros(2 * SR)
    x[SR // 2 : SR] = 0.3 * harmonic_note(rng, 330.0, 0.5, 0.3)
    got = summary(run_blocks("onsets_flux", x, SR))
    assert (got["onsets"], got["mean_ioi_s"], got["ioi_cv"]) == (1, None, None)


# --- bad input ----------------------------------------------------------------------------------


def test_non_finite_samples_are_silence_and_counted() -> None:
    """NaN and Inf neither crash nor poison what follows: the stream reads as if they were 0.0,
    and the summary counts them."""
    x = SHORT.copy()
    bad = np.zeros(len(x), dtype=bool)
    bad[5000:5100] = True
    bad[30000:30010] = True
    bad[::997] = True
    x[bad] = np.tile(np.array([np.nan, np.inf, -np.inf], dtype=np.float32), bad.sum())[: bad.sum()]
    clean = np.where(bad, 0.0, SHORT).astype(np.float32)
    got = run_blocks("onsets_flux", x, SR, block_sizes=[777, 1, 4096])
    want = run_blocks("onsets_flux", clean, SR)
    assert len(onsets(want)) >= 5
    assert onsets(got) == onsets(want)
    assert summary(got)["nonfinite_samples"] == int(bad.sum())
    assert all(math.isfinite(e["strength"]) for e in onsets(got))


def test_process_after_finish_is_an_error() -> None:
    _, stage = make_stage("onsets_flux", SR)
    stage.finish()
    with pytest.raises(RuntimeError):
        stage.process(np.zeros(512, dtype=np.float32))


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"hop": 2048, "window": 1024}, "hop"),
        ({"window": 64}, "window"),
        ({"compression": 0.0}, "compression"),
        ({"silence_db": 3.0}, "silence_db"),
        ({"window": 1024.0}, "window"),
        ({"delta": -1.0}, "delta"),
    ],
)
def test_invalid_params_are_rejected(params: dict, key: str) -> None:
    with pytest.raises(ParamsInvalid) as info:
        make_stage("onsets_flux", SR, **params)
    assert [e.key for e in info.value.errors] == [key]


def test_kernel_rejection_names_the_stage() -> None:
    with pytest.raises(ValueError, match="onsets_flux at 800 Hz"):
        make_stage("onsets_flux", 800)


def test_stage_describes_itself() -> None:
    from legato.testing import registry

    described = registry().stage_type("onsets_flux").describe()
    assert described["input"] == "mono"
    assert {o["kind"] for o in described["outputs"]} == {"onset", "summary"}
    params = {p["name"]: p for p in described["params"]}
    assert params["window"]["default"] == 1024 and params["hop"]["default"] == 256
    assert all(p["doc"] for p in params.values())


def test_no_two_onsets_at_one_sample_even_without_a_minimum_gap() -> None:
    """An input csrc/fuzz/onsets_fuzz found: with min_gap 0 and hop 1, the sub-frame peaks of
    neighbouring frames rounded to the same sample and the onset was reported twice."""
    found = base64.b64decode(
        "Qf8ADQAAjIyMjIyMjAAAAAAAACYAAAAAAAAAAAAAAAAAAAAAAACMjIyMjIyMjIyMjIyMjIyMjAAAAAAAAAAAAAAAAAA"
        "AAP7//wAAjIyMjIyMjIyMjIyMjIwyjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjI"
        "yMjIyMjIyMjIyMjIyMAAAAAAAAAAAAAAAtFAAAAAAAAAAAAAAAAAAAAAAAAAAArwCQkJCQkJAAAAAA8QAAAAAAAAAAAA"
        "AAAAAAAP///8tb7/8="
    )
    samples = np.frombuffer(found[34 : 34 + (len(found) - 34) // 4 * 4], dtype=np.float32).copy()
    state = lib.lg_onsets_new(
        20895, 21, 1, 29, 1098.49, 16515.69, 5468.83, 0.0, 0, 17, 0, 0, 0.0, 0.0, -200.0, 0
    )
    assert state != ffi.NULL
    try:
        cap = lib.lg_onsets_max_outputs(state, len(samples)) + lib.lg_onsets_max_outputs(state, -1)
        at, strength = np.zeros(cap, dtype=np.int64), np.zeros(cap)
        n = lib.lg_onsets_process(
            state, view(samples, "float"), len(samples), view(at, "int64_t"),
            view(strength, "double"), cap,
        )  # fmt: skip
        assert n >= 0
        rest_at, rest_strength = at[n:], strength[n:]
        m = lib.lg_onsets_finish(
            state, view(rest_at, "int64_t"), view(rest_strength, "double"), cap - n
        )
        assert m >= 0
        onsets = at[: n + m]
        assert len(onsets) >= 1 and np.all(np.diff(onsets) > 0), onsets
    finally:
        lib.lg_onsets_free(state)
