"""fingerprint25d: a 25-dimension descriptor of a whole track (frequency balance, loudness and
dynamics, tempo and rhythm, spectral shape, harmonicity, variation over time, stereo image)
from the C kernel ``csrc/fingerprint.c``, as a stage and as plain functions for caches and
mastering: ``fingerprint_file``, ``fingerprint_array`` -> ``Fingerprint``. The dimensions, their
units, ranges and definitions are in ``dimensions.DIMENSIONS``."""

from __future__ import annotations

from collections.abc import Callable

from legato import hookimpl
from legato.stage import Fingerprinter, OutputSpec, StageType

from .dimensions import ALGORITHM_VERSION, DIMENSIONS, GROUPS, NAMES, Dimension, describe
from .fingerprint import (
    DEFAULT_MAX_SECONDS,
    Fingerprint,
    fingerprint_array,
    fingerprint_file,
)
from .params import Fingerprint25dParams
from .stage import Fingerprint25d

__all__ = [
    "ALGORITHM_VERSION",
    "DEFAULT_MAX_SECONDS",
    "DIMENSIONS",
    "FINGERPRINT25D",
    "GROUPS",
    "NAMES",
    "Dimension",
    "Fingerprint",
    "fingerprint_array",
    "fingerprint_file",
]

LEGATO_API_VERSION = 1

FINGERPRINT25D = StageType(
    name="fingerprint25d",
    doc=(
        "A 25-dimension track fingerprint (7 frequency-band shares, BS.1770 loudness, crest "
        "factor, bass/mid balance, tempo, rhythm stability, transient density, silence ratio, "
        "spectral centroid/rolloff/flatness, harmonicity, pitch stability, chroma "
        "concentration, dynamic, loudness and peak variation, stereo width and correlation), "
        "reported once at the end of the stream."
    ),
    params=Fingerprint25dParams,
    create=Fingerprint25d,
    outputs=(
        OutputSpec(
            kind="fingerprint",
            doc=(
                f"At end of stream (sample: its length). values are the 25 dimensions in the "
                f"order of names, computed by algorithm version {ALGORITHM_VERSION} over the "
                "first analysed_samples frames (the analysis window), all finite. "
                "nonfinite_samples counts NaN/Inf input samples, read as 0.0. The dimensions: "
                + describe()
            ),
            rate="end",
            fields={
                "version": "int",
                "values": "25 numbers (units per name)",
                "names": "25 names",
                "analysed_samples": "samples",
                "nonfinite_samples": "count",
            },
        ),
    ),
    input="multichannel",
    fingerprinter=Fingerprinter(
        version=ALGORITHM_VERSION,
        names=NAMES,
        window_s=DEFAULT_MAX_SECONDS,
        measures={"integrated_lufs": "loudness_lufs", "crest_db": "crest_db"},
    ),
)


@hookimpl
def register_stages(register: Callable[[StageType], None]) -> None:
    register(FINGERPRINT25D)
