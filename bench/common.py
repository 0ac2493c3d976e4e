"""What the benchmark scripts share: the machine a run was measured on and the rounding of
the JSON report."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from contextlib import suppress
from importlib import metadata
from typing import Any

import numpy as np

Section = dict[str, Any]


def cpu_model(default: str = "unknown") -> str:
    """The CPU's model name from /proc/cpuinfo, or ``default`` where that does not say."""
    with suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        return next(
            (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), default
        )
    return default


def machine(packages: Iterable[str]) -> Section:
    """The CPU, its load when the run started, Python and the installed versions of
    ``packages``: what a reader needs to compare two reports."""
    versions = {}
    for name in packages:
        with suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "versions": versions,
    }


def rounded(value: Any) -> Any:
    """Floats to 3 decimals and non-finite ones to null, through dicts, lists and tuples."""
    if isinstance(value, float):
        return round(value, 3) if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value
