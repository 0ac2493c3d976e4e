"""Relaying a connection to the worker that holds its session (`legato serve --workers N`): a
``resume`` that reaches another worker is carried, message by message, to the owner's private
port, so the client resumes through the same URL whichever worker took its connection."""

from __future__ import annotations

import contextlib

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from .page import RELAY_HEADER
from .websocket import WebSocket

Carrier = WebSocket | WebSocketConnection

RELAY_MESSAGE_BYTES = 64 << 20
"""Largest message relayed from the owner (history replies and replayed backlogs can be big)."""
UNSENDABLE = (1005, 1006, 1015)
"""Close codes that report what happened and may not be sent: passed on as 1001 (going away)."""


async def relay(
    client: WebSocket, first: str, port: int, key: str, token: str | None = None
) -> None:
    """Open a connection to the owner on ``port`` (proved a relay by ``key``, carrying the
    client's upgrade ``token`` if it had one), send it the client's ``first`` message (the
    ``resume``) in place of the client, then carry messages both ways until either side
    closes, passing its close code on. The owner's ``hello`` is dropped: the client has one."""
    headers = [(RELAY_HEADER.encode(), key.encode())]
    if token is not None:
        headers.append((b"Authorization", f"Bearer {token}".encode()))
    async with open_websocket_url(
        f"ws://127.0.0.1:{port}/", extra_headers=headers, max_message_size=RELAY_MESSAGE_BYTES
    ) as owner:
        await owner.get_message()
        await owner.send_message(first)
        async with trio.open_nursery() as both:
            both.start_soon(_carry, client, owner, both.cancel_scope)
            both.start_soon(_carry, owner, client, both.cancel_scope)


async def _carry(source: Carrier, sink: Carrier, both: trio.CancelScope) -> None:
    try:
        while True:
            await sink.send_message(await source.get_message())
    except ConnectionClosed as closed:
        reason = closed.reason
        code = reason.code if reason is not None and reason.code not in UNSENDABLE else 1001
        with contextlib.suppress(ConnectionClosed), trio.move_on_after(2):
            await sink.aclose(code, reason.reason if reason is not None else None)
    finally:
        both.cancel()
