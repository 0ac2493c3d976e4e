"""The recorder and its spool, against the real SQLite backend: batching delay, outages (a
SQLite file locked by another connection) spooled and replayed in order with nothing lost or
duplicated, the spool's size limit reported per session, a crashed process's spool replayed by
the next one, and the result record built from a practice summary."""

from __future__ import annotations

import datetime as dt
import json
import signal
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from records import pitch_events as events
from records import session_record

from legato.records.practice import result_record, scores
from legato.records.recorder import Recorder, RecorderSettings, Tally, default_spool_dir
from legato.records.spool import Spool, decode_batch, encode_batch
from legato.storage import Batch, SessionRecord, Storage, open_storage
from legato.testing import registry

NOW = dt.datetime(2025, 3, 1, 18, 30, tzinfo=dt.UTC)
BUSY_TIMEOUT_S = 0.2
"""How long a write waits for the test's lock before the backend reports it unavailable."""


def session(session_id: str, status: str = "active", user: str | None = "ana") -> SessionRecord:
    return session_record(session_id, status, user, NOW, 5.0)


def settings(tmp_path: Path, **overrides: Any) -> RecorderSettings:
    values: dict[str, Any] = {
        "spool_dir": tmp_path / "spool",
        "flush_interval_s": 0.25,
        "timeout_s": 5.0,
        "retry_max_s": 0.5,
    }
    return RecorderSettings(**values | overrides)


def open_sqlite(path: Path) -> Storage:
    backend = registry().storage_for_scheme("sqlite")
    assert backend is not None, "the SQLite storage plugin is not installed"
    return open_storage(
        f"sqlite:///{path}", registry(), backend.params(busy_timeout_s=BUSY_TIMEOUT_S)
    )


@asynccontextmanager
async def recording(db: Path, config: RecorderSettings) -> AsyncIterator[Recorder]:
    """A started recorder whose flusher runs for the block; closed (flushed) at the end."""
    recorder = Recorder(open_sqlite(db), config)
    await recorder.start()
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.run)
        try:
            yield recorder
        finally:
            await recorder.close(5.0)


@asynccontextmanager
async def reading(db: Path) -> AsyncIterator[Storage]:
    storage = open_sqlite(db)
    await storage.connect()
    try:
        yield storage
    finally:
        await storage.close()


@contextmanager
def locked(db: Path) -> Iterator[None]:
    """Another connection holding the database with BEGIN EXCLUSIVE: every write fails busy."""
    other = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        other.rollback()
        other.close()


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


async def stored_seqs(storage: Storage, session_id: str) -> list[int]:
    found = await storage.get_session(session_id)
    return [e["seq"] for e in found["events"]]


# ---- the spool on its own -----------------------------------------------------------------


def test_batch_lines_round_trip() -> None:
    batch = Batch(sessions=(session("s1", "completed"),), events=tuple(events("s1", 1, 3)))
    line = encode_batch(batch, 7)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_batch(line) == (7, batch)


def test_spool_keeps_order_rotates_and_deletes_consumed_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, segment_bytes=4096)
    assert spool.open() == []
    assert not (tmp_path / "spool").exists(), "nothing spooled yet: no directory"
    batches = [Batch(events=tuple(events("s", 10 * i + 1, 10))) for i in range(12)]
    for i, batch in enumerate(batches):
        assert spool.append(batch, i)
    assert len(list((tmp_path / "spool").glob("*.jsonl"))) > 1, "segments rotate"
    read = []
    while (item := spool.next()) is not None:
        read.append(item.batch)
        spool.consume(item)
    assert read == batches
    assert spool.empty and list((tmp_path / "spool").glob("*.jsonl")) == []
    spool.close()
    assert list((tmp_path / "spool").iterdir()) == []


