"""The recorder: everything sessions and offline runs produce goes to storage through it.

Producers hand records over with plain method calls that never block or wait
(``session_started``, ``events``, ``session_ended``); one flusher task (``run``) writes them
as ``Batch``es through the ``Storage`` at most ``flush_interval_s`` after the oldest was handed
over, sooner once ``flush_events`` events are waiting, each write under ``timeout_s``.

When the database cannot take a batch (``StorageUnavailable`` or the timeout), the batch goes
to the on-disk spool (``legato.records.spool``) and every later batch follows it there, so batches
reach the database in the order they were made; a retry loop with exponential backoff replays
the spool, oldest first, and direct writes resume once it is empty. Memory is bounded: if
``max_pending_events`` pile up while a write is stuck, they are moved to the spool (after the
stuck batch, to keep the order). When the spool is full too, a batch's events cannot be kept:
they are counted per session (``Tally.unsaved``) and the session is told
(``storage_spool_full``); its session and result rows stay in memory and are retried. A
batch the database refuses for another reason (a fault, not an outage) is never retried: it is
kept aside in the spool directory (``rejected-*.jsonl``) and its events are counted and
reported the same way (``storage_failed``).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import attrs
import trio

from ..config.settings import ServerSettings
from ..protocol.messages import ErrorCode
from ..storage import (
    Batch,
    CheckpointRecord,
    EventRecord,
    ResultRecord,
    SessionRecord,
    Storage,
    StorageError,
    StorageUnavailable,
)
from .spool import Spool, Spooled, encode_batch

log = logging.getLogger("legato.recorder")

RETRY_FIRST_S = 0.25
REPLAY_SLICE_S = 0.5
"""Longest stretch of spool replay before the flusher looks at new records again."""

T = TypeVar("T")
Notify = Callable[[str, str], None]
Outcome = Literal["ok", "unavailable", "rejected"]


@attrs.frozen
class RecorderSettings:
    """How the recorder batches, times out, retries and spools (from ``[server]``)."""

    spool_dir: Path
    spool_max_bytes: int = 256 << 20
    flush_interval_s: float = 0.25
    flush_events: int = 1000
    max_pending_events: int = 100_000
    timeout_s: float = 10.0
    retry_max_s: float = 30.0

    @classmethod
    def from_server(cls, settings: ServerSettings, url: str) -> RecorderSettings:
        return cls(
            spool_dir=Path(settings.spool_dir) if settings.spool_dir else default_spool_dir(url),
            spool_max_bytes=settings.spool_max_bytes,
            flush_interval_s=settings.flush_interval_s,
            flush_events=settings.flush_events,
            max_pending_events=settings.max_pending_events,
            timeout_s=settings.storage_timeout_s,
            retry_max_s=settings.storage_retry_max_s,
        )


def default_spool_dir(url: str) -> Path:
    """``<file>-spool`` next to a SQLite file (``sqlite:///rel.db``, ``sqlite:////abs.db``),
    else ``legato-spool`` in the working directory."""
    parts = urlsplit(url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.scheme.startswith("sqlite") and path and path != ":memory:":
        db = Path(path)
        return db.with_name(db.name + "-spool")
    return Path("legato-spool")


@attrs.define
class Tally:
    """Events of one session (or of the whole process) by where they are: written to the
    database, waiting in the spool, or lost because the spool was full."""

    stored: int = 0
    spooled: int = 0
    unsaved: int = 0


@attrs.define
class _Inflight:
    batch_id: int
    batch: Batch
    spooled: bool = False


def _events_by_session(events: Iterable[EventRecord]) -> Counter[str]:
    return Counter(e.session_id for e in events)


Stored = Callable[[CheckpointRecord], None]
"""Called with a checkpoint once the database holds it."""


class Recorder:
    """See the module docstring. ``start``, then ``run`` in a nursery, then ``close``."""

    def __init__(self, storage: Storage, settings: RecorderSettings) -> None:
        self.storage = storage
        self.settings = settings
        self.spool = Spool(settings.spool_dir, settings.spool_max_bytes)
        self.totals = Tally()
        self.adopted_events = 0  # events from an earlier process's spool, written now
        self.ready = False  # connected and migrated
        self._sessions: list[SessionRecord] = []
        self._events: list[EventRecord] = []
        self._results: list[ResultRecord] = []
        self._checkpoints: dict[str, CheckpointRecord] = {}  # the latest per session
        self._on_checkpoint: dict[str, tuple[CheckpointRecord, Stored]] = {}
        """Each session's newest checkpoint with a callback, and that callback."""
        self._oldest: float | None = None
        self._tallies: dict[str, Tally] = {}
        self._notify: dict[str, Notify] = {}
        self._ended: set[str] = set()
        self._inflight: _Inflight | None = None
        self._settled: set[int] = set()  # spooled batch ids the database already took
        self._next_id = 0
        self._wakeup = trio.Event()
        self._overflow = trio.Event()
        self._taken = trio.Event()
        self._closing = False
        self._close_timeout = 0.0
        self._done = trio.Event()
        self._sealed = False  # closed: nothing handed over now can be saved
        self._retry_at = 0.0
        self._backoff = RETRY_FIRST_S
        self._outage: str | None = None
        self._spool_lock = trio.Lock()
        self._spool_problem = ""

    # ---- hand-over (never blocks) -------------------------------------------------------

    def session_started(self, record: SessionRecord, notify: Notify | None = None) -> Tally:
        """Record a new session; ``notify(code, message)`` tells its client about lost
        events. Returns the session's live ``Tally``."""
        tally = self._tallies.setdefault(record.id, Tally())
        if self._late(1):
            return tally
        if notify is not None:
            self._notify[record.id] = notify
        self._sessions.append(record)
        self._arm()
        return tally

    def events(self, records: list[EventRecord]) -> None:
        if not records or self._late(len(records)):
            return
        self._events.extend(records)
        self._arm()
        if len(self._events) >= self.settings.flush_events:
            self._wakeup.set()
        if len(self._events) >= self.settings.max_pending_events:
            self._overflow.set()

    def checkpoint(self, record: CheckpointRecord, stored: Stored | None = None) -> None:
        """A live session's latest checkpoint, written after the events handed over before it
        (one waiting per session: a newer one replaces it); ``stored(record)`` is called once
        it is in the database (not when an older one is). Checkpoints are not spooled: they
        matter only while the database answers."""
        if self._sealed:
            return
        self._checkpoints[record.session_id] = record
        if stored is not None:
            self._on_checkpoint[record.session_id] = (record, stored)
        self._arm()

    def session_ended(self, record: SessionRecord, result: ResultRecord | None) -> None:
        if self._late(1):
            return
        self._checkpoints.pop(record.id, None)
        self._on_checkpoint.pop(record.id, None)
        self._sessions.append(record)
        if result is not None:
            self._results.append(result)
        self._ended.add(record.id)
        self._arm()

    @property
    def pending_events(self) -> int:
        return len(self._events)

    async def wait_room(self) -> None:
        """For producers that may wait (offline runs): until fewer than half of
        ``max_pending_events`` are waiting."""
        while len(self._events) >= self.settings.max_pending_events // 2:
            taken = self._taken
            self._wakeup.set()
            await taken.wait()

    def _late(self, count: int) -> bool:
        """Records handed over after the recorder closed cannot be saved: say so."""
        if self._sealed:
            log.error("%d record(s) arrived after storage was closed and were not saved", count)
            return True
        return False

    def _arm(self) -> None:
        if self._oldest is None:
            self._oldest = trio.current_time()
            self._wakeup.set()

    def _take(self) -> Batch:
        sessions = {s.id: s for s in self._sessions}  # a session's latest row supersedes
        results = {r.session_id: r for r in self._results}
        checkpoints = tuple(self._checkpoints.values())
        batch = Batch(
            tuple(sessions.values()), tuple(self._events), tuple(results.values()), checkpoints
        )
        self._sessions, self._events, self._results = [], [], []
        self._checkpoints = {}
        self._oldest = None
        self._taken.set()
        self._taken = trio.Event()
        return batch

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool (adopting what earlier processes left) and connect and migrate.
        A database that cannot be reached is logged loudly and retried (records spool
        meanwhile); any other ``StorageError`` (bad URL, wrong credentials) is raised, with
        the spool and the storage closed again."""
        try:
            await self._start()
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._on_spool(self.spool.close)
                await self.storage.close()
            raise

    async def _start(self) -> None:
        adopted = await self._on_spool(self.spool.open)
        if adopted:
            log.warning(
                "spool %s: %d segment(s) left by an earlier process will be written to %s",
                self.settings.spool_dir,
                len(adopted),
                self.storage.url,
            )
        await self._connect(raise_errors=True)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The flusher: until ``close``, then a last flush and replay within its timeout.
        Cancelled outright, it still spools what is in memory. Closes the storage at the
        end."""
        task_status.started()
        try:
            while not self._closing:
                with trio.move_on_at(self._next_deadline()):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()
                await self._tick()
            with trio.move_on_after(self._close_timeout):
                await self._flush()
                await self._drain_spool()
        finally:
            with trio.CancelScope(shield=True):
                await self._spool_pending(final=True)
                self._sealed = True
                await self._on_spool(self._close_spool)
                with trio.move_on_after(self.settings.timeout_s):
                    await self.storage.close()
            self._done.set()

    async def close(self, timeout: float) -> None:
        """Flush everything, giving the database ``timeout`` seconds; what it does not take
        stays in the spool for the next process (and is logged)."""
        self._close_timeout = timeout
        self._closing = True
        self._wakeup.set()
        await self._done.wait()

    def _close_spool(self) -> None:
        left = not self.spool.empty
        self.spool.close()
        t = self.totals
        if self._sessions or self._results:
            log.error(
                "storage: %d session row(s) and %d result(s) could not be saved (database "
                "unavailable, spool full)",
                len(self._sessions),
                len(self._results),
            )
        if left:
            log.warning(
                "storage: %d events written, %d still in the spool %s (written by the next "
                "legato process that uses it), %d unsaved",
                t.stored,
                t.spooled,
                self.settings.spool_dir,
                t.unsaved,
            )
        else:
            log.info("storage: %d events written, %d unsaved", t.stored, t.unsaved)

    # ---- the flusher ----------------------------------------------------------------------

    def _next_deadline(self) -> float:
        deadline = math.inf
        if self._oldest is not None:
            deadline = self._oldest + self.settings.flush_interval_s
            if len(self._events) >= self.settings.flush_events:
                deadline = trio.current_time()
        if not self.ready or not self.spool.empty:
            deadline = min(deadline, self._retry_at)
        return deadline

    def _due(self) -> bool:
        if self._oldest is None:
            return False
        late = trio.current_time() >= self._oldest + self.settings.flush_interval_s
        return late or len(self._events) >= self.settings.flush_events

    async def _tick(self) -> None:
        if self._due():
            await self._flush()
        if trio.current_time() >= self._retry_at:
            if not self.ready:
                await self._guarded(self._connect(raise_errors=False))
            if self.ready and not self.spool.empty:
                await self._replay(trio.current_time() + REPLAY_SLICE_S)

    async def _flush(self) -> None:
        batch = self._take()
        if not len(batch):
            return
        inflight = self._inflight = _Inflight(self._new_id(), batch)
        direct = self.ready and self.spool.empty and trio.current_time() >= self._retry_at
        outcome = await self._guarded(self._write(batch)) if direct else "unavailable"
        if outcome == "ok":
            self._count_stored(batch, spooled=inflight.spooled, adopted=False)
            if inflight.spooled:
                self._settled.add(inflight.batch_id)  # its replay must not count it again
        elif inflight.spooled:
            pass  # moved to the spool during the write: the replay deals with it
        elif outcome == "rejected":
            await self._reject(batch, spooled=False)
        else:
            with trio.CancelScope(shield=True):
                await self._to_spool(inflight.batch_id, batch)
        self._inflight = None

    async def _replay(self, until: float) -> bool:
        """Write spooled batches in order until the spool is empty (True), the database
        fails (False), or ``until`` passes (False)."""
        while trio.current_time() < until:
            item: Spooled | None = await self._on_spool(self.spool.next)
            if item is None:
                self._recovered()
                return True
            outcome = await self._guarded(self._write(item.batch))
            if outcome == "unavailable":
                return False
            if outcome == "rejected":
                await self._reject(item.batch, spooled=not item.adopted)
            with trio.CancelScope(shield=True):
                await self._on_spool(self.spool.consume, item)
            if outcome == "ok":
                skip = item.batch_id in self._settled and not item.adopted
                if skip:
                    self._settled.discard(item.batch_id)
                else:
                    self._count_stored(item.batch, spooled=True, adopted=item.adopted)
            if self._due():
                await self._flush()
        return False

    async def _drain_spool(self) -> None:
        if not self.ready:
            await self._connect(raise_errors=False)
        if self.ready:
            await self._replay(math.inf)

    # ---- writing --------------------------------------------------------------------------

    async def _connect(self, *, raise_errors: bool) -> None:
        try:
            with trio.fail_after(self.settings.timeout_s):
                await self.storage.connect()
                applied = await self.storage.migrate()
        except (StorageUnavailable, trio.TooSlowError) as exc:
            self._failed(exc)
            return
        except StorageError as exc:
            if raise_errors:
                raise
            self._failed(exc)
            return
        self.ready = True
        self._backoff = RETRY_FIRST_S
        self._retry_at = 0.0
        if applied:
            log.info("storage %s: applied migrations %s", self.storage.url, applied)
        self._recovered()

    async def _guarded(self, work: Awaitable[T]) -> T:
        """Await a database call; meanwhile, records piling up past ``max_pending_events``
        move to the spool."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._guard)
            result = await work
            nursery.cancel_scope.cancel()
        return result

    async def _guard(self) -> None:
        while True:
            await self._overflow.wait()
            self._overflow = trio.Event()
            with trio.CancelScope(shield=True):
                await self._spool_pending()

    async def _write(self, batch: Batch) -> Outcome:
        try:
            with trio.fail_after(self.settings.timeout_s):
                await self.storage.write(batch)
        except (StorageUnavailable, trio.TooSlowError) as exc:
            self._failed(exc)
            return "unavailable"
        except Exception:
            log.exception(
                "storage %s rejected a batch of %d events; it is kept in %s/rejected-*.jsonl",
                self.storage.url,
                len(batch.events),
                self.spool.directory,
            )
            return "rejected"
        self._backoff = RETRY_FIRST_S
        self._recovered()
        return "ok"

    def _failed(self, exc: BaseException) -> None:
        why = str(exc) or f"no answer within {self.settings.timeout_s:g} s"
        if self._outage is None:
            log.warning(
                "STORAGE UNAVAILABLE (%s): sessions go on; records are spooled to %s and "
                "written when the database answers again",
                why,
                self.spool.directory,
            )
        self._outage = why
        self._retry_at = trio.current_time() + self._backoff
        self._backoff = min(self._backoff * 2, self.settings.retry_max_s)

    def _recovered(self) -> None:
        """The database answers and nothing waits in the spool: the outage is over."""
        if self._outage is not None and self.ready and self.spool.empty:
            log.warning(
                "storage %s is available again; nothing waits in the spool", self.storage.url
            )
            self._outage = None

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # ---- the spool ------------------------------------------------------------------------

    async def _on_spool(self, fn: Callable[..., T], *args: Any) -> T:
        """Spool file work, in a worker thread, one call at a time."""
        async with self._spool_lock:
            return await trio.to_thread.run_sync(fn, *args)

    async def _append(self, batch_id: int, batch: Batch) -> bool:
        try:
            if await self._on_spool(self.spool.append, batch, batch_id):
                return True
            self._spool_problem = f"the spool ({self.settings.spool_max_bytes} bytes) is full"
        except OSError as exc:
            log.error("spool %s: cannot write: %s", self.spool.directory, exc)
            self._spool_problem = f"the spool cannot be written ({exc.strerror or exc})"
        return False

    async def _to_spool(self, batch_id: int, batch: Batch) -> None:
        if await self._append(batch_id, batch):
            self._count_spooled(batch)
        else:
            self._lose(batch)

    async def _spool_pending(self, final: bool = False) -> None:
        """Move what is in memory (the batch being written first) to the spool. Unless
        ``final``, a batch being written that does not fit is left to its write."""
        inflight = self._inflight
        if inflight is not None and not inflight.spooled:
            if not await self._append(inflight.batch_id, inflight.batch):
                if final:
                    self._lose(inflight.batch)
                self._lose(self._take())  # newer records cannot go in ahead of it
                return
            inflight.spooled = True
            self._count_spooled(inflight.batch)
        batch = self._take()
        if len(batch):
            await self._to_spool(self._new_id(), batch)

    async def _reject(self, batch: Batch, *, spooled: bool) -> None:
        """A batch the database refuses (not an outage): kept aside for a person to look at,
        never retried; its events count as unsaved."""
        path = self.spool.directory / f"rejected-{self.spool.prefix}.jsonl"

        def keep() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as f:
                f.write(encode_batch(batch, 0))

        try:
            await trio.to_thread.run_sync(keep)
        except OSError as exc:
            log.error("cannot keep the rejected batch in %s: %s", path, exc)
        self._count_lost(batch, ErrorCode.STORAGE_FAILED, "the database rejected them", spooled)

    # ---- accounting -----------------------------------------------------------------------

    def _count_stored(self, batch: Batch, *, spooled: bool, adopted: bool) -> None:
        if adopted:
            self.adopted_events += len(batch.events)
            return
        for session_id, n in _events_by_session(batch.events).items():
            tally = self._tallies.get(session_id)
            if tally is not None:
                tally.stored += n
                if spooled:
                    tally.spooled -= n
        self.totals.stored += len(batch.events)
        if spooled:
            self.totals.spooled -= len(batch.events)
        for checkpoint in batch.checkpoints:
            waiting = self._on_checkpoint.get(checkpoint.session_id)
            if waiting is not None and waiting[0] is checkpoint:
                del self._on_checkpoint[checkpoint.session_id]
                waiting[1](checkpoint)
        self._forget_ended(batch)

    def _count_spooled(self, batch: Batch) -> None:
        for session_id, n in _events_by_session(batch.events).items():
            tally = self._tallies.get(session_id)
            if tally is not None:
                tally.spooled += n
        self.totals.spooled += len(batch.events)

    def _lose(self, batch: Batch) -> None:
        """The spool cannot take a batch: its events are lost (counted, and each session
        told); its session and result rows go back to memory to be tried again."""
        why = f"the database is unavailable and {self._spool_problem}"
        self._count_lost(batch, ErrorCode.STORAGE_SPOOL_FULL, why, spooled=False)
        self._sessions[:0] = batch.sessions
        self._results[:0] = batch.results
        if batch.sessions or batch.results:
            self._arm()

    def _count_lost(self, batch: Batch, code: str, why: str, spooled: bool) -> None:
        if not batch.events:
            return
        by_session = _events_by_session(batch.events)
        log.error(
            "%d events of %d session(s) could not be saved: %s",
            len(batch.events),
            len(by_session),
            why,
        )
        self.totals.unsaved += len(batch.events)
        if spooled:
            self.totals.spooled -= len(batch.events)
        for session_id, n in by_session.items():
            tally = self._tallies.get(session_id)
            if tally is None:
                continue
            tally.unsaved += n
            if spooled:
                tally.spooled -= n
            notify = self._notify.get(session_id)
            if notify is not None:
                notify(code, f"{tally.unsaved} events of this session could not be saved: {why}")

    def _forget_ended(self, batch: Batch) -> None:
        for record in batch.sessions:
            if record.id in self._ended and record.status != "active":
                self._ended.discard(record.id)
                self._tallies.pop(record.id, None)
                self._notify.pop(record.id, None)
