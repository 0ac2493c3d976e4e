"""A playback session: a library track streamed through a pipeline (the ``playback`` pipeline
masters it with lwrp_master) and sent to the client as binary PCM frames, no faster than the
client grants frames (``credit``), from wherever it ``seek``s to.

The session's task reads the track in blocks and renders them through the pipeline only as far
ahead as the credit (and at most ``AHEAD_S`` of audio) calls for, so memory stays bounded and a
seek throws little work away. A seek restarts the pipeline ``PREROLL_S`` before the target and
drops the output before it: the mastering's envelopes and the limiter settle on the music
leading up to the target, so playback from there is what playing through gives (to within
1e-6; playing from the start is bit-identical to `legato master`).
Events of the pipeline's stages (the ``mastering`` plan, summaries, any analysis stages) go out
in ``analysis`` messages with ``sample`` counted from the track's start.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import trio

from ..config.params import with_values
from ..config.pipelines import Pipeline
from ..config.settings import ServerSettings
from ..engine import pcm
from ..engine.files import BLOCK_FRAMES, AudioFile
from ..engine.graph import Graph
from ..errors import LegatoError
from ..library.fingerprints import FingerprintCache, FingerprintResult, track_measurements
from ..library.tracks import Library, TrackRefused, UnknownTrack
from ..protocol.messages import (
    MAX_CHANNELS,
    MAX_CREDIT,
    ErrorCode,
    Measures,
    ProtocolError,
    Seeked,
    Start,
    Stats,
    Track,
    TrackEnd,
    encode,
)
from ..stage import MEASURES, Event
from .session import Session

CHUNK_FRAMES = 4096
"""Most frames in one binary PCM message (85 ms at 48 kHz; 32 KiB of stereo f32le)."""
AHEAD_S = 1.0
"""Most audio rendered ahead of what has been sent, however much credit the client grants."""
PREROLL_S = 5.0
"""Audio rendered (and dropped) before a seek target: over twelve time constants of the slowest
envelope (the expander's 400 ms). The restart is also aligned to a multiple of BLOCK_FRAMES from
the track's start, so stages with an internal period (the expander updates its gain every 16
frames) keep the phase of an uninterrupted rendering. Measured on limited music, the output from
the target then differs from the uninterrupted rendering by at most 6e-7 (-124 dBFS); a 12 s
pre-roll makes it bit-identical but costs more per seek."""


def with_track_measurements(pipeline: Pipeline, measurements: Mapping[str, float]) -> Pipeline:
    """The pipeline with the track's measurements (param -> value) filled into every stage
    whose params take them, accept them, and leave them unset in the config: the mastering
    stage plans from the track it is about to hear."""
    stages = tuple(
        attrs.evolve(stage, params=with_values(stage.type, stage.params, measurements))
        for stage in pipeline.stages
    )
    return attrs.evolve(pipeline, stages=stages)


class PlaybackSession(Session):
    """A session whose audio comes from a library track and goes back to the client: ``audio``
    is the opened track (closed when the session ends), ``fingerprint`` what the cache tiers
    found for it, whose measurements the pipeline's stages plan from."""

    WORK = "playback"

    def __init__(
        self,
        start: Start,
        pipeline: Pipeline,
        settings: ServerSettings,
        ids: tuple[str, str],
        audio: AudioFile,
        fingerprint: FingerprintResult,
    ) -> None:
        measured = {} if fingerprint.fingerprint is None else fingerprint.fingerprint.measured()
        planner = next(s.type for s in pipeline.stages if s.id == pipeline.output)
        pipeline = with_track_measurements(pipeline, track_measurements(planner, measured))
        super().__init__(start, pipeline, settings, *ids)
        self.migratable = False  # its track, position and credit are not in a session's state
        self.audio = audio
        self.frames = audio.frames
        self.credit = 0
        self.position = 0  # the next frame to send
        self.frames_sent = 0
        self.seeks = 0
        self._fingerprint = fingerprint
        self._measured = measured
        self._plan_spec = planner.track_plan
        self._pcm: deque[np.ndarray] = deque()
        self._buffered = 0
        self._discard = 0  # rendered frames still to drop (a seek's pre-roll)
        self._graph_start = 0
        self._drop_before = 0  # events before this sample belong to the pre-roll
        self._rendered_all = False
        self._end_sent = False
        self._seek_to: int | None = None
        self._need = trio.Event()
        self._ahead = max(CHUNK_FRAMES, int(AHEAD_S * self.format.sample_rate))
        _, first = self.graph.render(np.zeros((0, self.format.channels), np.float32))
        self.plan = next(
            (
                e
                for e in first
                if self._plan_spec is not None
                and e["kind"] == self._plan_spec.plan
                and e["stage"] == pipeline.output
            ),
            None,
        )
        """The output stage's plan event, as its ``TrackPlan`` declares it (None: no plan)."""
        self._publish(first)

    # ---- what the client is told --------------------------------------------------------

    def track_message(self) -> Track:
        """The ``track`` message: the track, where its fingerprint came from, and the plan of
        the output stage read through what its ``TrackPlan`` declares."""
        fmt, plan, spec = self.format, self.plan or {}, self._plan_spec
        expected = {} if spec is None else spec.expected
        tier, reason = self._fingerprint.tier, self._fingerprint.reason
        return Track(
            track=self.start.track or "",
            frames=self.frames,
            duration_s=self.frames / fmt.sample_rate,
            sample_rate=fmt.sample_rate,
            channels=fmt.channels,
            format=self.start.format,
            fingerprint_tier=tier,
            fingerprint_reason=reason,
            plan_class=plan.get(spec.class_field) if spec is not None else None,
            mastering={k: v for k, v in plan.items() if k not in ("stage", "kind", "sample", "t")}
            if plan
            else None,
            before=Measures(**{m: self._measured.get(m) for m in MEASURES}),
            expected_after=Measures(**{m: plan.get(expected.get(m, "")) for m in MEASURES}),
        )

    # ---- the client's requests (from the connection's receive loop) ----------------------

    def accept_audio(
        self, payload: bytes, received_at: float, sample_format: str | None = None
    ) -> None:
        raise ProtocolError(
            ErrorCode.NOT_LIVE,
            f"pipeline {self.pipeline.name!r} plays a library track and takes no audio",
        )

    def grant(self, frames: int) -> None:
        self.credit = min(self.credit + frames, MAX_CREDIT)
        self._need.set()
        self.wake()

    def seek(self, frame: int) -> None:
        if self.ending:
            raise ProtocolError(ErrorCode.SESSION_ENDED, "seek after `end` is ignored")
        if frame > self.frames:
            raise ProtocolError(
                ErrorCode.BAD_SEEK,
                f"frame {frame} is beyond the end of the track ({self.frames} frames)",
            )
        self._seek_to = frame
        self._pcm.clear()
        self._buffered = 0
        self.position = frame
        self.seeks += 1
        self._end_sent = False
        self._need.set()
        self.post(encode(Seeked(frame=frame)))

    def on_resume(self) -> int:
        """A new connection took over: PCM in flight may be lost, so the credit starts again
        from 0; the client seeks to where it wants to continue and grants frames."""
        self.credit = 0
        return self.position

    async def request_end(self) -> None:
        self.ending = True
        self._need.set()

    # ---- rendering (the session's own task) ---------------------------------------------

    async def _run(self) -> None:
        while not self.ending:
            if self._seek_to is not None:
                self._restart(self._seek_to)
            if self._wants_more():
                self._render_block()
                await trio.lowlevel.checkpoint()
                continue
            self._need = trio.Event()
            await self._need.wait()
        if not self._rendered_all:
            self._publish(self._offset(self.graph.render_finish()[1]))

    def _release(self) -> None:
        self.audio.close()
        self._pcm.clear()
        self._buffered = 0

    def _wants_more(self) -> bool:
        if self._rendered_all:
            return False
        return self._buffered < min(max(self.credit, CHUNK_FRAMES), self._ahead)

    def _restart(self, frame: int) -> None:
        self._seek_to = None
        start = max(0, frame - int(PREROLL_S * self.format.sample_rate))
        start -= start % BLOCK_FRAMES
        self.graph = Graph(self.pipeline, self.format)
        self.audio.seek(start)
        self._graph_start = start
        self._discard = frame - start
        self._drop_before = frame
        self._rendered_all = False

    def _render_block(self) -> None:
        block = self.audio.read(BLOCK_FRAMES)
        if len(block):
            bad = ~np.isfinite(block)
            if bad.any():
                self.counters.non_finite_samples += int(bad.sum())
                block[bad] = 0.0
            audio, events = self.graph.render(block)
            self.counters.samples_analysed += len(block)
        else:
            audio, events = self.graph.render_finish()
            self._rendered_all = True
        self._publish(self._offset(events))
        if self._discard:
            dropped = min(self._discard, len(audio))
            audio = audio[dropped:]
            self._discard -= dropped
        if len(audio):
            self._pcm.append(audio)
            self._buffered += len(audio)
            self.wake()
        elif self._rendered_all:
            self.wake()  # the send loop announces the end

    def _offset(self, events: list[Event]) -> list[Event]:
        """Events with ``sample``/``t`` counted from the track's start; those about the pre-roll
        before a seek target are dropped."""
        if not self._graph_start and not self._drop_before:
            return events
        rate = self.format.sample_rate
        out = []
        for event in events:
            sample = event["sample"] + self._graph_start
            if sample >= self._drop_before or event["kind"] == "summary":
                out.append({**event, "sample": sample, "t": sample / rate})
        return out

    # ---- sending (from the attached connection's send loop) -----------------------------

    def next_output(self) -> bytes | str | None:
        """The next binary PCM message the credit allows, or ``track_end`` once the last frame
        is out, or None (always after ``end``)."""
        if self.ending:
            return None
        if self.credit > 0 and self._buffered > 0:
            want = min(self.credit, CHUNK_FRAMES)
            parts, taken = [], 0
            while taken < want:
                head = self._pcm[0]
                take = min(want - taken, len(head))
                parts.append(head[:take])
                if take == len(head):
                    self._pcm.popleft()
                else:
                    self._pcm[0] = head[take:]
                taken += take
                if not self._pcm:
                    break
            self._buffered -= taken
            self.credit -= taken
            self.position += taken
            self.frames_sent += taken
            self._need.set()
            chunk = parts[0] if len(parts) == 1 else np.concatenate(parts)
            return pcm.encode(chunk, self.start.format)
        ended = self._rendered_all and self._seek_to is None
        if ended and not self._buffered and not self._end_sent:
            self._end_sent = True
            return encode(TrackEnd(frames=self.position))
        return None

    def stats(self) -> Stats:
        return attrs.evolve(
            super().stats(),
            playback={
                "position": self.position,
                "frames_sent": self.frames_sent,
                "credit": self.credit,
                "buffered": self._buffered,
                "seeks": self.seeks,
            },
        )

    def _summary(self) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "status": self.state.value,
            "samples": self.frames_sent,
            "duration_s": self.frames_sent / self.format.sample_rate,
            "practice": {},
            "stages": self.recording.practice.stage_summaries,
        }


