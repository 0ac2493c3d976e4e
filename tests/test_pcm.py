"""The PCM codec (legato.engine.pcm), the one conversion between float32 frames and the wire's
f32le/s16le bytes for the server, the client and the player: round trips, rounding and
clipping, non-finite samples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import legato.client
from legato.engine import pcm
from legato.protocol import MAX_CHANNELS, SAMPLE_FORMATS

FORMATS = sorted(pcm.SAMPLE_DTYPES)
channel_counts = st.integers(1, MAX_CHANNELS)


def frames_of(
    elements: st.SearchStrategy[float], dtype: type = np.float32
) -> st.SearchStrategy[np.ndarray]:
    """Frames shaped (n, channels), n from 0."""
    return st.tuples(st.integers(0, 48), channel_counts).flatmap(
        lambda shape: arrays(dtype, shape, elements=elements)
    )


finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
any32 = st.floats(width=32)


# ---- properties ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(frames_of(finite32))
def test_f32le_round_trip_is_exact_for_finite_float32(frames: np.ndarray) -> None:
    decoded, replaced = pcm.decode(pcm.encode(frames, "f32le"), "f32le", frames.shape[1])
    assert replaced == 0
    assert decoded.dtype == np.float32 and decoded.shape == frames.shape
    assert decoded.tobytes() == frames.tobytes()  # bit for bit, -0.0 and subnormals too


@settings(max_examples=200, deadline=None)
@given(frames_of(st.floats(-1.0, 1.0, width=32)))
def test_s16le_round_trip_is_within_one_step(frames: np.ndarray) -> None:
    decoded, replaced = pcm.decode(pcm.encode(frames, "s16le"), "s16le", frames.shape[1])
    assert replaced == 0 and decoded.shape == frames.shape
    error = np.abs(decoded.astype(np.float64) - frames)
    assert np.all(error <= 1 / 32768)
    inside = frames <= 32767 / 32768  # only 1.0 itself is clipped
    assert np.all(error[inside] <= 0.5 / 32768)


@settings(max_examples=200, deadline=None)
@given(channel_counts.flatmap(lambda c: st.tuples(st.just(c), st.integers(0, 48))), st.data())
def test_any_s16le_payload_survives_decode_then_encode(
    shape: tuple[int, int], data: st.DataObject
) -> None:
    channels, n = shape
    payload = data.draw(st.binary(min_size=2 * channels * n, max_size=2 * channels * n))
    decoded, replaced = pcm.decode(payload, "s16le", channels)
    assert replaced == 0 and decoded.shape == (n, channels)
    assert pcm.encode(decoded, "s16le") == payload


@settings(max_examples=200, deadline=None)
@given(frames_of(any32))
def test_non_finite_samples_are_counted_and_zeroed(frames: np.ndarray) -> None:
    payload = frames.astype("<f4").tobytes()
    decoded, replaced = pcm.decode(payload, "f32le", frames.shape[1])
    bad = ~np.isfinite(frames)
    assert replaced == int(bad.sum())
    assert np.all(decoded[bad] == 0.0)
    assert decoded[~bad].tobytes() == frames[~bad].tobytes()
    # s16le has no NaN/Inf: they are sent as 0
    assert np.all(pcm.to_s16le(frames)[bad] == 0)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.data())
def test_any_f32le_bytes_decode_as_numpy_reads_them(channels: int, data: st.DataObject) -> None:
    """Every bit pattern (signalling NaNs, negative zero, subnormals), from a buffer at an odd
    address too: the live path reads the bytes itself."""
    n = data.draw(st.integers(0, 40))
    payload = data.draw(st.binary(min_size=4 * channels * n, max_size=4 * channels * n))
    expected = np.frombuffer(payload, dtype="<f4").astype(np.float32)
    bad = ~np.isfinite(expected)
    expected[bad] = 0.0
    for buffer in (payload, memoryview(b"\0" + payload)[1:]):
        decoded, replaced = pcm.decode(buffer, "f32le", channels)  # type: ignore[arg-type]
        assert replaced == int(bad.sum())
        assert decoded.tobytes() == expected.tobytes() and decoded.shape == (n, channels)


@pytest.mark.parametrize("sample_format", FORMATS)
@settings(max_examples=50, deadline=None)
@given(channels=channel_counts, n=st.integers(0, 48), data=st.data())
def test_decoded_frames_are_writable_and_shaped(
    sample_format: str, channels: int, n: int, data: st.DataObject
) -> None:
    size = SAMPLE_FORMATS[sample_format] * channels * n
    payload = data.draw(st.binary(min_size=size, max_size=size))
    decoded, _ = pcm.decode(payload, sample_format, channels)
    assert decoded.shape == (n, channels) and decoded.dtype == np.float32
    assert decoded.flags.writeable and decoded.flags.c_contiguous
    decoded[...] = 0.5  # its own memory (a view of the bytes would be read-only)


@settings(max_examples=200, deadline=None)
@given(frames_of(any32))
def test_s16le_encoding_rounds_clips_and_zeroes_non_finite(frames: np.ndarray) -> None:
    ints = pcm.to_s16le(frames)
    assert ints.dtype == np.dtype("<i2") and ints.shape == frames.shape
    with np.errstate(over="ignore", invalid="ignore"):
        want = np.clip(
            np.rint(
                np.nan_to_num(frames.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0) * 32768.0
            ),
            -32768,
            32767,
        )
    assert np.array_equal(ints, want)
    assert ints.tobytes() == pcm.to_s16le(frames.astype(np.float64)).tobytes()
    assert pcm.encode(frames, "s16le") == ints.tobytes()


def test_edges() -> None:
    edge = np.array([1.0, 1.5, -1.0, -7.0, np.nan, np.inf, -np.inf, 0.5 / 32768, 1.5 / 32768])
    assert pcm.to_s16le(edge).tolist() == [32767, 32767, -32768, -32768, 0, 0, 0, 0, 2]
    k = np.arange(-32768, 32768)
    assert np.array_equal(pcm.to_s16le((k / 32768.0).astype(np.float32)), k)
    assert (
        pcm.encode(np.float32([[np.nan, np.inf]]), "f32le")
        == np.float32([np.nan, np.inf]).astype("<f4").tobytes()
    )  # f32le sends NaN/Inf as they are: the server counts them


def test_refusals() -> None:
    with pytest.raises(ValueError, match="whole frames"):
        pcm.decode(b"\0" * 6, "f32le", 1)
    with pytest.raises(ValueError, match="whole frames"):
        pcm.decode(b"\0" * 6, "s16le", 2)
    with pytest.raises(ValueError, match="unknown sample format"):
        pcm.decode(b"", "u8", 1)
    with pytest.raises(ValueError, match="unknown sample format"):
        pcm.encode(np.zeros((1, 1)), "u8")
    with pytest.raises(ValueError, match="channels"):
        pcm.decode(b"", "f32le", 0)


def test_formats_and_public_names() -> None:
    assert {f: np.dtype(d).itemsize for f, d in pcm.SAMPLE_DTYPES.items()} == SAMPLE_FORMATS
    assert legato.client.to_s16le is pcm.to_s16le
    assert legato.client.session.to_s16le is pcm.to_s16le
