"""A live session: one pipeline running over one client's audio, independent of any single
connection so it can be resumed. Audio is decoded and queued here; analysis runs in the
session's own task; encoded events wait in a bounded log for whichever connection sends them,
and are handed to the recorder (when the server keeps history) from the analysis task.
"""

from __future__ import annotations

import enum
import functools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
import numpy.ma  # np.percentile imports it on first use: ~0.1 s inside a live loop
import trio

from ..checkpoints import reading
from ..config.pipelines import Pipeline
from ..config.settings import ServerSettings
from ..engine import pcm
from ..engine.graph import Graph
from ..errors import LegatoError
from ..protocol.messages import (
    SAMPLE_FORMATS,
    Checkpoint,
    Error,
    ErrorCode,
    ProtocolError,
    Resumed,
    Start,
    Stats,
    Summary,
    encode,
)
from ..records.recorder import Recorder
from ..records.recording import About, Recording, utc
from ..stage import Event, StreamFormat
from ..storage import CheckpointRecord, SessionStatus
from .eventlog import EventLog
from .migration import CHECKPOINT, SessionState, pipeline_signature, token_digest

log = logging.getLogger("legato.session")

END = None  # sentinel on the audio queue: no more audio

AUDIO_BURST_S = 2.0
"""Seconds of audio (at ``max_realtime_factor``) a session may send at once, after a pause."""

LATENCY_WINDOW = 4096
"""Latencies kept per session for the percentiles ``stats`` reports (the most recent ones)."""


class LatencyWindow:
    """The last ``size`` latencies (seconds) in a float64 ring: 8 bytes each, where a deque of
    Python floats costs 32."""

    def __init__(self, size: int) -> None:
        self._ring = np.zeros(size)
        self._count = 0

    def add(self, seconds: float) -> None:
        self._ring[self._count % len(self._ring)] = seconds
        self._count += 1

    def __len__(self) -> int:
        return min(self._count, len(self._ring))

    def values(self) -> np.ndarray:
        """The latencies held (in no particular order: only percentiles are read)."""
        return self._ring[: len(self)]


@attrs.frozen
class _Failed:
    """On the audio queue: a block analysed as it arrived failed; the session's task fails."""

    error: Exception


RESUME_HISTORY = 1024
"""Sent events kept for a resume (several seconds of the analyze pipeline): what a dropped TCP
connection may have swallowed. Unsent events are kept up to ``event_buffer``."""


class State(enum.Enum):
    ACTIVE = "active"
    DETACHED = "detached"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    FAILED = "failed"


@attrs.define
class Counters:
    frames_received: int = 0
    frames_analysed: int = 0
    frames_dropped: int = 0
    samples_received: int = 0
    samples_analysed: int = 0
    non_finite_samples: int = 0
    events_produced: int = 0
    events_sent: int = 0
    events_dropped: int = 0


def error_message(code: str, message: str, continues: bool = True) -> str:
    """An encoded ``error`` message."""
    return encode(Error(code=code, message=message, continues=continues))


FINAL_STATUS: dict[State, SessionStatus] = {
    State.COMPLETED: "completed",
    State.ABANDONED: "abandoned",
    State.FAILED: "failed",
}


