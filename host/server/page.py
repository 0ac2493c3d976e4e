"""The browser page on the server's own port: ``http://HOST:PORT/`` answers a plain HTTP GET
with the page (``legato/server/web/``); WebSocket upgrades on the same port go to the protocol.

Each accepted connection is wrapped in a ``PageStream`` that reads the request head before
trio-websocket sees a byte: a WebSocket upgrade is handed on with the head replayed; anything
else gets the page (or 404/405) and is closed, which the WebSocket layer sees as a connection
that went away before its handshake. The head is read under a timeout and a size limit, in the
connection's own task, so a slow or hostile client holds nothing but its own connection.
"""

from __future__ import annotations

import contextlib
import functools
from importlib import resources

import trio

HEAD_LIMIT = 16 << 10
"""Largest request head read; larger ones get 431."""
HEAD_TIMEOUT_S = 10.0
DRAIN_LIMIT = 1 << 20
"""Most bytes read and dropped after a reply, before closing."""

PAGES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/legato.js": ("legato.js", "text/javascript; charset=utf-8"),
}
"""Paths served and the files of ``legato/web`` behind them."""


@functools.cache
def page(name: str) -> bytes:
    """A file of ``legato/web``, read once per process."""
    return resources.files("legato.server").joinpath("web", name).read_bytes()


def response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-cache\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def answer(head: bytes) -> bytes | None:
    """The HTTP response for a request head that is not a WebSocket upgrade; None for an
    upgrade (the WebSocket layer answers it)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return response("400 Bad Request", b"not an HTTP request\n")
    method, target = parts[0], parts[1]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    if "websocket" in headers.get("upgrade", ""):
        return None
    if method not in ("GET", "HEAD"):
        return response("405 Method Not Allowed", b"the page takes GET\n")
    path = target.split("?", 1)[0]
    if path == "/favicon.ico":
        return response("204 No Content", b"")
    found = PAGES.get(path)
    if found is None:
        return response("404 Not Found", b"legato serves / (the page) and WebSocket sessions\n")
    name, content_type = found
    full = response("200 OK", page(name), content_type)
    return full if method == "GET" else full[: full.index(b"\r\n\r\n") + 4]


class PageStream(trio.abc.Stream):
    """A connection whose request head is looked at first (see the module docstring)."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = inner
        self.socket = inner.socket
        self._replay: bytes | None = None  # None: head not read yet

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._replay is None:
            self._replay = await self._read_head()
        if self._replay:
            size = len(self._replay) if max_bytes is None else max_bytes
            data, self._replay = self._replay[:size], self._replay[size:]
            return data
        return await self.inner.receive_some(max_bytes)

    async def _read_head(self) -> bytes:
        """The request head for the WebSocket layer, or b"" once a plain request was
        answered (or the client sent nothing usable in time) and the connection closed."""
        head = b""
        with trio.move_on_after(HEAD_TIMEOUT_S):
            while b"\r\n\r\n" not in head and len(head) <= HEAD_LIMIT:
                chunk = await self.inner.receive_some(4096)
                if not chunk:
                    break
                head += chunk
        if b"\r\n\r\n" not in head:
            if len(head) > HEAD_LIMIT:
                await self._reply(response("431 Request Header Fields Too Large", b""))
            await self.inner.aclose()
            return b""
        reply = answer(head)
        if reply is None:
            return head
        await self._reply(reply)
        return b""

    async def _reply(self, data: bytes) -> None:
        """Send ``data`` and close. What the client is still sending is read and dropped
        first (for a while): closing with unread input resets the connection, and the client
        could lose the reply."""
        with trio.move_on_after(HEAD_TIMEOUT_S), contextlib.suppress(trio.BrokenResourceError):
            await self.inner.send_all(data)
            await self.inner.send_eof()
            drained = 0
            while drained < DRAIN_LIMIT and (chunk := await self.inner.receive_some(65536)):
                drained += len(chunk)
        await self.inner.aclose()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


class PageListener(trio.abc.Listener[PageStream]):
    """A listener (TCP, or the connections a worker is handed) whose connections are
    ``PageStream``s."""

    def __init__(self, inner: trio.abc.Listener[trio.SocketStream]) -> None:
        self.inner = inner

    async def accept(self) -> PageStream:
        return PageStream(await self.inner.accept())

    async def aclose(self) -> None:
        await self.inner.aclose()
