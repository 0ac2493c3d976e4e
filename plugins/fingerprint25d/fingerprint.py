"""The fingerprint as a value, and computing it from an array or a file without a pipeline (for
caches, the library command and mastering)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import numpy as np

from legato.engine.files import AudioFile

from .dimensions import ALGORITHM_VERSION, GROUPS, NAMES
from .kernel import FingerprintKernel

DEFAULT_MAX_SECONDS: Final = 600.0
"""Analysis window: the first 10 minutes, which hold nearly every song whole; longer
recordings (DJ mixes, concerts) are fingerprinted from their first 10 minutes so the time stays
bounded (memory is bounded either way)."""

FILE_BLOCK_FRAMES: Final = 65536
"""Frames decoded per read: large enough that per-block Python costs vanish next to decoding."""


def _values(values: Iterable[Any]) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError("fingerprint values must be numbers") from None
    if len(out) != len(NAMES):
        raise ValueError(f"a fingerprint has {len(NAMES)} values, got {len(out)}")
    if not all(math.isfinite(v) for v in out):
        raise ValueError("fingerprint values must be finite")
    return out


@attrs.frozen
class Fingerprint:
    """The 25 values of one track (see ``DIMENSIONS`` for each), in ``NAMES`` order."""

    values: tuple[float, ...] = attrs.field(converter=_values)
    version: int = ALGORITHM_VERSION

    @property
    def names(self) -> tuple[str, ...]:
        return NAMES

    def __getitem__(self, name: str) -> float:
        return self.values[NAMES.index(name)]

    def group(self, group: str) -> dict[str, float]:
        """The values of one group (``frequency``, ``dynamics``, ``temporal``, ``spectral``,
        ``harmonic``, ``variation``, ``stereo``) by name."""
        return {name: self[name] for name in GROUPS[group]}

    @property
    def frequency(self) -> dict[str, float]:
        return self.group("frequency")

    @property
    def dynamics(self) -> dict[str, float]:
        return self.group("dynamics")

    @property
    def temporal(self) -> dict[str, float]:
        return self.group("temporal")

    @property
    def spectral(self) -> dict[str, float]:
        return self.group("spectral")

    @property
    def harmonic(self) -> dict[str, float]:
        return self.group("harmonic")

    @property
    def variation(self) -> dict[str, float]:
        return self.group("variation")

    @property
    def stereo(self) -> dict[str, float]:
        return self.group("stereo")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: version, names and values."""
        return {"version": self.version, "names": list(NAMES), "values": list(self.values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fingerprint:
        """The inverse of ``as_dict``, for cached copies: ValueError unless the data is a
        fingerprint of the current algorithm version with these names and finite values."""
        version = data.get("version")
        if version != ALGORITHM_VERSION or isinstance(version, bool):
            raise ValueError(f"fingerprint version {version!r}, expected {ALGORITHM_VERSION}")
        names = data.get("names")
        if names is not None and tuple(names) != NAMES:
            raise ValueError("fingerprint names do not match this algorithm version")
        values = data.get("values")
        if not isinstance(values, list | tuple):
            raise ValueError("fingerprint values must be a list")
        return cls(values=values, version=ALGORITHM_VERSION)


def window_frames(sample_rate: int, max_seconds: float) -> int | None:
    """Frames analysed at most for an analysis window of max_seconds (None: no limit)."""
    if max_seconds < 0:
        raise ValueError(f"max_seconds must be >= 0, got {max_seconds}")
    return round(max_seconds * sample_rate) if max_seconds > 0 else None


def fingerprint_array(
    audio: np.ndarray, sample_rate: int, max_seconds: float = DEFAULT_MAX_SECONDS
) -> Fingerprint:
    """The fingerprint of audio shaped (n,) (mono) or (n, channels), any float dtype."""
    data = np.asarray(audio)
    channels = 1 if data.ndim == 1 else data.shape[1]
    kernel = FingerprintKernel(sample_rate, channels)
    limit = window_frames(sample_rate, max_seconds)
    kernel.process(data[:limit])
    return Fingerprint(kernel.result())


def fingerprint_file(path: str | Path, max_seconds: float = DEFAULT_MAX_SECONDS) -> Fingerprint:
    """The fingerprint of an audio file (any format libsndfile reads), decoded block by block
    and only as far as the analysis window. Raises LegatoError for unreadable files."""
    with AudioFile(path) as audio:
        fmt = audio.format
        kernel = FingerprintKernel(fmt.sample_rate, fmt.channels)
        left = window_frames(fmt.sample_rate, max_seconds)
        for block in audio.blocks(FILE_BLOCK_FRAMES):
            if left is not None:
                block = block[:left]
                left -= len(block)
            kernel.process(block)
            if left == 0:
                break
    return Fingerprint(kernel.result())
