"""The dynamics kernel (csrc/dynamics.c): levels, loudness and true peak of a block in one C
call, per-hop values already in reportable dB, into output buffers made once."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from legato.checkpoints import load_kernel, save_kernel
from legato.kernels import Step, ffi, lib, owned
from legato.meters import check_loudness_format, defined


class DynamicsKernel:
    """One stream's meters. A block is one call of ``step`` (``lg_dynamics_step``, fed
    interleaved frames), whose outputs are, per hop completed, rms dBFS, peak dBFS, momentary
    and short-term LUFS."""

    def __init__(self, sample_rate: int, channels: int, hop: int) -> None:
        check_loudness_format(sample_rate, channels)
        self.channels = channels
        self._state: Any = owned(
            lib.lg_dynamics_new(sample_rate, channels, hop),
            lib.lg_dynamics_free,
            f"dynamics at {sample_rate} Hz, {channels} channels, hop {hop}",
        )
        self._levels = lib.lg_dynamics_levels(self._state)  # owned by the state, kept with it
        self._loudness = lib.lg_dynamics_loudness(self._state)
        self._true_peak = lib.lg_dynamics_truepeak(self._state)
        self.step = Step(
            "lg_dynamics_step",
            self._state,
            [(np.float64, "double")] * 4,
            functools.partial(lib.lg_dynamics_max_outputs, self._state),
            mono=False,
        )

    def save(self) -> bytes:
        return save_kernel(lib.lg_dynamics_save, self._state)

    def load(self, data: bytes, what: str) -> None:
        load_kernel(lib.lg_dynamics_load, self._state, data, what)

    def partial(self) -> tuple[int, float, float, float, float]:
        """The hop in progress (0 frames: none): frames, rms dBFS, peak dBFS, and the momentary
        and short-term loudness of the windows ending at the last frame fed."""
        ms = ffi.new("double *")
        pk = ffi.new("double *")
        length = int(lib.lg_levels_partial(self._levels, ms, pk))
        if not length:
            return 0, 0.0, 0.0, 0.0, 0.0
        return (
            length,
            lib.lg_power_db(ms[0]),
            lib.lg_amplitude_db(pk[0]),
            lib.lg_finite_db(lib.lg_loudness_momentary(self._loudness)),
            lib.lg_finite_db(lib.lg_loudness_short_term(self._loudness)),
        )

    # ---- whole-stream measures (dB as reported) --------------------------------------------

    @property
    def frames(self) -> int:
        return int(lib.lg_levels_frames(self._levels))

    @property
    def rms_db(self) -> float:
        return float(lib.lg_power_db(lib.lg_levels_mean_square(self._levels)))

    @property
    def peak_db(self) -> float:
        return float(lib.lg_amplitude_db(lib.lg_levels_peak(self._levels)))

    @property
    def true_peak_dbtp(self) -> float:
        return float(lib.lg_amplitude_db(lib.lg_truepeak_max(self._true_peak)))

    @property
    def integrated_lufs(self) -> float | None:
        return defined(lib.lg_loudness_integrated(self._loudness))

    @property
    def loudness_range_lu(self) -> float | None:
        return defined(lib.lg_loudness_range(self._loudness))

    @property
    def max_momentary_lufs(self) -> float:
        return float(lib.lg_finite_db(lib.lg_loudness_max_momentary(self._loudness)))

    @property
    def max_short_term_lufs(self) -> float:
        return float(lib.lg_finite_db(lib.lg_loudness_max_short_term(self._loudness)))

    @property
    def nonfinite(self) -> int:
        return int(lib.lg_levels_nonfinite(self._levels))
