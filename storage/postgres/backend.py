"""The postgres ``Storage``: an asyncpg pool living on an asyncio loop in its own thread
(``bridge.py``), driven from trio."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import trio

from legato.storage import (
    Batch,
    CheckpointRecord,
    FingerprintRecord,
    Period,
    SessionRecord,
    StorageError,
    redact,
)

from . import fingerprints, migrations, queries
from .bridge import AsyncioBridge, BridgeClosed
from .dsn import Target, parse
from .errors import RETRY_IN_TRANSACTION, translate
from .params import PostgresParams

T = TypeVar("T")

CLOSE_GRACE_S = 5.0
"""Beyond ``command_timeout_s``, how long ``close`` may take (a cancelled caller included)."""

TRANSACTION_ATTEMPTS = 3
"""A batch that hits a deadlock or serialization failure is simply run again, this often."""


class PostgresStorage:
    """See ``legato.storage.Storage``. Every method runs its database work on the bridge's
    loop; asyncpg and socket failures come back as ``StorageUnavailable``/``StorageError``."""

    def __init__(self, url: str, params: PostgresParams) -> None:
        self.target: Target = parse(url)
        self.url = redact(url)
        self.params = params
        if params.min_size > params.max_size:
            raise StorageError(
                f"[storage] min_size ({params.min_size}) must not exceed max_size "
                f"({params.max_size})"
            )
        self._bridge = AsyncioBridge(f"legato-postgres {self.target.where}")
        self._pool: asyncpg.Pool | None = None
        self._closed = False

    @property
    def bridge(self) -> AsyncioBridge:
        return self._bridge

    # ---- lifecycle ----------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the pool (``min_size`` connections) and check the server answers. Safe to
        call again after a failure, and a no-op once connected."""
        if self._closed:
            raise StorageError(f"postgres at {self.target.where}: the storage is closed")
        await self._bridge.start()
        if self._pool is None:
            within = f"within {self.params.connect_timeout_s:g} s"
            self._pool = await self._on_loop(self._open_pool, within)

    async def _open_pool(self) -> asyncpg.Pool:
        p = self.params
        pool = asyncpg.create_pool(
            self.target.dsn,
            min_size=p.min_size,
            max_size=p.max_size,
            timeout=p.connect_timeout_s,
            command_timeout=p.command_timeout_s,
            max_inactive_connection_lifetime=p.max_idle_s,
            init=_init_connection,
            reset=_reset_connection,
            server_settings={"application_name": "legato"},
        )
        try:
            await pool
            await pool.fetchval("SELECT 1", timeout=p.connect_timeout_s)
        except BaseException:
            pool.terminate()
            raise
        return pool

    async def close(self) -> None:
        """Close the pool (waiting up to ``command_timeout_s`` for calls in flight) and stop
        the loop thread. Safe to call more than once."""
        self._closed = True
        pool, self._pool = self._pool, None
        limit = self.params.command_timeout_s + CLOSE_GRACE_S
        with trio.CancelScope(shield=True, deadline=trio.current_time() + limit):
            if pool is not None and self._bridge.running:
                with contextlib.suppress(BridgeClosed):
                    await self._bridge.run(_close_pool, pool, self.params.command_timeout_s)
            await self._bridge.close()

    # ---- the protocol -------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        return await self._with_conn(migrations.apply, self.target.where)

    async def schema_version(self) -> int:
        return await self._with_conn(migrations.current_version)

    async def write(self, batch: Batch) -> None:
        if len(batch):
            await self._with_conn(_write_transaction, batch)

    async def user_stats(self, user: str, days: int, now: dt.datetime) -> dict[str, Any]:
        return await self._with_conn(queries.user_stats, user, days, now)

    async def progress(self, user: str, period: Period, since: dt.datetime) -> list[dict[str, Any]]:
        return await self._with_conn(queries.progress, user, period, since)

    async def list_sessions(self, user: str | None, limit: int) -> list[dict[str, Any]]:
        return await self._with_conn(queries.list_sessions, user, limit)

    async def get_session(
        self, session_id: str, after_seq: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        return await self._with_conn(queries.get_session, session_id, after_seq, limit)

    async def last_event(self, session_id: str) -> dict[str, Any] | None:
        return await self._with_conn(queries.last_event, session_id)

    async def renew_leases(self, holder: str, session_ids: list[str], now: dt.datetime) -> None:
        if session_ids:
            await self._with_conn(queries.renew_leases, holder, session_ids, now)

    async def expired_leases(self, before: dt.datetime) -> list[SessionRecord]:
        return await self._with_conn(queries.expired_leases, before)

    async def get_checkpoint(self, session_id: str) -> CheckpointRecord | None:
        return await self._with_conn(queries.get_checkpoint, session_id)

    async def get_fingerprint(
        self, path: str, size: int, mtime_ns: int, version: int
    ) -> FingerprintRecord | None:
        return await self._with_conn(fingerprints.get_fingerprint, path, size, mtime_ns, version)

    async def put_fingerprint(self, record: FingerprintRecord) -> None:
        await self._with_conn(fingerprints.put_fingerprint, record)

    # ---- plumbing -----------------------------------------------------------------------

    async def _with_conn(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``fn(connection, *args)`` on a pooled connection, on the loop."""
        pool = self._pool
        if pool is None:
            state = "closed" if self._closed else "not connected (connect() first)"
            raise StorageError(f"postgres at {self.target.where}: the storage is {state}")
        p = self.params

        async def call() -> T:
            async with pool.acquire(timeout=p.command_timeout_s) as conn:
                try:
                    return await fn(conn, *args)
                except _BROKEN:
                    conn.terminate()  # never hand a connection in an unknown state back
                    raise

        within = (
            f"in time (connect_timeout_s = {p.connect_timeout_s:g} s, "
            f"command_timeout_s = {p.command_timeout_s:g} s)"
        )
        return await self._on_loop(call, within)

    async def _on_loop(self, fn: Callable[[], Awaitable[T]], within: str) -> T:
        try:
            return await self._bridge.run(fn)
        except BridgeClosed:
            raise StorageError(f"postgres at {self.target.where}: the storage is closed") from None
        except Exception as exc:
            error = translate(exc, self.target, within)
            if error is None or error is exc:
                raise
            raise error from exc


_BROKEN = (
    asyncpg.InternalClientError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    OSError,
)
"""Failures after which a connection's protocol state cannot be trusted."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.execute(queries.CREATE_STAGING)


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """On release: a full reset (a round trip) only when a transaction was left open, e.g. by
    a call cancelled halfway; nothing else here changes session state."""
    if conn.is_in_transaction():
        await conn.reset()


async def _write_transaction(conn: asyncpg.Connection, batch: Batch) -> None:
    direct = True
    attempts = 0
    while True:
        attempts += 1
        try:
            async with conn.transaction():
                await queries.write_batch(conn, batch, direct=direct)
            return
        except asyncpg.UniqueViolationError:
            if not direct:
                raise
            direct = False  # another writer stored some of these events meanwhile
        except RETRY_IN_TRANSACTION:
            if attempts >= TRANSACTION_ATTEMPTS:
                raise


async def _close_pool(pool: asyncpg.Pool, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await pool.close()
    except TimeoutError:
        pool.terminate()
