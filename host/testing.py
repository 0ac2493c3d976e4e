"""Helpers for testing stages through the real host: build a stage from its registered type with
validated params, run audio through it in any block split, and run a real server.

Plugin authors use these too (see docs/plugins.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import trio

from .engine.graph import downmix
from .registry import Registry, installed
from .stage import Event, Stage, StageType, StreamFormat

if TYPE_CHECKING:
    from .config.pipelines import Config
    from .server.auth import Authenticator
    from .server.server import Server


def registry() -> Registry:
    """The registry of installed plugins, loaded once per process."""
    return installed()


def make_stage(
    stage_type: str | StageType,
    sample_rate: int,
    channels: int = 1,
    **params: Any,
) -> tuple[StageType, Stage]:
    """Instantiate a stage type with params validated exactly as a pipeline config would be."""
    from .engine.stages import make_stage as make

    st = registry().stage_type(stage_type) if isinstance(stage_type, str) else stage_type
    return st, make(st, StreamFormat(sample_rate, channels), params)


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


def run_restored(
    stage_type: str | StageType,
    audio: np.ndarray,
    sample_rate: int,
    cut: int,
    block_sizes: Iterable[int] | None = None,
    **params: Any,
) -> list[Event]:
    """``run_blocks``, but the stage is checkpointed after ``cut`` frames and the rest of the
    stream goes to a fresh instance restored from that checkpoint (as a session that moved to
    another host): for a stage that implements ``legato.checkpoints.Checkpointing``, the
    events must be those of ``run_blocks``."""
    channels = 1 if np.ndim(audio) == 1 else np.shape(audio)[1]
    st, first = make_stage(stage_type, sample_rate, channels, **params)
    _, second = make_stage(st, sample_rate, channels, **params)
    data = stage_input(st, audio)
    sizes = list(block_sizes) if block_sizes is not None else None
    events: list[Event] = []
    for block in split(data[:cut], sizes):
        events.extend(first.process(block))
    second.restore(first.checkpoint())  # type: ignore[attr-defined]
    for block in split(data[cut:], sizes):
        events.extend(second.process(block))
    events.extend(second.finish())
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


@asynccontextmanager
async def running_server(
    config: Config | None = None,
    storage_url: str | None = None,
    library: str | Path | None = None,
    auth: Authenticator | None = None,
    **settings: Any,
) -> AsyncIterator[Server]:
    """A real `legato serve` on an ephemeral port for the duration of the block (trio);
    ``settings`` override ``[server]`` values; with ``storage_url`` it records sessions in
    that database (``server.recorder``); with ``library`` playback pipelines serve that
    folder's tracks; with ``auth`` clients must present tokens it accepts.
    ``server_url(server)`` gives its address."""
    from .config.pipelines import load_config
    from .library.tracks import Library
    from .server.server import Server, open_recorder
    from .storage import open_storage

    config = config or load_config(None, registry())
    server_settings = attrs.evolve(config.server, port=0, **settings)
    recorder = None
    if storage_url is not None:
        storage = open_storage(storage_url, registry())
        recorder = await open_recorder(storage, server_settings)
    folder = None if library is None else Library(library)
    server = Server(config, server_settings, recorder, folder, auth=auth)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        try:
            yield server
        finally:
            server.shutdown()


def server_url(server: Server) -> str:
    return f"ws://{server.settings.host}:{server.port}/"
