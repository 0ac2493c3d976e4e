"""postgres: session history in PostgreSQL through asyncpg, bridged into trio by an asyncio
loop in a dedicated thread (see docs/storage.md for why not trio-asyncio)."""

from __future__ import annotations

from collections.abc import Callable

from legato import hookimpl
from legato.storage import StorageType

from .backend import PostgresStorage
from .dsn import SCHEMES
from .params import PostgresParams

LEGATO_API_VERSION = 1

POSTGRES = StorageType(
    name="postgres",
    doc=(
        "PostgreSQL through an asyncpg connection pool: events arrive by binary COPY, every "
        "write is one idempotent transaction, several legato processes may share a database. "
        "URL: postgresql://user[:password]@host[:port]/dbname[?sslmode=...]."
    ),
    schemes=SCHEMES,
    params=PostgresParams,
    open=PostgresStorage,
)


@hookimpl
def register_storage(register: Callable[[StorageType], None]) -> None:
    register(POSTGRES)
