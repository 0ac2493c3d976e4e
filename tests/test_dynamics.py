"""The dynamics stage's per-hop levels, velocity and marking, its summary, and bad input, through
the real host path against plain numpy."""

from __future__ import annotations

import math

import ebu
import numpy as np
import pytest

from legato.config.params import ParamsInvalid
from legato.plugins.dynamics import DYNAMICS
from legato.plugins.dynamics.mapping import marking, velocity
from legato.testing import make_stage, run_blocks

RATE = 48000


def hops(events: list[dict]) -> list[dict]:
    return [e for e in events if e["kind"] == "dynamics"]


def summary(events: list[dict]) -> dict:
    (last,) = [e for e in events if e["kind"] == "summary"]
    return last


def db(power: float) -> float:
    return max(10 * math.log10(power), -120.0) if power > 0 else -120.0


def noise(seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    envelope = np.repeat(rng.uniform(0.001, 0.8, size=n // 4800 + 1), 4800)[:n]
    return (rng.standard_normal((n, channels)) * envelope[:, None] * 0.3).astype(np.float32)


def test_levels_per_hop_match_numpy() -> None:
    x = noise(1.3, 2)
    hop = 301
    events = hops(run_blocks("dynamics", x, RATE, [1000, 7, 0, 4096], hop=hop))
    starts = list(range(0, len(x), hop))
    assert len(events) == len(starts)
    for e, start in zip(events, starts, strict=True):
        chunk = x[start : start + hop].astype(np.float64)
        assert e["length"] == len(chunk)
        assert e["sample"] == start + len(chunk) // 2
        assert e["rms_db"] == pytest.approx(db(float(np.mean(chunk**2))), abs=1e-9)
        assert e["peak_db"] == pytest.approx(db(float(np.max(chunk**2))), abs=1e-9)
    assert 0 < events[-1]["length"] == len(x) % hop < hop


def test_summary_levels_match_numpy() -> None:
    x = noise(4.0, 2, seed=1)
    hop = 512
    events = run_blocks("dynamics", x, RATE, [30000, 1234], hop=hop)
    s = summary(events)
    assert s["sample"] == len(x)
    assert s["rms_db"] == pytest.approx(db(float(np.mean(x.astype(np.float64) ** 2))), abs=1e-9)
    assert s["peak_db"] == pytest.approx(db(float(np.max(x.astype(np.float64) ** 2))), abs=1e-9)
    assert s["true_peak_dbtp"] >= s["peak_db"]
    full = [e["rms_db"] for e in hops(events) if e["length"] == hop and e["rms_db"] > -60.0]
    ordered = np.sort(full)
    rank = lambda f: ordered[math.floor((len(ordered) - 1) * f + 0.5)]  # noqa: E731
    assert s["dynamic_range_db"] == pytest.approx(rank(0.95) - rank(0.10), abs=0.011)
    assert s["nonfinite_samples"] == 0


def test_velocity_is_linear_in_db_between_floor_and_full_scale() -> None:
    assert velocity(-60.0, -60.0) == 1
    assert velocity(-90.0, -60.0) == 1
    assert velocity(0.0, -60.0) == 127
    assert velocity(6.0, -60.0) == 127
    assert velocity(-30.0, -60.0) == 64
    assert velocity(-20.0, -40.0) == 64
    levels = np.linspace(-70, 5, 2000)
    vels = [velocity(float(v), -60.0) for v in levels]
    assert vels == sorted(vels)
    assert set(vels) == set(range(1, 128))


def test_markings_follow_notation_velocities() -> None:
    """Each notation program's velocity for a marking maps back to that marking, and the
    markings rise with velocity."""
    for name, vel in zip(
        ("pp", "p", "mp", "mf", "f", "ff"), (33, 49, 64, 80, 96, 112), strict=True
    ):
        assert marking(vel) == name
    assert marking(1) == "pp"
    assert marking(127) == "ff"
    order = ["pp", "p", "mp", "mf", "f", "ff"]
    ranks = [order.index(marking(v)) for v in range(1, 128)]
    assert ranks == sorted(ranks)


@pytest.mark.parametrize("level_db", [-50.0, -35.0, -23.0, -12.0, -3.0])
def test_stage_velocity_of_a_steady_tone(level_db: float) -> None:
    """A stereo sine with peaks at level_db has an RMS 3.01 dB lower on every channel."""
    x = ebu.stereo_steps(((level_db, 1.0),))
    events = hops(run_blocks("dynamics", x, RATE, hop=480, floor_db=-72.0))
    rms = level_db - 10 * math.log10(2)
    want = 1 + math.floor(126 * (rms + 72.0) / 72.0 + 0.5)
    for e in events[5:-5]:
        assert e["rms_db"] == pytest.approx(rms, abs=0.01)
        assert abs(e["velocity"] - want) <= 1
        assert e["marking"] == marking(e["velocity"])


def test_silence_reports_finite_floors() -> None:
    events = run_blocks("dynamics", np.zeros((RATE * 4 + 100, 2), dtype=np.float32), RATE)
    for e in hops(events):
        assert e["rms_db"] == e["peak_db"] == -120.0
        assert e["momentary_lufs"] == e["short_term_lufs"] == -120.0
        assert (e["velocity"], e["marking"]) == (1, "pp")
    s = summary(events)
    assert s["integrated_lufs"] is None
    assert s["loudness_range_lu"] is None
    assert s["dynamic_range_db"] is None
    for key in ("true_peak_dbtp", "peak_db", "max_momentary_lufs", "max_short_term_lufs", "rms_db"):
        assert s[key] == -120.0


def test_nonfinite_input_neither_crashes_nor_lingers() -> None:
    """NaN and Inf read as 0.0 and are counted; hops after them are exactly those of the same
    audio with zeros in their place."""
    clean = noise(5.0, 2, seed=2)
    clean[RATE : RATE + 50] = 0.0
    dirty = clean.copy()
    dirty[RATE : RATE + 25, 0] = np.nan
    dirty[RATE + 25 : RATE + 50, 1] = np.inf
    dirty[RATE + 40, 0] = -np.inf
    got = run_blocks("dynamics", dirty, RATE, [RATE + 10, 777])
    want = run_blocks("dynamics", clean, RATE, [RATE + 10, 777])
    assert summary(got).pop("nonfinite_samples") == 51
    assert summary(want).pop("nonfinite_samples") == 0
    assert hops(got) == hops(want)
    for key in ("integrated_lufs", "loudness_range_lu", "true_peak_dbtp", "rms_db"):
        assert summary(got)[key] == summary(want)[key]
        assert math.isfinite(summary(got)[key])


def test_five_channel_weights() -> None:
    """Tech 3341 case 6 (5.0 at per-channel levels) reads -23 LUFS, and surround channels count
    1.41 times the front ones."""
    s = summary(run_blocks("dynamics", ebu.integrated_case(6), RATE))
    assert s["integrated_lufs"] == pytest.approx(-23.0, abs=ebu.TOLERANCE_LU)
    tone = ebu.stereo_steps(((-20.0, 5.0),))[:, 0]
    reading = {}
    for channel in range(5):
        x = np.zeros((len(tone), 5), dtype=np.float32)
        x[:, channel] = tone
        reading[channel] = summary(run_blocks("dynamics", x, RATE))["integrated_lufs"]
    assert reading[0] == pytest.approx(reading[1], abs=1e-9)
    assert reading[0] == pytest.approx(reading[2], abs=1e-9)
    for surround in (3, 4):
        assert reading[surround] - reading[0] == pytest.approx(10 * math.log10(1.41), abs=1e-6)


def test_lfe_does_not_count_in_5_1() -> None:
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((3 * RATE, 6)) * 0.1).astype(np.float32)
    without = x.copy()
    without[:, 3] = 0.0
    loud = summary(run_blocks("dynamics", x, RATE))
    quiet = summary(run_blocks("dynamics", without, RATE))
    assert loud["integrated_lufs"] == quiet["integrated_lufs"]
    assert loud["rms_db"] > quiet["rms_db"]


def test_events_carry_the_declared_fields() -> None:
    events = run_blocks("dynamics", noise(4.0, 1), RATE, hop=1000)
    declared = {o.kind: set(o.fields) | {"kind", "sample"} for o in DYNAMICS.outputs}
    for e in events:
        assert set(e) == declared[e["kind"]]
        assert all(not isinstance(v, float) or math.isfinite(v) for v in e.values())


@pytest.mark.parametrize("bad", [{"hop": 8}, {"hop": 1.5}, {"floor_db": 0.0}, {"flor_db": -50.0}])
def test_invalid_params_are_rejected(bad: dict) -> None:
    with pytest.raises(ParamsInvalid):
        make_stage("dynamics", RATE, channels=2, **bad)
