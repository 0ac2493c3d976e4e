"""`legato serve`: every pipeline of a config, served as live sessions over trio-websocket.

Ownership: the server's root nursery owns the listener, the recorder's flusher and every
session's analysis task (a session outlives its connection so it can be resumed);
trio-websocket's handler nursery owns one task per connection, which runs that connection's
receive and send loops, and its history queries, in its own nursery. Every handler is wrapped,
so nothing a client does can raise into the listener.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import logging
import secrets
import signal
import time
import uuid
from typing import Any

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
)

from . import __version__
from .audio import AudioFile
from .config import Config, Pipeline
from .errors import LegatoError
from .fingerprints import FingerprintCache
from .library import Library, TrackRefused, UnknownTrack
from .page import PageListener
from .playback import PlaybackSession
from .protocol import (
    MAX_CHANNELS,
    PROTOCOL_VERSION,
    SAMPLE_FORMATS,
    Audio,
    CloseCode,
    Credit,
    End,
    Error,
    ErrorCode,
    Hello,
    History,
    HistoryReply,
    Limits,
    Ping,
    Pong,
    ProtocolError,
    Resume,
    Resumed,
    Seek,
    ServerShutdown,
    Start,
    Started,
    StatsRequest,
    Summary,
    decode_audio_json,
    encode,
    encode_analysis,
    parse_client_message,
)
from .recorder import Recorder, RecorderSettings
from .session import Session, State
from .settings import ServerSettings
from .storage import Storage, StorageError, StorageUnavailable

log = logging.getLogger("legato.server")

BATCH_EVENTS = 1024
"""Most events in one ``analysis`` message; a backlog goes out in several."""

HISTORY_QUERIES = 4
"""History queries running at once over the whole server; more wait their turn."""

HISTORY_DEFAULTS: dict[str, Any] = {
    "stats_days": 30,
    "progress_days": 90,
    "limit": 50,
    "period": "weekly",
}
"""What a history request leaves out, as `legato db` defaults it."""


def _error(code: str, message: str, continues: bool = True) -> str:
    return encode(Error(code=code, message=message, continues=continues))


class Server:
    """Serves a config's pipelines; ``run`` until ``shutdown`` is called (or cancelled)."""

    def __init__(
        self,
        config: Config,
        settings: ServerSettings | None = None,
        recorder: Recorder | None = None,
        library: Library | None = None,
    ) -> None:
        self.config = config
        self.settings = settings or config.server
        self.recorder = recorder
        self.library = library
        self.fingerprints: FingerprintCache | None = None
        self.sessions: dict[str, Session] = {}
        self.shutting_down = False
        self.port: int | None = None
        self._listen_scope: trio.CancelScope | None = None
        self._root: trio.Nursery | None = None
        self._stop = trio.Event()
        self._history_limiter = trio.CapacityLimiter(HISTORY_QUERIES)

    # ---- lifecycle ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as root:
            self._root = root
            if self.recorder is not None:
                await root.start(self.recorder.run)
            if self.library is not None:
                self.fingerprints = FingerprintCache(
                    None if self.recorder is None else self.recorder.storage,
                    self.config.library.fingerprint_timeout_s,
                    sidecars=self.config.library.sidecars,
                    database_timeout_s=self.settings.storage_timeout_s,
                )
                await root.start(self.fingerprints.run)
            async with trio.open_nursery() as handlers:
                self.port = await root.start(self._listen, handlers)
                log.info(
                    "legato %s serving %s on ws://%s:%d/ (protocol v%d)",
                    __version__,
                    ", ".join(self.config.pipelines),
                    self.settings.host,
                    self.port,
                    PROTOCOL_VERSION,
                )
                task_status.started(self)
                await self._stop.wait()
                await self._drain()
                handlers.cancel_scope.cancel()
            if self.recorder is not None:
                for session in self.sessions.values():
                    session.record_end()  # cut short: recorded as failed
                await self.recorder.close(self.settings.shutdown_timeout_s)
            root.cancel_scope.cancel()
        log.info("legato stopped")

    async def _listen(
        self, handlers: trio.Nursery, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve WebSocket sessions, and the browser page to plain HTTP requests, on the
        configured address (see host/page.py)."""
        with trio.CancelScope() as scope:
            self._listen_scope = scope
            listeners = await trio.open_tcp_listeners(self.settings.port, host=self.settings.host)
            server = WebSocketServer(
                self._handle,
                [PageListener(listener) for listener in listeners],  # type: ignore[misc]
                handler_nursery=handlers,
                max_message_size=self.settings.max_message_bytes,
                message_queue_size=4,
                connect_timeout=10,
                disconnect_timeout=5,
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(server.run)
                task_status.started(listeners[0].socket.getsockname()[1])

    def shutdown(self) -> None:
        """Stop accepting; open sessions are told, finish their queued audio, get their
        summaries, and are closed within ``shutdown_timeout_s``."""
        self.shutting_down = True
        self._stop.set()

    async def _drain(self) -> None:
        self.shutting_down = True
        if self._listen_scope is not None:
            self._listen_scope.cancel()
        timeout = self.settings.shutdown_timeout_s
        with trio.move_on_after(timeout):
            notice = encode(ServerShutdown(timeout_s=timeout))
            for session in list(self.sessions.values()):
                session.outbox.append(notice)
                session.wake()
            for session in list(self.sessions.values()):
                await session.request_end()
            while any(not self._settled(s) for s in self.sessions.values()):
                await trio.sleep(0.01)
        if self.sessions:
            log.warning("shutdown timeout: %d session(s) cut short", len(self.sessions))

    @staticmethod
    def _settled(session: Session) -> bool:
        done = session.finished.is_set()
        return done and (session.summary_delivered or session.connection_scope is None)

    # ---- connections --------------------------------------------------------------------

    async def _handle(self, request: WebSocketRequest) -> None:
        """Wrap every connection: an exception here would tear the whole server down."""
        try:
            ws = await request.accept()
        except Exception:
            return
        try:
            await self._connection(ws)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection handler failed; closing that connection only")
            with trio.move_on_after(1):
                with contextlib.suppress(Exception):
                    await ws.aclose(CloseCode.INTERNAL, "internal server error")

    async def _connection(self, ws: WebSocketConnection) -> None:
        if self.shutting_down:
            await ws.send_message(_error(ErrorCode.INTERNAL, "server is shutting down", False))
            await ws.aclose(CloseCode.GOING_AWAY, "server shutting down")
            return
        if len(self.sessions) >= self.settings.max_sessions:
            await ws.send_message(
                _error(
                    ErrorCode.TOO_MANY_SESSIONS,
                    f"server is at max_sessions ({self.settings.max_sessions}); try again later",
                    continues=False,
                )
            )
            await ws.aclose(CloseCode.TRY_AGAIN, "too many sessions")
            return
        session_id, token = str(uuid.uuid4()), secrets.token_urlsafe(24)
        await ws.send_message(encode(self._hello(session_id, token)))
        session = await self._handshake(ws, session_id, token)
        if session is not None:
            await self._attach(ws, session)

    def _hello(self, session_id: str, token: str) -> Hello:
        s = self.settings
        return Hello(
            session_id=session_id,
            resume_token=token,
            protocol=PROTOCOL_VERSION,
            server=f"legato {__version__}",
            limits=Limits(
                max_message_bytes=s.max_message_bytes,
                max_frames_per_second=s.max_frames_per_second,
                max_sessions=s.max_sessions,
                idle_timeout_s=s.idle_timeout_s,
                resume_grace_s=s.resume_grace_s,
                event_buffer=s.event_buffer,
            ),
            pipelines=list(self.config.pipelines),
            sample_formats=list(SAMPLE_FORMATS),
            playback=[name for name, p in self.config.pipelines.items() if p.plays_tracks],
        )

    async def _handshake(
        self, ws: WebSocketConnection, session_id: str, token: str
    ) -> Session | None:
        """Before a session exists: wait for `start` or `resume`, answering anything else."""
        while True:
            message = await self._receive(ws)
            if message is None:
                return None
            if isinstance(message, bytes):
                await ws.send_message(_error(ErrorCode.NOT_STARTED, "send `start` before audio"))
                continue
            try:
                parsed = parse_client_message(message)
                if isinstance(parsed, Start):
                    return await self._start(ws, parsed, session_id, token)
                if isinstance(parsed, Resume):
                    return await self._resume(ws, parsed)
                if isinstance(parsed, Ping):
                    await ws.send_message(encode(Pong(id=parsed.id)))
                    continue
                raise ProtocolError(
                    ErrorCode.NOT_STARTED, f"send `start` or `resume` first, not {message[:40]!r}"
                )
            except ProtocolError as exc:
                await ws.send_message(_error(exc.code, exc.message, not exc.fatal))

    async def _start(
        self, ws: WebSocketConnection, start: Start, session_id: str, token: str
    ) -> Session:
        try:
            pipeline = self.config.pipeline(start.pipeline)
        except LegatoError as exc:
            raise ProtocolError(ErrorCode.UNKNOWN_PIPELINE, str(exc)) from None
        if pipeline.plays_tracks:
            session: Session = await self._playback(start, pipeline, session_id, token)
        else:
            session = self._live(start, pipeline, session_id, token)
        self.sessions[session.id] = session
        assert self._root is not None
        self._root.start_soon(self._analyse, session)
        start = session.start
        log.info(
            "session %s started: pipeline=%s rate=%d format=%s channels=%d user=%s piece=%s"
            " track=%s",
            session.id,
            start.pipeline,
            start.sample_rate,
            start.format,
            start.channels,
            start.user,
            start.piece,
            start.track,
        )
        stages = [{"id": s.id, "type": s.type.name} for s in pipeline.stages]
        assert start.sample_rate is not None and start.channels is not None
        await ws.send_message(
            encode(
                Started(
                    session_id=session.id,
                    pipeline=start.pipeline,
                    sample_rate=start.sample_rate,
                    format=start.format,
                    channels=start.channels,
                    stages=stages,
                )
            )
        )
        if isinstance(session, PlaybackSession):
            await ws.send_message(encode(session.track_message()))
        return session

    def _live(self, start: Start, pipeline: Pipeline, session_id: str, token: str) -> Session:
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
            return Session(start, pipeline, self.settings, session_id, token, self.recorder)
        except LegatoError as exc:
            raise ProtocolError(ErrorCode.UNSUPPORTED_FORMAT, str(exc)) from None

    async def _playback(
        self, start: Start, pipeline: Pipeline, session_id: str, token: str
    ) -> PlaybackSession:
        """Open the track, find its fingerprint through the cache tiers, plan its mastering."""
        if start.track is None:
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE,
                f"invalid 'start' message: pipeline {pipeline.name!r} plays a library track:"
                " give `track` (its path relative to the library)",
            )
        if self.library is None or self.fingerprints is None:
            raise ProtocolError(
                ErrorCode.NO_LIBRARY,
                "this server has no track library (start it with --library DIR or set"
                " [library] path)",
            )
        try:
            path = self.library.resolve(start.track)
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
            result = await self.fingerprints.lookup(path)
            try:
                return PlaybackSession(
                    start, pipeline, self.settings, (session_id, token), audio, result
                )
            except LegatoError as exc:
                raise ProtocolError(ErrorCode.UNSUPPORTED_FORMAT, str(exc)) from None
        except BaseException:
            audio.close()
            raise

    async def _resume(self, ws: WebSocketConnection, resume: Resume) -> Session | None:
        session = self.sessions.get(resume.session_id)
        if session is None or not hmac.compare_digest(session.token, resume.token):
            await ws.send_message(
                _error(
                    ErrorCode.RESUME_FAILED,
                    "no resumable session with that id and token (unknown, wrong token, or "
                    "its grace period is over)",
                    continues=False,
                )
            )
            await ws.aclose(CloseCode.RESUME_FAILED, "resume failed")
            return None
        if session.connection_scope is not None:
            session.connection_scope.cancel()  # a stale connection still holds it: take over
        available = session.log.oldest()
        if resume.last_seq + 1 < available:
            lost = available - resume.last_seq - 1
            session.outbox.append(
                _error(
                    ErrorCode.EVENTS_DROPPED,
                    f"{lost} events after seq {resume.last_seq} are no longer held "
                    f"(event_buffer = {self.settings.event_buffer})",
                )
            )
        session.sent_seq = min(max(resume.last_seq, available - 1), session.log.last_seq)
        replay = session.log.last_seq - session.sent_seq
        await ws.send_message(
            encode(
                Resumed(
                    session_id=session.id,
                    last_seq=session.log.last_seq,
                    samples_received=session.on_resume(),
                    replayed=replay,
                )
            )
        )
        log.info("session %s resumed after seq %d", session.id, resume.last_seq)
        return session

    async def _attach(self, ws: WebSocketConnection, session: Session) -> None:
        scope = trio.CancelScope()
        try:
            with scope:
                session.connection_scope = scope
                session.detached_at = None
                if session.state is State.DETACHED:
                    session.state = State.ACTIVE
                try:
                    async with trio.open_nursery() as loops:
                        loops.start_soon(self._send_loop, ws, session, scope, loops.cancel_scope)
                        await self._receive_loop(ws, session, loops)
                        loops.cancel_scope.cancel()
                except* ConnectionClosed:
                    pass  # the client went away mid-send; the session stays resumable
        finally:
            if session.connection_scope is scope:  # not taken over by a newer connection
                session.connection_scope = None
                if not session.summary_delivered:
                    self._detach(session)

    def _detach(self, session: Session) -> None:
        if session.state is State.ACTIVE:
            session.state = State.DETACHED
        session.detached_at = time.monotonic()
        log.info(
            "session %s detached; resumable for %.0f s", session.id, self.settings.resume_grace_s
        )
        assert self._root is not None
        self._root.start_soon(self._grace, session, session.detached_at)

    async def _grace(self, session: Session, detached_at: float) -> None:
        await trio.sleep(self.settings.resume_grace_s)
        if session.connection_scope is not None or session.detached_at != detached_at:
            return  # resumed in time
        if not session.finished.is_set():
            session.state = State.ABANDONED
            await session.request_end()
            await session.finished.wait()
        self._forget(session)

    async def _analyse(self, session: Session) -> None:
        await session.analyse()
        s = session.summary or {}
        log.info(
            "session %s %s: %.1f s of audio, %d events, %d frames dropped",
            session.id,
            session.state.value,
            s.get("duration_s", 0.0),
            session.counters.events_produced,
            session.counters.frames_dropped,
        )

    def _forget(self, session: Session) -> None:
        self.sessions.pop(session.id, None)

    # ---- loops --------------------------------------------------------------------------

    async def _receive(self, ws: WebSocketConnection, idle: bool = True) -> str | bytes | None:
        """Next message, or None when the connection closed or went idle (then closed)."""
        timeout = self.settings.idle_timeout_s if idle else float("inf")
        try:
            with trio.move_on_after(timeout):
                return await ws.get_message()
        except ConnectionClosed:
            return None
        await ws.send_message(
            _error(ErrorCode.IDLE_TIMEOUT, f"nothing received for {timeout:.0f} s", False)
        )
        await ws.aclose(CloseCode.IDLE, "idle timeout")
        return None

    async def _receive_loop(
        self, ws: WebSocketConnection, session: Session, loops: trio.Nursery
    ) -> None:
        while True:
            message = await self._receive(ws, idle=not session.ending)
            if message is None:
                return
            now = time.perf_counter()
            try:
                if isinstance(message, bytes):
                    session.accept_audio(message, now)
                    continue
                parsed = parse_client_message(message)
                if isinstance(parsed, Audio):
                    session.accept_audio(decode_audio_json(parsed), now, "f32le")
                elif isinstance(parsed, Ping):
                    await ws.send_message(encode(Pong(id=parsed.id)))
                elif isinstance(parsed, StatsRequest):
                    await ws.send_message(encode(session.stats()))
                elif isinstance(parsed, Credit):
                    session.grant(parsed.frames)
                elif isinstance(parsed, Seek):
                    session.seek(parsed.frame)
                elif isinstance(parsed, End):
                    await session.request_end()
                elif isinstance(parsed, History):
                    if session.history_running:
                        raise ProtocolError(
                            ErrorCode.HISTORY_BUSY,
                            "one history request at a time: wait for the answer to the last one",
                        )
                    session.history_running = True
                    loops.start_soon(self._history, session, parsed)
                elif isinstance(parsed, Start | Resume):
                    raise ProtocolError(
                        ErrorCode.ALREADY_STARTED, f"session {session.id} is already running"
                    )
            except ProtocolError as exc:
                await ws.send_message(_error(exc.code, exc.message, not exc.fatal))

    # ---- history ------------------------------------------------------------------------

    async def _history(self, session: Session, request: History) -> None:
        """Answer a history request through the session's outbox (never blocking its
        connection's receive loop)."""
        try:
            reply = HistoryReply(
                query=request.query, id=request.id, result=await self._query(session, request)
            )
            message = await trio.to_thread.run_sync(encode, reply)  # may be a large session
        except ProtocolError as exc:
            message = _error(exc.code, exc.message)
        except Exception:
            log.exception("history query %s failed", request.query)
            message = _error(ErrorCode.INTERNAL, "the history query failed")
        finally:
            session.history_running = False
        session.outbox.append(message)
        session.wake()

    async def _query(self, session: Session, request: History) -> Any:
        """Run one history query for the session's own user only."""
        if self.recorder is None:
            raise ProtocolError(
                ErrorCode.HISTORY_UNAVAILABLE, "this server keeps no history (it has no storage)"
            )
        user = session.start.user
        if user is None:
            raise ProtocolError(
                ErrorCode.NO_USER, "history is per user: start the session with a `user`"
            )
        if not self.recorder.ready:
            raise ProtocolError(
                ErrorCode.HISTORY_UNAVAILABLE, "the database is unavailable; try again later"
            )
        storage = self.recorder.storage
        days = request.days or HISTORY_DEFAULTS.get(f"{request.query}_days", 0)
        now = dt.datetime.now(dt.UTC)
        unknown = ProtocolError(
            ErrorCode.UNKNOWN_SESSION, f"no stored session {request.session_id!r} of this user"
        )
        try:
            async with self._history_limiter:
                with trio.fail_after(self.settings.storage_timeout_s):
                    if request.query == "stats":
                        return await storage.user_stats(user, days, now)
                    if request.query == "sessions":
                        limit = request.limit or HISTORY_DEFAULTS["limit"]
                        return await storage.list_sessions(user, limit)
                    if request.query == "progress":
                        period = request.period or HISTORY_DEFAULTS["period"]
                        return await storage.progress(user, period, now - dt.timedelta(days=days))
                    assert request.session_id is not None
                    found = await storage.get_session(request.session_id)
        except (StorageUnavailable, trio.TooSlowError):
            raise ProtocolError(
                ErrorCode.HISTORY_UNAVAILABLE, "the database is unavailable; try again later"
            ) from None
        except StorageError:
            if request.query == "session":
                raise unknown from None
            raise
        if found.get("user") != user:
            raise unknown  # the same answer as for an unknown id: ids of others stay secret
        return found

    async def _send_loop(
        self,
        ws: WebSocketConnection,
        session: Session,
        owner: trio.CancelScope,
        loops: trio.CancelScope,
    ) -> None:
        while True:
            session.changed = trio.Event()  # reset before looking, so no wake-up is missed
            while session.outbox:
                await ws.send_message(session.outbox[0])
                if session.connection_scope is not owner:
                    return  # a resume took the session over while we were sending
                session.outbox.pop(0)  # only once sent: a failed send leaves it for a resume
            texts, last_seq, through = session.take_unsent(BATCH_EVENTS)
            if texts:
                await ws.send_message(encode_analysis(through, texts))
                if session.connection_scope is not owner:
                    return  # the new connection replays from the client's last seq instead
                session.mark_sent(last_seq, len(texts), through, time.perf_counter())
                continue
            output = session.next_output()
            if output is not None:
                await ws.send_message(output)
                if session.connection_scope is not owner:
                    return
                continue
            if session.finished.is_set() and session.all_sent():
                await self._deliver_summary(ws, session)
                loops.cancel()
                return
            await session.changed.wait()

    async def _deliver_summary(self, ws: WebSocketConnection, session: Session) -> None:
        assert session.summary is not None  # set before the session is finished
        await ws.send_message(encode(Summary(**session.summary, stats=session.stats())))
        session.summary_delivered = True
        self._forget(session)
        code = CloseCode.GOING_AWAY if self.shutting_down else CloseCode.NORMAL
        await ws.aclose(code, "session complete")


async def open_recorder(storage: Storage, settings: ServerSettings) -> Recorder:
    """A started recorder over ``storage``: spool open, connected and migrated, or (database
    unreachable) spooling with a loud warning. Bad URLs and credentials raise StorageError."""
    recorder = Recorder(storage, RecorderSettings.from_server(settings, storage.url))
    await recorder.start()
    return recorder


async def serve(
    config: Config,
    settings: ServerSettings | None = None,
    storage: Storage | None = None,
    library: Library | None = None,
) -> None:
    """Run a server until SIGINT/SIGTERM, then drain it (a second signal stops at once).
    With ``storage``, sessions are recorded in it (and fingerprints looked up there); with
    ``library``, playback pipelines serve its tracks."""
    settings = settings or config.server
    recorder = None if storage is None else await open_recorder(storage, settings)
    server = Server(config, settings, recorder, library)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, server, nursery.cancel_scope)
        await server.run()
        nursery.cancel_scope.cancel()


async def _watch_signals(server: Server, everything: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if server.shutting_down:
                log.warning("second %s: stopping now", signal.Signals(signum).name)
                everything.cancel()
                return
            log.info("%s: draining sessions", signal.Signals(signum).name)
            server.shutdown()
