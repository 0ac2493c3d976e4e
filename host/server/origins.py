"""Which upgrade requests may become sessions at all, before any token is looked at: browsers
only from allowed page origins (against cross-site WebSocket hijacking), and only under host
names this server answers to (against DNS rebinding, where a hostile name resolves to a
server on the victim's own machine or network)."""

from __future__ import annotations

import ipaddress

from ..config.settings import ServerSettings

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
"""The names a server listening on loopback answers to unless ``[server] hosts`` says."""


def host_name(host: str) -> str:
    """The name of a ``Host`` header without its port: ``[::1]:8765`` → ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def listens_on_loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def refusal(headers: dict[str, str], settings: ServerSettings) -> str | None:
    """Why an upgrade with these headers (names lower-cased) is refused with 403, or None."""
    host = headers.get("host", "")
    names = settings.hosts or (LOOPBACK_NAMES if listens_on_loopback(settings.host) else ())
    if names and host_name(host) not in {n.lower() for n in names}:
        return f"Host {host!r} is not a name this server answers to ([server] hosts)"
    origin = headers.get("origin")
    if origin is None or "*" in settings.allowed_origins:
        return None  # not a browser: its token decides
    origin = origin.strip().lower().rstrip("/")
    own = {f"http://{host.strip().lower()}", f"https://{host.strip().lower()}"}
    allowed = {o.strip().lower().rstrip("/") for o in settings.allowed_origins}
    if origin in own or origin in allowed:
        return None
    return f"pages from {origin!r} may not open sessions here ([server] allowed_origins)"