def test_spool_refuses_what_does_not_fit(tmp_path: Path) -> None:
    batch = Batch(events=tuple(events("s", 1, 20)))
    size = len(encode_batch(batch, 1))
    spool = Spool(tmp_path / "spool", max_bytes=2 * size + size // 2)
    spool.open()
    assert spool.append(batch, 1) and spool.append(batch, 2)
    assert not spool.append(batch, 3)
    assert spool.bytes == 2 * size
    spool.close()


def test_unconsumed_batches_are_adopted_by_the_next_spool_torn_line_skipped(
    tmp_path: Path,
) -> None:
    first = Spool(tmp_path / "spool", max_bytes=1 << 20)
    first.open()
    kept = [Batch(events=tuple(events("s", 5 * i + 1, 5))) for i in range(3)]
    for i, batch in enumerate(kept):
        first.append(batch, i)
    item = first.next()
    assert item is not None
    first.consume(item)  # the database took the first batch
    segment = next((tmp_path / "spool").glob("*.jsonl"))
    with segment.open("ab") as f:
        f.write(b'{"v":1,"id":9,"sessions":[],"ev')  # a write cut short by a crash
    second = Spool(tmp_path / "spool", max_bytes=1 << 20)
    assert second.open() == [], "a running process's segments are not adopted"
    first.close()
    third = Spool(tmp_path / "spool", max_bytes=1 << 20)
    assert third.open() == [segment]
    replayed = []
    while (item := third.next()) is not None:
        assert item.adopted
        replayed.append(item.batch)
        third.consume(item)
    assert replayed == kept  # the first again (it was never deleted): writes are idempotent
    third.close()
    second.close()
    assert list((tmp_path / "spool").iterdir()) == []


def test_default_spool_dir_is_next_to_the_sqlite_file() -> None:
    assert default_spool_dir("sqlite:///legato.db") == Path("legato.db-spool")
    assert default_spool_dir("sqlite:////var/db/x.db") == Path("/var/db/x.db-spool")
    assert default_spool_dir("postgresql://u@h:5432/db") == Path("legato-spool")


# ---- the recorder against SQLite ----------------------------------------------------------


async def test_events_are_written_within_the_flush_interval(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    async with recording(db, settings(tmp_path)) as recorder, reading(db) as storage:
        tally = recorder.session_started(session("s1"))
        await wait_for(lambda: tally.stored == 0 and recorder.pending_events == 0)
        delays = []
        for burst in range(3):
            recorder.events(events("s1", 10 * burst + 1, 10))
            handed = trio.current_time()
            await wait_for(lambda b=burst: tally.stored == 10 * (b + 1))
            delays.append(trio.current_time() - handed)
            await trio.sleep(0.05 * burst)
        # The interval, plus the write itself: an fsync on a busy CI disk can take a few hundred ms.
        assert max(delays) <= 0.25 + 0.5, delays
        assert await stored_seqs(storage, "s1") == list(range(1, 31))


async def test_a_full_batch_is_written_without_waiting_for_the_interval(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = settings(tmp_path, flush_interval_s=5.0, flush_events=200)
    async with recording(db, config) as recorder:
        tally = recorder.session_started(session("s1"))
        recorder.events(events("s1", 1, 200))
        with trio.fail_after(3.0):  # far below the 5 s interval, with room for a slow fsync
            await wait_for(lambda: tally.stored == 200)


async def test_locked_database_spools_then_replays_in_order_exactly_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    async with recording(db, settings(tmp_path)) as recorder, reading(db) as storage:
        tally = recorder.session_started(session("s1"))
        recorder.events(events("s1", 1, 100))
        await wait_for(lambda: tally.stored == 100)
        with locked(db):
            for i in range(5):
                recorder.events(events("s1", 101 + 100 * i, 100))
                await trio.sleep(0.1)
            recorder.session_ended(session("s1", "completed"), None)
            await wait_for(lambda: tally.spooled == 500 and recorder.pending_events == 0)
            assert tally.stored == 100 and tally.unsaved == 0
            assert list(Path(tmp_path / "spool").glob("*.jsonl")), "spooled on disk"
        await wait_for(lambda: tally.stored == 600)
        assert tally.spooled == 0 and recorder.spool.empty
        assert await stored_seqs(storage, "s1") == list(range(1, 601))
        found = await storage.get_session("s1")
        assert found["status"] == "completed", "the final row is not overwritten by older ones"
        originals = {e.seq: json.loads(e.data) for e in events("s1", 1, 600)}
        assert {e["seq"]: e for e in found["events"]} == originals


async def test_pending_events_move_to_the_spool_while_a_write_is_stuck(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    config = settings(tmp_path, max_pending_events=1000, flush_events=1000)
    async with recording(db, config) as recorder, reading(db) as storage:
        tally = recorder.session_started(session("s1"))
        with locked(db):
            seq = 1
            for _ in range(40):
                recorder.events(events("s1", seq, 100))
                seq += 100
                assert recorder.pending_events <= 1000 + 100
                await trio.sleep(0.005)
            await wait_for(lambda: tally.spooled == 4000 and recorder.pending_events == 0)
        await wait_for(lambda: tally.stored == 4000)
        assert await stored_seqs(storage, "s1") == list(range(1, 4001))


async def test_a_full_spool_loses_events_counted_and_told_never_rows(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    one_batch = len(encode_batch(Batch(events=tuple(events("s1", 1, 50))), 1))
    config = settings(tmp_path, spool_max_bytes=3 * one_batch)
    told: list[tuple[str, str]] = []
    async with recording(db, config) as recorder, reading(db) as storage:
        tally = recorder.session_started(session("s1"), lambda *notice: told.append(notice))
        other = recorder.session_started(session("s2", user="ben"))
        await wait_for(lambda: recorder.pending_events == 0 and recorder.ready)
        await trio.sleep(0.3)  # both session rows written
        with locked(db):
            for i in range(10):
                recorder.events(events("s1", 50 * i + 1, 50))
                await trio.sleep(0.3)  # one batch per flush
            recorder.session_ended(session("s1", "completed"), None)
            await wait_for(lambda: tally.spooled + tally.unsaved == 500)
            assert tally.unsaved > 0 and tally.spooled > 0
            assert other.unsaved == 0, "only the sessions whose events were lost are counted"
            assert told and {code for code, _ in told} == {"storage_spool_full"}
            assert f"{tally.unsaved} events" in told[-1][1]
        await wait_for(lambda: tally.stored + tally.unsaved == 500 and recorder.spool.empty)
        assert recorder.totals.unsaved == tally.unsaved
        seqs = await stored_seqs(storage, "s1")
        assert len(seqs) == tally.stored == len(set(seqs))
        with trio.fail_after(5):  # the rows waited in memory and were written after the outage
            while (await storage.get_session("s1"))["status"] != "completed":
                await trio.sleep(0.05)


CRASHING = textwrap.dedent(
    """
    import os, signal, sys, trio
    from pathlib import Path
    from legato.records.recorder import Recorder, RecorderSettings
    from legato.storage import open_storage
    from legato.testing import registry
    sys.path.insert(0, {tests!r})
    from test_recorder import events, session

    async def main():
        backend = registry().storage_for_scheme("sqlite")
        storage = open_storage({url!r}, registry(), backend.params(busy_timeout_s=0.1))
        recorder = Recorder(storage, RecorderSettings(spool_dir=Path({spool!r})))
        await recorder.start()
        async with trio.open_nursery() as nursery:
            await nursery.start(recorder.run)
            tally = recorder.session_started(session("crashed"))
            recorder.events(events("crashed", 1, 300))
            while tally.spooled < 300:
                await trio.sleep(0.01)
            print("spooled", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    trio.run(main)
    """
)


async def test_a_crashed_recorders_spool_is_replayed_by_the_next(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    async with reading(db) as storage:
        await storage.migrate()
    script = CRASHING.format(
        tests=str(Path(__file__).parent), url=f"sqlite:///{db}", spool=str(tmp_path / "spool")
    )
    with locked(db):
        done = await trio.run_process(
            [sys.executable, "-c", script],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=tmp_path,
        )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert done.stdout == b"spooled\n"
    assert list((tmp_path / "spool").glob("*.jsonl"))
    async with recording(db, settings(tmp_path)) as recorder, reading(db) as storage:
        await wait_for(lambda: recorder.adopted_events == 300)
        assert recorder.spool.empty
        assert await stored_seqs(storage, "crashed") == list(range(1, 301))
    assert list((tmp_path / "spool").iterdir()) == []


async def test_closing_with_the_database_locked_leaves_the_rest_in_the_spool(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    recorder = Recorder(open_sqlite(db), settings(tmp_path))
    await recorder.start()
    with locked(db):
        async with trio.open_nursery() as nursery:
            await nursery.start(recorder.run)
            tally = recorder.session_started(session("s1"))
            recorder.events(events("s1", 1, 250))
            recorder.session_ended(session("s1", "completed"), None)
            await recorder.close(0.5)
    assert isinstance(tally, Tally) and tally.unsaved == 0
    assert recorder.totals.spooled == 250 and recorder.totals.stored == 0
    async with recording(db, settings(tmp_path)) as again, reading(db) as storage:
        await wait_for(lambda: again.adopted_events == 250)
        assert await stored_seqs(storage, "s1") == list(range(1, 251))
        assert (await storage.get_session("s1"))["status"] == "completed"


# ---- the result's scores ------------------------------------------------------------------


def test_scores_follow_their_documented_definitions() -> None:
    practice = {
        "pitch_accuracy": 0.8,
        "timing_consistency": 0.9,
        "ioi_cv": 0.1,
        "tempo_deviation_pct": -5.0,
    }
    got = scores(practice)
    assert got["tempo_stability"] == pytest.approx(0.95)
    assert got["overall_score"] == pytest.approx((0.8 + 0.9 + 0.95) / 3)
    untargeted = scores(practice | {"tempo_deviation_pct": None})
    assert untargeted["tempo_stability"] == pytest.approx(0.9)
    assert untargeted["overall_score"] == pytest.approx((0.8 + 0.9) / 2)
    assert scores({"tempo_deviation_pct": 250.0})["tempo_stability"] == 0.0
    assert scores({}) == {"tempo_stability": None, "overall_score": None}


def test_result_record_replaces_non_finite_numbers() -> None:
    summary = {
        "practice": {"pitch_accuracy": float("nan"), "counts": {"notes": 3, "voiced_frames": 9}},
        "stages": {"dynamics": {"integrated_lufs": float("-inf"), "true_peak_dbtp": -1.5}},
    }
    result = result_record("s1", summary, 12.5)
    assert result.pitch_accuracy is None and result.notes == 3 and result.voiced_frames == 9
    feedback = json.loads(result.feedback)  # strict JSON: no NaN or Infinity
    assert feedback["stages"]["dynamics"] == {"integrated_lufs": None, "true_peak_dbtp": -1.5}
    assert json.loads(result.counts) == {"notes": 3, "voiced_frames": 9}
