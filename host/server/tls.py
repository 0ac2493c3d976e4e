"""TLS on the server's own port (``[server] tls_cert``/``tls_key``): ``wss://`` sessions and
the page over ``https://``.

trio's ``SSLStream`` decrypts each connection; the plaintext is bridged over a socket pair to
the same raw-socket WebSocket layer that serves plain connections, so one code path speaks the
protocol whichever way the bytes arrived. A connection whose handshake does not finish within
the request-head timeout is dropped; when either side ends, the other is closed too (the TLS
side with a close_notify, within ``close_timeout_s``).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from pathlib import Path

import trio

from ..errors import LegatoError

CHUNK = 64 << 10
"""Bytes moved per read, each way."""


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context from a PEM certificate chain and its private key (``key`` empty: the
    key is in the certificate file); an unusable file is a LegatoError naming it."""
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        if path and not Path(path).is_file():
            raise LegatoError(f"[server] {name}: no such file {path!r}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key or None)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise LegatoError(
            f"[server] tls_cert {cert!r} / tls_key {key or cert!r}: cannot load the certificate"
            f" and its key ({exc})"
        ) from None
    return context


async def bridge(
    stream: trio.SocketStream,
    context: ssl.SSLContext,
    handshake_timeout_s: float,
    close_timeout_s: float,
    nursery: trio.Nursery,
) -> socket.socket | None:
    """The plaintext side of a TLS connection, as a non-blocking socket (None: the handshake
    failed or took too long, and the connection is closed). The bytes are moved by a task in
    ``nursery`` until either side closes."""
    tls = trio.SSLStream(stream, context, server_side=True, https_compatible=True)
    try:
        with trio.fail_after(handshake_timeout_s):
            await tls.do_handshake()
    except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
        await trio.aclose_forcefully(tls)
        return None
    inner, outer = socket.socketpair()
    inner.setblocking(False)
    plain = trio.SocketStream(trio.socket.from_stdlib_socket(outer))
    nursery.start_soon(_pump, tls, plain, close_timeout_s)
    return inner


async def _pump(tls: trio.SSLStream, plain: trio.SocketStream, close_timeout_s: float) -> None:
    """Move bytes both ways until one side ends, then close both."""

    async def copy(source: trio.abc.ReceiveStream, sink: trio.abc.SendStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await source.receive_some(CHUNK):
                await sink.send_all(data)
        done.cancel()

    with trio.CancelScope() as done:
        async with trio.open_nursery() as both:
            both.start_soon(copy, tls, plain)
            both.start_soon(copy, plain, tls)
    await plain.aclose()
    with trio.move_on_after(close_timeout_s) as closing:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await tls.aclose()
    if closing.cancelled_caught:
        await trio.aclose_forcefully(tls)
