"""Versioned schema migrations, applied in order, each in its own transaction.

Every transaction first takes a transaction-scoped advisory lock, so several processes
starting at once (servers, ``legato db migrate``) apply each migration exactly once: the
others wait, then see it recorded in ``schema_migrations`` and skip it. A database migrated by
a newer legato (a version this one does not know) is refused rather than written blindly.
"""

from __future__ import annotations

import asyncpg
import attrs

from legato.storage import StorageError

from .schema import V1, V2, V3

LOCK_KEY = 0x6C6567_61746F  # "legato": the advisory lock id every legato process agrees on


@attrs.frozen
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", V1),
    Migration(2, "checkpoints of live sessions", V2),
    Migration(3, "leases of live sessions", V3),
)
LATEST = MIGRATIONS[-1].version

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def current_version(conn: asyncpg.Connection) -> int:
    """The newest applied migration (0 for an empty database)."""
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return 0
    return await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")


async def apply(conn: asyncpg.Connection, where: str) -> list[int]:
    """Apply what is missing; return the versions this call applied."""
    version = await current_version(conn)
    _refuse_newer(version, where)
    if version == LATEST:
        return []
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version <= version:
            continue
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
            await conn.execute(_CREATE_LEDGER)
            _refuse_newer(await current_version(conn), where)
            done = await conn.fetchval(
                "SELECT 1 FROM schema_migrations WHERE version = $1", migration.version
            )
            if done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied.append(migration.version)
    return applied


def _refuse_newer(version: int, where: str) -> None:
    if version > LATEST:
        raise StorageError(
            f"postgres at {where}: the database schema is at version {version}, newer than "
            f"this legato knows ({LATEST}); upgrade legato"
        )
