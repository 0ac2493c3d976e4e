"""The server side of RFC 6455, driven straight on the connection's socket.

A session's frame is the server's hottest path, so this layer does per message only what the
protocol needs: one ``recv`` (waiting on the socket only when it has nothing), one header parse
and unmask, and one ``send`` for what goes out. There is no reader task, no queue between tasks
and no lock: whichever task finds the socket free writes, and a task that finds it busy leaves
its frame to the writer already there. (A bare trio-websocket server spends about twice this
per message; bench/load.py runs one as its reference.)

It also owns the ends of a connection: every violation closes with the code RFC 6455 asks for
(1002 protocol, 1007 invalid UTF-8, 1009 too big), and every close this side starts completes
or the TCP connection is dropped within ``close_timeout``.
"""

from __future__ import annotations

import base64
import hashlib
import socket
from collections import deque

import trio
from trio_websocket import CloseReason, ConnectionClosed

__all__ = [
    "CloseReason",
    "ConnectionClosed",
    "WebSocket",
    "close_socket",
    "frame",
    "handshake_reply",
    "recv_some",
    "send_all",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
DATA_OPCODES = (TEXT, BINARY)
CONTROL_OPCODES = (CLOSE, PING, PONG)
PROTOCOL_ERROR, INVALID_DATA, TOO_BIG = 1002, 1007, 1009
NO_STATUS, ABNORMAL = 1005, 1006
RECV_BYTES = 1 << 16
PENDING_LIMIT = 1 << 20
"""Bytes a task may queue behind a busy writer before it waits for the queue to drain."""
FAIRNESS = 16
"""Every this many messages the reader yields to other tasks, even if it never had to wait
on the socket (a flooding client would otherwise hold the event loop)."""


class Violation(Exception):
    """The peer broke the protocol: the close code and reason to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def valid_close_code(code: int) -> bool:
    """Codes a peer may send (RFC 6455 7.4): the defined ones and 3000-4999, never those that
    only report (1005, 1006, 1015) or that are reserved."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def unmask(data: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    n = len(data)
    if not n:
        return b""
    key = (bytes(mask) * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 1 << 16:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload


def close_frame(code: int, reason: str | None) -> bytes:
    if code == NO_STATUS:
        return frame(CLOSE, b"")
    text = (reason or "").encode()[:123]
    while True:  # cut on a character boundary
        try:
            text.decode()
            break
        except UnicodeDecodeError:
            text = text[:-1]
    return frame(CLOSE, code.to_bytes(2, "big") + text)


class FrameParser:
    """Client frames in, whole messages and control frames out: ``(opcode, payload)``, with
    fragments joined. Raises ``Violation`` for anything RFC 6455 forbids, and for a message
    over ``max_message`` as soon as its header says so (nothing that large is buffered)."""

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self.buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_bytes = 0
        self._skip = 0  # bytes still to come of a frame refused as too big

    def feed(self, data: bytes) -> None:
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        self.buffer += data

    def frames(self) -> list[tuple[int, bytes]]:
        found: list[tuple[int, bytes]] = []
        buf, pos, end = self.buffer, 0, len(self.buffer)
        try:
            while end - pos >= 2:
                b0, b1 = buf[pos], buf[pos + 1]
                opcode, final, size, head = b0 & 0x0F, b0 & 0x80, b1 & 0x7F, 2
                if size == 126:
                    if end - pos < 4:
                        break
                    size, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
                elif size == 127:
                    if end - pos < 10:
                        break
                    size, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
                try:
                    self._check(b0, b1, opcode, final, size)
                except Violation as violation:
                    if violation.code == TOO_BIG:  # skip it: a close after it is still read
                        stop = pos + head + 4 + size
                        self._skip, pos = max(0, stop - end), min(stop, end)
                        self._fragments, self._fragment_opcode, self._fragment_bytes = [], 0, 0
                    raise
                start = pos + head + 4
                if end - start < size:
                    break
                payload = unmask(buf[start : start + size], buf[start - 4 : start])
                pos = start + size
                message = self._collect(opcode, final, payload)
                if message is not None:
                    found.append(message)
        finally:
            del buf[:pos]
        return found

    def drop_buffered(self) -> None:
        """After a violation that leaves the framing in doubt: forget what is buffered and
        read what comes next as new frames (the peer's close, usually)."""
        self.buffer.clear()
        self._fragments, self._fragment_opcode, self._fragment_bytes = [], 0, 0

    def _check(self, b0: int, b1: int, opcode: int, final: int, size: int) -> None:
        if b0 & 0x70:
            raise Violation(PROTOCOL_ERROR, "reserved bits set (no extension was agreed)")
        if not b1 & 0x80:
            raise Violation(PROTOCOL_ERROR, "client frames must be masked")
        if opcode >= 8:
            if opcode not in CONTROL_OPCODES:
                raise Violation(PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
            if not final or size > 125:
                raise Violation(PROTOCOL_ERROR, "control frames are final and at most 125 bytes")
            return
        if opcode not in (CONTINUATION, *DATA_OPCODES):
            raise Violation(PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        if (opcode == CONTINUATION) != bool(self._fragment_opcode):
            raise Violation(
                PROTOCOL_ERROR,
                "continuation frame without a message to continue"
                if opcode == CONTINUATION
                else "new message before the fragmented one ended",
            )
        total = size + (self._fragment_bytes if opcode == CONTINUATION else 0)
        if total > self.max_message:
            raise Violation(TOO_BIG, f"message exceeds {self.max_message} bytes")

    def _collect(self, opcode: int, final: int, payload: bytes) -> tuple[int, bytes] | None:
        if opcode >= 8 or (final and opcode != CONTINUATION):
            return opcode, payload
        if opcode != CONTINUATION:
            self._fragment_opcode = opcode
        self._fragments.append(payload)
        self._fragment_bytes += len(payload)
        if not final:
            return None
        opcode, whole = self._fragment_opcode, b"".join(self._fragments)
        self._fragments, self._fragment_opcode, self._fragment_bytes = [], 0, 0
        return opcode, whole


def handshake_reply(
    method: str, headers: dict[str, str], extra: dict[str, str] | None = None
) -> tuple[bytes, bool]:
    """The HTTP reply to an upgrade request (header names lower-cased, values as sent) and
    whether it accepts: 101 with the accept key (and the ``extra`` headers), or 400/426 saying
    what is wrong."""

    def refuse(status: str, why: str, extra: str = "") -> tuple[bytes, bool]:
        body = why.encode() + b"\n"
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n{extra}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + body, False

    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if method != "GET":
        return refuse("400 Bad Request", "a WebSocket upgrade is a GET")
    if headers.get("upgrade", "").strip().lower() != "websocket" or "upgrade" not in tokens:
        return refuse("400 Bad Request", "expected Upgrade: websocket and Connection: Upgrade")
    if headers.get("sec-websocket-version", "").strip() != "13":
        return refuse(
            "426 Upgrade Required", "WebSocket version 13 only", "Sec-WebSocket-Version: 13\r\n"
        )
    key = headers.get("sec-websocket-key", "").strip()
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        valid = False
    if not valid:
        return refuse("400 Bad Request", "Sec-WebSocket-Key must be 16 bytes in base64")
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    more = "".join(f"{name}: {value}\r\n" for name, value in (extra or {}).items())
    reply = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n{more}\r\n"
    )
    return reply.encode(), True


async def recv_some(sock: socket.socket) -> bytes:
    """Bytes off a non-blocking socket, waiting only when it has none; b"" once the connection
    is gone (or the socket was closed under us)."""
    while True:
        try:
            return sock.recv(RECV_BYTES)
        except BlockingIOError:
            try:
                await trio.lowlevel.wait_readable(sock)
            except (trio.ClosedResourceError, ValueError, OSError):
                return b""
        except OSError:
            return b""


async def send_all(sock: socket.socket, data: bytes) -> bool:
    """Whether all of ``data`` went out (False: the connection is gone)."""
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            try:
                await trio.lowlevel.wait_writable(sock)
            except (trio.ClosedResourceError, ValueError, OSError):
                return False
        except OSError:
            return False
    return True


def close_socket(sock: socket.socket) -> None:
    """Close, waking any task waiting on the socket (it sees the connection gone)."""
    if sock.fileno() != -1:
        trio.lowlevel.notify_closing(sock)
        sock.close()


class WebSocket:
    """One accepted WebSocket on a non-blocking socket (which it owns and closes).

    ``get_message`` is called by one task at a time; ``send_message`` and ``aclose`` by any.
    Both raise ``ConnectionClosed`` once the connection is closed, with the code and reason
    of its close (1006 when the TCP connection was lost without one)."""

    def __init__(
        self, sock: socket.socket, early: bytes, max_message: int, close_timeout: float
    ) -> None:
        self._sock = sock
        self._parser = FrameParser(max_message)
        self._parser.feed(early)
        self._close_timeout = close_timeout
        self._inbox: deque[str | bytes] = deque()
        self.closed: CloseReason | None = None
        self._close_sent = False
        self._peer_closed = trio.Event()
        self._reading = False
        self._taken = 0
        self._writing = False
        self._pending = bytearray()
        self._drained = trio.Event()
        self.target = "/"
        """The request target and headers (names lower-cased) of the upgrade."""
        self.headers: dict[str, str] = {}
        self.session_id: str | None = None
        """The session id announced in the upgrade response (``SESSION_HEADER``), if any."""

    # ---- receiving -----------------------------------------------------------------------

    async def get_message(self) -> str | bytes:
        """The next text or binary message; pings are answered on the way."""
        while not self._inbox:
            if self.closed is not None:
                raise ConnectionClosed(self.closed)
            await self._read()
        self._taken += 1
        if self._taken % FAIRNESS == 0:
            await trio.lowlevel.checkpoint()
        return self._inbox.popleft()

    async def _read(self) -> None:
        """One read off the socket, its frames handled; closes on EOF or a violation."""
        self._reading = True
        try:
            data = await recv_some(self._sock)
        finally:
            self._reading = False
        if not data:
            self._shut(CloseReason(ABNORMAL, "connection lost"))
            return
        self._parser.feed(data)
        try:
            for opcode, payload in self._parser.frames():
                await self._on_frame(opcode, payload)
        except Violation as violation:
            await self._fail(violation)

    async def _on_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == BINARY:
            self._inbox.append(payload)
        elif opcode == TEXT:
            try:
                self._inbox.append(payload.decode())
            except UnicodeDecodeError:
                raise Violation(INVALID_DATA, "text message is not valid UTF-8") from None
        elif opcode == PING:
            if not self._close_sent:
                await self._write(frame(PONG, payload))
        elif opcode == CLOSE:
            await self._on_close(payload)

    async def _on_close(self, payload: bytes) -> None:
        code, reason = NO_STATUS, ""
        if len(payload) == 1:
            raise Violation(PROTOCOL_ERROR, "close frame of one byte")
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not valid_close_code(code):
                raise Violation(PROTOCOL_ERROR, f"close code {code} may not be sent")
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError:
                raise Violation(INVALID_DATA, "close reason is not valid UTF-8") from None
        self._peer_closed.set()
        if not self._close_sent:
            self._close_sent = True
            with trio.move_on_after(self._close_timeout):
                await self._write(close_frame(code, None), abandon=True)
        self._shut(CloseReason(code, reason))

    async def _fail(self, violation: Violation) -> None:
        """Close with the violation's code, reading (and dropping) until the peer answers."""
        if violation.code != TOO_BIG:  # a refused large frame was skipped whole instead
            self._parser.drop_buffered()
        if not self._close_sent:
            self._close_sent = True
            with trio.move_on_after(self._close_timeout):
                await self._write(close_frame(violation.code, violation.reason), abandon=True)
        await self._await_peer_close()
        self._shut(CloseReason(violation.code, violation.reason))

    async def _await_peer_close(self) -> None:
        """After our close frame: the peer's close (or EOF), for ``close_timeout`` at most."""
        with trio.move_on_after(self._close_timeout):
            if self._reading:
                await self._peer_closed.wait()  # the reading task sees it
                return
            in_step = True  # frames can still be told apart (after a violation they may not)
            while not self._peer_closed.is_set():
                data = await recv_some(self._sock)
                if not data:
                    return
                if not in_step:
                    continue
                self._parser.feed(data)
                try:
                    if any(opcode == CLOSE for opcode, _ in self._parser.frames()):
                        self._peer_closed.set()
                except Violation:
                    in_step = False

    # ---- sending -------------------------------------------------------------------------

    async def send_message(self, message: str | bytes) -> None:
        if self._close_sent or self.closed is not None:
            raise ConnectionClosed(self.closed or CloseReason(ABNORMAL, "closing"))
        if isinstance(message, str):
            await self._write(frame(TEXT, message.encode()))
        else:
            await self._write(frame(BINARY, message))

    def send_nowait(self, message: str | bytes) -> bool:
        """Send without waiting: False (nothing taken) when another task is writing, frames
        wait to go out, or the socket takes nothing now. A frame the socket took in part is
        finished by the next ``send_message`` or ``flush``."""
        if self._writing or self._pending or self._close_sent or self.closed is not None:
            return False
        data = frame(TEXT, message.encode()) if isinstance(message, str) else frame(BINARY, message)
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            return False
        except OSError:
            self._shut(CloseReason(ABNORMAL, "connection lost"))
            return False
        if sent < len(data):
            self._pending += data[sent:]
        return True

    async def flush(self) -> None:
        """Send what waits to go out (the rest of a frame ``send_nowait`` began)."""
        if self._pending and not self._writing and self.closed is None:
            await self._write(b"")

    async def _write(self, data: bytes, abandon: bool = False) -> None:
        """Send ``data`` after what is queued; when another task is writing, queue it for that
        task (and wait for it to go out only if the queue is long or ``abandon`` is set).
        ``abandon`` (closing frames): a lost connection is not an error."""
        if self.closed is not None:
            if abandon:
                return
            raise ConnectionClosed(self.closed)
        self._pending += data
        if self._writing:
            if abandon or len(self._pending) > PENDING_LIMIT:
                await self._drained.wait()
            return
        self._writing = True
        try:
            while self._pending:
                chunk, self._pending = bytes(self._pending), bytearray()
                await self._send_all(chunk)
        finally:
            self._writing = False
            self._drained.set()
            self._drained = trio.Event()
        if self.closed is not None and not abandon:
            raise ConnectionClosed(self.closed)

    async def _send_all(self, data: bytes) -> None:
        view, sent = memoryview(data), 0
        try:
            while sent < len(data):
                try:
                    sent += self._sock.send(view[sent:])
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(self._sock)
        except (OSError, trio.ClosedResourceError, ValueError):
            self._shut(CloseReason(ABNORMAL, "connection lost"))
        except BaseException:  # cancelled: a half-sent frame would corrupt the stream
            if sent:
                self._shut(CloseReason(ABNORMAL, "send cancelled"))
            else:
                self._pending[:0] = data
            raise

    # ---- closing -------------------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with ``code``: our close frame, then the peer's answer, or the TCP connection
        is dropped after ``close_timeout``."""
        if self.closed is not None:
            return
        if not self._close_sent:
            self._close_sent = True
            with trio.move_on_after(self._close_timeout):
                await self._write(close_frame(code, reason), abandon=True)
        await self._await_peer_close()
        self._shut(CloseReason(code, reason))

    def _shut(self, reason: CloseReason) -> None:
        """Closed: remember how, and let go of the socket (waking any task waiting on it)."""
        if self.closed is None:
            self.closed = reason
        self._peer_closed.set()
        close_socket(self._sock)

    def abort(self) -> None:
        """Drop the TCP connection now (the handler is done with it)."""
        self._shut(CloseReason(ABNORMAL, "aborted"))
