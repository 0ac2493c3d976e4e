"""The postgres backend against the real server (127.0.0.1:5432, or $LEGATO_TEST_POSTGRES):
URL and credential mistakes, the server stopped and restarted under a running writer, the
trio-asyncio bridge (cancellation, concurrency, shutdown), migrations and idempotent writes.
Each test gets a database of its own, created through the ``postgres`` database and dropped at
the end. Without a reachable server these tests are skipped, loudly."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import shutil
import socket
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import attrs
import pytest
import trio
from records import pitch_events, session_record

from legato.storage import (
    Batch,
    EventRecord,
    ResultRecord,
    SessionRecord,
    StorageError,
    StorageUnavailable,
    redact,
)
from legato.storage_plugins.postgres import PostgresParams, PostgresStorage
from legato.storage_plugins.postgres.bridge import AsyncioBridge, BridgeClosed
from legato.testing import registry

ADMIN_URL = os.environ.get("LEGATO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
NOW = dt.datetime(2025, 3, 5, 18, 30, tzinfo=dt.UTC)
FAST = PostgresParams(connect_timeout_s=2.0, command_timeout_s=5.0)


# ---- the server and a database per test ------------------------------------------------------


def _on_asyncio(fn: Any, *args: Any) -> Any:
    """Run an asyncpg coroutine function to completion on a private asyncio loop."""
    return asyncio.run(fn(*args))


async def _admin(sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(ADMIN_URL, timeout=3)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def _url_for(database: str) -> str:
    return urlsplit(ADMIN_URL)._replace(path=f"/{database}").geturl()


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The admin URL, or a loud skip when no server answers there."""
    try:
        _on_asyncio(_admin, "SELECT 1")
    except Exception as exc:
        pytest.skip(
            f"!!! POSTGRES NOT REACHABLE at {redact(ADMIN_URL)} ({type(exc).__name__}: {exc}) "
            "-- the Postgres storage tests are SKIPPED; start the server (.ci/run does) !!!"
        )
    return ADMIN_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"legato_test_{uuid.uuid4().hex[:12]}"
    _on_asyncio(_admin, f'CREATE DATABASE "{name}"')
    try:
        yield _url_for(name)
    finally:
        _on_asyncio(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _sql(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """A query on the test's database from trio (its own connection, on a worker thread)."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url, timeout=3)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return await trio.to_thread.run_sync(_on_asyncio, run)


async def _opened(url: str, params: PostgresParams = FAST) -> PostgresStorage:
    storage = PostgresStorage(url, params)
    await storage.connect()
    await storage.migrate()
    return storage


# ---- records ---------------------------------------------------------------------------------


def _session(session_id: str, status: str = "active", user: str | None = "ana") -> SessionRecord:
    return session_record(session_id, status, user, NOW, 30.0, 30.0)


def _events(session_id: str, first: int, count: int) -> tuple[EventRecord, ...]:
    return tuple(pitch_events(session_id, first, count))


def _result(session_id: str, score: float) -> ResultRecord:
    return ResultRecord(
        session_id=session_id,
        pitch_accuracy=score,
        timing_consistency=score,
        tempo_stability=None,
        dynamics_range_db=12.0,
        overall_score=score,
        notes=3,
        voiced_frames=40,
        counts='{"pitch":40}',
        feedback='{"practice":{}}',
        engine_version="test",
        processing_time_ms=5.0,
        created_at=NOW + dt.timedelta(seconds=31),
    )


async def _event_counts(url: str, session_id: str) -> tuple[int, int, int]:
    """(rows, distinct seqs, max seq) of one session's events."""
    row = (
        await _sql(
            url,
            "SELECT count(*), count(DISTINCT seq), coalesce(max(seq), 0) FROM events "
            "WHERE session_id = $1",
            session_id,
        )
    )[0]
    return row[0], row[1], row[2]


# ---- URL and credential mistakes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://", "names no database"),
        ("postgresql://127.0.0.1:5432", "names no database"),
        ("postgresql://u@127.0.0.1:notaport/db", "port must be a number"),
        ("postgresql://u@127.0.0.1:99999/db", "port must be a number"),
        ("postgresql://u@[::1/db", "malformed database URL"),
        ("postgresql:legato", "malformed database URL"),
        ("postgresql://u@h/db?sslmode", "query string must be key=value"),
        ("postgresql://u:hunter2@127.0.0.1:nope/db", "port must be a number"),
    ],
)
def test_malformed_urls_are_refused_with_the_problem_named(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message) as caught:
        PostgresStorage(url, PostgresParams())
    assert not isinstance(caught.value, StorageUnavailable)
    assert "hunter2" not in str(caught.value)


