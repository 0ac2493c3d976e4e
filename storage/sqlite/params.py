"""The SQLite backend's ``[storage]`` params and how a ``sqlite:`` URL names its file."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import attrs

from legato.stage import param
from legato.storage import StorageError

URL_FORMS = "sqlite:///relative/path.db or sqlite:////absolute/path.db"


@attrs.frozen
class SQLiteParams:
    """Timeouts, durability and read concurrency of a SQLite database file."""

    busy_timeout_s: float = param(
        5.0,
        doc="how long a write (or migration) waits for a lock held by another connection before"
        " it fails as unavailable, so the caller spools and retries instead of hanging",
        unit="s",
        min=0.0,
        max=600.0,
    )
    timeout_s: float = param(
        30.0,
        doc="longest one write or query may run (lock waits aside) before SQLite aborts it and"
        " it is reported as unavailable",
        unit="s",
        min=0.1,
        max=3600.0,
    )
    migrate_timeout_s: float = param(
        600.0,
        doc="longest a schema migration may run; migrations may rebuild large tables",
        unit="s",
        min=1.0,
        max=86400.0,
    )
    synchronous: str = param(
        "full",
        doc="'full' syncs the WAL to disk at every commit, so an acknowledged write survives a"
        " power loss or OS crash, at one fsync per batch; 'normal' survives a crash of the"
        " process only (the last commits may be lost with the machine)",
        choices=("full", "normal"),
    )
    readers: int = param(
        4,
        doc="read connections used at once; WAL lets them read while the writer commits",
        min=1,
        max=64,
    )


def database_path(url: str) -> Path:
    """The absolute path of the file a ``sqlite:`` URL names; relative paths are resolved
    against the working directory now, so later directory changes do not move the database."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise StorageError(f"{url!r} is not a SQLite URL: use {URL_FORMS}")
    if parts.netloc:
        raise StorageError(
            f"SQLite URL {url!r} names a host ({parts.netloc!r}); a SQLite database is a local"
            f" file: use {URL_FORMS}"
        )
    if parts.query or parts.fragment:
        raise StorageError(f"SQLite URL {url!r} takes no query or fragment: use {URL_FORMS}")
    name = unquote(parts.path)[1:]
    if not name or name.endswith("/"):
        raise StorageError(f"SQLite URL {url!r} names no file: use {URL_FORMS}")
    if name == ":memory:" or name.startswith("file:"):
        raise StorageError(
            f"SQLite URL {url!r}: in-memory databases are not supported; sessions, retries and"
            f" `legato db` need a file that outlives the process: use {URL_FORMS}"
        )
    return Path(name).absolute()
