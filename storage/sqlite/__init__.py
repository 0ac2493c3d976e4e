"""The ``sqlite`` storage backend: one SQLite file (default ``legato.db`` in the working
directory) in WAL mode, written by one thread through sqlite-utils and the stdlib sqlite3,
read concurrently from pooled connections."""

from __future__ import annotations

from collections.abc import Callable

from legato import hookimpl
from legato.storage import StorageType

from .backend import open_sqlite
from .params import SQLiteParams

LEGATO_API_VERSION = 1

SQLITE = StorageType(
    name="sqlite",
    doc=(
        "A SQLite database file (sqlite:///relative/path.db or sqlite:////absolute/path.db),"
        " created on first use; WAL mode, one writer thread, concurrent readers. In-memory"
        " databases are not supported."
    ),
    schemes=("sqlite",),
    params=SQLiteParams,
    open=open_sqlite,
)


@hookimpl
def register_storage(register: Callable[[StorageType], None]) -> None:
    register(SQLITE)
