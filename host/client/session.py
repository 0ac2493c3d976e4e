"""The Python client for `legato serve` (protocol v1): send audio, receive the session's events in
order, and ride out dropped connections by resuming the session.

``connect`` is the trio API; ``BlockingSession`` wraps it for scripts and notebooks; ``stream_file``
is what `legato stream` runs.

Resume: audio is kept after it is sent until the server reports it analysed (``through`` in
``analysis``) or received (``samples_received`` in ``resumed``), so after a reconnect the client
re-sends exactly what the server lacks. A migratable session (``started.migratable``) keeps
audio until a ``checkpoint`` covers it instead, so that if its host dies, the host that
continues it from that checkpoint gets the audio after it. At most ``resend_buffer_s``
(default 30 s) of audio is kept: beyond that the oldest written audio is forgotten while
connected (a later resume that needs it fails with ``resume_failed``), and ``send`` waits for
the reconnect while disconnected.
Events are de-duplicated by ``seq``, so the caller sees each exactly once.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import trio
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from ..engine import pcm
from ..engine.files import BLOCK_FRAMES, AudioFile
from ..engine.pcm import to_s16le as to_s16le  # public as legato.client.to_s16le
from ..errors import LegatoError, raise_single
from ..protocol.messages import (
    PROTOCOL_VERSION,
    SAMPLE_FORMATS,
    SESSION_QUERY,
    CloseCode,
    End,
    ErrorCode,
    Ping,
    Resume,
    Start,
    StatsRequest,
    encode,
)
from .tls_probe import tls_problem

log = logging.getLogger("legato.client")

Message = dict[str, Any]

RESEND_BUFFER_S = 30.0
"""Seconds of sent audio kept for re-sending after a reconnect (see the module docstring)."""

HANDSHAKE_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 2.0
FIRST_BACKOFF_S = 0.1
RECEIVE_LIMIT_BYTES = 64 << 20
"""Largest server message accepted; summaries and replayed backlogs can be large."""

CONNECTION_FAILED = "connection_failed"
CONNECTION_LOST = "connection_lost"
PROTOCOL_MISMATCH = "protocol_mismatch"

FATAL_CLOSES = (CloseCode.GOING_AWAY, CloseCode.POLICY, CloseCode.TOO_BIG, CloseCode.RESUME_FAILED)
"""Close codes after which resuming cannot help."""

INCOMPLETE = (
    ErrorCode.RATE_LIMITED,
    ErrorCode.OVERLOADED,
    ErrorCode.EVENTS_DROPPED,
    ErrorCode.STAGE_FAILED,
)
"""Non-fatal error codes that mean the session's events are not the whole analysis."""


