"""Parameters of the fingerprint25d stage."""

from __future__ import annotations

import attrs

from legato.stage import param

from .fingerprint import DEFAULT_MAX_SECONDS


@attrs.frozen
class Fingerprint25dParams:
    """Only the analysis window: the dimensions themselves are fixed by the algorithm version,
    so fingerprints stay comparable and cacheable."""

    max_seconds: float = param(
        DEFAULT_MAX_SECONDS,
        doc=(
            "Analysis window: only the first max_seconds of the stream are analysed (0: all "
            "of it). Memory stays fixed either way; the window bounds the time for long "
            "recordings such as DJ mixes, while 10 minutes holds nearly every song whole. "
            "Fingerprints cached by the library use the default."
        ),
        unit="s",
        min=0.0,
        max=86400.0,
    )
