"""`legato serve --workers N`: one supervisor process holds the listening port and hands each
accepted connection to the least-loaded of N worker processes, each a whole `legato serve`
(sessions, storage, page) without a port of its own.

- **Hand-over.** The supervisor accepts, picks the worker holding the fewest connections (ties:
  the lowest index) and passes the socket's descriptor over the worker's channel (SCM_RIGHTS,
  ``handoff``); the worker serves it as if it had accepted it. The supervisor reads nothing of
  the connection, so the page, the protocol and TLS-free WebSockets all work unchanged.
- **Resume.** A session id names the worker that holds it. A ``resume`` that reaches another
  worker is relayed by it to the owner's private port (``Connection``), so a client needs no
  knowledge of workers: the same URL works.
- **Death.** A worker that exits unexpectedly is reported and started again under the same
  index. Connections it held are closed by the kernel; their clients' resumes reach the new
  one, which continues each checkpointed session from its checkpoint (``takeover``); the rest
  fail (the sessions are gone), and the dead one's journal has them recorded ``abandoned``
  (``records.journal``).
- **Drain.** SIGINT/SIGTERM stops accepting and passes the same signal on: every worker drains its
  sessions as a single server does; a second signal kills them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Sequence

import attrs
import trio

from ..config.settings import ServerSettings
from ..errors import LegatoError, raise_single
from . import handoff

log = logging.getLogger("legato.server")

READY_TIMEOUT_S = 60.0
"""Longest wait for a worker to import, open storage and report ready."""
HAND_OVER_WAIT_S = 10.0
"""Longest a new connection waits for a worker to become ready (all restarting)."""


def usable_cores() -> int:
    """The cores this process may run on (its affinity, which a container or taskset narrows),
    the default number of workers."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@attrs.define(eq=False)
class Worker:
    """One worker slot: its current process and channel, the connections it reported holding,
    its private port, and whether it is ready to take connections."""

    index: int
    process: trio.Process | None = None
    channel: socket.socket | None = None
    load: int = 0
    port: int | None = None
    ready: trio.Event = attrs.field(factory=trio.Event)