class ClientError(LegatoError):
    """A session could not start or go on. ``code`` is the server's error code, or one of the
    client's own: ``connection_failed``, ``connection_lost``, ``protocol_mismatch``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


class _Retry(Exception):
    """A reconnect attempt failed in a way the next attempt may not."""


class Session:
    """A live session, from ``connect``. Typically one task calls ``send`` and ``end`` while
    another iterates ``events()``."""

    def __init__(
        self,
        url: str,
        start: Start,
        *,
        reconnect: bool,
        max_backoff_s: float,
        resend_buffer_s: float,
        token: str | None = None,
    ) -> None:
        self.url = url
        self._headers = auth_headers(token)
        self.hello: Message = {}
        self.started: Message = {}
        self.summary: Message | None = None
        self.errors: list[Message] = []
        self.resumes: list[Message] = []
        self.session_id = ""
        if start.sample_rate is None or start.channels is None:
            raise ValueError("a live session's start needs sample_rate and channels")
        self._start = start
        self._channels: int = start.channels
        self._format: str = start.format
        self._frame_bytes = SAMPLE_FORMATS[self._format] * self._channels
        self._reconnect = reconnect
        self._max_backoff_s = max_backoff_s
        self._resend_limit = int(resend_buffer_s * start.sample_rate)
        self._token = ""
        self._events: deque[Message] = deque()
        self._last_seq = 0
        self._held: deque[tuple[int, bytes]] = deque()  # (first sample, payload), contiguous
        self._held_frames = 0
        self._total = 0  # samples handed to send()
        self._wire = 0  # samples written on the current connection
        self._ws: WebSocketConnection | None = None
        self._write_lock = trio.Lock()
        self._stats_lock = trio.Lock()
        self._stats_pending = False
        self._stats_reply: Message | None = None
        self._changed = trio.Event()
        self._end_requested = False
        self._end_sent_on: WebSocketConnection | None = None
        self._closing = False
        self._fatal: Message | None = None
        self._failure: ClientError | None = None
        self._last_write = 0.0
        self._tokens = 0.0
        self._tokens_at = 0.0
        self._audio_budget = 0.0

    # ---- the caller's side --------------------------------------------------------------

    async def send(self, block: np.ndarray) -> None:
        """Send audio shaped (n,) or (n, channels), as one message (split only if it exceeds
        the server's max_message_bytes). Waits for the socket, never for analysis."""
        if self._failure is not None:
            raise self._failure
        if self._end_requested:
            raise ClientError(ErrorCode.SESSION_ENDED, "audio after end()")
        if self.summary is not None:
            raise ClientError(ErrorCode.SESSION_ENDED, "the server ended the session")
        for payload in self._encode(block):
            self._held.append((self._total, payload))
            self._total += len(payload) // self._frame_bytes
            self._held_frames += len(payload) // self._frame_bytes
        await self._wait(lambda: self._ws is not None or self._held_frames <= self._resend_limit)
        await self._write_pending()
        while (
            self._ws is not None
            and self._held_frames > self._resend_limit
            and self._held[0][0] + len(self._held[0][1]) // self._frame_bytes <= self._wire
        ):
            self._forget_oldest()

    def events(self) -> AsyncIterator[Message]:
        """Every event (with its ``seq``) in order, each once; ends after the summary."""
        return _Events(self)

    async def end(self) -> Message:
        """No more audio: send ``end`` and return the summary once the server has sent it."""
        if self.summary is None and not self._end_requested:
            self._end_requested = True
            await self._write_pending()
        await self._wait(lambda: self.summary is not None)
        assert self.summary is not None
        return self.summary

    async def stats(self) -> Message:
        """The server's ``stats`` message for this session (from the summary once ended)."""
        async with self._stats_lock:
            self._stats_reply = None
            self._stats_pending = self.summary is None
            try:
                ws = self._ws
                if ws is not None and self._stats_pending:
                    with suppress(ConnectionClosed):
                        await self._write(ws, encode(StatsRequest()))
                await self._wait(lambda: self._stats_reply is not None or self.summary is not None)
            finally:
                self._stats_pending = False
            if self._stats_reply is not None:
                return self._stats_reply
            assert self.summary is not None
            return {"type": "stats", **self.summary["stats"]}

    async def next_event(self) -> Message | None:
        """The next event, or None after the last one."""
        while True:
            changed = self._changed
            if self._events:
                return self._events.popleft()
            if self.summary is not None:
                return None
            if self._failure is not None:
                raise self._failure
            await changed.wait()

    # ---- audio --------------------------------------------------------------------------

    def _encode(self, block: np.ndarray) -> list[bytes]:
        data = np.asarray(block)
        if data.dtype.kind != "f":
            raise TypeError(f"audio must be a float array, got dtype {data.dtype}")
        if data.ndim == 1 and self._channels == 1:
            data = data[:, None]
        if data.ndim != 2 or data.shape[1] != self._channels:
            raise ValueError(
                f"audio must be shaped (n, {self._channels})"
                + (" or (n,)" if self._channels == 1 else "")
                + f", got {data.shape}"
            )
        raw = pcm.encode(data, self._format)
        limit = int(self.hello["limits"]["max_message_bytes"])
        step = max(1, limit // self._frame_bytes) * self._frame_bytes
        return [raw[i : i + step] for i in range(0, len(raw), step)]

    def _acknowledge(self, samples: int) -> None:
        """The server holds the first ``samples`` samples: stop keeping them."""
        while self._held:
            first, payload = self._held[0]
            if first + len(payload) // self._frame_bytes > samples:
                return
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        _, payload = self._held.popleft()
        self._held_frames -= len(payload) // self._frame_bytes

    def _floor(self) -> int:
        """The first sample still held for re-sending."""
        return self._held[0][0] if self._held else self._total

    def _payload_at(self, sample: int) -> bytes:
        for first, payload in self._held:
            if first + len(payload) // self._frame_bytes > sample:
                return payload[(sample - first) * self._frame_bytes :]
        raise AssertionError(f"sample {sample} is not held")

    async def _write_pending(self) -> None:
        """Write what the current connection has not carried yet (if connected)."""
        async with self._write_lock:
            ws = self._ws
            if ws is None:
                return
            with suppress(ConnectionClosed):  # the resumed connection writes it
                while self._wire < self._total:
                    payload = self._payload_at(self._wire)
                    await self._pace(len(payload) // self._frame_bytes)
                    await self._write(ws, payload)
                    self._wire += len(payload) // self._frame_bytes
                if self._end_requested and self._end_sent_on is not ws:
                    await self._write(ws, encode(End()))
                    self._end_sent_on = ws

    async def _write(self, ws: WebSocketConnection, message: str | bytes) -> None:
        await ws.send_message(message)
        self._last_write = trio.current_time()

    async def _pace(self, frames: int) -> None:
        """Stay under the server's max_frames_per_second and max_realtime_factor: token
        buckets like the server's but holding half as much, so messages bunched by up to half
        a second of network jitter still find room there."""
        limits = self.hello["limits"]
        rate = float(limits["max_frames_per_second"])
        factor = limits.get("max_realtime_factor")  # servers before it had none
        audio = float(factor) * float(self._start.sample_rate or 0) if factor else 0.0
        now = trio.current_time()
        elapsed, self._tokens_at = now - self._tokens_at, now
        self._tokens = min(max(1.0, rate / 2), self._tokens + elapsed * rate)
        wait = (1.0 - self._tokens) / rate if self._tokens < 1.0 else 0.0
        if audio:
            self._audio_budget = min(max(frames, audio), self._audio_budget + elapsed * audio)
            if self._audio_budget < frames:
                wait = max(wait, (frames - self._audio_budget) / audio)
        if wait > 0:
            await trio.sleep(wait)
            later = trio.current_time()
            self._tokens = min(1.0, self._tokens + (later - now) * rate)
            if audio:
                self._audio_budget = min(frames, self._audio_budget + (later - now) * audio)
            self._tokens_at = later
        self._tokens -= 1.0
        self._audio_budget -= frames if audio else 0

    # ---- connections --------------------------------------------------------------------

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own every connection of the session: the first, then each resume after a drop."""
        try:
            why, _ = await self._attempt(task_status)
            dropped_at: float | None = None
            delay = FIRST_BACKOFF_S
            while why is not None:
                if not self._reconnect:
                    raise ClientError(CONNECTION_LOST, f"connection lost: {why}")
                now = trio.current_time()
                if dropped_at is None:
                    dropped_at = now
                    log.warning("session %s: connection lost (%s); resuming", self.session_id, why)
                grace = float(self.hello["limits"]["resume_grace_s"])
                if now - dropped_at >= grace:
                    raise ClientError(
                        CONNECTION_LOST,
                        f"connection lost ({why}) and not resumed within {grace:g} s",
                    )
                await trio.sleep(min(delay, dropped_at + grace - now))
                delay = min(2 * delay, self._max_backoff_s)
                why, attached = await self._attempt(None, dropped_at + grace)
                if attached:
                    dropped_at, delay = None, FIRST_BACKOFF_S
        except ClientError as exc:
            self._failure = exc
            self._notify()
            raise

    async def _attempt(
        self, task_status: trio.TaskStatus[None] | None, give_up_at: float = float("inf")
    ) -> tuple[str | None, bool]:
        """One connection (the first when ``task_status`` is given): handshake, then serve it
        until it ends. Returns why it dropped (None: the session is over or being closed) and
        whether the handshake succeeded."""
        attached = False
        timeout = max(0.01, min(HANDSHAKE_TIMEOUT_S, give_up_at - trio.current_time()))
        try:
            async with open_websocket_url(
                self.url if task_status is not None else resume_url(self.url, self.session_id),
                extra_headers=self._headers,
                message_queue_size=64,
                max_message_size=RECEIVE_LIMIT_BYTES,
                connect_timeout=timeout,
                disconnect_timeout=CLOSE_TIMEOUT_S,
            ) as ws:
                with trio.fail_after(timeout):
                    await (self._begin(ws) if task_status is not None else self._resume(ws))
                attached = True
                if task_status is not None:
                    task_status.started()
                else:
                    log.warning("session %s: resumed", self.session_id)
                reason = await self._serve(ws)
        except (HandshakeError, ConnectionClosed, OSError, trio.TooSlowError, _Retry) as exc:
            if self.summary is not None or self._closing:
                return None, True
            if task_status is not None and not attached:
                why = await tls_problem(self.url) or _describe(exc)
                raise ClientError(
                    CONNECTION_FAILED, f"cannot connect to {self.url}: {why}"
                ) from None
            return _describe(exc), attached
        if self.summary is not None or self._closing:
            return None, True
        code = reason.code if reason else 1006
        if code in FATAL_CLOSES:
            fatal = self._fatal or {"code": CONNECTION_LOST, "message": "server closed the session"}
            raise ClientError(fatal["code"], f"{fatal['message']} (close {code})")
        return f"close {code}" + (f": {reason.reason}" if reason and reason.reason else ""), True

    async def _begin(self, ws: WebSocketConnection) -> None:
        hello = await self._hello(ws, first=True)
        self.hello, self.session_id, self._token = hello, hello["session_id"], hello["resume_token"]
        self._tokens = max(1.0, float(hello["limits"]["max_frames_per_second"]) / 2)
        self._tokens_at = trio.current_time()
        await self._write(ws, encode(self._start))
        reply = await self._receive(ws)
        if reply.get("type") == "error":
            raise ClientError(reply["code"], reply["message"])
        if reply.get("type") != "started":
            raise ClientError(PROTOCOL_MISMATCH, f"expected `started`, got {reply.get('type')!r}")
        self.started = reply

    async def _resume(self, ws: WebSocketConnection) -> None:
        await self._hello(ws, first=False)
        resume = Resume(session_id=self.session_id, token=self._token, last_seq=self._last_seq)
        await self._write(ws, encode(resume))
        reply = await self._receive(ws)
        if reply.get("type") == "error":
            if reply["code"] == ErrorCode.RESUME_FAILED:
                raise ClientError(reply["code"], reply["message"])
            raise _Retry(f"{reply['message']} ({reply['code']})")
        if reply.get("type") != "resumed":
            raise ClientError(PROTOCOL_MISMATCH, f"expected `resumed`, got {reply.get('type')!r}")
        self.resumes.append(reply)
        received = int(reply["samples_received"])
        if received < self._floor():
            raise ClientError(
                ErrorCode.RESUME_FAILED,
                f"the server has audio up to sample {received} but only audio from sample "
                f"{self._floor()} on is still held (resend buffer {self._resend_limit} samples)",
            )
        async with self._write_lock:  # a write still running on the dropped connection ends first
            if not self._migratable:
                self._acknowledge(received)
            self._wire = min(received, self._total)

    async def _hello(self, ws: WebSocketConnection, first: bool) -> Message:
        hello = await self._receive(ws)
        if hello.get("type") == "error":
            if first:
                raise ClientError(hello["code"], hello["message"])
            raise _Retry(f"{hello['message']} ({hello['code']})")
        if hello.get("type") != "hello" or hello.get("protocol") != PROTOCOL_VERSION:
            raise ClientError(
                PROTOCOL_MISMATCH,
                f"server does not speak legato protocol v{PROTOCOL_VERSION}: {str(hello)[:200]}",
            )
        return hello

    async def _receive(self, ws: WebSocketConnection) -> Message:
        message = await ws.get_message()
        try:
            parsed = json.loads(message) if isinstance(message, str) else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ClientError(PROTOCOL_MISMATCH, f"unexpected message from server: {message!r:.80}")
        return parsed

    async def _serve(self, ws: WebSocketConnection) -> CloseReason | None:
        """Read the attached connection until it closes, writing what it still lacks and
        keeping it alive meanwhile."""
        self._ws = ws
        self._notify()
        broken: ClientError | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._catch_up, ws)
                nursery.start_soon(self._keepalive, ws)
                try:
                    reason = await self._read(ws)
                except ClientError as exc:
                    broken, reason = exc, None
                nursery.cancel_scope.cancel()
        finally:
            if self._ws is ws:
                self._ws = None
            self._notify()
        if broken is not None:
            raise broken
        return reason

    async def _catch_up(self, ws: WebSocketConnection) -> None:
        await self._write_pending()
        if self._stats_pending:
            with suppress(ConnectionClosed):
                await self._write(ws, encode(StatsRequest()))

    async def _keepalive(self, ws: WebSocketConnection) -> None:
        """Ping when nothing else was written for a while, so idle_timeout_s never fires."""
        interval = float(self.hello["limits"]["idle_timeout_s"]) / 4
        with suppress(ConnectionClosed):
            while True:
                await trio.sleep_until(self._last_write + interval)
                if trio.current_time() >= self._last_write + interval:
                    await self._write(ws, encode(Ping()))

    async def _read(self, ws: WebSocketConnection) -> CloseReason | None:
        while True:
            try:
                message = await self._receive(ws)
            except ConnectionClosed as exc:
                return exc.reason
            kind = message.get("type")
            if kind == "analysis":
                self._take_analysis(message)
            elif kind == "summary":
                self.summary = message
                self._notify()
                return None
            elif kind == "error":
                self._take_error(message)
            elif kind == "stats":
                if self._stats_pending:
                    self._stats_reply = message
                    self._notify()
            elif kind == "checkpoint":
                if self._migratable:
                    self._acknowledge(int(message["samples"]))
            elif kind == "server_shutdown":
                log.warning("server is shutting down; the session ends with what it has")

    @property
    def _migratable(self) -> bool:
        return bool(self.started.get("migratable"))

    def _take_analysis(self, message: Message) -> None:
        if not self._migratable:
            self._acknowledge(int(message["through"]))
        for event in message["events"]:
            seq = event["seq"]
            if seq <= self._last_seq:
                continue  # replayed after a resume, already held
            if seq != self._last_seq + 1:
                log.warning("events %d to %d never arrived", self._last_seq + 1, seq - 1)
            self._last_seq = seq
            self._events.append(event)
        self._notify()

    def _take_error(self, message: Message) -> None:
        if message.get("continues", True):
            self.errors.append(message)
            log.warning("server: %s (%s)", message.get("message"), message.get("code"))
        else:
            self._fatal = message

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait(self, ready: Callable[[], bool]) -> None:
        while True:
            changed = self._changed
            if ready():
                return
            if self._failure is not None:
                raise self._failure
            await changed.wait()

    async def _close(self) -> None:
        """Leave politely: close the socket (a session not ended stays resumable until the
        server's grace period runs out)."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                await ws.aclose()


class _Events:
    def __init__(self, session: Session) -> None:
        self._session = session

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> Message:
        event = await self._session.next_event()
        if event is None:
            raise StopAsyncIteration
        return event


@asynccontextmanager
async def connect(
    url: str,
    *,
    pipeline: str = "analyze",
    sample_rate: int,
    channels: int = 1,
    format: str = "f32le",
    user: str | None = None,
    piece: str | None = None,
    target_tempo: float | None = None,
    reconnect: bool = True,
    max_backoff_s: float = 5.0,
    resend_buffer_s: float = RESEND_BUFFER_S,
    token: str | None = None,
) -> AsyncIterator[Session]:
    """Open a session on ``pipeline``: connected, started, and (with ``reconnect``) resumed
    after drops; ``token``: the access token a server with auth on requires (sent in the
    upgrade request). Leaving the block closes the connection and every task it started."""
    if not url.startswith(("ws://", "wss://")):
        raise ClientError(CONNECTION_FAILED, f"{url!r} is not a ws:// or wss:// URL")
    if format not in SAMPLE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(SAMPLE_FORMATS)}, got {format!r}")
    try:
        start = Start(
            pipeline=pipeline,
            sample_rate=sample_rate,
            format=format,
            channels=channels,
            user=user,
            piece=piece,
            target_tempo=target_tempo,
        )
    except (ValueError, TypeError) as exc:  # the server's answer, without asking it
        raise ClientError(ErrorCode.BAD_MESSAGE, f"invalid 'start' message: {exc}") from None
    session = Session(
        url,
        start,
        reconnect=reconnect,
        max_backoff_s=max_backoff_s,
        resend_buffer_s=resend_buffer_s,
        token=token,
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(session._run)
            try:
                yield session
            finally:
                await session._close()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise_single(group)


def resume_url(url: str, session_id: str) -> str:
    """``url`` with the session id resumed in its query (``SESSION_QUERY``, replacing any), so
    a load balancer in front of several hosts sends the reconnect to the one holding it."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != SESSION_QUERY]
    query = urlencode([*kept, (SESSION_QUERY, session_id)])
    return urlunsplit(parts._replace(path=parts.path or "/", query=query))


def auth_headers(token: str | None) -> list[tuple[bytes, bytes]]:
    """The upgrade headers that present ``token`` (none without one)."""
    return [] if token is None else [(b"Authorization", f"Bearer {token}".encode())]


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, HandshakeError) and exc.__cause__ else exc
    if isinstance(exc, ConnectionClosed):
        cause = exc.reason
    if isinstance(cause, OSError):
        if isinstance(cause.__cause__, BaseExceptionGroup):  # trio's happy eyeballs
            reasons = {e.strerror for e in cause.__cause__.exceptions if isinstance(e, OSError)}
            if len(reasons) == 1 and None not in reasons:
                return f"{cause}: {reasons.pop()}"
        return cause.strerror or str(cause)
    return str(cause) or type(cause).__name__


# ---- files (`legato stream`) ---------------------------------------------------------------


async def stream_file(
    path: str | Path,
    url: str,
    sink: Callable[[Message], None],
    *,
    realtime: bool = False,
    **options: Any,
) -> Session:
    """Send a file's ``BLOCK_FRAMES`` blocks, one message each (so the server splits the audio
    as `legato run` does and the events come in the same order), hand every event to ``sink``,
    and return the ended session. ``realtime`` paces blocks at the file's own rate."""
    with AudioFile(path) as audio:
        rate, channels = audio.format.sample_rate, audio.format.channels
        async with connect(url, sample_rate=rate, channels=channels, **options) as session:

            async def feed() -> None:
                began, sent = trio.current_time(), 0
                for block in audio.blocks(BLOCK_FRAMES):
                    sent += block.shape[0]
                    if realtime:
                        await trio.sleep_until(began + sent / rate)
                    await session.send(block)
                await session.end()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                async for event in session.events():
                    sink(event)
    return session


# ---- blocking ------------------------------------------------------------------------------


class BlockingSession:
    """``connect`` for code without a trio loop: the session runs in a background thread.
    Takes the same arguments; use as a context manager or call ``close``."""

    def __init__(self, url: str, **options: Any) -> None:
        self._ready = threading.Event()
        self._session: Session | None = None
        self._failure: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(
            target=trio.run, args=(self._main, url, options), name="legato-client", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._session is None:
            self._thread.join()
            assert self._failure is not None
            raise self._failure

    async def _main(self, url: str, options: dict[str, Any]) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        try:
            async with connect(url, **options) as session:
                self._session = session
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:
            self._failure = exc
        finally:
            self._ready.set()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return trio.from_thread.run(fn, *args, trio_token=self._token)
        except (trio.RunFinishedError, trio.Cancelled):
            raise self._failure or ClientError(
                ErrorCode.SESSION_ENDED, "the session is closed"
            ) from None

    @property
    def session(self) -> Session:
        """The underlying session (read its attributes; call its methods through this class)."""
        assert self._session is not None
        return self._session

    def send(self, block: np.ndarray) -> None:
        self._call(self.session.send, block)

    def events(self) -> Iterator[Message]:
        while (event := self._call(self.session.next_event)) is not None:
            yield event

    def end(self) -> Message:
        return self._call(self.session.end)

    def stats(self) -> Message:
        return self._call(self.session.stats)

    def close(self) -> None:
        """Close the connection and stop the background thread."""
        if self._thread.is_alive() and self._stop is not None:
            with suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()

    def __enter__(self) -> BlockingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
