"""Thin helpers around the compiled cffi module ``legato._kernels``: owned states and zero-copy
buffer views. Plugins import ``ffi``/``lib`` from here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._kernels import ffi, lib

__all__ = ["ffi", "lib", "owned", "view"]


def owned(state: Any, free: Callable[[Any], None], what: str) -> Any:
    """Tie a kernel state's lifetime to the Python object (``ffi.gc``); NULL means bad params."""
    if state == ffi.NULL:
        raise ValueError(f"{what}: the kernel rejected its parameters")
    return ffi.gc(state, free)


def view(array: np.ndarray, ctype: str) -> Any:
    """A C array view onto a contiguous numpy array, without copying (cffi refuses buffers that
    are not contiguous)."""
    return ffi.from_buffer(ctype + "[]", array, require_writable=False)
