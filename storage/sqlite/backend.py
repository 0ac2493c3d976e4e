"""``SQLiteStorage``: the ``Storage`` protocol over one SQLite file in WAL mode, with every
write on the writer thread and every read on a pooled read connection (see ``threads``)."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from legato.storage import (
    Batch,
    CheckpointRecord,
    FingerprintRecord,
    Period,
    SessionRecord,
    StorageError,
    StorageUnavailable,
    redact,
)

from . import fingerprints, queries
from .errors import translate
from .params import SQLiteParams, database_path
from .schema import apply_migrations, schema_version
from .threads import Connection, ReaderPool, Stalled, WriterThread, connect
from .writes import renew_leases, write_batch

T = TypeVar("T")

GRACE_S = 5.0
"""Beyond a call's own budget and lock wait, how long the trio side keeps waiting for a
thread that SQLite could not interrupt before it reports the database unavailable."""

WAL_CHECKPOINT_PAGES = 4000
"""Pages (16 MiB) the WAL may grow to before a commit checkpoints it. Above SQLite's 1000: many
sessions write interleaved, each commit dirties the same leaf pages again, and a checkpoint
copies each page once however often it changed, so rarer checkpoints copy less."""

JOURNAL_SIZE_LIMIT = 64 << 20
"""Bytes of WAL file kept after a checkpoint; a burst's larger WAL is truncated back."""

WAL_SWITCH_WAIT_MS = 100
"""Busy wait of one attempt to switch a file to WAL (see ``_enable_wal``)."""