class Supervisor:
    """``run`` until SIGINT/SIGTERM: N workers started from ``worker_argv`` (the `legato serve`
    command line of a worker, completed per worker with its channel, index and run folder)."""

    def __init__(self, settings: ServerSettings, workers: int, worker_argv: Sequence[str]):
        self.settings = settings
        self.workers = [Worker(i) for i in range(workers)]
        self.worker_argv = list(worker_argv)
        self.stopping = False
        self.stop_signal: int = signal.SIGTERM
        """The signal the workers are passed when stopping (the one the supervisor got)."""
        self.port: int | None = None
        self.relay_key = secrets.token_hex(16)
        """Proves a relayed connection on a worker's private port comes from a worker."""

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.settings.port, host=self.settings.host)
        self.port = listeners[0].socket.getsockname()[1]  # bound first: a taken port fails fast
        async with trio.open_nursery() as nursery:
            for worker in self.workers:
                nursery.start_soon(self._keep, worker)
            with trio.fail_after(READY_TIMEOUT_S):
                for worker in self.workers:
                    await worker.ready.wait()
            log.info(
                "legato serving on %s://%s:%d/ with %d workers",
                "wss" if self.settings.tls_cert else "ws",
                self.settings.host,
                self.port,
                len(self.workers),
            )
            task_status.started(self.port)
            async with trio.open_nursery() as accepting:
                accepting.start_soon(self._stop_on_signal, accepting.cancel_scope)
                for listener in listeners:
                    accepting.start_soon(self._accept, listener)
            for listener in listeners:
                await listener.aclose()
            await self._drain()
            nursery.cancel_scope.cancel()
        log.info("legato stopped")

    # ---- connections --------------------------------------------------------------------

    async def _accept(self, listener: trio.SocketListener) -> None:
        while True:
            stream = await listener.accept()
            try:
                await self._hand_over(stream)
            finally:
                await stream.aclose()  # our copy; the worker holds its own

    async def _hand_over(self, stream: trio.SocketStream) -> None:
        """Pass the connection to the least-loaded ready worker; while none is ready (all of
        them restarting) wait up to ``HAND_OVER_WAIT_S``; a worker that fails to take it (it
        just died) is skipped for the next."""
        with trio.move_on_after(HAND_OVER_WAIT_S):
            while True:
                ready = [w for w in self.workers if w.channel is not None and w.ready.is_set()]
                if not ready:
                    await trio.sleep(0.05)
                    continue
                worker = min(ready, key=lambda w: (w.load, w.index))
                try:
                    assert worker.channel is not None
                    await handoff.send(worker.channel, b"conn", stream.socket.fileno())
                except OSError:
                    worker.ready = trio.Event()  # gone: its restart sets ready again
                    continue
                worker.load += 1  # until the worker reports its own count
                return
        log.warning("no worker ready for %g s: a connection was closed", HAND_OVER_WAIT_S)

    # ---- workers ------------------------------------------------------------------------

    async def _keep(self, worker: Worker) -> None:
        """Run one worker for as long as the supervisor runs, starting it again if it dies."""
        while not self.stopping:
            ours, theirs = handoff.channel_pair()
            argv = [
                *self.worker_argv,
                "--worker-channel",
                str(theirs.fileno()),
                "--worker-index",
                str(worker.index),
            ]
            worker.process = await trio.lowlevel.open_process(
                argv, pass_fds=(theirs.fileno(),), start_new_session=True
            )  # its own session: a Ctrl-C reaches the supervisor, which passes it on once
            theirs.close()
            worker.channel, worker.load, worker.port = ours, 0, None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen_to, worker)
                status = await worker.process.wait()
                nursery.cancel_scope.cancel()
            ours.close()
            worker.channel = None
            if self.stopping:
                return
            if not worker.ready.is_set():
                raise LegatoError(
                    f"worker {worker.index} exited with status {status} before it was ready"
                    " (its log above says why)"
                )
            log.error(
                "worker %d (pid %d) exited with status %s; starting it again",
                worker.index,
                worker.process.pid,
                status,
            )
            worker.ready = trio.Event()

    async def _listen_to(self, worker: Worker) -> None:
        assert worker.channel is not None
        while True:
            message, fds = await handoff.receive(worker.channel)
            for fd in fds:
                os.close(fd)
            if not message:
                return
            kind, _, value = message.decode().partition(" ")
            if kind == "ready":
                worker.port = int(value)
                worker.ready.set()
                await self._share_ports()
            elif kind == "load":
                worker.load = int(value)

    async def _share_ports(self) -> None:
        ports = {w.index: w.port for w in self.workers if w.port is not None}
        message = b"ports " + json.dumps({"ports": ports, "relay_key": self.relay_key}).encode()
        for worker in self.workers:
            if worker.channel is not None:
                with contextlib.suppress(OSError):  # a worker on its way out
                    await handoff.send(worker.channel, message)

    # ---- stopping -----------------------------------------------------------------------

    async def _stop_on_signal(self, accepting: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("%s: draining the workers", signal.Signals(signum).name)
                self.stopping = True
                self.stop_signal = signum
                accepting.cancel()
                return

    async def _drain(self) -> None:
        """Pass the signal on (SIGTERM hands sessions off where configured, SIGINT drains
        them) and wait for every worker (a second signal kills them)."""
        self.stopping = True
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.send_signal(self.stop_signal)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._kill_on, signals)
                for worker in self.workers:
                    if worker.process is not None:
                        await worker.process.wait()
                nursery.cancel_scope.cancel()

    async def _kill_on(self, signals: trio.abc.ReceiveChannel[int]) -> None:
        async for _ in signals:
            log.warning("second signal: stopping the workers now")
            for worker in self.workers:
                if worker.process is not None and worker.process.returncode is None:
                    worker.process.kill()


def supervise(settings: ServerSettings, workers: int, worker_argv: Sequence[str]) -> None:
    """Run `legato serve` as a supervisor of ``workers`` worker processes until a signal."""
    supervisor = Supervisor(settings, workers, [sys.executable, *worker_argv])
    try:
        trio.run(supervisor.run)
    except BaseExceptionGroup as group:
        raise_single(group)
    except trio.TooSlowError:
        raise LegatoError(f"the workers were not ready within {READY_TIMEOUT_S:g} s") from None
