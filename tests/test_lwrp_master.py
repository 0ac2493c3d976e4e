"""lwrp_master: the Loudness-War Restraint rule, the processing of each class, the true-peak
ceiling on hostile material, chunk invariance and the stage contract, through the real host path
and measured with the project's own loudness and true-peak meters (the dynamics stage)."""

from __future__ import annotations

import math
import textwrap

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from legato.config.params import ParamsInvalid
from legato.config.pipelines import parse_config
from legato.engine.graph import Graph
from legato.plugins.lwrp_master import MasterParams, plan_mastering
from legato.stage import AudioStage, StreamFormat
from legato.testing import make_stage, registry, run_blocks, split

RATE = 44100
CEILING = -1.0


# --- material -------------------------------------------------------------------------------


def music(seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    """A stereo band: kick on every beat (120 BPM), snare on 2 and 4, hi-hats, a sawtooth bass
    and sustained chords; peak 1.0, 17-18 dB of crest, like an unmastered mix."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = np.zeros((n, 2))
    beat = rate // 2
    tk = np.arange(int(0.4 * rate)) / rate
    kick = np.sin(2 * np.pi * (50 * tk + 3 * (1 - np.exp(-tk / 0.03)))) * np.exp(-tk / 0.15)

    def hit(decay: float, length: float) -> np.ndarray:
        x = np.diff(rng.standard_normal(int(length * rate)), prepend=0.0)
        return x / np.std(x) * np.exp(-np.arange(len(x)) / rate / decay)

    def add(start: int, sound: np.ndarray, left: float, right: float) -> None:
        part = sound[: n - start]
        out[start : start + len(part), 0] += left * part
        out[start : start + len(part), 1] += right * part

    for b in range(n // beat):
        s = b * beat
        add(s, kick, 0.9, 0.9)
        if b % 2:
            add(s, hit(0.08, 0.3), 0.3, 0.4)
        for half in (0, beat // 2):
            add(s + half, hit(0.02, 0.1), 0.05, 0.11)
        tb = np.arange(min(beat, n - s)) / rate
        f0 = 55 * 2 ** (rng.integers(0, 12) / 12)
        add(s, 0.3 * (2 * ((f0 * tb) % 1) - 1) * np.exp(-tb / 0.4), 1.0, 1.0)
    for c in range(0, n, 2 * rate):
        tc = np.arange(min(2 * rate, n - c)) / rate
        root = 220 * 2 ** (rng.integers(0, 12) / 12)
        chord = sum(0.05 * np.sin(2 * np.pi * root * r * tc) for r in (1, 1.26, 1.5, 2.0))
        add(c, chord * np.minimum(1, tc / 0.05) * np.exp(-tc / 3), 1.2, 0.8)
    return out / np.max(np.abs(out))


def brickwall(x: np.ndarray, drive_db: float, block: int = 128) -> np.ndarray:
    """A loudness-war master: drive, block-wise peak limiting to -0.3 dBFS (each block's gain
    from its own and its neighbours' peaks, interpolated), then hard clipping of the rest."""
    y = x * 10 ** (drive_db / 20)
    n, nb = len(y), -(-len(y) // block)
    padded = np.zeros((nb * block, y.shape[1]))
    padded[:n] = y
    peaks = np.abs(padded).reshape(nb, block, -1).max(axis=(1, 2))
    g = np.minimum(1.0, 0.966 / np.maximum(peaks, 1e-12))
    g = np.minimum(g, np.minimum(np.r_[g[1:], 1.0], np.r_[1.0, g[:-1]]))
    gain = np.interp(np.arange(n), np.arange(nb) * block + block / 2, g)
    return np.clip(y * gain[:, None], -1.0, 1.0).astype(np.float32)


def hits(peaks_db: list[float], seed: int = 0, rate: int = RATE) -> np.ndarray:
    """Phrases of bright percussive hits, 12 per second for 1.5 s then 0.5 s of silence, each
    phrase at its own sample peak: loud by BS.1770 but with 19-20 dB of crest factor."""
    rng = np.random.default_rng(seed)
    n = int(len(peaks_db) * 2 * rate)
    out = np.zeros((n, 2))
    length = rate // 4
    decay = np.exp(-np.arange(length) / rate / 0.08)
    for p, peak_db in enumerate(peaks_db):
        for h in range(18):
            start = 2 * p * rate + h * rate // 12
            x = rng.standard_normal((length, 2))
            x[:, 1] = 0.6 * x[:, 1] + 0.4 * x[:, 0]
            x = np.diff(x, axis=0, prepend=0.0) * decay[:, None]
            out[start : start + length] += x * 10 ** (peak_db / 20) / np.max(np.abs(x))
    return out.astype(np.float32)


# --- measurement ----------------------------------------------------------------------------


def meter(audio: np.ndarray, rate: int = RATE) -> dict:
    """The dynamics stage's summary: BS.1770 integrated loudness and 4x true peak."""
    return run_blocks("dynamics", np.asarray(audio, np.float32), rate)[-1]


def crest_db(audio: np.ndarray) -> float:
    x = np.asarray(audio, np.float64)
    return float(20 * np.log10(np.max(np.abs(x)) / np.sqrt(np.mean(x**2))))


def short_term_spread(audio: np.ndarray, rate: int = RATE) -> float:
    """95th minus 10th percentile of the 50 ms RMS levels: how far the music moves."""
    hop = rate // 20
    n = len(audio) // hop
    ms = (np.asarray(audio[: n * hop], np.float64) ** 2).reshape(n, hop, -1).mean(axis=(1, 2))
    db = 10 * np.log10(ms + 1e-20)
    return float(np.percentile(db, 95) - np.percentile(db, 10))


def fingerprint(audio: np.ndarray) -> dict[str, float]:
    return {"integrated_lufs": meter(audio)["integrated_lufs"], "crest_db": crest_db(audio)}


def master(
    audio: np.ndarray, rate: int = RATE, sizes: list[int] | None = None, **params: float
) -> tuple[np.ndarray, list[dict]]:
    """Streams audio through a fresh stage in the given block split; output and events."""
    audio = np.asarray(audio, np.float32)
    audio = audio if audio.ndim == 2 else audio[:, None]
    _, stage = make_stage("lwrp_master", rate, audio.shape[1], **params)
    assert isinstance(stage, AudioStage)
    outs, events = [], []
    for block in split(audio, sizes if sizes is not None else [4096]):
        out, ev = stage.process_audio(block)
        outs.append(out)
        events += ev
    tail, ev = stage.finish_audio()
    return np.concatenate([*outs, tail]), events + ev


def expander_reference(
    x: np.ndarray, rate: int, gain_db: float, amount: float, p: MasterParams
) -> np.ndarray:
    """The documented pre-limiter chain, restated in plain Python: mean-square envelopes (two
    cascaded one-poles for the short-term level, one for the program level), a downward gain
    of amount * (short - program) dB floored at -depth, computed every 16 frames and glided
    to linearly, times the static gain."""

    def pole(ms: float) -> float:
        return 1.0 - math.exp(-1.0 / (ms * 1e-3 * rate))

    fast, slow = pole(p.expander_fast_ms), pole(p.expander_slow_ms)
    lo = 10 ** (-p.expander_depth_db / (10 * amount))
    static = 10 ** (gain_db / 20)
    x = x.astype(np.float64)
    power = (x**2).sum(axis=1) / x.shape[1]
    f1 = f2 = s1 = 1e-10
    start = end = static
    gains = np.empty(len(x))
    for i, pw in enumerate(power.tolist()):
        f1 += fast * (pw - f1)
        f2 += fast * (f1 - f2)
        s1 += slow * (pw - s1)
        phase = i % 16
        if phase == 0:
            ratio = min(max((f2 + 1e-10) / (s1 + 1e-10), lo), 1.0)
            start, end = end, static * math.exp(amount * 0.5 * math.log(ratio))
        gains[i] = start + (end - start) * (phase / 16)
    return x * gains[:, None]


MIX = music(6.0, seed=1)
LOUD = brickwall(MIX, 12.0)


# --- the rule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lufs", "crest", "cls"),
    [
        (-8.0, 8.0, "compressed_loud"),
        (-11.9, 12.9, "compressed_loud"),
        (-8.0, 13.0, "dynamic_loud"),
        (-5.0, 20.0, "dynamic_loud"),
        (-12.0, 8.0, "quiet"),
        (-30.0, 20.0, "quiet"),
        (-30.0, None, "quiet"),
        (-8.0, None, "unknown"),
        (None, 8.0, "unknown"),
        (None, None, "unknown"),
        (float("nan"), 8.0, "unknown"),
    ],
)
def test_classification_by_loudness_and_crest(
    lufs: float | None, crest: float | None, cls: str
) -> None:
    plan = plan_mastering(MasterParams(integrated_lufs=lufs, crest_db=crest))
    assert plan.cls == cls
    assert plan.fallback == (cls == "unknown")
    if cls != "compressed_loud":
        assert plan.expander_amount == 0.0
    if cls in ("unknown", "dynamic_loud"):
        assert plan.gain_db == 0.0


@pytest.mark.parametrize("crest", [2.0, 5.0, 8.0, 11.0, 12.5, 12.99])
def test_expander_amount_grows_as_crest_falls(crest: float) -> None:
    plan = plan_mastering(MasterParams(integrated_lufs=-8.0, crest_db=crest))
    assert plan.expander_amount == pytest.approx(min(max((13.0 - crest) / 10, 0.1), 1.0))
    # the reduction brings the estimated peak (-8 + crest) to the ceiling, at most 3 dB
    assert plan.gain_db == pytest.approx(max(-3.0, min(0.0, CEILING - (-8.0 + crest))))


def test_thresholds_are_configurable() -> None:
    params = MasterParams(integrated_lufs=-14.0, crest_db=14.0)
    assert plan_mastering(params).cls == "quiet"
    moved = {"loud_lufs": -16.0, "target_lufs": -18.0}
    assert plan_mastering(attrs.evolve(params, **moved)).cls == "dynamic_loud"
    stricter = attrs.evolve(params, **moved, compressed_crest_db=15.0)
    assert plan_mastering(stricter).cls == "compressed_loud"


@pytest.mark.parametrize(
    ("lufs", "crest", "peak", "expected"),
    [
        (-30.0, 10.0, None, 12.0),  # max_makeup_db: -30 -> -18, peak -20 -> -8
        (-30.0, 22.0, None, 9.0),  # headroom: the estimated peak, -8, may rise to ceiling + 2
        (-30.0, 10.0, -3.0, 4.0),  # the true peak, when known, replaces the estimate
        (-20.0, 10.0, None, 6.0),  # the target: -20 -> -14
        (-13.0, 10.0, None, 0.0),  # quiet but above the target: never turned down
        (-30.0, None, None, 1.0),  # nothing known of the peak: assume 0 dBTP
    ],
)
def test_quiet_makeup_is_bounded(
    lufs: float, crest: float | None, peak: float | None, expected: float
) -> None:
    plan = plan_mastering(MasterParams(integrated_lufs=lufs, crest_db=crest, true_peak_dbtp=peak))
    assert plan.cls == "quiet"
    assert plan.gain_db == pytest.approx(expected)


# --- each class -----------------------------------------------------------------------------


def test_compressed_loud_restores_dynamics_without_compressing() -> None:
    fp = fingerprint(LOUD)
    assert fp["integrated_lufs"] > -12.0 and fp["crest_db"] < 13.0
    out, events = master(LOUD, **fp)
    plan, summary = events[0], events[-1]
    assert plan["class"] == "compressed_loud" and 0.1 <= plan["expander_amount"] <= 1.0
    assert -3.0 <= plan["gain_db"] < 0.0
    before, after = meter(LOUD), meter(out)
    # loudness decreases a little: the small gain reduction plus the expanded dips
    assert -4.0 < after["integrated_lufs"] - before["integrated_lufs"] < -0.5
    # dynamics come back: a higher crest factor and a wider spread of short-term levels
    assert crest_db(out) > fp["crest_db"] + 0.2
    assert short_term_spread(out) > short_term_spread(LOUD) + 1.0
    assert after["true_peak_dbtp"] <= CEILING
    # no added compression: the limiter has less to do than on the untouched track
    _, untouched = master(LOUD)
    assert summary["max_gain_reduction_db"] < untouched[-1]["max_gain_reduction_db"] - 0.5
    assert summary["limited_samples"] < untouched[-1]["limited_samples"]


def test_expander_matches_its_reference_where_the_limiter_rests() -> None:
    quiet_enough = (LOUD[: RATE // 2] * 0.5).astype(np.float32)  # peaks at -6 dBFS
    params = MasterParams(integrated_lufs=-8.0, crest_db=7.0)
    plan = plan_mastering(params)
    out, events = master(quiet_enough, integrated_lufs=-8.0, crest_db=7.0)
    assert events[-1]["limited_samples"] == 0
    expected = expander_reference(quiet_enough, RATE, plan.gain_db, plan.expander_amount, params)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    # a downward expander never raises a sample above the static gain
    assert np.all(np.abs(out) <= np.abs(quiet_enough) * 10 ** (plan.gain_db / 20) * (1 + 1e-6))


def test_dynamic_loud_is_left_alone_apart_from_the_limiter() -> None:
    audio = hits([-6.0, -6.0, 0.0, -1.0])
    fp = fingerprint(audio)
    assert fp["integrated_lufs"] > -12.0 and fp["crest_db"] >= 13.0
    out, events = master(audio, **fp)
    assert events[0]["class"] == "dynamic_loud" and events[0]["gain_db"] == 0.0
    assert out.shape == audio.shape
    # the first two phrases stay under the ceiling: bit-identical, sample for sample
    first = 4 * RATE
    assert meter(audio[:first])["true_peak_dbtp"] < CEILING - 0.5
    assert np.array_equal(out[:first], audio[:first])
    # where the limiter acts, it only turns down, both channels alike
    assert np.all(np.abs(out) <= np.abs(audio))
    moved = np.flatnonzero(np.any(out != audio, axis=1))
    assert 0 < len(moved) <= events[-1]["limited_samples"]
    both = np.all(np.abs(audio[moved]) > 1e-3, axis=1)
    ratio = out[moved][both] / audio[moved][both]
    np.testing.assert_allclose(ratio[:, 0], ratio[:, 1], rtol=1e-5)
    assert meter(out)["true_peak_dbtp"] <= CEILING < meter(audio)["true_peak_dbtp"]


def test_quiet_is_raised_towards_the_target() -> None:
    audio = (MIX * 10 ** (-14.0 / 20)).astype(np.float32)
    fp = fingerprint(audio)
    assert -31.0 < fp["integrated_lufs"] < -29.0
    out, events = master(audio, **fp)
    plan = events[0]
    assert plan["class"] == "quiet"
    expected = min(
        -14.0 - fp["integrated_lufs"],
        12.0,
        CEILING + 2.0 - (fp["integrated_lufs"] + fp["crest_db"]),
    )
    assert plan["gain_db"] == pytest.approx(expected) and plan["gain_db"] > 10.0
    after = meter(out)
    assert after["integrated_lufs"] - fp["integrated_lufs"] == pytest.approx(
        plan["gain_db"], abs=0.1
    )
    assert after["true_peak_dbtp"] <= CEILING
    if events[-1]["limited_samples"] == 0:
        np.testing.assert_allclose(out, audio * 10 ** (plan["gain_db"] / 20), rtol=1e-6)


def test_quiet_makeup_bounded_by_headroom_is_caught_by_the_limiter() -> None:
    audio = (MIX * 10 ** (-14.0 / 20)).astype(np.float32)
    audio[RATE : RATE + 2000] += hits([-3.0])[:2000]  # one loud click in a quiet track
    peak = meter(audio)["true_peak_dbtp"]
    fp = {**fingerprint(audio), "true_peak_dbtp": peak}
    out, events = master(audio, **fp)
    plan = events[0]
    assert plan["class"] == "quiet"
    assert plan["gain_db"] == pytest.approx(CEILING + 2.0 - peak)
    assert plan["gain_db"] < -14.0 - fp["integrated_lufs"]
    assert meter(out)["true_peak_dbtp"] <= CEILING
    # the peak lands 2 dB over the ceiling: the limiter takes those 2 dB (and its margin) back
    assert events[-1]["max_gain_reduction_db"] == pytest.approx(2.05, abs=0.01)


def test_unknown_fingerprint_falls_back_to_the_limiter_alone() -> None:
    audio = (MIX[: 2 * RATE] * 0.5).astype(np.float32)  # true peak well under the ceiling
    out, events = master(audio)
    assert events[0] == {
        "kind": "mastering",
        "sample": 0,
        "class": "unknown",
        "fallback": True,
        "gain_db": 0.0,
        "expander_amount": 0.0,
        "ceiling_dbtp": CEILING,
        "integrated_lufs": None,
        "crest_db": None,
        "expected_integrated_lufs": None,
        "expected_crest_db": None,
        "expected_true_peak_dbtp": CEILING,
    }
    assert np.array_equal(out, audio)
    loud, events = master(LOUD, integrated_lufs=-8.0)  # loud, crest unknown: still fallback
    assert events[0]["class"] == "unknown" and meter(loud)["true_peak_dbtp"] <= CEILING


# --- the ceiling ----------------------------------------------------------------------------


def _hostile(kind: str, seconds: float, rate: int, level_db: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    if kind == "clipped_noise":
        x = np.clip(rng.standard_normal((n, 2)) * 3.0, -1.0, 1.0)
    elif kind == "nyquist_sines":
        f = rate / 2 * np.array([0.86, 0.95, 0.995])
        x = np.stack([np.sin(2 * np.pi * f[c] * t + c) for c in range(2)], axis=1)
        x[:, 1] += np.sin(2 * np.pi * f[2] * t)
    elif kind == "sweep":
        f = 20 * (rate / 2 / 20) ** (t / seconds)
        x = np.sin(2 * np.pi * np.cumsum(f) / rate)[:, None] * [1.0, -1.0]
    elif kind == "alternating":
        x = np.tile([1.0, 1.0, -1.0, -1.0, 1.0, -1.0], n // 6 + 1)[:n, None] * [1.0, 0.5]
    elif kind == "impulses":
        x = np.zeros((n, 2))
        x[rng.integers(0, n, 40), rng.integers(0, 2, 40)] = rng.choice([-1.0, 1.0], 40)
        x += 0.01 * rng.standard_normal((n, 2))
    else:  # steps of level over white noise, down to single samples
        edges = np.sort(rng.integers(0, n, 60))
        env = 10 ** rng.uniform(-3, 1.5, 61)[np.searchsorted(edges, np.arange(n))]
        x = rng.standard_normal((n, 2)) * env[:, None]
    return (x * 10 ** (level_db / 20)).astype(np.float32)


HOSTILE = ["clipped_noise", "nyquist_sines", "sweep", "alternating", "impulses", "steps"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_true_peak_never_exceeds_the_ceiling_on_hostile_material(kind: str) -> None:
    audio = _hostile(kind, 2.0, RATE, 6.0, seed=5)
    assert meter(audio)["true_peak_dbtp"] > CEILING + 3.0
    out, events = master(audio, integrated_lufs=-30.0)  # quiet: +3 dB of makeup on top
    assert events[0]["gain_db"] > 0.0
    measured = meter(out)["true_peak_dbtp"]
    assert measured <= CEILING
    assert events[-1]["output_true_peak_dbtp"] == pytest.approx(measured, abs=1e-9)
    assert measured > CEILING - 0.1  # it limits to the ceiling, not far below it


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(HOSTILE),
    level_db=st.floats(-6.0, 30.0),
    ceiling=st.floats(-12.0, 0.0),
    lookahead_ms=st.floats(0.5, 8.0),
    release_ms=st.floats(10.0, 500.0),
    rate=st.sampled_from([44100, 48000, 96000]),
    mono=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_true_peak_ceiling_holds_for_any_settings(
    kind: str,
    level_db: float,
    ceiling: float,
    lookahead_ms: float,
    release_ms: float,
    rate: int,
    mono: bool,
    seed: int,
) -> None:
    audio = _hostile(kind, 0.5, rate, level_db, seed)
    audio = np.ascontiguousarray(audio[:, :1]) if mono else audio
    out, _ = master(
        audio,
        rate,
        ceiling_dbtp=ceiling,
        lookahead_ms=lookahead_ms,
        release_ms=release_ms,
    )
    assert out.shape == audio.shape
    assert meter(out, rate)["true_peak_dbtp"] <= ceiling


# --- streaming contract ---------------------------------------------------------------------

STREAM = np.concatenate([LOUD[: RATE // 2], _hostile("steps", 0.25, RATE, 10.0, seed=3)])
WHOLE = master(STREAM, sizes=[len(STREAM)], **fingerprint(LOUD))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=8).filter(any))
def test_output_is_identical_for_any_block_split(sizes: list[int]) -> None:
    out, events = master(STREAM, sizes=sizes, **fingerprint_of_loud())
    assert np.array_equal(out, WHOLE[0])
    assert events == WHOLE[1]


def fingerprint_of_loud() -> dict[str, float]:
    return {"integrated_lufs": WHOLE[1][0]["integrated_lufs"], "crest_db": WHOLE[1][0]["crest_db"]}


def test_single_sample_blocks_match_whole_stream() -> None:
    out, events = master(STREAM[:3000], sizes=[1, 0, 2], **fingerprint_of_loud())
    whole, whole_events = master(STREAM[:3000], sizes=[3000], **fingerprint_of_loud())
    assert np.array_equal(out, whole) and events == whole_events


@pytest.mark.parametrize("frames", [0, 1, 10, 221, 222, 223, 5000])
def test_output_length_equals_input_length(frames: int) -> None:
    audio = LOUD[:frames]
    _, stage = make_stage("lwrp_master", RATE, 2, **fingerprint_of_loud())
    assert stage.latency == 222  # 2 ms ramp at 44.1 kHz: 2 * (24 + 88 - 1)
    out, events = master(audio, **fingerprint_of_loud())
    assert out.shape == audio.shape and out.dtype == np.float32
    assert [e["kind"] for e in events] == ["mastering", "summary"]
    assert events[-1]["sample"] == frames


def test_latency_is_realigned() -> None:
    """Output sample n comes from input sample n: an impulse stays where it was."""
    audio = np.zeros((3000, 2), np.float32)
    audio[1234] = [0.5, -0.25]
    out, _ = master(audio)
    assert np.array_equal(out, audio)


def test_nonfinite_samples_are_processed_as_silence_and_counted() -> None:
    audio = LOUD[:20000].copy()
    bad = [(100, 0, np.nan), (5000, 1, np.inf), (5001, 0, -np.inf), (12000, 1, np.nan)]
    clean = audio.copy()
    for i, c, v in bad:
        audio[i, c] = v
        clean[i, c] = 0.0
    out, events = master(audio, **fingerprint_of_loud())
    reference, _ = master(clean, **fingerprint_of_loud())
    assert np.all(np.isfinite(out)) and np.array_equal(out, reference)
    assert events[-1]["nonfinite_samples"] == len(bad)


def test_events_only_use_through_run_blocks() -> None:
    events = run_blocks("lwrp_master", LOUD[:10000], RATE, [1000], **fingerprint_of_loud())
    assert [e["kind"] for e in events] == ["mastering", "summary"]
    assert events[-1]["output_true_peak_dbtp"] <= CEILING


def test_mastered_audio_feeds_a_pipeline() -> None:
    config = parse_config(
        textwrap.dedent(
            """
            [pipelines.playback]
            doc = "master, then meter what the listener hears"
            [pipelines.playback.stages.master]
            type = "lwrp_master"
            inputs = ["audio"]
            integrated_lufs = -8.0
            crest_db = 8.0
            [pipelines.playback.stages.meter]
            type = "dynamics"
            inputs = ["master"]
            """
        ),
        "p.toml",
        registry(),
    )
    per_split = []
    for sizes in ([len(LOUD)], [4096], [777, 1]):
        graph = Graph(config.pipeline("playback"), StreamFormat(RATE, 2))
        events = []
        for block in split(LOUD[: 2 * RATE], sizes):
            events += graph.process(block)
        events += graph.finish()
        per_split.append(events)
    events = per_split[0]
    assert all(e == per_split[0] for e in per_split)
    summaries = {e["stage"]: e for e in events if e["kind"] == "summary"}
    assert summaries["meter"]["true_peak_dbtp"] <= CEILING
    assert summaries["master"]["sample"] == summaries["meter"]["sample"] == 2 * RATE


# --- params ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"ceiling_dbtp": 0.5}, "ceiling_dbtp"),
        ({"lookahead_ms": 0.1}, "lookahead_ms"),
        ({"integrated_lufs": 30.0}, "integrated_lufs"),
        ({"crest_db": -1.0}, "crest_db"),
        ({"target_lufs": -10.0}, "target_lufs"),
        ({"expander_fast_ms": 60.0, "expander_slow_ms": 50.0}, "expander_slow_ms"),
        ({"ceiling": -1.0}, "ceiling"),
    ],
)
def test_invalid_params_are_rejected(params: dict, key: str) -> None:
    with pytest.raises(ParamsInvalid) as info:
        make_stage("lwrp_master", RATE, 2, **params)
    assert [e.key for e in info.value.errors] == [key]


def test_unsupported_stream_is_rejected() -> None:
    with pytest.raises(ValueError, match="8000-384000 Hz"):
        make_stage("lwrp_master", 4000, 2)
    with pytest.raises(ValueError, match="rejected its parameters"):
        make_stage("lwrp_master", RATE, 65)
