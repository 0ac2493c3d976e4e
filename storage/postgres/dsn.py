"""Checking a ``postgresql://`` URL before asyncpg sees it, so a typo gets a message that names
the problem instead of a connection attempt somewhere unexpected."""

from __future__ import annotations

import getpass
import os
import re
import urllib.parse

import attrs

from legato.storage import StorageError, redact

SCHEMES = ("postgresql", "postgres")
EXAMPLE = "postgresql://user@host:5432/dbname"


@attrs.frozen
class Target:
    """A checked database URL: ``dsn`` for asyncpg, ``where`` (host:port/db) for messages."""

    dsn: str
    where: str
    user: str  # as given, else asyncpg's default ($PGUSER, else the OS user)


def parse(url: str) -> Target:
    """Check ``url`` and say what is wrong with it; the password never appears."""
    shown = shown_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
        hostname = parts.hostname
    except ValueError as exc:
        raise StorageError(
            f"malformed database URL {shown!r}: {_reason(exc)}; use {EXAMPLE}"
        ) from None
    if parts.scheme not in SCHEMES:
        raise StorageError(
            f"database URL {shown!r} is not a postgres URL (scheme must be "
            f"{' or '.join(SCHEMES)}): use {EXAMPLE}"
        )
    if not url.startswith(f"{parts.scheme}://"):
        raise StorageError(f"malformed database URL {shown!r}: expected {EXAMPLE}")
    try:
        query = urllib.parse.parse_qs(parts.query, strict_parsing=True) if parts.query else {}
    except ValueError:
        raise StorageError(
            f"malformed database URL {shown!r}: the query string must be key=value pairs "
            "joined by '&'"
        ) from None
    database = urllib.parse.unquote(parts.path.lstrip("/")) or _last(query, "dbname")
    if not database:
        raise StorageError(f"database URL {shown!r} names no database: use {EXAMPLE}")
    if "/" in database:
        raise StorageError(f"malformed database URL {shown!r}: database name {database!r}")
    host = hostname or _last(query, "host") or "localhost"
    port = port or _last(query, "port") or 5432
    user = urllib.parse.unquote(parts.username) if parts.username else _last(query, "user")
    user = user or os.environ.get("PGUSER") or getpass.getuser()
    return Target(dsn=url, where=f"{host}:{port}/{database}", user=user)


def shown_url(url: str) -> str:
    """``url`` without its password, even when it is too malformed for ``redact``."""
    try:
        return redact(url)
    except ValueError:
        return re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:***@", url)


def _last(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


def _reason(exc: ValueError) -> str:
    text = str(exc)
    if "Port" in text:
        return "the port must be a number from 0 to 65535"
    return text
