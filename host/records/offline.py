"""An offline run recorded like a live session: the file streamed through its pipeline, every
event to a sink and, with the same seq numbers a live session gives them, to the recorder."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import trio

from ..config.pipelines import Pipeline
from ..engine.files import BLOCK_FRAMES, AudioFile
from ..engine.graph import Graph
from ..engine.runner import RunResult
from ..protocol.messages import encode_event
from ..stage import Event
from ..storage import SessionStatus
from .recorder import Recorder
from .recording import About, Recording


async def record_file(
    pipeline: Pipeline,
    path: str | Path,
    sink: Callable[[Event], None],
    recorder: Recorder,
    about: About | None = None,
    block_frames: int = BLOCK_FRAMES,
) -> RunResult:
    """``run_file`` that also records the run as a session (source ``offline``); waits for the
    recorder when it falls behind, instead of holding the whole run in memory."""
    with AudioFile(path) as audio:
        fmt = audio.format
        recording = Recording(
            recorder, str(uuid.uuid4()), pipeline.name, "offline", fmt, about or About()
        )
        result = RunResult(
            str(path), fmt.sample_rate, fmt.channels, session_id=recording.session_id
        )
        graph = Graph(pipeline, fmt)

        def publish(events: list[Event]) -> None:
            entries = []
            for event in events:
                sink(event)
                result.events += 1
                entries.append((result.events, event, encode_event(result.events, event)))
            recording.add(entries)

        recording.start()
        status: SessionStatus = "failed"
        try:
            for block in audio.blocks(block_frames):
                began = time.perf_counter()
                events = graph.process(block)
                recording.processing_s += time.perf_counter() - began
                result.frames += block.shape[0]
                publish(events)
                await recorder.wait_room()
                await trio.lowlevel.checkpoint()
            began = time.perf_counter()
            events = graph.finish()
            recording.processing_s += time.perf_counter() - began
            publish(events)
            status = "completed"
        finally:
            recording.end(status, result.frames, None)
    return result
