"""Thin helpers around the compiled cffi module ``legato._kernels``: owned states, zero-copy
buffer views, growable output buffers, input frames and status checks. Plugins import
``ffi``/``lib`` from here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._kernels import ffi, lib

__all__ = [
    "KernelError",
    "OutBuffer",
    "Step",
    "check",
    "ffi",
    "frames_of",
    "lib",
    "owned",
    "view",
]


class KernelError(RuntimeError):
    """A kernel call failed: a bug in the caller (bad arguments, too small a buffer, a call
    after ``_finish``), never bad audio, which the kernels take as it comes."""


def check(status: int, call: str) -> int:
    """``status`` when it is a count or ``LG_OK``; KernelError naming the ``LG_ERR_*`` code
    (csrc/status.h, one vocabulary for every kernel) when it is negative."""
    if status < 0:
        name = ffi.string(ffi.cast("enum lg_status", status))
        raise KernelError(f"{call} failed: {name} ({status})")
    return status


def owned(state: Any, free: Callable[[Any], None], what: str) -> Any:
    """Tie a kernel state's lifetime to the Python object (``ffi.gc``); NULL means bad params."""
    if state == ffi.NULL:
        raise ValueError(f"{what}: the kernel rejected its parameters")
    return ffi.gc(state, free)


def view(array: np.ndarray, ctype: str) -> Any:
    """A C array view onto a contiguous numpy array, without copying (cffi refuses buffers that
    are not contiguous)."""
    return ffi.from_buffer(ctype + "[]", array)  # read-only buffers are accepted by default


def frames_of(block: np.ndarray, channels: int) -> np.ndarray:
    """The block as C-contiguous float32 frames (n, channels); 1-D blocks count as mono."""
    frames = np.ascontiguousarray(block, dtype=np.float32)
    if frames.ndim == 1:
        frames = frames.reshape(-1, 1)
    if frames.ndim != 2 or frames.shape[1] != channels:
        raise ValueError(f"expected frames of shape (n, {channels}), got {np.shape(block)}")
    return frames


class OutBuffer:
    """A kernel's output array (``array``) and its C view (``ptr``), made again only when
    ``reserve`` grows it, so a stage does not re-allocate or re-view per block."""

    def __init__(self, dtype: Any, ctype: str, size: int = 0) -> None:
        self._dtype = dtype
        self._ctype = ctype
        self._make(size)

    def _make(self, size: int) -> None:
        self.array = np.zeros(size, dtype=self._dtype)
        self.ptr = view(self.array, self._ctype)

    def reserve(self, count: int) -> int:
        """Grow to hold at least ``count`` values; returns the capacity."""
        if count > len(self.array):
            self._make(count)
        return len(self.array)


class OutBuffers:
    """The several outputs one kernel call fills (``buffers``), grown together: a block whose
    outputs fit costs one comparison, not a reservation per buffer."""

    def __init__(self, *kinds: tuple[Any, str], size: int = 0) -> None:
        self.buffers = [OutBuffer(dtype, ctype, size) for dtype, ctype in kinds]
        self.capacity = size

    def reserve(self, count: int) -> int:
        """Grow every buffer to hold at least ``count`` values; returns the capacity."""
        if count > self.capacity:
            self.capacity = min(buffer.reserve(count) for buffer in self.buffers)
        return self.capacity


class Step:
    """A stage's block call as a C ``lg_step`` (csrc/chain.h): the kernel function ``run``
    (``lg_<kernel>_step``) on ``state``, writing into output arrays this object owns. The graph
    runs the steps of a pipeline's stages in one C call per block (``legato.engine.graph``);
    ``process`` runs this one alone. ``frames`` counts what the kernel consumed. Outputs are
    read as ``arrays`` (numpy) or ``views`` (C arrays: reading one value is the cheapest)."""

    def __init__(
        self,
        run: str,
        state: Any,
        outputs: list[tuple[Any, str]],
        needed: Callable[[int], int],
        *,
        mono: bool,
    ) -> None:
        self.name = run
        self.c = ffi.new("lg_step *")
        self.c.run = ffi.addressof(lib, run)
        self.c.state = state
        self.c.mono = int(mono)
        self._state = state  # the kernel state lives as long as the step
        self._kinds = outputs
        self._needed = needed
        self.arrays: list[np.ndarray] = []
        self.views: list[Any] = []
        self.grow(0)

    @property
    def mono(self) -> bool:
        return bool(self.c.mono)

    @property
    def frames(self) -> int:
        return int(self.c.frames)

    @frames.setter
    def frames(self, value: int) -> None:
        self.c.frames = value

    def grow(self, frames: int) -> None:
        """Room for the outputs of a call with ``frames`` frames (the kernel's max_outputs)."""
        capacity = max(self._needed(frames), self.c.capacity, 1)
        if capacity == self.c.capacity:
            return
        self.arrays, self.views = [], []
        for i, (dtype, ctype) in enumerate(self._kinds):
            array = np.zeros(capacity, dtype=dtype)
            self.arrays.append(array)
            self.views.append(view(array, ctype))
            self.c.out[i] = self.views[i]
        self.c.capacity = capacity

    def process(self, block: np.ndarray) -> int:
        """Feed ``block`` (C-contiguous float32) alone; returns the count of outputs written."""
        n = len(block)
        data = view(block, "float") if n else ffi.NULL
        status = lib.lg_step_run(self.c, data, n)
        if status == lib.LG_ERR_CAPACITY:
            self.grow(n)
            status = lib.lg_step_run(self.c, data, n)
        return check(status, self.name)
