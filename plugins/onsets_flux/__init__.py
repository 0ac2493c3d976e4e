"""onsets_flux: note onsets from the spectral flux of a log-compressed, log-frequency magnitude
spectrum with SuperFlux's vibrato suppression (Böck & Widmer, DAFx 2013), in the C kernel
``csrc/onsets.c``."""

from __future__ import annotations

from collections.abc import Callable

from legato import hookimpl
from legato.stage import OutputSpec, StageType

from .params import OnsetsFluxParams, check
from .stage import OnsetsFlux

LEGATO_API_VERSION = 1

ONSETS_FLUX = StageType(
    name="onsets_flux",
    doc=(
        "Note onsets (spectral flux with SuperFlux vibrato suppression, adaptive threshold and "
        "peak picking) with an estimated onset sample and a strength, and a timing summary."
    ),
    params=OnsetsFluxParams,
    create=OnsetsFlux,
    outputs=(
        OutputSpec(
            kind="onset",
            doc=(
                "A note onset. sample estimates where the new sound begins; strength is the "
                "spectral flux at the peak: the rise of ln(1 + |X| / knee) summed over the "
                "filter bands, in nepers. Reported once the frames of the lookahead have "
                "arrived: window + (ceil(window / hop) + max(post_max, post_avg)) hops after "
                "the peak frame starts, about 60 ms after the onset at the defaults."
            ),
            rate="variable",
            fields={"strength": "Np"},
        ),
        OutputSpec(
            kind="summary",
            doc=(
                "At end of stream: sample is the stream length; onset count and rate, mean "
                "inter-onset interval (None without one) and its coefficient of variation "
                "(timing consistency: 0 for a steady pulse; None below 2 intervals), and how "
                "many non-finite input samples were read as silence."
            ),
            rate="end",
            fields={
                "onsets": "count",
                "onset_rate_hz": "Hz",
                "mean_ioi_s": "s",
                "ioi_cv": "ratio",
                "nonfinite_samples": "count",
            },
        ),
    ),
    input="mono",
    check=check,
)


@hookimpl
def register_stages(register: Callable[[StageType], None]) -> None:
    register(ONSETS_FLUX)
