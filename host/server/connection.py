"""One WebSocket connection: refusals, ``hello``, the handshake (``start`` or ``resume``), then
the receive and send loops of the session it attaches to.

The connection owns nothing of the session's state: it calls the session's methods, and its
cancel scope is how the session knows which connection holds it (a resume on another
connection cancels this one). Its loops run in its own nursery; history queries run there
too, so a disconnect cancels exactly this connection's work.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Protocol

import attrs
import trio
from trio_websocket import HandshakeError

from .. import __version__
from ..config.pipelines import Config
from ..config.settings import ServerSettings
from ..errors import LegatoError
from ..library.fingerprints import FingerprintCache
from ..library.tracks import Library
from ..protocol.messages import (
    PROTOCOL_VERSION,
    SAMPLE_FORMATS,
    Audio,
    CloseCode,
    Credit,
    End,
    ErrorCode,
    Hello,
    History,
    Limits,
    Ping,
    Pong,
    ProtocolError,
    Resume,
    Seek,
    Start,
    Started,
    StatsRequest,
    decode_audio_json,
    encode,
    encode_analysis,
    parse_client_message,
)
from ..records.recorder import Recorder
from .auth import ANYONE, Authenticator, AuthError, Identity, bearer_token
from .history import HistoryQueries
from .playback import PlaybackSession, open_playback
from .relay import relay
from .session import Session, error_message, open_live
from .websocket import ConnectionClosed, WebSocket

log = logging.getLogger("legato.server")

ERROR_BURST = 10.0
"""Error replies a connection gets at once; then one a second."""

BATCH_EVENTS = 1024
"""Most events in one ``analysis`` message; a backlog goes out in several."""


class Host(Protocol):
    """What a connection needs of the server that accepted it (``Server``)."""

    config: Config
    settings: ServerSettings
    recorder: Recorder | None
    library: Library | None
    fingerprints: FingerprintCache | None
    history: HistoryQueries
    shutting_down: bool
    auth: Authenticator | None

    @property
    def sessions(self) -> Mapping[str, Session]: ...

    def full(self) -> bool: ...
    def sessions_of(self, user: str) -> int: ...

    def new_session_id(self) -> str: ...

    def relay_target(self, session_id: str) -> tuple[int, str] | None: ...

    async def take_over(self, resume: Resume, identity: Identity) -> Session | None: ...

    def add(self, session: Session) -> None: ...

    def forget(self, session: Session) -> None: ...

    def detached(self, session: Session, detached_at: float) -> None: ...


class Connection:
    """``run`` serves one accepted WebSocket for ``server`` until it closes."""

    def __init__(self, server: Host, ws: WebSocket) -> None:
        self.server = server
        self.settings = server.settings
        self.ws = ws
        self._session: Session | None = None
        self._relaying = False
        self._active_at = trio.current_time()
        self.identity: Identity | None = ANYONE
        """Who the client is; None until its token arrives (auth on, none in the upgrade)."""
        self._upgrade_token: str | None = None
        self._reply_budget = ERROR_BURST  # error replies that may go out now
        self._replied_at = trio.current_time()

    async def run(self) -> None:
        ws, server = self.ws, self.server
        if server.auth is not None:
            self.identity = None
            self._upgrade_token = bearer_token(ws.headers, ws.target)
            if self._upgrade_token is not None and await self._identify(None) is None:
                return
        if server.shutting_down:
            await ws.send_message(
                error_message(ErrorCode.INTERNAL, "server is shutting down", False)
            )
            await ws.aclose(CloseCode.GOING_AWAY, "server shutting down")
            return
        if server.full():
            await ws.send_message(
                error_message(
                    ErrorCode.TOO_MANY_SESSIONS,
                    f"server is at max_sessions ({self.settings.max_sessions}); try again later",
                    continues=False,
                )
            )
            await ws.aclose(CloseCode.TRY_AGAIN, "too many sessions")
            return
        ids = (ws.session_id or server.new_session_id(), secrets.token_urlsafe(24))
        await ws.send_message(encode(self._hello(*ids)))
        async with trio.open_nursery() as watch:
            watch.start_soon(self._close_when_idle)
            session = await self._handshake(ids)
            if session is not None:
                self._session = session
                await self._attach(session)
            watch.cancel_scope.cancel()

    def _hello(self, session_id: str, token: str) -> Hello:
        s, pipelines = self.settings, self.server.config.pipelines
        return Hello(
            session_id=session_id,
            resume_token=token,
            protocol=PROTOCOL_VERSION,
            server=f"legato {__version__}",
            limits=Limits(
                max_message_bytes=s.max_message_bytes,
                max_frames_per_second=s.max_frames_per_second,
                max_realtime_factor=s.max_realtime_factor,
                max_sessions=s.max_sessions,
                idle_timeout_s=s.idle_timeout_s,
                resume_grace_s=s.resume_grace_s,
                event_buffer=s.event_buffer,
            ),
            pipelines=list(pipelines),
            sample_formats=list(SAMPLE_FORMATS),
            playback=[name for name, p in pipelines.items() if p.plays_tracks],
        )

    # ---- before a session exists ---------------------------------------------------------

    async def _handshake(self, ids: tuple[str, str]) -> Session | None:
        """Wait for `start` or `resume` (up to ``start_timeout_s``), answering anything else."""
        deadline = trio.current_time() + self.settings.start_timeout_s
        while True:
            message: str | bytes | None = None
            with trio.move_on_at(deadline) as waiting:
                message = await self._receive()
            if waiting.cancelled_caught:
                timeout = self.settings.start_timeout_s
                why = f"no `start` or `resume` within {timeout:g} s"
                await self.ws.send_message(error_message(ErrorCode.START_TIMEOUT, why, False))
                await self.ws.aclose(CloseCode.IDLE, "start timeout")
                return None
            if message is None:
                return None
            try:
                if isinstance(message, bytes):
                    raise ProtocolError(ErrorCode.NOT_STARTED, "send `start` before audio")
                parsed = parse_client_message(message)
                if isinstance(parsed, Start | Resume):
                    token = parsed.token if isinstance(parsed, Start) else parsed.access_token
                    identity = await self._identify(token)
                    if identity is None:
                        return None
                    if isinstance(parsed, Start):
                        return await self._start(parsed, ids, identity)
                    return await self._resume(parsed, identity)
                if isinstance(parsed, Ping):
                    await self.ws.send_message(encode(Pong(id=parsed.id)))
                    continue
                raise ProtocolError(
                    ErrorCode.NOT_STARTED, f"send `start` or `resume` first, not {message[:40]!r}"
                )
            except ProtocolError as exc:
                await self._reply_error(exc)

    async def _reply_error(self, exc: ProtocolError) -> None:
        """Answer a bad message, from a budget of ``ERROR_BURST`` replies refilled one a
        second (as docs/protocol.md says): a client's honest mistakes are all answered, a flood
        of bad messages costs the server a few replies, not one each. Fatal ones always go."""
        now = trio.current_time()
        self._reply_budget = min(ERROR_BURST, self._reply_budget + now - self._replied_at)
        self._replied_at = now
        if not exc.fatal:
            if self._reply_budget < 1.0:
                return
            self._reply_budget -= 1.0
        await self.ws.send_message(error_message(exc.code, exc.message, not exc.fatal))

    async def _identify(self, token: str | None) -> Identity | None:
        """The client's identity: known already, or proved by its upgrade's token or else
        ``token`` (from ``start`` or ``resume``). A missing or invalid one is refused with
        4003 (None)."""
        if self.identity is not None:
            return self.identity
        auth = self.server.auth
        assert auth is not None  # the identity is only unknown with auth on
        token = self._upgrade_token or token
        try:
            if token is None:
                raise AuthError(
                    "this server requires an access token (Authorization: Bearer, a `token`"
                    " query parameter, or `token` in start)"
                )
            self.identity = auth.verify(token)
        except AuthError as exc:
            await self.ws.send_message(error_message(ErrorCode.UNAUTHORIZED, str(exc), False))
            await self.ws.aclose(CloseCode.UNAUTHORIZED, str(exc))
            return None
        return self.identity

    async def _start(self, start: Start, ids: tuple[str, str], identity: Identity) -> Session:
        server = self.server
        try:
            pipeline = server.config.pipeline(start.pipeline)
        except LegatoError as exc:
            raise ProtocolError(ErrorCode.UNKNOWN_PIPELINE, str(exc)) from None
        scope = "playback" if pipeline.plays_tracks else "practice"
        if not identity.allows(scope):
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                f"your token does not allow {scope} (pipeline {pipeline.name!r}); its scopes:"
                f" {', '.join(sorted(identity.scopes)) or 'none'}",
            )
        if identity.verified:
            if start.user not in (None, identity.user):
                raise ProtocolError(
                    ErrorCode.FORBIDDEN, "`user` must be your token's user, or left out"
                )
            start = attrs.evolve(start, user=identity.user)
        start = attrs.evolve(start, token=None)  # never kept, logged or stored
        cap = self.settings.max_sessions_per_user
        if cap and start.user is not None and (held := server.sessions_of(start.user)) >= cap:
            raise ProtocolError(
                ErrorCode.TOO_MANY_USER_SESSIONS,
                f"user {start.user!r} holds {held} sessions (max_sessions_per_user = {cap});"
                " end one, or wait for one to end",
            )
        if pipeline.plays_tracks:
            session: Session = await open_playback(
                start, pipeline, self.settings, ids, server.library, server.fingerprints
            )
        else:
            session = open_live(start, pipeline, self.settings, ids, server.recorder)
        server.add(session)
        start = session.start
        log.info(
            "session %s started: pipeline=%s rate=%d format=%s channels=%d user=%r piece=%r"
            " track=%r",
            session.id,
            start.pipeline,
            start.sample_rate,
            start.format,
            start.channels,
            start.user,
            start.piece,
            start.track,
        )
        assert start.sample_rate is not None and start.channels is not None
        started = Started(
            session_id=session.id,
            pipeline=start.pipeline,
            sample_rate=start.sample_rate,
            format=start.format,
            channels=start.channels,
            stages=[{"id": s.id, "type": s.type.name} for s in pipeline.stages],
            migratable=session.migratable,
        )
        try:
            await self.ws.send_message(encode(started))
            if isinstance(session, PlaybackSession):
                await self.ws.send_message(encode(session.track_message()))
        except ConnectionClosed:
            self._detach_unattached(session)
            raise
        return session

    def _detach_unattached(self, session: Session) -> None:
        """The client left before its new session was attached: the session waits for a
        resume like any detached one, then ends as abandoned (it must not stay, holding a
        place under ``max_sessions``)."""
        scope = trio.CancelScope()
        session.attach(scope)
        detached_at = session.release(scope)
        if detached_at is not None:
            self.server.detached(session, detached_at)

    async def _resume(self, resume: Resume, identity: Identity) -> Session | None:
        session = self.server.sessions.get(resume.session_id)
        owner = self.server.relay_target(resume.session_id) if session is None else None
        if owner is not None:
            self._relaying = True  # the owner watches for idleness now
            try:
                await relay(self.ws, encode(resume), *owner, self._upgrade_token)
                return None
            except (OSError, HandshakeError):
                self._relaying = False  # the owner is gone (it died): the session with it
        if session is None:
            session = await self.server.take_over(resume, identity)
        if (
            session is None
            or not hmac.compare_digest(session.token.encode(), resume.token.encode())
            or (identity.verified and session.start.user != identity.user)
        ):
            await self.ws.send_message(
                error_message(
                    ErrorCode.RESUME_FAILED,
                    "no resumable session with that id and token (unknown, wrong token, or "
                    "its grace period is over)",
                    continues=False,
                )
            )
            await self.ws.aclose(CloseCode.RESUME_FAILED, "resume failed")
            return None
        await self.ws.send_message(encode(session.resume_from(resume.last_seq)))
        log.info("session %s resumed after seq %d", session.id, resume.last_seq)
        return session

    # ---- attached ------------------------------------------------------------------------

    async def _attach(self, session: Session) -> None:
        scope = trio.CancelScope()
        try:
            with scope:
                session.attach(scope)
                try:
                    async with trio.open_nursery() as loops:
                        loops.start_soon(self._send_loop, session, scope, loops.cancel_scope)
                        await self._receive_loop(session, scope, loops)
                        loops.cancel_scope.cancel()
                except* ConnectionClosed:
                    pass  # the client went away mid-send; the session stays resumable
        finally:
            detached_at = session.release(scope)
            if detached_at is not None:
                self.server.detached(session, detached_at)

    async def _receive(self) -> str | bytes | None:
        """Next message, or None when the connection closed (or went idle and was closed)."""
        try:
            message = await self.ws.get_message()
        except ConnectionClosed:
            return None
        self._active_at = trio.current_time()
        return message

    async def _close_when_idle(self) -> None:
        """Close the connection once nothing has arrived for ``idle_timeout_s`` (except while an
        ended session waits for its summary). One sleeping task per connection instead of a
        timeout per message: a message costs one clock read."""
        timeout = self.settings.idle_timeout_s
        while True:
            await trio.sleep_until(self._active_at + timeout)
            waiting = self._relaying or (self._session is not None and self._session.ending)
            if waiting:
                self._active_at = trio.current_time()
            elif trio.current_time() >= self._active_at + timeout:
                break
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send_message(
                error_message(
                    ErrorCode.IDLE_TIMEOUT, f"nothing received for {timeout:.0f} s", False
                )
            )
            await self.ws.aclose(CloseCode.IDLE, "idle timeout")

    async def _receive_loop(
        self, session: Session, owner: trio.CancelScope, loops: trio.Nursery
    ) -> None:
        while True:
            message = await self._receive()
            if message is None:
                return
            now = time.perf_counter()
            try:
                if isinstance(message, bytes):
                    session.accept_audio_quietly(message, now)
                    if not self._send_nowait(session, owner):
                        session.wake()
                    continue
                parsed = parse_client_message(message)
                if isinstance(parsed, Audio):
                    session.accept_audio(decode_audio_json(parsed), now, "f32le")
                elif isinstance(parsed, Ping):
                    await self.ws.send_message(encode(Pong(id=parsed.id)))
                elif isinstance(parsed, StatsRequest):
                    await self.ws.send_message(encode(session.stats()))
                elif isinstance(parsed, Credit):
                    session.grant(parsed.frames)
                elif isinstance(parsed, Seek):
                    session.seek(parsed.frame)
                elif isinstance(parsed, End):
                    await session.request_end()
                elif isinstance(parsed, History):
                    session.begin_history()
                    assert self.identity is not None  # known once a session is attached
                    loops.start_soon(self.server.history.answer, session, parsed, self.identity)
                elif isinstance(parsed, Start | Resume):
                    raise ProtocolError(
                        ErrorCode.ALREADY_STARTED, f"session {session.id} is already running"
                    )
            except ProtocolError as exc:
                await self._reply_error(exc)

    def _send_nowait(self, session: Session, owner: trio.CancelScope) -> bool:
        """Send what is ready (controls, then events) while the socket takes it at once, so a
        frame's events leave without a task switch; False when something is left for the send
        loop."""
        if not session.attached(owner):
            return False  # a resume took the session: its new connection's loop sends
        ws = self.ws
        while (control := session.next_control()) is not None:
            if not ws.send_nowait(control):
                return False
            session.control_sent()
        texts, last_seq, through = session.take_unsent(BATCH_EVENTS)
        if texts:
            if not ws.send_nowait(encode_analysis(through, texts)):
                return False
            session.mark_sent(last_seq, len(texts), through, time.perf_counter())
        return not session.has_unsent() and not session.finished.is_set()

    async def _send_loop(
        self, session: Session, owner: trio.CancelScope, loops: trio.CancelScope
    ) -> None:
        """Control messages first, then events, then the session's own output (playback PCM);
        after each send, stop if a resume took the session over meanwhile (the new connection
        replays from the client's last seq instead)."""
        ws = self.ws
        while True:
            session.forget_wakes()
            await ws.flush()
            if session.handed_off:
                await ws.aclose(CloseCode.HANDED_OFF, "server restarting: resume the session")
                loops.cancel()
                return
            while (control := session.next_control()) is not None:
                await ws.send_message(control)
                if not session.attached(owner):
                    return
                session.control_sent()
            texts, last_seq, through = session.take_unsent(BATCH_EVENTS)
            if texts:
                await ws.send_message(encode_analysis(through, texts))
                if not session.attached(owner):
                    return
                session.mark_sent(last_seq, len(texts), through, time.perf_counter())
                continue
            output = session.next_output()
            if output is not None:
                await ws.send_message(output)
                if not session.attached(owner):
                    return
                continue
            if session.finished.is_set() and session.all_sent():
                await self._deliver_summary(session)
                loops.cancel()
                return
            await session.wait_changed()

    async def _deliver_summary(self, session: Session) -> None:
        await self.ws.send_message(session.summary_message())
        session.summary_sent()
        self.server.forget(session)
        code = CloseCode.GOING_AWAY if self.server.shutting_down else CloseCode.NORMAL
        await self.ws.aclose(code, "session complete")
