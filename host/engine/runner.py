"""The offline runner: streams an audio file through a pipeline in blocks and hands every event,
in the public event contract, to a sink (JSON Lines for the CLI); ``record_file`` also records
the run (session row, events, result) through a recorder, like a live session."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

import attrs
import trio

from ..config.pipelines import Pipeline
from ..protocol.messages import encode_event
from ..records.practice import PracticeSummary
from ..records.recorder import Recorder, result_record, utc
from ..stage import Event
from ..storage import EventRecord, SessionRecord, SessionStatus
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


@attrs.frozen
class RunInfo:
    """What a recorded run is about (the `start` fields of a live session)."""

    user: str | None = None
    piece: str | None = None
    genre: str | None = None
    target_tempo: float | None = None


async def record_file(
    pipeline: Pipeline,
    path: str | Path,
    sink: Callable[[Event], None],
    recorder: Recorder,
    info: RunInfo = RunInfo(),
    block_frames: int = BLOCK_FRAMES,
) -> RunResult:
    """``run_file`` that also records the run as a session (source ``offline``): its events
    carry ``seq`` as a live session's do, and the result is built from the practice summary.
    Waits for the recorder when it falls behind, instead of holding the whole run in memory."""
    with AudioFile(path) as audio:
        rate = audio.format.sample_rate
        session_id = str(uuid.uuid4())
        result = RunResult(str(path), rate, audio.format.channels, session_id=session_id)
        graph = Graph(pipeline, audio.format)
        practice = PracticeSummary(rate, info.target_tempo)
        started = time.time()
        processing_s = 0.0

        def row(status: SessionStatus) -> SessionRecord:
            return SessionRecord(
                id=session_id,
                pipeline=pipeline.name,
                source="offline",
                sample_rate=rate,
                channels=audio.format.channels,
                started_at=utc(started),
                status=status,
                user=info.user,
                piece=info.piece,
                genre=info.genre,
                target_tempo=info.target_tempo,
                ended_at=None if status == "active" else utc(time.time()),
                duration_s=result.frames / rate,
                frames_processed=result.frames,
            )

        def publish(events: list[Event]) -> None:
            records = []
            for event in events:
                sink(event)
                practice.add(event)
                result.events += 1
                text = encode_event(result.events, event)
                records.append(EventRecord.of(session_id, result.events, event, text))
            recorder.events(records)

        recorder.session_started(row("active"))
        status: SessionStatus = "failed"
        try:
            for block in audio.blocks(block_frames):
                began = time.perf_counter()
                events = graph.process(block)
                processing_s += time.perf_counter() - began
                result.frames += block.shape[0]
                publish(events)
                await recorder.wait_room()
                await trio.lowlevel.checkpoint()
            began = time.perf_counter()
            events = graph.finish()
            processing_s += time.perf_counter() - began
            publish(events)
            status = "completed"
        finally:
            summary = {"practice": practice.result(), "stages": practice.stage_summaries}
            recorder.session_ended(
                row(status), result_record(session_id, summary, processing_s * 1000.0)
            )
    return result


def jsonl_sink(stream: IO[str]) -> Callable[[Event], None]:
    """Write each event as one compact JSON line (NaN/Inf are bugs, so they raise)."""

    def write(event: Event) -> None:
        stream.write(json.dumps(event, allow_nan=False, separators=(",", ":")))
        stream.write("\n")

    return write
