"""The project's real FFT (csrc/fft.c) against numpy.fft: every power-of-two size from 4 to 2^16,
forward and inverse, and the sizes it must refuse."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from legato.kernels import ffi, lib, owned, view

SIZES = [1 << k for k in range(2, 17)]


def plan(n: int) -> Any:
    return owned(lib.lg_fft_new(n), lib.lg_fft_free, f"fft of {n}")


def forward(p: Any, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.zeros(len(x) + 2)
    lib.lg_fft_forward(p, view(x, "double"), view(out, "double"))
    return out[0::2] + 1j * out[1::2]


def inverse(p: Any, spectrum: np.ndarray) -> np.ndarray:
    packed = np.zeros(2 * len(spectrum))
    packed[0::2], packed[1::2] = spectrum.real, spectrum.imag
    out = np.zeros(2 * (len(spectrum) - 1))
    lib.lg_fft_inverse(p, view(packed, "double"), view(out, "double"))
    return out


@pytest.mark.parametrize("n", SIZES)
def test_forward_matches_numpy(n: int) -> None:
    rng = np.random.default_rng(n)
    p = plan(n)
    assert lib.lg_fft_size(p) == n
    for x in (rng.standard_normal(n), rng.uniform(-1, 1, n) * 1e-6 + 3.0):
        expected = np.fft.rfft(x)
        got = forward(p, x)
        scale = np.abs(expected).max()
        assert np.abs(got - expected).max() <= 1e-13 * scale * np.log2(n)
        assert got[0].imag == 0.0 and got[-1].imag == 0.0


@pytest.mark.parametrize("n", SIZES)
def test_inverse_matches_numpy(n: int) -> None:
    rng = np.random.default_rng(n + 1)
    p = plan(n)
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    spectrum[0] = spectrum[0].real
    spectrum[-1] = spectrum[-1].real
    expected = np.fft.irfft(spectrum, n)
    got = inverse(p, spectrum)
    assert np.abs(got - expected).max() <= 1e-13 * np.abs(expected).max() * np.log2(n)


@pytest.mark.parametrize("n", [4, 8, 32, 2048, 4096, 8192])
def test_round_trip_and_impulses(n: int) -> None:
    """An impulse at t has spectrum e^{-2 pi i k t / n}: every twiddle of every pass is used."""
    p = plan(n)
    k = np.arange(n // 2 + 1)
    for t in (0, 1, n // 2 - 1, n - 1):
        x = np.zeros(n)
        x[t] = 1.0
        got = forward(p, x)
        assert np.abs(got - np.exp(-2j * np.pi * (k * t % n) / n)).max() < 1e-13
        assert np.abs(inverse(p, got) - x).max() < 1e-14


def test_a_plan_is_reusable_and_does_not_keep_state() -> None:
    rng = np.random.default_rng(7)
    p = plan(1024)
    a, b = rng.standard_normal(1024), rng.standard_normal(1024)
    first = forward(p, a)
    forward(p, b)
    inverse(p, first)
    assert np.array_equal(forward(p, a), first)


@pytest.mark.parametrize("n", [-4, 0, 1, 2, 3, 6, 1000, 2049, (1 << 24) + 1, 1 << 25])
def test_invalid_sizes_are_refused(n: int) -> None:
    assert lib.lg_fft_new(n) == ffi.NULL