async def open_playback(
    start: Start,
    pipeline: Pipeline,
    settings: ServerSettings,
    ids: tuple[str, str],
    library: Library | None,
    fingerprints: FingerprintCache | None,
) -> PlaybackSession:
    """The playback session for a ``start`` of a library ``pipeline``: the track opened, its
    fingerprint found through the cache tiers, its mastering planned. A ``start`` that names
    no playable track raises ProtocolError (without server paths)."""
    if start.track is None:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f"invalid 'start' message: pipeline {pipeline.name!r} plays a library track:"
            " give `track` (its path relative to the library)",
        )
    if library is None or fingerprints is None:
        raise ProtocolError(
            ErrorCode.NO_LIBRARY,
            "this server has no track library (start it with --library DIR or set [library] path)",
        )
    try:
        path = library.resolve(start.track)
        audio = AudioFile(path)
    except TrackRefused as exc:
        raise ProtocolError(ErrorCode.TRACK_REFUSED, str(exc)) from None
    except UnknownTrack as exc:
        raise ProtocolError(ErrorCode.UNKNOWN_TRACK, str(exc)) from None
    except LegatoError as exc:
        reason = str(exc).replace(str(path), start.track)  # no server paths to clients
        raise ProtocolError(ErrorCode.UNKNOWN_TRACK, f"track {reason}") from None
    try:
        fmt = audio.format
        wrong = [
            f"{name} {given} (the track has {actual})"
            for name, given, actual in (
                ("sample_rate", start.sample_rate, fmt.sample_rate),
                ("channels", start.channels, fmt.channels),
            )
            if given is not None and given != actual
        ]
        if wrong:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_FORMAT,
                f"track {start.track!r} plays at its own rate and channels, not "
                f"{', '.join(wrong)}: leave them out",
            )
        try:
            start = attrs.evolve(start, sample_rate=fmt.sample_rate, channels=fmt.channels)
        except ValueError:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_FORMAT,
                f"track {start.track!r} is {fmt.channels}-channel audio at {fmt.sample_rate}"
                f" Hz; playback takes 8000-384000 Hz and 1-{MAX_CHANNELS} channels",
            ) from None
        result = await fingerprints.lookup(path)
        try:
            return PlaybackSession(start, pipeline, settings, ids, audio, result)
        except LegatoError as exc:
            raise ProtocolError(ErrorCode.UNSUPPORTED_FORMAT, str(exc)) from None
    except BaseException:
        audio.close()
        raise