class SQLiteStorage:
    """A SQLite database file opened through a ``sqlite:`` URL."""

    def __init__(self, url: str, params: SQLiteParams) -> None:
        self.url = redact(url)
        self.path = database_path(url)
        self.params = params
        self._writer: WriterThread | None = None
        self._conn: Connection | None = None
        self._readers: ReaderPool | None = None

    # ---- threads ---------------------------------------------------------------------------

    def _hard_limit(self, budget_s: float) -> float:
        return budget_s + self.params.busy_timeout_s + GRACE_S

    def _failure(self, exc: BaseException, doing: str, budget_s: float) -> StorageError:
        if isinstance(exc, Stalled):
            return StorageUnavailable(
                f"SQLite database {self.path}: {doing} did not finish within"
                f" {self._hard_limit(budget_s):g} s"
            )
        assert isinstance(exc, sqlite3.Error)
        return translate(exc, self.path, self.params, doing)

    async def _on_writer(
        self, writer: WriterThread, fn: Callable[[], T], doing: str, budget_s: float
    ) -> T:
        try:
            return await writer.run(fn, self._hard_limit(budget_s))
        except (sqlite3.Error, Stalled) as exc:
            raise self._failure(exc, doing, budget_s) from None

    async def _write(self, fn: Callable[[Connection], T], doing: str, budget_s: float) -> T:
        if self._writer is None:
            raise StorageError(f"SQLite database {self.path} is not connected")

        def job() -> T:
            assert self._conn is not None
            with self._conn.budget(budget_s) as conn:
                return fn(conn)

        return await self._on_writer(self._writer, job, doing, budget_s)

    async def _read(self, fn: Callable[[Connection], T], doing: str) -> T:
        if self._readers is None:
            raise StorageError(f"SQLite database {self.path} is not connected")
        budget_s = self.params.timeout_s
        try:
            return await self._readers.run(fn, budget_s, self._hard_limit(budget_s))
        except (sqlite3.Error, Stalled) as exc:
            raise self._failure(exc, doing, budget_s) from None

    def _cleanup_scope(self) -> trio.CancelScope:
        """Shielded from the caller's cancellation, but bounded: cleanup must neither be cut
        short by a cancelled caller nor hang on a stuck thread."""
        limit = self._hard_limit(self.params.timeout_s)
        return trio.CancelScope(shield=True, deadline=trio.current_time() + limit)

    def _open_writer(self) -> None:
        conn = connect(self.path, self.params.busy_timeout_s, create=True, shared=False)
        try:
            self._enable_wal(conn)
            conn.raw.execute(f"PRAGMA synchronous = {self.params.synchronous.upper()}")
            conn.raw.execute("PRAGMA foreign_keys = ON")
            conn.raw.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
            conn.raw.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _enable_wal(self, conn: Connection) -> None:
        """Switch a new file to WAL. Connections switching at once can deadlock (each holds a
        shared lock and waits for the exclusive one), which no busy timeout breaks: so wait in
        short rounds, backing off at random, for up to busy_timeout_s in all."""
        deadline = time.monotonic() + self.params.busy_timeout_s
        conn.raw.execute(f"PRAGMA busy_timeout = {WAL_SWITCH_WAIT_MS}")
        try:
            while True:
                try:
                    conn.db.enable_wal()
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                time.sleep(random.uniform(0.005, 0.05))
        finally:
            conn.raw.execute(f"PRAGMA busy_timeout = {round(self.params.busy_timeout_s * 1000)}")

    def _close_writer(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---- the Storage protocol ----------------------------------------------------------------

    async def connect(self) -> None:
        """Start the writer thread and open (creating if needed) the file in WAL mode."""
        if self._writer is not None:
            return
        writer = WriterThread(f"legato-sqlite-writer:{self.path.name}", self._close_writer)
        try:
            await self._on_writer(
                writer, self._open_writer, "opening the database", self.params.timeout_s
            )
        except BaseException:
            with self._cleanup_scope():
                await writer.stop()
            raise
        self._writer = writer
        self._readers = ReaderPool(
            lambda: connect(self.path, self.params.busy_timeout_s, create=False, shared=True),
            self.params.readers,
        )

    async def migrate(self) -> list[int]:
        return await self._write(
            lambda conn: apply_migrations(conn.db, str(self.path)),
            "migrating the schema",
            self.params.migrate_timeout_s,
        )

    async def schema_version(self) -> int:
        return await self._read(lambda conn: schema_version(conn.db), "reading the schema version")

    async def write(self, batch: Batch) -> None:
        if len(batch):
            await self._write(
                lambda conn: write_batch(conn.raw, batch), "writing a batch", self.params.timeout_s
            )

    async def user_stats(self, user: str, days: int, now: dt.datetime) -> dict[str, Any]:
        return await self._read(
            lambda conn: queries.user_stats(conn, user, days, now), "reading user stats"
        )

    async def progress(self, user: str, period: Period, since: dt.datetime) -> list[dict[str, Any]]:
        return await self._read(
            lambda conn: queries.progress(conn, user, period, since), "reading progress"
        )

    async def list_sessions(self, user: str | None, limit: int) -> list[dict[str, Any]]:
        return await self._read(
            lambda conn: queries.list_sessions(conn, user, limit), "listing sessions"
        )

    async def get_session(
        self, session_id: str, after_seq: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        return await self._read(
            lambda conn: queries.get_session(conn, session_id, after_seq, limit),
            "reading a session",
        )

    async def last_event(self, session_id: str) -> dict[str, Any] | None:
        return await self._read(
            lambda conn: queries.last_event(conn, session_id), "reading a session's last event"
        )

    async def renew_leases(self, holder: str, session_ids: list[str], now: dt.datetime) -> None:
        if session_ids:
            await self._write(
                lambda conn: renew_leases(conn.raw, holder, session_ids, now),
                "renewing leases",
                self.params.timeout_s,
            )

    async def expired_leases(self, before: dt.datetime) -> list[SessionRecord]:
        return await self._read(
            lambda conn: queries.expired_leases(conn, before), "reading expired leases"
        )

    async def get_checkpoint(self, session_id: str) -> CheckpointRecord | None:
        return await self._read(
            lambda conn: queries.get_checkpoint(conn, session_id), "reading a checkpoint"
        )

    async def get_fingerprint(
        self, path: str, size: int, mtime_ns: int, version: int
    ) -> FingerprintRecord | None:
        return await self._read(
            lambda conn: fingerprints.get_fingerprint(conn, path, size, mtime_ns, version),
            "reading a fingerprint",
        )

    async def put_fingerprint(self, record: FingerprintRecord) -> None:
        await self._write(
            lambda conn: fingerprints.put_fingerprint(conn.raw, record),
            "writing a fingerprint",
            self.params.timeout_s,
        )

    async def close(self) -> None:
        """Finish queued writes, then close every connection and end the writer thread."""
        writer, self._writer = self._writer, None
        readers, self._readers = self._readers, None
        with self._cleanup_scope():
            if readers is not None:
                await trio.to_thread.run_sync(readers.close)
            if writer is not None:
                await writer.stop()


def open_sqlite(url: str, params: SQLiteParams) -> SQLiteStorage:
    return SQLiteStorage(url, params)
