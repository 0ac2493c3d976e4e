"""Checkpoints of the built-in analysis stages (real C kernels): a stage checkpointed anywhere in
a stream and restored into a fresh instance continues exactly as the original would have, for
any split; the same state gives the same bytes; a corrupt, cut, foreign or mismatched
checkpoint is refused with an error that says which, and leaves the stage as it was."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from legato.checkpoints import CheckpointError, Checkpointing, pack, unpack
from legato.stage import Event
from legato.testing import make_stage, run_restored, split, stage_input

RATE = 44100
STAGES = ("pitch_yin", "onsets_flux", "dynamics", "fingerprint25d")


def take(seconds: float, channels: int, seed: int) -> np.ndarray:
    """Harmonic notes at random times over a little noise, a rest, and one NaN sample."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = 0.002 * rng.standard_normal(n)
    for start in np.sort(rng.uniform(0, seconds * 0.8, 5)):
        f0 = 110 * 2 ** rng.uniform(0, 3)
        on = t >= start
        tau = t[on] - start
        out[on] += sum(np.sin(2 * np.pi * f0 * k * tau) / k for k in (1, 2, 3)) * np.exp(-4 * tau)
    out[n // 3 : n // 3 + RATE // 4] = 0.0
    out[n // 2] = np.nan
    return np.stack([out * (1 - 0.3 * c) for c in range(channels)], axis=1).astype(np.float32)


def fresh(kind: str, channels: int, **params: Any) -> tuple[Any, Any]:
    return make_stage(kind, RATE, channels, **params)


def whole(kind: str, audio: np.ndarray) -> list[Event]:
    st_, stage = fresh(kind, audio.shape[1])
    data = stage_input(st_, audio)
    return stage.process(data) + stage.finish()


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(STAGES),
    channels=st.integers(1, 2),
    cut=st.floats(0.0, 1.0),
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=4),
    seed=st.integers(0, 3),
)
def test_a_restored_stage_continues_exactly(
    kind: str, channels: int, cut: float, sizes: list[int], seed: int
) -> None:
    audio = take(1.5, channels, seed)
    expected = whole(kind, audio)
    st_, first = fresh(kind, channels)
    data = stage_input(st_, audio)
    at = int(cut * len(data))
    events: list[Event] = []
    for block in split(data[:at], sizes):
        events.extend(first.process(block))
    assert isinstance(first, Checkpointing)
    saved = first.checkpoint()
    _, second = fresh(kind, channels)
    second.restore(saved)
    assert second.checkpoint() == saved
    for block in split(data[at:], sizes[::-1]):
        events.extend(second.process(block))
    events.extend(second.finish())
    assert events == expected
    assert run_restored(kind, audio, RATE, at, sizes) == expected


