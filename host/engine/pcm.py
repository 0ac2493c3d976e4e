"""The one PCM codec: the wire's sample formats to and from float32 frames. The server (live
audio in, playback audio out), the client (audio out) and the player (audio in) all convert
here, so a sample means the same on both ends of a connection and in every direction.

Frames are shaped (n, channels); bytes are interleaved and little-endian. s16le maps k to
k / 32768, so the float range is [-1, 32767/32768] and a 16-bit file round-trips exactly.
"""

from __future__ import annotations

import sys

import numpy as np

from ..kernels import ffi, lib, view

SAMPLE_DTYPES: dict[str, str] = {"f32le": "<f4", "s16le": "<i2"}
"""Each wire sample format and the numpy dtype of one of its samples."""

S16_SCALE = 32768.0
"""s16le sample k stands for k / S16_SCALE."""


def _dtype(sample_format: str) -> np.dtype:
    try:
        return np.dtype(SAMPLE_DTYPES[sample_format])
    except KeyError:
        known = ", ".join(SAMPLE_DTYPES)
        raise ValueError(f"unknown sample format {sample_format!r} (known: {known})") from None


def decode(payload: bytes, sample_format: str, channels: int) -> tuple[np.ndarray, int]:
    """Float32 frames shaped (n, channels) from PCM bytes, and how many samples were NaN/Inf
    (replaced by 0.0, so stages never see them; the server reports the count). The array is a
    fresh writable copy, never a view of ``payload``. Raises ValueError unless ``payload`` is
    whole frames."""
    dtype = _dtype(sample_format)
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    if len(payload) % (dtype.itemsize * channels):
        raise ValueError(
            f"{len(payload)} bytes are not whole frames of {channels}-channel {sample_format}"
        )
    if sample_format == "f32le" and sys.byteorder == "little":  # the live path: one C pass
        block = np.empty(len(payload) // 4, dtype=np.float32)
        replaced = 0
        if len(block):
            data = ffi.from_buffer(payload)
            replaced = lib.lg_finite_copy(data, len(block), view(block, "float"))
        return block.reshape(-1, channels), replaced
    samples = np.frombuffer(payload, dtype=dtype)
    if sample_format == "s16le":  # every int16 is finite
        return (samples.astype(np.float32) / np.float32(S16_SCALE)).reshape(-1, channels), 0
    block = samples.astype(np.float32)  # a copy: frombuffer's array is read-only
    bad = ~np.isfinite(block)
    replaced = int(np.count_nonzero(bad))
    if replaced:
        block[bad] = 0.0
    return block.reshape(-1, channels), replaced


def encode(frames: np.ndarray, sample_format: str) -> bytes:
    """Interleaved little-endian PCM of float frames (any shape; C order). f32le keeps every
    value as float32, NaN/Inf included (the receiver counts and zeroes them); s16le is
    ``to_s16le``."""
    if sample_format == "s16le":
        return to_s16le(frames).tobytes()
    return np.asarray(frames).astype(_dtype(sample_format), copy=False).tobytes()


def to_s16le(data: np.ndarray) -> np.ndarray:
    """Float audio as little-endian int16: ``round(x * 32768)`` (half to even) clipped to
    [-32768, 32767], i.e. [-1, 32767/32768]. ``decode`` divides by 32768, so a value k/32768
    (as read from a 16-bit file) arrives exactly. Non-finite samples become 0, as decoding
    f32le makes them, since int16 has no NaN."""
    data = np.asarray(data)
    # float32 stays float32 (x * 32768 is exact there, and the hot path allocates half as
    # much); anything else is computed in float64 as before. Both give the same integers.
    work = np.array(data, dtype=np.float32 if data.dtype == np.float32 else np.float64)
    work[~np.isfinite(work)] = 0.0
    with np.errstate(over="ignore"):  # a huge sample becomes ±inf, then clips like any other
        work *= S16_SCALE
    np.rint(work, out=work)
    np.clip(work, -32768.0, 32767.0, out=work)
    return work.astype("<i2")
