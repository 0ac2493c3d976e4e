"""The offline runner: streams an audio file through a pipeline in blocks and hands every event,
in the public event contract, to a sink (JSON Lines for the CLI). Recording a run as a session
is ``legato.records.offline``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO

import attrs

from ..config.pipelines import Pipeline
from ..stage import Event
from .files import BLOCK_FRAMES, AudioFile
from .graph import Graph


@attrs.define
class RunResult:
    path: str
    sample_rate: int
    channels: int
    frames: int = 0
    events: int = 0
    session_id: str | None = None  # when the run was recorded


def run_file(
    pipeline: Pipeline,
    path: str | Path,
    sink: Callable[[Event], None],
    block_frames: int = BLOCK_FRAMES,
) -> RunResult:
    """Analyse one file; events reach ``sink`` as soon as each block is processed."""
    with AudioFile(path) as audio:
        result = RunResult(str(path), audio.format.sample_rate, audio.format.channels)
        graph = Graph(pipeline, audio.format)
        for block in audio.blocks(block_frames):
            for event in graph.process(block):
                sink(event)
                result.events += 1
            result.frames += block.shape[0]
        for event in graph.finish():
            sink(event)
            result.events += 1
    return result


def jsonl_sink(stream: IO[str]) -> Callable[[Event], None]:
    """Write each event as one compact JSON line (NaN/Inf are bugs, so they raise)."""

    def write(event: Event) -> None:
        stream.write(json.dumps(event, allow_nan=False, separators=(",", ":")))
        stream.write("\n")

    return write
