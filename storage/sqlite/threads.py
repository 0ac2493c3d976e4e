"""Where SQLite's blocking calls run: one writer thread that owns the only write connection,
and a pool of read connections used from trio's worker threads.

The writer is a dedicated thread fed by a FIFO queue rather than ``trio.to_thread`` behind a
``CapacityLimiter(1)``: the write connection is then created, used and closed on one thread
(``check_same_thread`` stays on as a guard), and writes are applied strictly in the order they
were submitted, which a spool replaying batches relies on. Readers need no such order: WAL
lets any number of them read a consistent snapshot while the writer commits.

Every call is bounded twice: inside SQLite by a deadline checked from the progress handler
(the statement is interrupted and rolled back) and by ``busy_timeout`` for lock waits; and on
the trio side by a hard limit after which the caller stops waiting (``Stalled``), for the
case where the thread is stuck where SQLite cannot interrupt it (a hung disk).
"""

from __future__ import annotations

import contextlib
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import attrs
import outcome
import sqlite_utils
import trio

from ..common import yield_to_live_work

T = TypeVar("T")

PROGRESS_STEPS = 10_000
"""SQLite VM instructions between deadline checks: well under a millisecond of work, and
rare enough that the check costs nothing measurable on the insert path."""


class Stalled(Exception):
    """The thread did not answer within the hard limit; the call was abandoned."""


class Connection:
    """A sqlite3 connection in autocommit mode (transactions are explicit), with a
    sqlite-utils view of it and a deadline enforced through the progress handler."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw
        self.db = sqlite_utils.Database(raw, execute_plugins=False)
        self._deadline = math.inf
        raw.set_progress_handler(self._expired, PROGRESS_STEPS)

    def _expired(self) -> bool:
        return time.monotonic() > self._deadline

    @contextlib.contextmanager
    def budget(self, seconds: float) -> Iterator[Connection]:
        """Interrupt any statement still running ``seconds`` from now (SQLITE_INTERRUPT)."""
        self._deadline = time.monotonic() + seconds
        try:
            yield self
        finally:
            self._deadline = math.inf
            if self.raw.in_transaction:
                self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()


def connect(path: Path, busy_timeout_s: float, *, create: bool, shared: bool) -> Connection:
    """Open ``path`` (created only when ``create``); ``shared`` connections may be used from
    several threads, one at a time."""
    mode = "rwc" if create else "rw"
    raw = sqlite3.connect(
        f"file:{quote(str(path))}?mode={mode}",
        uri=True,
        timeout=busy_timeout_s,
        isolation_level=None,
        check_same_thread=not shared,
    )
    try:
        return Connection(raw)
    except BaseException:
        raw.close()
        raise


@attrs.define(eq=False)
class _Job:
    fn: Callable[[], object]
    token: trio.lowlevel.TrioToken
    done: trio.Event = attrs.field(factory=trio.Event)
    result: outcome.Outcome | None = None
    abandoned: bool = False


class WriterThread:
    """One daemon thread running submitted functions one at a time, in submission order, and
    ``on_exit`` (closing its connection) when it is stopped."""

    def __init__(self, name: str, on_exit: Callable[[], None]) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._on_exit = on_exit
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        yield_to_live_work()
        try:
            while (job := self._jobs.get()) is not None:
                if job.abandoned:
                    continue
                job.result = outcome.capture(job.fn)
                with contextlib.suppress(trio.RunFinishedError):
                    job.token.run_sync_soon(job.done.set)
        finally:
            self._on_exit()

    async def run(self, fn: Callable[[], T], hard_limit_s: float) -> T:
        """Run ``fn`` on the writer thread. If the caller is cancelled or the hard limit passes
        first, a job that has not started is skipped; one that has started completes."""
        job = _Job(fn, trio.lowlevel.current_trio_token())
        self._jobs.put(job)
        try:
            with trio.move_on_after(hard_limit_s):
                await job.done.wait()
        finally:
            if job.result is None:
                job.abandoned = True
        if job.result is None:
            raise Stalled
        return job.result.unwrap()

    async def stop(self) -> None:
        """Let queued jobs finish, then run ``on_exit`` and end the thread."""
        self._jobs.put(None)
        await trio.to_thread.run_sync(self._thread.join, abandon_on_cancel=True)


class ReaderPool:
    """Up to ``size`` read-only connections, opened on demand and reused."""

    def __init__(self, opener: Callable[[], Connection], size: int) -> None:
        self._opener = opener
        self._limiter = trio.CapacityLimiter(size)
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _take(self) -> Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        conn = self._opener()
        conn.raw.execute("PRAGMA query_only = ON")
        return conn

    def _give(self, conn: Connection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    async def run(self, fn: Callable[[Connection], T], budget_s: float, hard_limit_s: float) -> T:
        """Run ``fn`` with a pooled connection in a worker thread; a cancelled caller stops
        waiting at once (reads have no effects to wait for)."""

        def job() -> T:
            conn = self._take()
            try:
                with conn.budget(budget_s):
                    return fn(conn)
            finally:
                self._give(conn)

        with trio.move_on_after(hard_limit_s):
            return await trio.to_thread.run_sync(job, limiter=self._limiter, abandon_on_cancel=True)
        raise Stalled

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
