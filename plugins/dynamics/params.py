"""Parameters of the dynamics stage, with the reasoning behind each default."""

from __future__ import annotations

import attrs

from legato.stage import param


@attrs.frozen
class DynamicsParams:
    """The hop of the per-hop levels and the floor of the velocity scale."""

    hop: int = param(
        512,
        doc=(
            "Frames per level report: 10.7 ms at 48 kHz, finer than the ~50 ms over which the "
            "ear integrates level changes and than the 100 ms step of the EBU loudness blocks, "
            "so note-scale dynamics show without drowning a client in events."
        ),
        unit="samples",
        min=16,
        max=65536,
    )
    floor_db: float = param(
        -60.0,
        doc=(
            "RMS level that maps to velocity 1; velocity rises linearly in dB to 127 at 0 dBFS, "
            "and the markings follow the velocity. 60 dB spans an acoustic instrument's pp to "
            "ff with headroom (orchestral dynamics cover 40-60 dB) and sits near the noise "
            "floor of a home or rehearsal recording; hops at or below it also count as silence "
            "for dynamic_range_db."
        ),
        unit="dBFS",
        min=-119.0,
        max=-6.0,
    )
