"""The browser page on the server's own port: ``http://HOST:PORT/`` answers a plain HTTP GET
with the page (``legato/server/web/``), ``/healthz`` with the server's state for load balancers;
WebSocket upgrades on the same port go to the protocol.

Each accepted connection's request head is read first: a WebSocket upgrade becomes a
``WebSocket`` (websocket.py); anything else gets the page (or 404/405) and is closed. The head
is read under a timeout and a size limit, in the connection's own task, so a slow or hostile
client holds nothing but its own connection.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import re
import socket
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio

from ..config.settings import ServerSettings
from ..protocol.messages import SESSION_HEADER, SESSION_QUERY
from .origins import refusal
from .websocket import WebSocket, close_socket, handshake_reply, recv_some, send_all

RELAY_HEADER = "x-legato-relay"
"""The header a relayed connection proves itself with on a worker's private port."""
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
HEALTH_PATH = "/healthz"
Health = Callable[[], tuple[bool, dict[str, Any]]]
"""Whether the server takes new sessions, and its state as JSON: ``/healthz`` answers 200 with
it when it does, 503 when it does not (draining)."""


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


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """Method, target and headers (names lower-cased, values as sent) of a request head;
    None when it is not HTTP."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


SESSION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def resumed_session(target: str) -> str | None:
    """The session id a reconnecting client names in its URL (``?session=``), if it is one."""
    values = parse_qs(urlsplit(target).query).get(SESSION_QUERY, [])
    return values[0] if len(values) == 1 and SESSION_ID.fullmatch(values[0]) else None


def answer(method: str, target: str, health: Health | None = None) -> bytes:
    """The HTTP response to a plain (not upgrade) request."""
    if method not in ("GET", "HEAD"):
        return response("405 Method Not Allowed", b"the page takes GET\n")
    path = target.split("?", 1)[0]
    if path == "/favicon.ico":
        return response("204 No Content", b"")
    if path == HEALTH_PATH and health is not None:
        serving, state = health()
        status = "200 OK" if serving else "503 Service Unavailable"
        full = response(status, json.dumps(state).encode() + b"\n", "application/json")
    elif (found := PAGES.get(path)) is not None:
        name, content_type = found
        full = response("200 OK", page(name), content_type)
    else:
        return response("404 Not Found", b"legato serves / (the page) and WebSocket sessions\n")
    return full if method == "GET" else full[: full.index(b"\r\n\r\n") + 4]


async def open_connection(
    sock: socket.socket,
    settings: ServerSettings,
    relay_key: str | None = None,
    new_session_id: Callable[[], str] | None = None,
    health: Health | None = None,
) -> WebSocket | None:
    """Read the request head of a new connection (a non-blocking socket, taken over): a
    WebSocket upgrade is accepted and returned; anything else gets its HTTP answer (the page,
    ``health`` at ``/healthz``, 400, 403, 404, 405, 426 or 431) and the connection is closed
    (None). Upgrades must pass the origin and host checks (origins.py), or with ``relay_key``
    (a worker's private port) carry that key instead. The accepted upgrade's response names
    the session the connection is for (``SESSION_HEADER``): the one a reconnecting client
    resumes (``SESSION_QUERY``), so a load balancer learns that this host now holds it, else
    the id its ``hello`` will announce (from ``new_session_id``, called for upgrades only)."""
    head, rest = await _read_head(sock)
    if head is None:
        if len(rest) > HEAD_LIMIT:
            await _reply(sock, response("431 Request Header Fields Too Large", b""))
        else:
            close_socket(sock)
        return None
    parsed = parse_head(head)
    if parsed is None:
        await _reply(sock, response("400 Bad Request", b"not an HTTP request\n"))
        return None
    method, target, headers = parsed
    if "websocket" not in headers.get("upgrade", "").lower():
        await _reply(sock, answer(method, target, health))
        return None
    if relay_key is None:
        why = refusal(headers, settings)
    else:
        given = headers.get(RELAY_HEADER, "").encode()
        why = None if hmac.compare_digest(given, relay_key.encode()) else "not a relay"
    if why is not None:
        await _reply(sock, response("403 Forbidden", why.encode() + b"\n"))
        return None
    session_id = new_session_id() if new_session_id is not None else None
    announced = resumed_session(target) or session_id
    extra = {} if announced is None else {SESSION_HEADER: announced}
    reply, accepted = handshake_reply(method, headers, extra)
    if not accepted:
        await _reply(sock, reply)
        return None
    with trio.move_on_after(HEAD_TIMEOUT_S) as sending:
        sent = await send_all(sock, reply)
    if sending.cancelled_caught or not sent:
        close_socket(sock)
        return None
    ws = WebSocket(sock, rest, settings.max_message_bytes, settings.close_timeout_s)
    ws.target, ws.headers, ws.session_id = target, headers, session_id
    return ws


async def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    """(head, bytes after it); (None, what came) when no complete head arrived in time or
    within ``HEAD_LIMIT``."""
    data = b""
    with trio.move_on_after(HEAD_TIMEOUT_S):
        while b"\r\n\r\n" not in data and len(data) <= HEAD_LIMIT:
            chunk = await recv_some(sock)
            if not chunk:
                break
            data += chunk
    head, found, rest = data.partition(b"\r\n\r\n")
    return (head, rest) if found and len(head) <= HEAD_LIMIT else (None, data)


async def _reply(sock: socket.socket, data: bytes) -> None:
    """Send ``data`` and close. What the client is still sending is read and dropped first
    (for a while): closing with unread input resets the connection, and the client could lose
    the reply."""
    with trio.move_on_after(HEAD_TIMEOUT_S):
        if await send_all(sock, data):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            drained = 0
            while drained < DRAIN_LIMIT and (chunk := await recv_some(sock)):
                drained += len(chunk)
    close_socket(sock)
