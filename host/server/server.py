"""`legato serve`: every pipeline of a config, served as sessions over WebSocket.

Ownership: the server's root nursery owns the listener, the recorder's flusher, the fingerprint
cache and every session's task (a session outlives its connection so it can be resumed); the
handler nursery owns one task per connection (``Connection``), which runs that connection's
loops and history queries in its own nursery. Every handler is wrapped, so nothing
a client does can raise into the listener.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import time
import uuid
from functools import partial

import trio

from .. import __version__
from ..config.pipelines import Config
from ..config.settings import ServerSettings
from ..errors import raise_single
from ..library.fingerprints import FingerprintCache
from ..library.tracks import Library
from ..protocol.messages import (
    PROTOCOL_VERSION,
    CloseCode,
    ErrorCode,
    Resume,
    ServerShutdown,
    encode,
    warm_up,
)
from ..records.journal import Journal, journal_folder, recover_orphans
from ..records.leases import LeaseKeeper
from ..records.recorder import Recorder, RecorderSettings
from ..storage import Storage
from . import handoff, tls
from .addresses import AddressCounts
from .auth import Authenticator, Identity
from .connection import Connection
from .handoff import WorkerLink
from .history import HistoryQueries
from .page import HEAD_TIMEOUT_S, open_connection
from .session import Session, error_message
from .takeover import restore_session
from .websocket import ConnectionClosed, WebSocket

log = logging.getLogger("legato.server")

HANDOFF_WAIT_S = 5.0
"""Longest a handoff waits for its sessions' checkpoints to be stored."""
LEASE_S = 2.0
"""How often a serving process renews its sessions' leases and looks for expired ones."""


