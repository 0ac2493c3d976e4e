"""Why a ``wss://`` connection failed at TLS. The WebSocket library reports a certificate it
does not trust as a timeout; one direct handshake with the same defaults says what was wrong,
so a client can tell its user (for a private CA: point ``SSL_CERT_FILE`` at its bundle)."""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import trio

PROBE_TIMEOUT_S = 5.0


def _handshake_problem(host: str, port: int) -> str | None:
    context = ssl.create_default_context()
    try:
        with (
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return (
            f"the server's TLS certificate is not trusted ({exc.verify_message}); for a"
            " private CA, set SSL_CERT_FILE to its certificate bundle"
        )
    except ssl.SSLError as exc:
        return f"the TLS handshake failed ({exc.reason or exc})"
    except OSError:
        return None  # not a TLS problem: the caller's own description stands


async def tls_problem(url: str) -> str | None:
    """What is wrong with TLS to the server of ``url`` (None: nothing, or not ``wss://``)."""
    parts = urlsplit(url)
    if parts.scheme != "wss" or not parts.hostname:
        return None
    return await trio.to_thread.run_sync(_handshake_problem, parts.hostname, parts.port or 443)
