"""The channel between the supervisor of `legato serve --workers N` and one worker: a Unix
``SOCK_SEQPACKET`` socket pair, so every message arrives whole. The supervisor hands each
accepted connection over as its file descriptor (SCM_RIGHTS) and tells every worker where the
others listen; a worker says when it is ready and how many connections it holds.

Messages: supervisor → worker ``conn`` (with one descriptor) and ``ports {"ports": {index:
port}, "relay_key": KEY}`` (the key relayed connections carry to a private port);
worker → supervisor ``ready PORT`` and ``load N``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import uuid

import trio

log = logging.getLogger("legato.server")

MESSAGE_BYTES = 65536


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(supervisor end, worker end); the worker's is inheritable for its process."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.set_inheritable(True)
    ours.setblocking(False)
    return ours, theirs


async def send(channel: socket.socket, message: bytes, fd: int | None = None) -> None:
    """One message (and a descriptor, duplicated into the receiver) without blocking trio."""
    while True:
        try:
            if fd is None:
                channel.send(message)
            else:
                socket.send_fds(channel, [message], [fd])
            return
        except BlockingIOError:
            await trio.lowlevel.wait_writable(channel)


async def receive(channel: socket.socket) -> tuple[bytes, list[int]]:
    """The next message and the descriptors that came with it; ``b""`` when the other end is
    gone."""
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, MESSAGE_BYTES, 4)
            return message, fds
        except BlockingIOError:
            await trio.lowlevel.wait_readable(channel)


def session_id(worker: int) -> str:
    """A random session id (a UUID, as clients know them) whose last byte names its worker,
    so any worker can tell where a ``resume`` belongs."""
    return str(uuid.UUID(int=(uuid.uuid4().int & ~0xFF) | worker))


def worker_of(session: str) -> int | None:
    try:
        return uuid.UUID(session).int & 0xFF
    except ValueError:
        return None


class HandedListener(trio.abc.Listener[trio.SocketStream]):
    """The connections the supervisor hands this worker, as a trio listener."""

    def __init__(self, connections: trio.MemoryReceiveChannel[trio.SocketStream]) -> None:
        self._connections = connections

    async def accept(self) -> trio.SocketStream:
        return await self._connections.receive()

    async def aclose(self) -> None:
        await self._connections.aclose()


class WorkerLink:
    """A worker's end of the channel: ``run`` turns handed descriptors into streams for the
    ``listener`` and keeps the map of the other workers' ports; ``report`` sends lines back."""

    def __init__(self, channel: socket.socket, index: int) -> None:
        channel.setblocking(False)
        self.channel = channel
        self.index = index
        self.ports: dict[int, int] = {}
        self.relay_key = ""
        self._send, receive_end = trio.open_memory_channel[trio.SocketStream](64)
        self.listener = HandedListener(receive_end)
        self.gone = trio.Event()
        """Set when the supervisor's end closed: the worker should drain and stop."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            message, fds = await receive(self.channel)
            if not message:
                self.gone.set()
                return
            if message == b"conn" and fds:
                for fd in fds:  # the socket takes the descriptor over (family read from it)
                    sock = trio.socket.from_stdlib_socket(socket.socket(fileno=fd))
                    try:
                        self._send.send_nowait(trio.SocketStream(sock))
                    except trio.WouldBlock:
                        sock.close()  # the server is not accepting: the client retries
            elif message.startswith(b"ports "):
                shared = json.loads(message[6:])
                self.ports = {int(k): v for k, v in shared["ports"].items()}
                self.relay_key = shared["relay_key"]
            else:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        socket.close(fd)

    async def ready(self, port: int) -> None:
        await send(self.channel, f"ready {port}".encode())

    def report_load(self, connections: int) -> None:
        """Tell the supervisor how many connections this worker holds (best effort: a full
        channel skips a report, the next one corrects it)."""
        with contextlib.suppress(OSError):
            self.channel.send(f"load {connections}".encode())

    def owner_port(self, session: str) -> int | None:
        """The private port of the worker that holds ``session``, if it is another one."""
        owner = worker_of(session)
        if owner is None or owner == self.index:
            return None
        return self.ports.get(owner)