def test_min_size_above_max_size_is_refused() -> None:
    with pytest.raises(StorageError, match=r"min_size \(9\) must not exceed max_size \(2\)"):
        PostgresStorage("postgresql://u@h/db", PostgresParams(min_size=9, max_size=2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _connect_error(url: str, params: PostgresParams = FAST) -> StorageError:
    storage = PostgresStorage(url, params)
    start = trio.current_time()
    try:
        with pytest.raises(StorageError) as caught:
            await storage.connect()
    finally:
        await storage.close()
    assert trio.current_time() - start < params.connect_timeout_s + 2.0, "connect did not fail fast"
    return caught.value


async def test_nothing_listening_is_unavailable_and_says_refused() -> None:
    port = _free_port()
    error = await _connect_error(f"postgresql://u:hunter2@127.0.0.1:{port}/legato")
    assert isinstance(error, StorageUnavailable)
    assert f"127.0.0.1:{port}/legato" in str(error)
    assert "connection refused" in str(error)
    assert "hunter2" not in str(error)


async def test_unknown_host_is_unavailable_and_names_the_host() -> None:
    error = await _connect_error("postgresql://u@no-such-host.invalid:5432/legato")
    assert isinstance(error, StorageUnavailable)
    assert "no-such-host.invalid" in str(error)
    assert "resolve" in str(error) or "no answer" in str(error)


async def test_a_server_that_never_answers_times_out() -> None:
    """A listener that accepts and then says nothing (a hung server, a wrong service)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    held: list[trio.SocketStream] = []

    async def accept_silently() -> None:
        while True:
            held.append(await listeners[0].accept())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_silently)
        params = PostgresParams(connect_timeout_s=0.5, command_timeout_s=1.0)
        error = await _connect_error(f"postgresql://u@127.0.0.1:{port}/legato", params)
        nursery.cancel_scope.cancel()
    assert isinstance(error, StorageUnavailable)
    assert f"127.0.0.1:{port}/legato" in str(error)
    assert "no answer within 0.5 s" in str(error)


async def test_a_user_that_does_not_exist_is_a_clear_error(pg_server: str) -> None:
    role = f"nobody_{uuid.uuid4().hex[:8]}"
    url = urlsplit(pg_server)._replace(netloc=f"{role}:hunter2@127.0.0.1:5432").geturl()
    error = await _connect_error(url)
    assert not isinstance(error, StorageUnavailable), "wrong credentials are not an outage"
    text = str(error)
    assert f'role "{role}" does not exist' in text
    assert "check the user" in text
    assert "hunter2" not in text


async def test_a_database_that_does_not_exist_is_a_clear_error(pg_server: str) -> None:
    name = f"legato_missing_{uuid.uuid4().hex[:8]}"
    error = await _connect_error(_url_for(name))
    assert not isinstance(error, StorageUnavailable)
    assert f"database {name!r} does not exist" in str(error)
    assert f"127.0.0.1:5432/{name}" in str(error)


async def test_calls_before_connect_say_so(pg_url: str) -> None:
    storage = PostgresStorage(pg_url, FAST)
    with pytest.raises(StorageError, match="not connected"):
        await storage.write(Batch(sessions=(_session("s"),)))
    await storage.close()


# ---- migrations ------------------------------------------------------------------------------


async def test_migrations_apply_once_across_concurrent_processes(pg_url: str) -> None:
    storages = [PostgresStorage(pg_url, FAST) for _ in range(4)]
    applied: list[list[int]] = []

    async def migrate(storage: PostgresStorage) -> None:
        await storage.connect()
        applied.append(await storage.migrate())

    async with trio.open_nursery() as nursery:
        for storage in storages:
            nursery.start_soon(migrate, storage)
    try:
        assert sorted(v for versions in applied for v in versions) == [1, 2, 3]
        assert [await s.schema_version() for s in storages] == [3, 3, 3, 3]
        assert await storages[0].migrate() == []
        ledger = await _sql(pg_url, "SELECT version, name FROM schema_migrations")
        assert sorted((r["version"], r["name"]) for r in ledger) == [
            (1, "initial schema"),
            (2, "checkpoints of live sessions"),
            (3, "leases of live sessions"),
        ]
        tables = {
            r["table_name"]
            for r in await _sql(
                pg_url,
                "SELECT table_name FROM information_schema.tables WHERE table_schema='public'",
            )
        }
        assert tables == {
            "schema_migrations",
            "users",
            "sessions",
            "performances",
            "events",
            "analysis_results",
            "progress_metrics",
            "tracks",
            "fingerprints",
            "checkpoints",
            "leases",
        }
    finally:
        for storage in storages:
            await storage.close()


async def test_a_schema_from_a_newer_legato_is_refused(pg_url: str) -> None:
    storage = await _opened(pg_url)
    try:
        await _sql(pg_url, "INSERT INTO schema_migrations (version, name) VALUES (99, 'x')")
        with pytest.raises(StorageError, match="version 99, newer than this legato"):
            await storage.migrate()
    finally:
        await storage.close()


async def test_an_unmigrated_database_says_to_migrate(pg_url: str) -> None:
    storage = PostgresStorage(pg_url, FAST)
    await storage.connect()
    try:
        assert await storage.schema_version() == 0
        with pytest.raises(StorageError, match="legato db migrate"):
            await storage.list_sessions(None, 10)
    finally:
        await storage.close()


# ---- writes ----------------------------------------------------------------------------------


async def test_replayed_and_overlapping_batches_store_each_event_once(pg_url: str) -> None:
    storage = await _opened(pg_url)
    try:
        first = Batch(sessions=(_session("s1"),), events=_events("s1", 1, 300))
        await storage.write(first)
        await storage.write(first)
        await storage.write(Batch(events=_events("s1", 200, 300)))
        twice = _events("s1", 600, 10)
        await storage.write(Batch(events=twice + twice))
        assert await _event_counts(pg_url, "s1") == (509, 509, 609)
        stored = await storage.get_session("s1")
        assert [e["seq"] for e in stored["events"]] == [*range(1, 500), *range(600, 610)]
        assert stored["events"][0] == json.loads(first.events[0].data)
    finally:
        await storage.close()


async def test_events_of_an_unknown_session_are_refused(pg_url: str) -> None:
    storage = await _opened(pg_url)
    try:
        with pytest.raises(StorageError, match="ghost") as caught:
            await storage.write(Batch(events=_events("ghost", 1, 5)))
        assert not isinstance(caught.value, StorageUnavailable)
        assert await _event_counts(pg_url, "ghost") == (0, 0, 0)
    finally:
        await storage.close()


async def test_deleting_a_session_deletes_its_events(pg_url: str) -> None:
    storage = await _opened(pg_url)
    try:
        await storage.write(Batch(sessions=(_session("gone"),), events=_events("gone", 1, 20)))
        await storage.write(Batch(sessions=(_session("kept"),), events=_events("kept", 1, 20)))
        await _sql(pg_url, "DELETE FROM sessions WHERE id = 'gone'")
        assert await _event_counts(pg_url, "gone") == (0, 0, 0)
        assert await _event_counts(pg_url, "kept") == (20, 20, 20)
    finally:
        await storage.close()


async def test_concurrent_sessions_write_concurrently(pg_url: str) -> None:
    storage = await _opened(pg_url, PostgresParams(max_size=4, command_timeout_s=10.0))
    ids = [f"c{n}" for n in range(12)]

    async def one_session(session_id: str) -> None:
        await storage.write(Batch(sessions=(_session(session_id, user=f"u{session_id}"),)))
        for k in range(8):
            await storage.write(Batch(events=_events(session_id, 1 + 100 * k, 100)))
        await storage.write(
            Batch(
                sessions=(_session(session_id, "completed", f"u{session_id}"),),
                results=(_result(session_id, 0.5),),
            )
        )

    try:
        async with trio.open_nursery() as nursery:
            for session_id in ids:
                nursery.start_soon(one_session, session_id)
        for session_id in ids:
            assert await _event_counts(pg_url, session_id) == (800, 800, 800)
        listed = await storage.list_sessions(None, 100)
        assert sorted(s["id"] for s in listed) == sorted(ids)
        assert all(s["status"] == "completed" and s["overall_score"] == 0.5 for s in listed)
    finally:
        await storage.close()


async def test_the_same_batch_from_several_writers_at_once_is_stored_once(pg_url: str) -> None:
    """Each writer sees no stored events and COPYs straight into the table; all but the first
    hit the key and redo the batch through the staging table."""
    storages = [await _opened(pg_url) for _ in range(4)]
    try:
        await storages[0].write(Batch(sessions=(_session("dup"),)))
        for first in (1, 501, 1001):
            batch = Batch(events=_events("dup", first, 500))
            async with trio.open_nursery() as nursery:
                for storage in storages:
                    nursery.start_soon(storage.write, batch)
        assert await _event_counts(pg_url, "dup") == (1500, 1500, 1500)
    finally:
        for storage in storages:
            await storage.close()


async def test_progress_counts_every_session_ended_concurrently(pg_url: str) -> None:
    """Two processes ending sessions of the same user in the same periods at the same moment:
    each recomputation must see the other's committed sessions."""
    storages = [await _opened(pg_url) for _ in range(2)]
    ids = [f"p{n}" for n in range(16)]
    try:
        await storages[0].write(Batch(sessions=tuple(_session(i) for i in ids)))

        async def end(storage: PostgresStorage, session_id: str) -> None:
            await storage.write(
                Batch(
                    sessions=(_session(session_id, "completed"),),
                    results=(_result(session_id, 0.5),),
                )
            )

        async with trio.open_nursery() as nursery:
            for n, session_id in enumerate(ids):
                nursery.start_soon(end, storages[n % 2], session_id)
        for period in ("daily", "weekly", "monthly"):
            rows = await storages[1].progress("ana", period, NOW - dt.timedelta(days=1))
            assert [(r["sessions"], r["practice_s"]) for r in rows] == [(16, 16 * 30.0)], period
    finally:
        for storage in storages:
            await storage.close()


# ---- the server going away and coming back ---------------------------------------------------


def _cluster() -> tuple[str, ...] | None:
    """The pg_ctlcluster command for the local cluster, when this process may run it."""
    host = urlsplit(ADMIN_URL).hostname
    etc = Path("/etc/postgresql")
    if host not in ("127.0.0.1", "localhost") or shutil.which("pg_ctlcluster") is None:
        return None
    if not etc.is_dir() or os.geteuid() != 0:
        return None
    versions = sorted((p.name for p in etc.iterdir()), key=lambda v: [int(x) for x in v.split(".")])
    return (
        ("pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main") if versions else None
    )


async def _ensure_running(cluster: tuple[str, ...]) -> None:
    """Start the cluster unless it is up, and wait until it answers: whatever happened in a
    test, the server is left running for everyone else."""
    with trio.fail_after(60):
        while True:
            try:
                await trio.to_thread.run_sync(_on_asyncio, _admin, "SELECT 1")
                return
            except Exception:
                status = await trio.run_process(
                    [*cluster, "status"], capture_stdout=True, capture_stderr=True, check=False
                )
                if status.returncode == 3:  # not running (pg_ctl status)
                    await trio.run_process([*cluster, "start"], check=False)
                await trio.sleep(0.2)


async def test_server_stopped_and_restarted_under_a_running_writer(pg_url: str) -> None:
    """Writes fail promptly with StorageUnavailable while the server is down, succeed again on
    the same Storage once it is back, and retrying the failed batch duplicates nothing."""
    cluster = _cluster()
    if cluster is None:
        pytest.skip(
            "!!! cannot stop/start the local Postgres cluster here (needs root, pg_ctlcluster "
            "and a server on 127.0.0.1) -- the restart test is SKIPPED !!!"
        )
    storage = await _opened(pg_url)
    await storage.write(Batch(sessions=(_session("live"),)))
    pending: deque[Batch] = deque()
    next_seq = 1
    written = 0
    failures: list[tuple[float, StorageError]] = []
    stop_writing = trio.Event()
    progress = trio.Event()

    async def writer() -> None:
        nonlocal next_seq, written, progress
        while not stop_writing.is_set():
            if not pending:
                pending.append(Batch(events=_events("live", next_seq, 50)))
                next_seq += 50
            start = trio.current_time()
            try:
                await storage.write(pending[0])
            except StorageUnavailable as exc:
                failures.append((trio.current_time() - start, exc))
            else:
                pending.popleft()
                written += 1
            progress.set()
            progress = trio.Event()
            await trio.sleep(0.02)

    async def until(condition: Any, timeout_s: float) -> None:
        with trio.fail_after(timeout_s):
            while not condition():
                await progress.wait()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await until(lambda: written >= 10, 10)
            await trio.run_process([*cluster, "stop", "-m", "fast"])
            await until(lambda: len(failures) >= 5, 15)
            written_while_down = written
            await trio.run_process([*cluster, "start"])
            await until(lambda: written >= written_while_down + 10 and not pending, 30)
            stop_writing.set()
    finally:
        with trio.CancelScope(shield=True):
            await _ensure_running(cluster)
            await storage.close()
    assert failures, "no write failed while the server was down"
    slowest = max(seconds for seconds, _ in failures)
    assert slowest < FAST.connect_timeout_s + 1.0, f"a failing write took {slowest:.1f} s"
    where = storage.target.where
    assert all(where in str(exc) for _, exc in failures), [str(e) for _, e in failures]
    assert await _event_counts(pg_url, "live") == (next_seq - 1, next_seq - 1, next_seq - 1)


# ---- the bridge ------------------------------------------------------------------------------


async def test_cancelling_the_trio_caller_cancels_the_asyncio_task() -> None:
    bridge = AsyncioBridge("test-bridge")
    await bridge.start()
    cancelled = threading.Event()
    finished = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finally:
            finished.set()

    try:
        with trio.move_on_after(0.2) as scope:
            await bridge.run(slow)
        assert scope.cancelled_caught
        assert cancelled.is_set() and finished.is_set(), "the asyncio task was not cancelled"
        assert await bridge.run(asyncio.sleep, 0, "still usable") == "still usable"
    finally:
        await bridge.close()


async def test_a_cancelled_query_stops_on_the_server(pg_url: str) -> None:
    storage = await _opened(pg_url)
    marker = f"legato_sleep_{uuid.uuid4().hex[:8]}"

    async def sleep_on_server() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(f"SELECT pg_sleep(30) AS {marker}")
        finally:
            await conn.close()

    async def running() -> int:
        rows = await _sql(
            pg_url,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND state = 'active' "
            "AND pid <> pg_backend_pid()",
            f"%AS {marker}",
        )
        return rows[0][0]

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(storage.bridge.run, sleep_on_server)
            with trio.fail_after(5):
                while await running() == 0:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        with trio.fail_after(5):
            while await running():
                await trio.sleep(0.05)
    finally:
        await storage.close()


async def test_many_concurrent_calls_each_get_their_own_result() -> None:
    bridge = AsyncioBridge("test-bridge")
    await bridge.start()
    rng = random.Random(7)
    delays = [rng.uniform(0, 0.02) for _ in range(1000)]
    results: dict[int, int] = {}

    async def square(n: int, delay: float) -> int:
        await asyncio.sleep(delay)
        if n % 97 == 0:
            raise ValueError(n)
        return n * n

    async def call(n: int) -> None:
        try:
            results[n] = await bridge.run(square, n, delays[n])
        except ValueError as exc:
            results[n] = -exc.args[0]

    try:
        async with trio.open_nursery() as nursery:
            for n in range(1000):
                nursery.start_soon(call, n)
        assert results == {n: (-n if n % 97 == 0 else n * n) for n in range(1000)}
    finally:
        await bridge.close()


async def test_close_stops_the_loop_thread(pg_url: str) -> None:
    storage = await _opened(pg_url)
    thread = storage.bridge.thread
    assert thread is not None and thread.is_alive()
    await storage.close()
    assert not thread.is_alive()
    with pytest.raises(StorageError, match="closed"):
        await storage.list_sessions(None, 1)
    with pytest.raises(StorageError, match="closed"):
        await storage.connect()
    await storage.close()


async def test_close_ends_a_call_still_running_on_the_loop() -> None:
    bridge = AsyncioBridge("test-bridge")
    await bridge.start()
    outcome: list[BaseException] = []

    async def call() -> None:
        try:
            await bridge.run(asyncio.sleep, 30)
        except BridgeClosed as exc:
            outcome.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await trio.sleep(0.1)
            await bridge.close()
    assert len(outcome) == 1, "the call did not end with BridgeClosed"
    assert bridge.thread is not None and not bridge.thread.is_alive()


def test_storage_doc_lists_every_backend_param_with_its_default() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "storage.md").read_text()
    for backend in registry().storage.values():
        section = text.split(f"### `{backend.name}`\n", 1)
        assert len(section) == 2, f"docs/storage.md has no section for {backend.name}"
        table = section[1].split("\n#", 1)[0]
        for field in attrs.fields(backend.params):
            default = field.default
            shown = f'"{default}"' if isinstance(default, str) else f"{default}"
            row = next((r for r in table.splitlines() if r.startswith(f"| `{field.name}` |")), "")
            assert row, f"docs/storage.md: {backend.name} param {field.name} is not documented"
            assert f"| {shown}" in row or f"| `{shown}`" in row, (
                f"docs/storage.md: {backend.name} {field.name} default is {shown}: {row}"
            )