class Server:
    """Serves a config's pipelines; ``run`` until ``shutdown`` is called (or cancelled)."""

    def __init__(
        self,
        config: Config,
        settings: ServerSettings | None = None,
        recorder: Recorder | None = None,
        library: Library | None = None,
        worker: WorkerLink | None = None,
        journal: Journal | None = None,
        auth: Authenticator | None = None,
    ) -> None:
        self.config = config
        self._leasing = trio.CancelScope()
        self._leases: LeaseKeeper | None = None
        self.auth = auth
        """Checks clients' tokens; None: auth is off."""
        self.settings = settings or config.server
        self.recorder = recorder
        self.library = library
        self.fingerprints: FingerprintCache | None = None
        self.history = HistoryQueries(recorder, self.settings.storage_timeout_s)
        self.sessions: dict[str, Session] = {}
        self.shutting_down = False
        self.port: int | None = None
        self._listen_scope: trio.CancelScope | None = None
        self._root: trio.Nursery | None = None
        self._stop = trio.Event()
        self.worker = worker
        """This server's link to its supervisor when it is one of `--workers N`."""
        self.journal = journal
        self.connections = 0
        self._taking_over: set[str] = set()
        self._handoff = False
        self.tls = (
            tls.server_context(self.settings.tls_cert, self.settings.tls_key)
            if self.settings.tls_cert
            else None
        )
        """The TLS context of ``wss://``/``https://``; None: plain connections."""
        self.addresses = AddressCounts(
            self.settings.max_connections_per_address, self.settings.trusted_proxies
        )
        """Open connections per client address (``max_connections_per_address``)."""

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
            if self.recorder is not None:
                root.start_soon(self._keep_leases, self.recorder)
            if self.worker is not None:
                await root.start(self.worker.run)
                root.start_soon(self._stop_when_orphaned, self.worker)
            async with trio.open_nursery() as handlers:
                self.port = await root.start(self._listen, handlers)
                if self.worker is not None:
                    await self.worker.ready(self.port)
                log.info(
                    "legato %s serving %s on %s://%s:%d/ (protocol v%d)",
                    __version__,
                    ", ".join(self.config.pipelines),
                    "ws" if self.tls is None else "wss",
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
        configured address (see page.py); a worker serves the connections its supervisor hands
        it, and listens on a private loopback port for connections relayed by other workers."""
        with trio.CancelScope() as scope:
            self._listen_scope = scope
            if self.worker is None:
                public = await trio.open_tcp_listeners(self.settings.port, host=self.settings.host)
                private: list[trio.SocketListener] = []
            else:
                public = [self.worker.listener]
                private = await trio.open_tcp_listeners(0, host="127.0.0.1")
            async with trio.open_nursery() as nursery:
                for listeners, relayed in ((public, False), (private, True)):
                    if listeners:
                        handler = partial(self._handle, relayed=relayed)
                        serving = partial(trio.serve_listeners, handler, listeners)
                        await nursery.start(partial(serving, handler_nursery=handlers))
                task_status.started((private or public)[0].socket.getsockname()[1])

    def shutdown(self, handoff: bool = False) -> None:
        """Stop accepting; open sessions are told, finish their queued audio, get their
        summaries, and are closed within ``shutdown_timeout_s``. With ``handoff``, migratable
        sessions are checkpointed instead and their clients told to resume elsewhere."""
        self.shutting_down = True
        self._handoff = handoff
        self._stop.set()

    async def _hand_off(self) -> None:
        """Checkpoint every migratable session and, once its checkpoint is stored, let it go
        (its client resumes on another host); those not stored within ``HANDOFF_WAIT_S`` drain
        as usual."""
        pending = [(s, done) for s in self.sessions.values() if (done := s.hand_off()) is not None]
        with trio.move_on_after(HANDOFF_WAIT_S):
            for _, done in pending:
                await done.wait()
        handed = [s for s, done in pending if done.is_set()]
        for session in handed:
            session.handed_over()
        if pending:
            log.info("handed %d of %d session(s) off to the other hosts", len(handed), len(pending))

    async def _keep_leases(self, recorder: Recorder) -> None:
        """Renew this process's leases and close the sessions of dead ones (``LeaseKeeper``)
        until the drain."""
        s = self.settings
        stale = s.resume_grace_s + s.checkpoint_interval_s + 3 * LEASE_S
        keeper = LeaseKeeper(recorder, uuid.uuid4().hex, self._recorded_sessions, LEASE_S, stale)
        self._leases = keeper
        with self._leasing:
            await keeper.run()

    def _recorded_sessions(self) -> list[str]:
        """The sessions this process holds that are recorded (their leases it renews)."""
        return [i for i, s in self.sessions.items() if s.recording.recorder is not None]

    async def _drain(self) -> None:
        self.shutting_down = True
        self._leasing.cancel()
        if self._listen_scope is not None:
            self._listen_scope.cancel()
        timeout = self.settings.shutdown_timeout_s
        with trio.move_on_after(timeout):
            if self._handoff:
                await self._hand_off()
            notice = encode(ServerShutdown(timeout_s=timeout))
            ending = [s for s in self.sessions.values() if not s.handed_off]
            for session in ending:
                session.post(notice)
            for session in ending:
                await session.request_end()
            while any(not s.settled() for s in self.sessions.values()):
                await trio.sleep(0.01)
        if self.sessions:
            log.warning("shutdown timeout: %d session(s) cut short", len(self.sessions))

    # ---- connections and sessions -------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream, relayed: bool = False) -> None:
        """Serve one accepted connection (the page, or a WebSocket; ``relayed``: on a worker's
        private port, from another worker), decrypted first when the server has TLS."""
        try:
            peer = str(stream.socket.getpeername()[0])
        except OSError:  # gone already
            await trio.aclose_forcefully(stream)
            return
        relay_key = None
        if relayed:
            relay_key = self.worker.relay_key if self.worker is not None else None
            if not relay_key:
                await trio.aclose_forcefully(stream)
                return
        async with trio.open_nursery() as bridging:
            if self.tls is not None and not relayed:
                s = self.settings
                plain = await tls.bridge(
                    stream, self.tls, HEAD_TIMEOUT_S, s.close_timeout_s, bridging
                )
                if plain is None:
                    return
                sock = plain
            else:
                sock = socket.socket(fileno=stream.socket.detach())
                sock.setblocking(False)
            await self._serve_socket(sock, peer, relay_key)

    async def _serve_socket(self, sock: socket.socket, peer: str, relay_key: str | None) -> None:
        """Serve a connection's plaintext socket; wrapped, since an exception here would tear
        the whole server down."""
        relayed = relay_key is not None
        ws = await open_connection(sock, self.settings, relay_key, self.new_session_id, self.health)
        if ws is None:
            return
        address = "127.0.0.1" if relayed else self.addresses.address(peer, ws.headers)
        why = None
        if self.connections >= self.settings.max_connections:
            why = f"server is at max_connections ({self.settings.max_connections})"
        elif self.addresses.full(address):
            cap = self.settings.max_connections_per_address
            why = f"{address} has {cap} connections open (max_connections_per_address)"
        if why is not None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send_message(error_message(ErrorCode.TOO_MANY_CONNECTIONS, why, False))
                await ws.aclose(CloseCode.TRY_AGAIN, "too many connections")
            ws.abort()
            return
        self._count_connection(+1)
        self.addresses.opened(address)
        try:
            await self._run_connection(ws)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection handler failed; closing that connection only")
            with contextlib.suppress(ConnectionClosed):
                await ws.aclose(CloseCode.INTERNAL, "internal server error")
        finally:
            ws.abort()
            self._count_connection(-1)
            self.addresses.closed(address)

    async def _run_connection(self, ws: WebSocket) -> None:
        """A connection's protocol, with what its tasks raise unwrapped from trio's exception
        groups (a client that leaves mid-send is a ``ConnectionClosed``, not a fault)."""
        try:
            await Connection(self, ws).run()
        except BaseExceptionGroup as group:
            raise_single(group)

    def _count_connection(self, change: int) -> None:
        self.connections += change
        if self.worker is not None:
            self.worker.report_load(self.connections)

    async def _stop_when_orphaned(self, worker: WorkerLink) -> None:
        """A worker whose supervisor is gone drains and stops."""
        await worker.gone.wait()
        log.warning("the supervisor is gone: draining")
        self.shutdown()

    def health(self) -> tuple[bool, dict[str, object]]:
        """What ``/healthz`` tells a load balancer: whether this server is up (not draining;
        a full one is up, since resumes of its sessions must still reach it), and this
        process's sessions and connections."""
        serving = not self.shutting_down
        return serving, {
            "status": "serving" if serving else "draining",
            "full": self.full(),
            "sessions": len(self.sessions),
            "connections": self.connections,
            "pid": os.getpid(),
        }

    def new_session_id(self) -> str:
        """A fresh session id; a worker's names the worker (``handoff.session_id``)."""
        return handoff.session_id(0 if self.worker is None else self.worker.index)

    def relay_target(self, session_id: str) -> tuple[int, str] | None:
        """The private port of the worker holding ``session_id`` when another worker does, and
        the key a relayed connection proves itself with there."""
        if self.worker is None or (port := self.worker.owner_port(session_id)) is None:
            return None
        return port, self.worker.relay_key

    async def take_over(self, resume: Resume, identity: Identity) -> Session | None:
        """The session of a resume that nothing here holds, continued from its last stored
        checkpoint (its host died; ``takeover``) and kept like a new one; None when it cannot
        be. One takeover of a session at a time."""
        if resume.session_id in self._taking_over:
            return None
        self._taking_over.add(resume.session_id)
        try:
            session = await restore_session(
                resume, identity, self.config, self.settings, self.recorder
            )
        finally:
            self._taking_over.discard(resume.session_id)
        if session is None or self.shutting_down:
            return None
        if (held := self.sessions.get(session.id)) is not None:
            return held  # resumed here meanwhile
        self.add(session)
        return session

    def full(self) -> bool:
        return len(self.sessions) >= self.settings.max_sessions

    def sessions_of(self, user: str) -> int:
        """Sessions ``user`` holds here (live, playback or awaiting resume)."""
        return sum(1 for s in self.sessions.values() if s.start.user == user)

    def add(self, session: Session) -> None:
        """Keep a new session (resumable by id) and start its task in the root nursery."""
        self.sessions[session.id] = session
        if self.journal is not None and session.recording.recorder is not None:
            self.journal.started(session.recording.row("active", 0))
        if self._leases is not None and session.recording.recorder is not None:
            self._leases.wake()
        assert self._root is not None
        self._root.start_soon(self._analyse, session)

    def forget(self, session: Session) -> None:
        self.sessions.pop(session.id, None)

    def detached(self, session: Session, detached_at: float) -> None:
        """The session lost its connection: it waits ``resume_grace_s`` for a resume."""
        log.info(
            "session %s detached; resumable for %.0f s", session.id, self.settings.resume_grace_s
        )
        assert self._root is not None
        self._root.start_soon(self._grace, session, detached_at)

    async def _grace(self, session: Session, detached_at: float) -> None:
        await trio.sleep(self.settings.resume_grace_s)
        if await session.abandon_if(detached_at):
            self.forget(session)

    async def _analyse(self, session: Session) -> None:
        await session.analyse()
        if self.journal is not None:
            self.journal.ended(session.id)
        s = session.summary or {}
        log.info(
            "session %s %s: %.1f s of audio, %d events, %d frames dropped",
            session.id,
            session.state.value,
            s.get("duration_s", 0.0),
            session.counters.events_produced,
            session.counters.frames_dropped,
        )


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
    worker: WorkerLink | None = None,
    auth: Authenticator | None = None,
) -> None:
    """Run a server until SIGINT/SIGTERM, then drain it (a second signal stops at once).
    With ``storage``, sessions are recorded in it (and fingerprints looked up there); with
    ``library``, playback pipelines serve its tracks. As one of `--workers N`, ``worker`` links
    it to its supervisor. With ``auth``, clients present tokens. Sessions that a killed
    process left open in the same storage are recorded ``abandoned`` first, and this one's
    are journaled (``records.journal``)."""
    settings = settings or config.server
    recorder = None if storage is None else await open_recorder(storage, settings)
    journal = None
    if recorder is not None:
        folder = journal_folder(recorder.settings.spool_dir, recorder.storage.url)
        fresh = settings.resume_grace_s + settings.checkpoint_interval_s
        await recover_orphans(folder, recorder, time.time(), fresh_s=fresh)
        journal = Journal(folder)
    server = Server(config, settings, recorder, library, worker, journal, auth)
    warm_up()
    gc.freeze()  # what startup built lives as long as the process: no collection need scan it
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, server, nursery.cancel_scope)
            await server.run()
            nursery.cancel_scope.cancel()
    finally:
        if journal is not None:
            journal.close()


async def _watch_signals(server: Server, everything: trio.CancelScope) -> None:
    """SIGINT drains; SIGTERM drains too, or hands sessions off with ``[server] handoff``; a
    second signal stops at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if server.shutting_down:
                log.warning("second %s: stopping now", name)
                everything.cancel()
                return
            handoff = signum == signal.SIGTERM and server.settings.handoff
            log.info("%s: %s sessions", name, "handing off" if handoff else "draining")
            server.shutdown(handoff)
