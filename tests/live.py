"""What the tests of live sessions share: a test phrase, the client side of the protocol over a
real WebSocket connection, `legato serve` as a subprocess, a TCP proxy that cuts connections,
the offline run live events must equal, and waiting on processes and ports."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from legato.config.pipelines import load_config
from legato.engine.runner import run_file
from legato.stage import Event
from legato.testing import registry

RATE = 44100


def phrase(seconds: float = 2.0, f0: float = 220.0, seed: int = 0) -> np.ndarray:
    """Plucked harmonic notes every 0.4 s, mono float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    out = np.zeros_like(t)
    for k, start in enumerate(np.arange(0.1, seconds - 0.2, 0.4)):
        tau = t[t >= start] - start
        f = f0 * 2 ** (k % 5 / 12)
        note = sum(np.sin(2 * np.pi * f * h * tau) / h for h in range(1, 5))
        out[t >= start] += 0.3 * note * np.exp(-4 * tau)
    return (out + 1e-4 * rng.standard_normal(t.size)).astype(np.float32)


async def receive(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(10):
        return json.loads(await ws.get_message())


async def history(ws: WebSocketConnection, **request: Any) -> dict[str, Any]:
    """Send a ``history`` request; its answer (a ``history`` or an ``error`` message)."""
    await ws.send_message(json.dumps({"type": "history"} | request))
    while True:
        message = await receive(ws)
        if message["type"] in ("history", "error"):
            return message


async def drain(
    ws: WebSocketConnection, timeout_s: float = 20.0
) -> tuple[list[Event], list[dict], dict | None]:
    """Read until the server closes: events (with seq), other messages, the summary."""
    events: list[Event] = []
    others: list[dict] = []
    summary = None
    with trio.fail_after(timeout_s):
        while True:
            try:
                message = json.loads(await ws.get_message())
            except ConnectionClosed:
                return events, others, summary
            if message["type"] == "analysis":
                events.extend(message["events"])
            elif message["type"] == "summary":
                summary = message
            else:
                others.append(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def legato_serve(
    home: Path, *args: str, port: int | None = None, pids: list[int] | None = None
) -> Iterator[int]:
    """`legato serve` run as an operator runs it: a subprocess in ``home`` (stderr in
    ``home/serve.log``) listening on ``port`` (default: a free one, given as ``--port``); yields
    the port once it accepts connections, and stops the server (SIGTERM) afterwards. Its
    process id is appended to ``pids`` when given."""
    command = [sys.executable, "-m", "legato.cli", "serve", *args]
    if port is None:
        port = free_port()
        command += ["--port", str(port)]
    log_path = home / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stderr=log, cwd=home)
    if pids is not None:
        pids.append(proc.pid)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "legato serve did not start listening"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=15)


class Proxy:
    """A TCP relay between client and server whose connections can be cut (with RST, so data
    in flight is lost) and which can refuse new connections."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.accepting = True
        self.swallow_up = False  # discard client -> server bytes (until the next cut)
        self.swallow_down = False  # discard server -> client bytes
        self.connections = 0
        self._live: list[trio.CancelScope] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._relay, listeners)

    def cut(self) -> None:
        for scope in self._live:
            scope.cancel()
        self._live.clear()
        self.swallow_up = self.swallow_down = False

    async def _relay(self, client: trio.SocketStream) -> None:
        if not self.accepting:
            _reset(client)
            return
        self.connections += 1
        upstream = await trio.open_tcp_stream("127.0.0.1", self.target)
        with trio.CancelScope() as scope:
            self._live.append(scope)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pipe, client, upstream, "swallow_up", scope)
                nursery.start_soon(self._pipe, upstream, client, "swallow_down", scope)
        _reset(client)
        _reset(upstream)

    async def _pipe(
        self, src: trio.SocketStream, dst: trio.SocketStream, swallow: str, scope: trio.CancelScope
    ) -> None:
        try:
            async for chunk in src:
                if not getattr(self, swallow):
                    await dst.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()


def _reset(stream: trio.SocketStream) -> None:
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def feed_with_cuts(
    session: Any, blocks: list[np.ndarray], cuts: set[int], proxy: Proxy
) -> list[Event]:
    """Send ``blocks`` through a client session, cutting the proxy before each block whose
    index is in ``cuts``, then end it; every event the session delivers, in order."""
    seen: list[Event] = []

    async def feed() -> None:
        for i, data in enumerate(blocks):
            if i in cuts:
                proxy.cut()
            await session.send(data)
            await trio.sleep(0.002)  # let analysis and events flow between cuts
        await session.end()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        async for event in session.events():
            seen.append(event)
    return seen


def offline(path: Path, block: int = 4096) -> list[dict[str, Any]]:
    """The events `legato run` gives, in the order blocks of ``block`` frames give them."""
    events: list[dict[str, Any]] = []
    run_file(load_config(None, registry()).pipeline("analyze"), path, events.append, block)
    return json.loads(json.dumps(events))


def without_seq(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "seq"} for e in events]


def alive(pid: int) -> bool:
    """Running (a process that exited but was not waited for yet is a zombie: not alive)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