@pytest.mark.parametrize("kind", STAGES)
def test_a_damaged_checkpoint_is_refused_and_changes_nothing(kind: str) -> None:
    audio = take(1.0, 1, 0)
    st_, stage = fresh(kind, 1)
    data = stage_input(st_, audio)
    stage.process(data[: len(data) // 2])
    saved = stage.checkpoint()
    rng = np.random.default_rng(1)
    damaged = [
        saved[: len(saved) // 2],
        saved[:-1],
        b"",
        b"nonsense",
    ]
    for at in rng.integers(0, len(saved), 8):
        flipped = bytearray(saved)
        flipped[at] ^= 0x40
        damaged.append(bytes(flipped))
    _, target = fresh(kind, 1)
    for bad in damaged:
        with pytest.raises(CheckpointError, match=kind):
            target.restore(bad)
    assert target.process(data) + target.finish() == whole(kind, audio)


@pytest.mark.parametrize(
    ("kind", "params"),
    [("pitch_yin", {"hop": 256}), ("onsets_flux", {"window": 2048}), ("dynamics", {"hop": 1024})],
)
def test_a_checkpoint_of_other_params_does_not_fit(kind: str, params: dict[str, Any]) -> None:
    _, other = fresh(kind, 1, **params)
    other.process(np.zeros(RATE, dtype=np.float32))
    _, stage = fresh(kind, 1)
    with pytest.raises(CheckpointError, match="does not fit"):
        stage.restore(other.checkpoint())


def test_a_checkpoint_of_another_stage_or_version_is_refused() -> None:
    _, pitch = fresh("pitch_yin", 1)
    _, onsets = fresh("onsets_flux", 1)
    with pytest.raises(CheckpointError, match="of 'pitch_yin' version 1"):
        onsets.restore(pitch.checkpoint())
    fields, blobs = unpack(pitch.checkpoint(), "pitch_yin", 1)
    with pytest.raises(CheckpointError, match="version 2, not version 1"):
        pitch.restore(pack("pitch_yin", 2, fields, blobs))
    with pytest.raises(CheckpointError, match="fields do not fit"):
        pitch.restore(pack("pitch_yin", 1, {**fields, "frames": "many"}, blobs))
    with pytest.raises(CheckpointError, match="fields do not fit"):
        pitch.restore(pack("pitch_yin", 1, fields, {}))


def test_a_kernel_checkpoint_of_another_kernel_is_refused() -> None:
    """The kernels check their own header: a sound checkpoint of one kernel handed to another."""
    _, pitch = fresh("pitch_yin", 1)
    _, onsets = fresh("onsets_flux", 1)
    _, blobs = unpack(onsets.checkpoint(), "onsets_flux", 1)
    pitch_fields, pitch_blobs = unpack(pitch.checkpoint(), "pitch_yin", 1)
    with pytest.raises(CheckpointError, match="does not fit"):
        pitch.restore(pack("pitch_yin", 1, pitch_fields, {**pitch_blobs, "yin": blobs["onsets"]}))


@settings(max_examples=25, deadline=None)
@given(
    cut=st.floats(0.0, 1.0),
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=4),
    seed=st.integers(0, 3),
    loud=st.booleans(),
)
def test_a_restored_mastering_stage_continues_bit_for_bit(
    cut: float, sizes: list[int], seed: int, loud: bool
) -> None:
    """lwrp_master (an audio stage: expander and lookahead limiter) restored anywhere gives the
    same audio, sample for sample, and the same events as the stage that never stopped."""
    audio = take(1.5, 2, seed) * (np.float32(3.0) if loud else np.float32(0.5))
    params = {"integrated_lufs": -7.0, "crest_db": 7.0} if loud else {}
    _, whole = fresh("lwrp_master", 2, **params)
    out, events = whole.process_audio(audio)
    tail, more = whole.finish_audio()
    expected = (np.concatenate([out, tail]), events + more)
    _, first = fresh("lwrp_master", 2, **params)
    at = int(cut * len(audio))
    pieces, events = [], []
    for block in split(audio[:at], sizes):
        piece, found = first.process_audio(block)
        pieces.append(piece)
        events += found
    _, second = fresh("lwrp_master", 2, **params)
    second.restore(first.checkpoint())
    assert second.checkpoint() == first.checkpoint()
    for block in split(audio[at:], sizes[::-1]):
        piece, found = second.process_audio(block)
        pieces.append(piece)
        events += found
    piece, found = second.finish_audio()
    pieces.append(piece)
    assert np.array_equal(np.concatenate(pieces), expected[0])
    assert events + found == expected[1]


def test_a_mastering_checkpoint_of_another_plan_does_not_fit() -> None:
    _, loud = fresh("lwrp_master", 2, integrated_lufs=-7.0, crest_db=7.0)
    loud.process_audio(np.zeros((RATE, 2), dtype=np.float32))
    _, plain = fresh("lwrp_master", 2)
    with pytest.raises(CheckpointError, match="does not fit"):
        plain.restore(loud.checkpoint())
