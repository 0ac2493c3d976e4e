"""Helpers for testing stages through the real host: build a stage from its registered type with
validated params, and run audio through it in any block split.

Plugin authors use these too (see docs/plugins.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .graph import downmix
from .registry import Registry, load_registry
from .stage import Event, Stage, StageType, StreamFormat

_registry: Registry | None = None


def registry() -> Registry:
    """The registry of installed plugins, loaded once per process."""
    global _registry
    if _registry is None:
        _registry = load_registry()
    return _registry


def make_stage(
    stage_type: str | StageType,
    sample_rate: int,
    channels: int = 1,
    **params: Any,
) -> tuple[StageType, Stage]:
    """Instantiate a stage type with params validated exactly as a pipeline config would be."""
    from .params import build_params

    st = registry().stage_type(stage_type) if isinstance(stage_type, str) else stage_type
    return st, st.create(build_params(st, params), StreamFormat(sample_rate, channels))


def stage_input(st: StageType, audio: np.ndarray) -> np.ndarray:
    """Shape audio the way the graph feeds this stage type (mono downmix or (n, ch))."""
    audio = np.asarray(audio, dtype=np.float32)
    block = audio if audio.ndim == 2 else audio[:, None]
    return downmix(block) if st.input == "mono" else np.ascontiguousarray(block)


def run_blocks(
    stage_type: str | StageType,
    audio: np.ndarray,
    sample_rate: int,
    block_sizes: Iterable[int] | None = None,
    **params: Any,
) -> list[Event]:
    """Run ``audio`` through a fresh stage, split into ``block_sizes`` (cycled; whole stream in
    one block if None), and return every event including those from ``finish``."""
    channels = 1 if np.ndim(audio) == 1 else np.shape(audio)[1]
    st, stage = make_stage(stage_type, sample_rate, channels, **params)
    data = stage_input(st, audio)
    events: list[Event] = []
    for block in split(data, block_sizes):
        events.extend(stage.process(block))
    events.extend(stage.finish())
    return events


def split(data: np.ndarray, block_sizes: Iterable[int] | None) -> list[np.ndarray]:
    """Cut ``data`` into consecutive contiguous blocks of the given sizes (cycled)."""
    if block_sizes is None:
        return [data]
    sizes: Sequence[int] = list(block_sizes)
    if not sizes or any(s < 0 for s in sizes) or not any(sizes):
        raise ValueError("block_sizes must be non-negative and not all zero")
    blocks, pos, i = [], 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        blocks.append(np.ascontiguousarray(data[pos : pos + n]))
        pos += n
        i += 1
    return blocks
