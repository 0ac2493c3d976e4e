"""The runtime graph: whole pipelines are chunk invariant and handle any rate and layout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from legato.config.pipelines import load_config
from legato.engine.graph import Graph, downmix
from legato.stage import StreamFormat
from legato.testing import registry, split

RATE = 44100


def music(seconds: float, rate: int = RATE, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Decaying harmonic notes at random times, with a little noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = np.zeros(n)
    t = np.arange(n) / rate
    for start in np.sort(rng.uniform(0, seconds * 0.9, size=max(1, int(seconds * 3)))):
        f0 = 110 * 2 ** rng.uniform(0, 3)
        active = t >= start
        tau = t[active] - start
        note = sum(np.sin(2 * np.pi * f0 * k * tau) / k for k in range(1, 5))
        out[active] += rng.uniform(0.1, 0.4) * note * np.exp(-3 * tau)
    out += 0.001 * rng.standard_normal(n)
    mix = np.stack([out * (1 - 0.2 * c) for c in range(channels)], axis=1)
    return mix.astype(np.float32)


def run(audio: np.ndarray, rate: int, sizes: list[int] | None) -> dict[str, list[dict]]:
    pipeline = load_config(None, registry()).pipeline("analyze")
    graph = Graph(pipeline, StreamFormat(rate, audio.shape[1]))
    events = []
    for block in split(audio, sizes):
        events.extend(graph.process(block))
    events.extend(graph.finish())
    per_stage: dict[str, list[dict]] = {}
    for event in events:
        per_stage.setdefault(event["stage"], []).append(event)
    return per_stage


AUDIO = music(3.0, channels=2)
WHOLE = run(AUDIO, RATE, None)


def test_every_stage_reports() -> None:
    assert set(WHOLE) == {"pitch", "onsets", "dynamics"}
    for stage, events in WHOLE.items():
        assert events[-1]["kind"] == "summary", stage
        assert all(e["t"] == e["sample"] / RATE for e in events)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 5000), min_size=1, max_size=8).filter(any))
def test_analyze_pipeline_is_chunk_invariant(sizes: list[int]) -> None:
    assert run(AUDIO, RATE, sizes) == WHOLE


@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (22050, 2), (48000, 6), (96000, 1)])
def test_any_rate_and_layout(rate: int, channels: int) -> None:
    events = run(music(2.0, rate, channels, seed=1), rate, [4096])
    summary = events["dynamics"][-1]
    assert summary["kind"] == "summary" and summary["integrated_lufs"] < 0
    assert any(e["kind"] == "pitch" and e["voiced"] for e in events["pitch"])


def test_unsupported_layout_is_a_clear_error() -> None:
    from legato.errors import LegatoError

    pipeline = load_config(None, registry()).pipeline("analyze")
    with pytest.raises(LegatoError, match="stage 'dynamics' .* 8-channel"):
        Graph(pipeline, StreamFormat(RATE, 8))


def test_wrong_block_shape_is_rejected() -> None:
    pipeline = load_config(None, registry()).pipeline("analyze")
    graph = Graph(pipeline, StreamFormat(RATE, 2))
    with pytest.raises(ValueError, match=r"shape \(frames, 2\)"):
        graph.process(np.zeros((10, 1), np.float32))


@settings(max_examples=60, deadline=None)
@given(
    channels=st.integers(1, 8),
    frames=st.integers(0, 300),
    scale=st.sampled_from([1e-30, 1.0, 3e38]),
    seed=st.integers(0, 2**32 - 1),
)
def test_downmix_is_the_float32_channel_mean(
    channels: int, frames: int, scale: float, seed: int
) -> None:
    """The C downmix sums the channels in order and scales in float32, exactly as numpy does on
    float32 columns (overflow to inf included), for any layout and a non-contiguous input."""
    rng = np.random.default_rng(seed)
    block = (rng.uniform(-1, 1, (frames, channels)) * scale).astype(np.float32)
    expected = block[:, 0].copy()
    with np.errstate(over="ignore"):
        for c in range(1, channels):
            expected += block[:, c]
        if channels > 1:
            expected *= np.float32(1.0 / channels)
    assert np.array_equal(downmix(block), expected)
    assert np.array_equal(downmix(block.astype(np.float64)[::1]), expected)
    wide = np.zeros((frames, 2 * channels), dtype=np.float32)
    wide[:, ::2] = block
    assert np.array_equal(downmix(wide[:, ::2]), expected)