class Session:
    """State shared by the analysis task and the connection currently attached."""

    WORK = "analysis"
    """What ``_run`` does, for the ``stage_failed`` message."""

    def __init__(
        self,
        start: Start,
        pipeline: Pipeline,
        settings: ServerSettings,
        session_id: str,
        token: str,
        recorder: Recorder | None = None,
    ) -> None:
        self.id = session_id
        self.token = token
        self.start = start
        self.pipeline = pipeline
        self.settings = settings
        self.format = StreamFormat(start.sample_rate, start.channels)
        self.graph = Graph(pipeline, self.format)
        self.state = State.ACTIVE
        self.counters = Counters()
        self.log = EventLog(settings.event_buffer)
        self._sent_seq = 0
        about = About(start.user, start.piece, start.genre, start.target_tempo)
        self.recording = Recording(recorder, session_id, pipeline.name, "live", self.format, about)
        self.summary: dict[str, Any] | None = None
        self.audio_in, self.audio_out = trio.open_memory_channel[Any](settings.audio_queue)
        self._changed = trio.Event()
        self.finished = trio.Event()
        self.ending = False
        self._detached_at: float | None = None
        self._connection: trio.CancelScope | None = None
        self.latencies = LatencyWindow(LATENCY_WINDOW)
        self._marks: deque[tuple[int, float]] = deque()
        self._tokens = settings.max_frames_per_second
        self._tokens_at = time.monotonic()
        self._audio_rate = settings.max_realtime_factor * start.sample_rate  # frames per second
        smallest_frame = min(SAMPLE_FORMATS.values()) * start.channels
        self._audio_capacity = max(  # one largest message always fits, at the audio rate
            self._audio_rate * AUDIO_BURST_S, settings.max_message_bytes // smallest_frame
        )
        self._audio_budget = self._audio_capacity
        self._outbox: list[str] = []  # encoded control messages for the attached connection
        self._summary_delivered = False
        self._noticed_at: dict[str, float] = {}
        self._history_running = False
        self._analysing = False  # the task runs and takes blocks as they arrive
        self._queued = 0  # blocks waiting on the audio queue
        self._holding_wakes = False  # the caller sends what is ready itself (``quietly``)
        self.migratable = (
            recorder is not None
            and settings.checkpoint_interval_s > 0
            and not self.graph.unmigratable()
        )
        """Checkpointed every ``checkpoint_interval_s``, so another host can continue it."""
        self._checkpointed_at = time.perf_counter() - random.uniform(0.0, 0.5) * (
            settings.checkpoint_interval_s
        )
        """The first checkpoint comes after 0.5 to 1 interval: sessions that started together
        (a class, a reconnecting host's clients) do not all checkpoint in the same moment."""
        self.handed_off = False
        """Checkpointed at shutdown and left for another host: it ends without a summary."""
        self._task = trio.CancelScope()

    # ---- input side (called by the connection's receive loop) ---------------------------

    def accept_audio(
        self, payload: bytes, received_at: float, sample_format: str | None = None
    ) -> None:
        """Decode, check and queue one audio message; never blocks the caller.
        ``sample_format`` overrides the session's (JSON audio is always f32le)."""
        sample_format = sample_format or self.start.format
        width = SAMPLE_FORMATS[sample_format] * self.start.channels
        if self.ending:
            raise ProtocolError(ErrorCode.SESSION_ENDED, "audio after `end` is ignored")
        if len(payload) % width:
            raise ProtocolError(
                ErrorCode.MISALIGNED_AUDIO,
                f"audio message of {len(payload)} bytes is not a whole number of "
                f"{self.start.channels}-channel {sample_format} frames "
                f"({width} bytes each); message dropped",
            )
        self.counters.frames_received += 1
        if not self._take_token(len(payload) // width):
            self._drop(
                ErrorCode.RATE_LIMITED,
                "audio exceeds max_frames_per_second messages or max_realtime_factor times real"
                " time",
            )
            return
        block = self._decode(payload, sample_format)
        self.counters.samples_received += block.shape[0]
        if self._analysing and not self._queued:
            self._analyse_inline(block, received_at)
            return
        try:
            self.audio_in.send_nowait((block, received_at))
            self._queued += 1
        except trio.WouldBlock:
            self.counters.samples_received -= block.shape[0]
            self._drop(ErrorCode.OVERLOADED, "analysis is behind; audio message dropped")

    def _analyse_inline(self, block: np.ndarray, received_at: float) -> None:
        """Analyse a block as it arrives, when nothing waits before it: the same work the
        session's task does for a queued block, without handing the block over (a task switch
        per message). A stage that fails here fails the session the same way, from its task."""
        try:
            self._analyse_block(block, received_at)
        except Exception as exc:
            self._analysing = False
            self.audio_in.send_nowait(_Failed(exc))

    def _decode(self, payload: bytes, sample_format: str) -> np.ndarray:
        block, bad = pcm.decode(payload, sample_format, self.start.channels)
        if bad:
            self.counters.non_finite_samples += bad
            self.notice(
                ErrorCode.NON_FINITE_AUDIO,
                f"{self.counters.non_finite_samples} NaN/Inf samples so far were replaced by 0",
            )
        return block

    def _take_token(self, frames: int) -> bool:
        """Whether a message of ``frames`` fits both budgets: messages per second, and audio
        per second relative to real time (bursts of ``AUDIO_BURST_S`` of audio). Counting
        audio, not messages, is what keeps one client with large messages from taking the
        analysis time of others."""
        now = time.monotonic()
        elapsed, self._tokens_at = now - self._tokens_at, now
        rate = self.settings.max_frames_per_second
        self._tokens = min(rate, self._tokens + elapsed * rate)
        audio = self._audio_rate
        self._audio_budget = min(self._audio_capacity, self._audio_budget + elapsed * audio)
        if self._tokens < 1.0 or self._audio_budget < frames:
            return False
        self._tokens -= 1.0
        self._audio_budget -= frames
        return True

    def _drop(self, code: str, why: str) -> None:
        self.counters.frames_dropped += 1
        self.notice(code, f"{why} ({self.counters.frames_dropped} dropped so far)")

    def notice(self, code: str, message: str) -> None:
        """Queue a non-fatal error for the client, at most one per code per second."""
        now = time.monotonic()
        if now - self._noticed_at.get(code, -10.0) >= 1.0:
            self._noticed_at[code] = now
            self.post(error_message(code, message))

    def grant(self, frames: int) -> None:
        """``credit``: only playback sessions send audio."""
        raise ProtocolError(ErrorCode.NOT_PLAYBACK, self._not_playback("credit"))

    def seek(self, frame: int) -> None:
        """``seek``: only playback sessions have a position to move."""
        raise ProtocolError(ErrorCode.NOT_PLAYBACK, self._not_playback("seek"))

    def _not_playback(self, what: str) -> str:
        return f"`{what}` applies to playback sessions; {self.pipeline.name!r} analyses live audio"

    def on_resume(self) -> int:
        """A new connection took over; the audio position it continues from."""
        return self.counters.samples_received

    def next_output(self) -> bytes | str | None:
        """A message the session streams besides events (playback PCM); None for live ones."""
        return None

    async def request_end(self) -> None:
        """No more audio: analysis finishes what is queued, then the summary is produced."""
        if not self.ending:
            self.ending = True
            await self.audio_in.send(END)

    # ---- analysis (the session's own task) ----------------------------------------------

    async def analyse(self) -> None:
        """The session's own task: ``_run`` its work to the end; a failing stage ends only this
        session (``failed``), then the summary is made and the send loop told."""
        self.recording.start(self.notice)
        try:
            with self._task:
                await self._run()
            if self.state is not State.ABANDONED:
                self.state = State.COMPLETED
        except Exception as exc:  # a stage bug must not take the server down
            self.state = State.FAILED
            self.notice(ErrorCode.STAGE_FAILED, f"{self.WORK} failed: {type(exc).__name__}: {exc}")
        finally:
            self._release()
            self.summary = self._summary()
            self.record_end()
            self.finished.set()
            self.wake()

    async def _run(self) -> None:
        """Run the pipeline over audio until END: blocks queued while it was busy here, the rest
        analysed as they arrive (``accept_audio``)."""
        self._analysing = True
        try:
            async for item in self.audio_out:
                if item is END:
                    break
                if isinstance(item, _Failed):
                    raise item.error
                self._queued -= 1
                self._analyse_block(*item)
                await trio.lowlevel.checkpoint()
        finally:
            self._analysing = False
        began = time.perf_counter()
        events = self.graph.finish()
        self.recording.processing_s += time.perf_counter() - began
        self._publish(events)

    def _analyse_block(self, block: np.ndarray, received_at: float) -> None:
        began = time.perf_counter()
        events = self.graph.process(block)
        self.recording.processing_s += time.perf_counter() - began
        self.counters.frames_analysed += 1
        self.counters.samples_analysed += block.shape[0]
        self._publish(events)
        if events:
            self._marks.append((self.counters.samples_analysed, received_at))
        interval = self.settings.checkpoint_interval_s
        if self.migratable and began - self._checkpointed_at >= interval:
            self._checkpoint(began)

    # ---- checkpoints --------------------------------------------------------------------

    @functools.cached_property
    def _identity(self) -> dict[str, str]:
        """What every checkpoint of the session repeats: who it is, what the client started."""
        return {
            "session_id": self.id,
            "token": token_digest(self.token),
            "start": encode(self.start),
            "pipeline": pipeline_signature(self.pipeline),
        }

    def capture(self) -> SessionState:
        """The session between two blocks, as another host would continue it."""
        return SessionState(
            **self._identity,
            samples=self.counters.samples_analysed,
            seq=self.log.last_seq,
            started_at=self.recording.started_at,
            processing_s=self.recording.processing_s,
            practice=self.recording.practice.state(),
            stages=self.graph.checkpoint(),
        )

    def restore(self, state: SessionState) -> None:
        """Continue from ``state`` (a new session, before its task starts): the client's
        audio is expected from ``state.samples`` on, and events go on after ``state.seq``.
        ``CheckpointError`` when it cannot be; the session must then be dropped."""
        self.graph.restore(state.stages)
        with reading(CHECKPOINT[0]):
            self.recording.practice.restore(state.practice)
        self.counters.samples_received = self.counters.samples_analysed = state.samples
        self.counters.events_produced = state.seq
        self.log.continue_after(state.seq)
        self._sent_seq = state.seq
        self.recording.started_at = state.started_at
        self.recording.processing_s = state.processing_s

    def _checkpoint(
        self, now: float, stored: Callable[[CheckpointRecord], None] | None = None
    ) -> bool:
        """Hand a checkpoint to the recorder; the client hears of it once it is stored (and
        ``stored`` is called). A stage that fails to checkpoint stops the checkpoints, not the
        session. Returns whether a checkpoint was handed over."""
        self._checkpointed_at = now
        assert self.recording.recorder is not None  # migratable sessions are recorded
        try:
            state = self.capture()
            data = state.to_bytes()
        except Exception:
            log.exception("session %s: checkpoint failed; it cannot move if its host dies", self.id)
            self.migratable = False
            return False
        record = CheckpointRecord(self.id, state.seq, state.samples, data, utc(time.time()))

        def announce(record: CheckpointRecord) -> None:
            self.post(encode(Checkpoint(samples=record.samples, seq=record.seq)))
            if stored is not None:
                stored(record)

        self.recording.recorder.checkpoint(record, announce)
        return True

    def hand_off(self) -> trio.Event | None:
        """Shutting down with handoff: a checkpoint now; the event is set once it is stored
        (then ``handed_over``). None when the session cannot be handed off (not migratable,
        ending, or finished), and it drains as usual."""
        if not self.migratable or self.ending or self.finished.is_set():
            return None
        done = trio.Event()
        return done if self._checkpoint(time.perf_counter(), lambda _: done.set()) else None

    def handed_over(self) -> None:
        """Its checkpoint is stored: stop without ending; the attached connection closes with
        ``HANDED_OFF`` and the client resumes on another host, which continues from there."""
        self.handed_off = True
        self._task.cancel()
        self.wake()

    def _release(self) -> None:
        """Free what the session's work held, whatever way it ended."""

    def record_end(self) -> None:
        """Hand the final row and the result to the recorder, once. A session that did not
        finish (cut short by a shutdown) is recorded as ``failed``."""
        if self.handed_off:
            return  # the host that continues it records its end
        status = FINAL_STATUS.get(self.state, "failed")
        self.recording.end(status, self.counters.samples_analysed, self.summary)

    def _publish(self, events: list[Event]) -> None:
        entries = []
        for event in events:
            seq, text, dropped = self.log.append(event, self._sent_seq)
            entries.append((seq, event, text))
            self.counters.events_produced += 1
            if dropped:
                self.counters.events_dropped += dropped
                self._sent_seq = max(self._sent_seq, self.log.oldest() - 1)
                self.notice(
                    ErrorCode.EVENTS_DROPPED,
                    f"client is not reading fast enough: {self.counters.events_dropped} events "
                    f"dropped (event_buffer = {self.settings.event_buffer})",
                )
        self.recording.add(entries)
        if events:
            self.wake()

    # ---- output side (called by the attached connection's send loop) --------------------

    def wake(self) -> None:
        if not self._holding_wakes:
            self._changed.set()

    def accept_audio_quietly(self, payload: bytes, received_at: float) -> None:
        """``accept_audio`` without waking the send loop: the receiving connection sends what
        the block produced itself, and wakes the send loop only for what it could not send."""
        self._holding_wakes = True
        try:
            self.accept_audio(payload, received_at)
        finally:
            self._holding_wakes = False

    def post(self, message: str) -> None:
        """Queue an encoded control message for the attached connection (or the next one)."""
        self._outbox.append(message)
        self.wake()

    def next_control(self) -> str | None:
        """The oldest queued control message, left queued until ``control_sent``."""
        return self._outbox[0] if self._outbox else None

    def control_sent(self) -> None:
        """The message ``next_control`` gave went out: a failed send leaves it for a resume."""
        self._outbox.pop(0)

    def forget_wakes(self) -> None:
        """Forget earlier wake-ups: called before looking at what to send, so none is missed."""
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        """Wait for the next wake-up since ``forget_wakes``."""
        await self._changed.wait()

    def take_unsent(self, limit: int) -> tuple[list[str], int, int]:
        """Up to ``limit`` encoded events not yet sent, the seq of the last one, and the samples
        analysed so far (``through``)."""
        texts = self.log.after(self._sent_seq, limit)
        first = max(self._sent_seq + 1, self.log.oldest())
        last = first + len(texts) - 1 if texts else self._sent_seq
        return texts, last, self.counters.samples_analysed

    def mark_sent(self, last_seq: int, count: int, through: int, now: float) -> None:
        self._sent_seq = max(self._sent_seq, last_seq)
        self.counters.events_sent += count
        self.log.forget_sent(self._sent_seq, RESUME_HISTORY)
        while self._marks and self._marks[0][0] <= through:
            _, received_at = self._marks.popleft()
            self.latencies.add(now - received_at)

    def has_unsent(self) -> bool:
        return bool(self._outbox) or self._sent_seq < self.log.last_seq

    def all_sent(self) -> bool:
        return self._sent_seq >= self.log.last_seq

    def summary_message(self) -> str:
        """The encoded ``summary``; the session counts as delivered once it is sent."""
        assert self.summary is not None  # set before the session is finished
        return encode(Summary(**self.summary, stats=self.stats()))

    def summary_sent(self) -> None:
        self._summary_delivered = True

    # ---- connections (the server's) ------------------------------------------------------

    def attach(self, scope: trio.CancelScope) -> None:
        """A connection (its cancel scope) takes the session, cancelling a stale one."""
        if self._connection is not None and self._connection is not scope:
            self._connection.cancel()
        self._connection = scope
        self._detached_at = None
        if self.state is State.DETACHED:
            self.state = State.ACTIVE

    def attached(self, scope: trio.CancelScope) -> bool:
        """Whether ``scope``'s connection still holds the session (a resume takes it over)."""
        return self._connection is scope

    def release(self, scope: trio.CancelScope) -> float | None:
        """``scope``'s connection is gone. Unless a newer connection took over or the summary
        was delivered, the session is detached: returns the detach stamp for ``abandon_if``."""
        if self._connection is not scope:
            return None
        self._connection = None
        if self._summary_delivered:
            return None
        if self.state is State.ACTIVE:
            self.state = State.DETACHED
        self._detached_at = time.monotonic()
        return self._detached_at

    async def abandon_if(self, detached_at: float) -> bool:
        """The grace period of the detach stamped ``detached_at`` is over: unless resumed since,
        the session ends as ``abandoned``. Returns whether it was."""
        if self._connection is not None or self._detached_at != detached_at:
            return False  # resumed in time
        if not self.finished.is_set():
            self.state = State.ABANDONED
            await self.request_end()
            await self.finished.wait()
        return True

    def resume_from(self, last_seq: int) -> Resumed:
        """A client resuming after event ``last_seq``: events it lacks are sent again (those no
        longer held are reported as dropped); returns the ``resumed`` message. A connection
        that still holds the session is cancelled first, so it sends nothing more."""
        if self._connection is not None:
            self._connection.cancel()
        available = self.log.oldest()
        if last_seq + 1 < available:
            lost = available - last_seq - 1
            self.post(
                error_message(
                    ErrorCode.EVENTS_DROPPED,
                    f"{lost} events after seq {last_seq} are no longer held "
                    f"(event_buffer = {self.settings.event_buffer})",
                )
            )
        # A client may hold events this session has yet to produce again (restored from a
        # checkpoint on another host): they are not sent twice.
        self._sent_seq = max(last_seq, available - 1)
        return Resumed(
            session_id=self.id,
            last_seq=self.log.last_seq,
            samples_received=self.on_resume(),
            replayed=max(0, self.log.last_seq - self._sent_seq),
        )

    def settled(self) -> bool:
        """Finished, and its summary delivered or nobody attached to receive it (a session
        handed off: its connection closed)."""
        if self.handed_off:
            return self._connection is None
        done = self.finished.is_set()
        return done and (self._summary_delivered or self._connection is None)

    def begin_history(self) -> None:
        """A ``history`` request starts; one at a time per session."""
        if self._history_running:
            raise ProtocolError(
                ErrorCode.HISTORY_BUSY,
                "one history request at a time: wait for the answer to the last one",
            )
        self._history_running = True

    def end_history(self, reply: str) -> None:
        self._history_running = False
        self.post(reply)

    def stats(self) -> Stats:
        latencies = self.latencies.values() * 1000.0 if len(self.latencies) else None
        percentiles: dict[str, float | None] = {
            f"p{p}": (None if latencies is None else round(float(np.percentile(latencies, p)), 3))
            for p in (50, 95, 99)
        }
        return Stats(
            **attrs.asdict(self.counters),
            events_stored=self.recording.tally.stored,
            events_spooled=self.recording.tally.spooled,
            events_unsaved=self.recording.tally.unsaved,
            latency_ms=percentiles,
            queues={
                "audio": self.audio_out.statistics().current_buffer_used,
                "events_unsent": self.log.last_seq - self._sent_seq,
            },
        )

    def _summary(self) -> dict[str, Any]:
        samples = self.counters.samples_analysed
        return {
            "session_id": self.id,
            "status": self.state.value,
            "samples": samples,
            "duration_s": samples / self.format.sample_rate,
            **self.recording.summary(),
        }


def open_live(
    start: Start,
    pipeline: Pipeline,
    settings: ServerSettings,
    ids: tuple[str, str],
    recorder: Recorder | None,
) -> Session:
    """A live session of ``pipeline`` for a ``start`` message (ids: session id, resume token);
    a ``start`` that does not fit a live pipeline raises ProtocolError."""
    if start.sample_rate is None:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f"invalid 'start' message: pipeline {pipeline.name!r} analyses the audio you send"
            ": give its sample_rate",
        )
    if start.track is not None:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f"invalid 'start' message: pipeline {pipeline.name!r} analyses the audio you send"
            "; `track` applies to playback pipelines",
        )
    start = attrs.evolve(start, channels=start.channels or 1)
    try:
        return Session(start, pipeline, settings, *ids, recorder)
    except LegatoError as exc:
        raise ProtocolError(ErrorCode.UNSUPPORTED_FORMAT, str(exc)) from None
