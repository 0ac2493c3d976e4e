"""One suite for every storage backend (see storage_fixtures): migrations, idempotent writes,
concurrency and the analytics, on hand-built data whose answers are worked out here."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio

from legato.storage import (
    Batch,
    CheckpointRecord,
    EventRecord,
    ResultRecord,
    SessionRecord,
    Storage,
    StorageError,
    StorageUnavailable,
)
from legato.storage_plugins.common import STORAGE_THREAD_NICENESS

if TYPE_CHECKING:
    from storage_fixtures import Backend

pytest_plugins = ("storage_fixtures",)

UTC = dt.UTC
T0 = dt.datetime(2025, 6, 30, 12, 0, tzinfo=UTC)


def iso(value: dt.datetime) -> str:
    """The text form both backends return for an instant."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def session(sid: str, started: dt.datetime = T0, **fields: Any) -> SessionRecord:
    values: dict[str, Any] = {
        "pipeline": "analyze",
        "source": "live",
        "sample_rate": 44100,
        "channels": 2,
    }
    values.update(fields)
    return SessionRecord(id=sid, started_at=started, **values)


def ended(
    record: SessionRecord, duration_s: float, status: str = "completed", **fields: Any
) -> SessionRecord:
    return attrs.evolve(
        record,
        status=status,
        ended_at=end_of(record, duration_s),
        duration_s=duration_s,
        frames_processed=int(duration_s * record.sample_rate),
        **fields,
    )


def end_of(record: SessionRecord, duration_s: float) -> dt.datetime:
    return record.started_at + dt.timedelta(seconds=duration_s + 1)


def event_dict(seq: int, stage: str = "pitch") -> dict[str, Any]:
    """An event as the offline contract has it, keys in contract order."""
    sample = seq * 512
    return {
        "stage": stage,
        "kind": stage,
        "sample": sample,
        "t": sample / 44100,
        "f0": 220.0 + seq % 5 * 0.1,
        "voiced": seq % 3 != 0,
        "note": "A3",
    }


def events(sid: str, first: int, count: int) -> tuple[EventRecord, ...]:
    out = []
    for seq in range(first, first + count):
        ev = event_dict(seq)
        data = json.dumps(ev, separators=(",", ":"))
        out.append(EventRecord(sid, seq, "pitch", "pitch", ev["sample"], ev["t"], data))
    return tuple(out)


def result(
    sid: str, score: float | None, pitch: float | None = None, **fields: Any
) -> ResultRecord:
    values: dict[str, Any] = {
        "pitch_accuracy": pitch,
        "timing_consistency": None if score is None else score / 2,
        "tempo_stability": 0.5,
        "dynamics_range_db": None if score is None else 10 * score,
        "overall_score": score,
        "notes": 12,
        "voiced_frames": 340,
        "counts": json.dumps({"pitch": 400, "onset": 12}),
        "feedback": json.dumps({"practice": {"tips": ["steady tempo"]}, "stages": {}}),
        "engine_version": "0.1.0",
        "processing_time_ms": 3.25,
        "created_at": T0 + dt.timedelta(hours=1),
    }
    values.update(fields)
    return ResultRecord(session_id=sid, **values)


async def finished(storage: Storage, record: SessionRecord, duration_s: float, **res: Any) -> None:
    """Write a whole session: start, then end with its result (``score`` None: no result)."""
    await storage.write(Batch(sessions=(record,)))
    score = res.pop("score", None)
    results = () if score is None else (result(record.id, score, **res),)
    await storage.write(Batch(sessions=(ended(record, duration_s),), results=results))


# ---- migrations ---------------------------------------------------------------------------


async def test_migrate_from_empty_then_again(backend: Backend, empty_url: str) -> None:
    first = backend.open(empty_url)
    await first.connect()
    try:
        assert await first.schema_version() == 0
        applied = await first.migrate()
        latest = await first.schema_version()
        assert latest >= 1 and applied == list(range(1, latest + 1))
        assert await first.migrate() == []
        assert await first.schema_version() == latest
    finally:
        await first.close()
    second = backend.open(empty_url)
    await second.connect()
    try:
        assert await second.migrate() == []
        assert await second.schema_version() == latest
    finally:
        await second.close()


async def test_concurrent_migrations_apply_each_version_once(
    backend: Backend, empty_url: str
) -> None:
    opened = [backend.open(empty_url) for _ in range(3)]
    applied: list[list[int]] = []
    try:
        async with trio.open_nursery() as nursery:
            for item in opened:

                async def migrate(item: Storage = item) -> None:
                    await item.connect()
                    applied.append(await item.migrate())

                nursery.start_soon(migrate)
        latest = await opened[0].schema_version()
        assert sorted(v for versions in applied for v in versions) == list(range(1, latest + 1))
    finally:
        for item in opened:
            await item.close()


# ---- writes -------------------------------------------------------------------------------


async def test_round_trip_of_every_record(storage: Storage, uid: str) -> None:
    sid = f"{uid}-s"
    start = session(sid, user=f"{uid}-ann", piece="Minuet in G", genre="baroque", target_tempo=96.0)
    await storage.write(Batch(sessions=(start,), events=events(sid, 1, 40)))
    await storage.write(Batch(events=events(sid, 41, 10)))
    end = ended(start, 61.5)
    res = result(sid, 0.8125, pitch=0.75)
    await storage.write(Batch(sessions=(end,), results=(res,)))

    got = await storage.get_session(sid)
    columns = {
        "id": sid,
        "user": f"{uid}-ann",
        "pipeline": "analyze",
        "source": "live",
        "piece": "Minuet in G",
        "genre": "baroque",
        "target_tempo": 96.0,
        "sample_rate": 44100,
        "channels": 2,
        "started_at": iso(T0),
        "ended_at": iso(end_of(start, 61.5)),
        "duration_s": 61.5,
        "status": "completed",
        "frames_processed": int(61.5 * 44100),
    }
    page_keys = ("events", "next_after_seq", "analysis_result")
    assert {k: v for k, v in got.items() if k not in page_keys} == columns
    assert got["next_after_seq"] is None
    assert got["started_at"] == "2025-06-30T12:00:00.000000+00:00"
    assert got["events"] == [{"seq": seq, **event_dict(seq)} for seq in range(1, 51)]
    assert list(got["events"][0]) == ["seq", *event_dict(1)]  # key order as sent
    assert got["analysis_result"] == {
        "pitch_accuracy": 0.75,
        "timing_consistency": 0.40625,
        "tempo_stability": 0.5,
        "dynamics_range_db": 8.125,
        "overall_score": 0.8125,
        "notes": 12,
        "voiced_frames": 340,
        "counts": {"pitch": 400, "onset": 12},
        "feedback": {"practice": {"tips": ["steady tempo"]}, "stages": {}},
        "engine_version": "0.1.0",
        "processing_time_ms": 3.25,
        "created_at": iso(T0 + dt.timedelta(hours=1)),
    }
    listed = await storage.list_sessions(f"{uid}-ann", 10)
    assert listed == [{**columns, "overall_score": 0.8125}]


async def test_session_without_result_or_user(storage: Storage, uid: str) -> None:
    sid = f"{uid}-anon"
    await storage.write(Batch(sessions=(session(sid, source="offline", channels=1),)))
    got = await storage.get_session(sid)
    assert got["user"] is None and got["status"] == "active" and got["source"] == "offline"
    assert got["ended_at"] is None and got["duration_s"] is None and got["frames_processed"] == 0
    assert got["events"] == [] and got["analysis_result"] is None


async def test_same_batch_twice_writes_nothing_twice(storage: Storage, uid: str) -> None:
    sid = f"{uid}-s"
    start = session(sid, user=uid)
    batch = Batch(sessions=(start,), events=events(sid, 1, 300))
    await storage.write(batch)
    await storage.write(batch)
    end = Batch(
        sessions=(ended(start, 30.0),), events=events(sid, 301, 5), results=(result(sid, 0.5),)
    )
    await storage.write(end)
    await storage.write(end)
    got = await storage.get_session(sid)
    assert [e["seq"] for e in got["events"]] == list(range(1, 306))
    stats = await storage.user_stats(uid, 7, T0 + dt.timedelta(days=1))
    assert stats["sessions"] == 1 and stats["practice_hours"] == pytest.approx(30 / 3600)
    (week,) = await storage.progress(uid, "weekly", T0)
    assert week["sessions"] == 1 and week["practice_s"] == pytest.approx(30.0)


async def test_overlapping_retry_keeps_first_copy(storage: Storage, uid: str) -> None:
    sid = f"{uid}-s"
    await storage.write(Batch(sessions=(session(sid),), events=events(sid, 1, 100)))
    changed = tuple(
        attrs.evolve(e, data=json.dumps({"other": e.seq})) for e in events(sid, 50, 100)
    )
    await storage.write(Batch(events=changed))
    got = (await storage.get_session(sid))["events"]
    assert [e["seq"] for e in got] == list(range(1, 150))
    assert got[60] == {"seq": 61, **event_dict(61)}
    assert got[120] == {"seq": 121, "other": 121}


async def test_session_upsert_from_start_to_end(storage: Storage, uid: str) -> None:
    sid = f"{uid}-s"
    start = session(sid)
    await storage.write(Batch(sessions=(start,)))
    assert (await storage.get_session(sid))["status"] == "active"
    end = ended(start, 12.0, status="abandoned", user=uid, piece="Etude")
    await storage.write(Batch(sessions=(end,)))
    got = await storage.get_session(sid)
    assert (got["status"], got["user"], got["piece"]) == ("abandoned", uid, "Etude")
    assert (got["duration_s"], got["frames_processed"]) == (12.0, 12 * 44100)
    assert got["ended_at"] == iso(end_of(start, 12.0))

    # a later record without the descriptions keeps them; a replayed start does not reopen
    await storage.write(Batch(sessions=(attrs.evolve(end, status="failed", piece=None),)))
    await storage.write(Batch(sessions=(start,)))
    got = await storage.get_session(sid)
    assert (got["status"], got["user"], got["piece"]) == ("failed", uid, "Etude")
    assert got["ended_at"] == iso(end_of(start, 12.0)) and got["duration_s"] == 12.0


async def test_an_abandoned_record_does_not_undo_another_end(storage: Storage, uid: str) -> None:
    """A process recovering a dead one's journal writes `abandoned` for a session that another
    process took over and completed meanwhile: the completion stays."""
    sid = f"{uid}-moved"
    start = session(sid)
    await storage.write(Batch(sessions=(start,)))
    await storage.write(Batch(sessions=(ended(start, 30.0),)))
    await storage.write(Batch(sessions=(ended(start, 4.0, status="abandoned"),)))
    got = await storage.get_session(sid)
    assert (got["status"], got["duration_s"]) == ("completed", 30.0)


def checkpoint(sid: str, seq: int, data: bytes = b"state") -> CheckpointRecord:
    return CheckpointRecord(sid, seq, seq * 512, data + bytes(range(256)), T0)


async def test_checkpoints_latest_kept_and_dropped_at_the_end(storage: Storage, uid: str) -> None:
    sid = f"{uid}-ck"
    start = session(sid)
    assert await storage.get_checkpoint(sid) is None
    await storage.write(
        Batch(sessions=(start,), events=events(sid, 1, 5), checkpoints=(checkpoint(sid, 5),))
    )
    assert await storage.get_checkpoint(sid) == checkpoint(sid, 5)
    await storage.write(Batch(checkpoints=(checkpoint(sid, 9, b"newer"),)))
    await storage.write(Batch(checkpoints=(checkpoint(sid, 7, b"late retry"),)))
    assert await storage.get_checkpoint(sid) == checkpoint(sid, 9, b"newer")
    await storage.write(Batch(sessions=(ended(start, 2.0),)))
    assert await storage.get_checkpoint(sid) is None


async def test_leases_expire_unless_renewed_or_checkpointed(storage: Storage, uid: str) -> None:
    """A session whose lease was renewed before the cut-off and that has no checkpoint since is
    expired; renewed, checkpointed since, or ended, it is not."""
    quiet, renewed, checkpointed, ended_sid = (f"{uid}-{n}" for n in ("q", "r", "c", "e"))
    rows = {
        sid: session(sid, user=uid, piece="p") for sid in (quiet, renewed, checkpointed, ended_sid)
    }
    await storage.write(Batch(sessions=tuple(rows.values())))
    t0 = T0 + dt.timedelta(days=1)
    await storage.renew_leases("host-a", list(rows), t0)
    late = t0 + dt.timedelta(seconds=30)
    await storage.renew_leases("host-b", [renewed], late)
    later_checkpoint = attrs.evolve(checkpoint(checkpointed, 3), created_at=late)
    await storage.write(Batch(checkpoints=(later_checkpoint,)))
    await storage.write(Batch(sessions=(ended(rows[ended_sid], 1.0),)))
    expired = await storage.expired_leases(t0 + dt.timedelta(seconds=10))
    mine = [r for r in expired if r.id.startswith(uid)]
    assert [r.id for r in mine] == [quiet]
    assert (mine[0].user, mine[0].piece, mine[0].started_at) == (uid, "p", T0)
    assert mine[0].status == "active"


async def test_events_of_an_unknown_session_reject_the_whole_batch(
    storage: Storage, uid: str
) -> None:
    good, ghost = f"{uid}-good", f"{uid}-ghost"
    batch = Batch(sessions=(session(good),), events=events(good, 1, 3) + events(ghost, 1, 3))
    with pytest.raises(StorageError) as caught:
        await storage.write(batch)
    assert not isinstance(caught.value, StorageUnavailable)
    with pytest.raises(StorageError):
        await storage.get_session(good)


async def test_empty_batch_is_a_no_op(storage: Storage) -> None:
    await storage.write(Batch())


async def test_database_threads_yield_to_the_event_loop(storage: Storage, uid: str) -> None:
    await storage.write(Batch(sessions=(session(uid, user=uid),)))  # its threads are running
    loop = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    names = ("legato-sqlite", "legato-postgres")
    ours = [t for t in threading.enumerate() if t.name.startswith(names)]
    assert ours, [t.name for t in threading.enumerate()]
    for thread in ours:
        assert thread.native_id is not None
        niceness = os.getpriority(os.PRIO_PROCESS, thread.native_id)
        assert niceness == min(loop + STORAGE_THREAD_NICENESS, 19), thread.name


async def test_concurrent_writers_on_one_instance(storage: Storage, uid: str) -> None:
    sids = [f"{uid}-{i}" for i in range(8)]

    async def writer(sid: str) -> None:
        await storage.write(Batch(sessions=(session(sid, user=uid),)))
        for first in range(1, 1001, 200):
            await storage.write(Batch(events=events(sid, first, 200)))
            await trio.sleep(0)
        await storage.write(Batch(sessions=(ended(session(sid, user=uid), 10.0),)))

    async with trio.open_nursery() as nursery:
        for sid in sids:
            nursery.start_soon(writer, sid)
    for sid in sids:
        got = await storage.get_session(sid)
        assert [e["seq"] for e in got["events"]] == list(range(1, 1001))
    stats = await storage.user_stats(uid, 1, T0 + dt.timedelta(hours=1))
    assert stats["sessions"] == stats["completed"] == 8


async def test_two_instances_share_a_database(backend: Backend, uid: str) -> None:
    a, b = backend.open(), backend.open()
    await a.connect()
    await b.connect()
    try:
        async with trio.open_nursery() as nursery:
            for k, instance in enumerate((a, b, a, b)):
                sid = f"{uid}-{k}"

                async def write(instance: Storage = instance, sid: str = sid) -> None:
                    await instance.write(Batch(sessions=(session(sid, user=uid),)))
                    for first in range(1, 601, 150):
                        await instance.write(Batch(events=events(sid, first, 150)))

                nursery.start_soon(write)
        for k in range(4):
            got = await (b if k % 2 == 0 else a).get_session(f"{uid}-{k}")
            assert len(got["events"]) == 600
        assert len(await a.list_sessions(uid, 10)) == 4
    finally:
        await a.close()
        await b.close()


# ---- analytics ----------------------------------------------------------------------------


async def test_user_stats_window_and_averages(storage: Storage, uid: str) -> None:
    now = T0
    user = f"{uid}-u"
    day = dt.timedelta(days=1)
    tiny = dt.timedelta(microseconds=1)
    # in the window [now - 30 days, now]: both ends included
    await finished(
        storage, session(f"{uid}-a", now - 30 * day, user=user), 600, score=0.9, pitch=0.8
    )
    await finished(storage, session(f"{uid}-b", now - day, user=user), 1200, score=0.6, pitch=None)
    await finished(storage, session(f"{uid}-c", now, user=user), 1800)  # no result
    await storage.write(Batch(sessions=(session(f"{uid}-d", now - 2 * day, user=user),)))
    # outside it, or another user's
    await finished(storage, session(f"{uid}-e", now - 30 * day - tiny, user=user), 60, score=0.1)
    await finished(storage, session(f"{uid}-f", now + tiny, user=user), 60, score=0.1)
    await finished(storage, session(f"{uid}-g", now, user=f"{uid}-other"), 60, score=0.1)

    stats = await storage.user_stats(user, 30, now)
    assert stats == {
        "user": user,
        "days": 30,
        "sessions": 4,
        "completed": 3,
        "practice_hours": pytest.approx((600 + 1200 + 1800) / 3600),
        "avg_pitch_accuracy": pytest.approx(0.8),
        "avg_timing_consistency": pytest.approx((0.45 + 0.3) / 2),
        "avg_dynamics_range_db": pytest.approx((9.0 + 6.0) / 2),
        "avg_overall_score": pytest.approx(0.75),
    }
    narrow = await storage.user_stats(user, 1, now)
    assert (narrow["sessions"], narrow["completed"]) == (2, 2)
    assert narrow["avg_overall_score"] == pytest.approx(0.6)


async def test_user_stats_of_a_user_with_nothing(storage: Storage, uid: str) -> None:
    assert await storage.user_stats(f"{uid}-nobody", 30, T0) == {
        "user": f"{uid}-nobody",
        "days": 30,
        "sessions": 0,
        "completed": 0,
        "practice_hours": 0.0,
        "avg_pitch_accuracy": None,
        "avg_timing_consistency": None,
        "avg_dynamics_range_db": None,
        "avg_overall_score": None,
    }


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


async def test_progress_periods(storage: Storage, uid: str) -> None:
    user = uid
    plan = [
        # start (any offset), duration, overall score (None: no result)
        ("2025-05-31T09:00:00+00:00", 100, 0.2),  # Saturday, May
        ("2025-06-01T23:59:59.999999+00:00", 200, None),  # Sunday: same ISO week
        ("2025-06-02T00:00:00+00:00", 300, 0.4),  # Monday: the next week, June
        ("2025-06-02T18:00:00+00:00", 400, 0.8),
        ("2025-06-08T23:30:00-02:00", 500, 0.6),  # 2025-06-09 01:30 UTC: next Monday
    ]
    for k, (start, duration, score) in enumerate(plan):
        await finished(storage, session(f"{uid}-{k}", _at(start), user=user), duration, score=score)
    await storage.write(Batch(sessions=(session(f"{uid}-live", _at(plan[2][0]), user=user),)))

    def rows(*expected: tuple[str, int, float, float | None]) -> list[dict[str, object]]:
        return [
            {
                "start": start,
                "sessions": count,
                "practice_s": pytest.approx(practice),
                "avg_overall_score": None if score is None else pytest.approx(score),
            }
            for start, count, practice, score in expected
        ]

    def picked(got: list[dict[str, object]]) -> list[dict[str, object]]:
        keys = ("start", "sessions", "practice_s", "avg_overall_score")
        return [{k: row[k] for k in keys} for row in got]

    since = _at("2025-05-01T00:00:00+00:00")
    weekly = await storage.progress(user, "weekly", since)
    assert {row["period"] for row in weekly} == {"weekly"}
    assert picked(weekly) == rows(
        ("2025-05-26", 2, 300, 0.2), ("2025-06-02", 2, 700, 0.6), ("2025-06-09", 1, 500, 0.6)
    )
    assert picked(await storage.progress(user, "monthly", since)) == rows(
        ("2025-05-01", 1, 100, 0.2), ("2025-06-01", 4, 1400, 0.6)
    )
    assert picked(await storage.progress(user, "daily", since)) == rows(
        ("2025-05-31", 1, 100, 0.2),
        ("2025-06-01", 1, 200, None),
        ("2025-06-02", 2, 700, 0.6),
        ("2025-06-09", 1, 500, 0.6),
    )
    # from the period holding `since` on
    mid_week = _at("2025-06-04T10:00:00+00:00")
    assert [r["start"] for r in await storage.progress(user, "weekly", mid_week)] == [
        "2025-06-02",
        "2025-06-09",
    ]
    assert [r["start"] for r in await storage.progress(user, "daily", mid_week)] == ["2025-06-09"]
    assert [r["start"] for r in await storage.progress(user, "monthly", mid_week)] == ["2025-06-01"]
    full = (await storage.progress(user, "weekly", mid_week))[0]
    assert set(full) == {
        "period",
        "start",
        "sessions",
        "practice_s",
        "avg_pitch_accuracy",
        "avg_timing_consistency",
        "avg_dynamics_range_db",
        "avg_overall_score",
    }
    assert full["avg_dynamics_range_db"] == pytest.approx(6.0)


async def test_progress_follows_a_result_written_later(storage: Storage, uid: str) -> None:
    start = session(f"{uid}-s", user=uid)
    await storage.write(Batch(sessions=(start,)))
    assert await storage.progress(uid, "daily", T0) == []
    await storage.write(Batch(sessions=(ended(start, 90.0),)))
    (row,) = await storage.progress(uid, "daily", T0)
    assert (row["sessions"], row["avg_overall_score"]) == (1, None)
    await storage.write(Batch(results=(result(start.id, 0.7),)))
    (row,) = await storage.progress(uid, "daily", T0)
    assert (row["sessions"], row["avg_overall_score"]) == (1, pytest.approx(0.7))


async def test_progress_rejects_an_unknown_period(storage: Storage, uid: str) -> None:
    with pytest.raises(StorageError, match="period"):
        await storage.progress(uid, "hourly", T0)  # type: ignore[arg-type]


async def test_list_sessions_newest_first(storage: Storage, uid: str) -> None:
    base = dt.datetime(2100, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=int(uid[1:], 16) % 10**8)
    starts = {
        "a": base,
        "b": base + dt.timedelta(minutes=1),
        "c": base + dt.timedelta(minutes=2),
        "d": base + dt.timedelta(minutes=2),  # tie with c: ids descending
        "e": base + dt.timedelta(minutes=3),
    }
    for name, start in starts.items():
        user = uid if name != "e" else f"{uid}-other"
        await storage.write(Batch(sessions=(session(f"{uid}-{name}", start, user=user),)))
    await storage.write(Batch(results=(result(f"{uid}-c", 0.25),)))
    mine = await storage.list_sessions(uid, 3)
    assert [s["id"] for s in mine] == [f"{uid}-d", f"{uid}-c", f"{uid}-b"]
    assert [s["overall_score"] for s in mine] == [None, 0.25, None]
    assert mine[0]["user"] == uid and mine[0]["started_at"] == iso(starts["d"])
    everyone = [s["id"] for s in await storage.list_sessions(None, 10_000)]
    ours = [s for s in everyone if s.startswith(uid)]
    assert ours == [f"{uid}-{n}" for n in ("e", "d", "c", "b", "a")]
    assert await storage.list_sessions(uid, 0) == []
    assert await storage.list_sessions(f"{uid}-nobody", 10) == []


async def test_get_session_pages_of_events(storage: Storage, uid: str) -> None:
    """Pages of a session's events, read with the previous page's next_after_seq, join into
    every event once, in order; the last page says there is nothing after it."""
    sid = f"{uid}-paged"
    await storage.write(Batch(sessions=(session(sid),), events=events(sid, 1, 23)))
    seen: list[int] = []
    after = 0
    while after is not None:
        page = await storage.get_session(sid, after, 5)
        assert 1 <= len(page["events"]) <= 5 and page["status"] == "active"
        seen += [e["seq"] for e in page["events"]]
        after = page["next_after_seq"]
    assert seen == list(range(1, 24))
    exact = await storage.get_session(sid, 18, 5)
    assert [e["seq"] for e in exact["events"]] == [19, 20, 21, 22, 23]
    assert exact["next_after_seq"] is None
    past = await storage.get_session(sid, 23, 5)
    assert past["events"] == [] and past["next_after_seq"] is None
    for after_seq, limit in ((-1, 5), (0, 0)):
        with pytest.raises(StorageError, match="bad event page"):
            await storage.get_session(sid, after_seq, limit)
    assert await storage.last_event(sid) == {"seq": 23, **event_dict(23)}
    assert await storage.last_event(f"{uid}-nothing") is None


async def test_get_session_of_an_unknown_id(storage: Storage, uid: str) -> None:
    with pytest.raises(StorageError) as caught:
        await storage.get_session(f"{uid}-missing")
    assert not isinstance(caught.value, StorageUnavailable)
    assert f"{uid}-missing" in str(caught.value)


# ---- SQLite specifics ---------------------------------------------------------------------


def _sqlite(tmp_path: Path, **params: object) -> Storage:
    from legato.registry import load_registry
    from legato.storage import open_storage

    registry = load_registry()
    return open_storage(
        f"sqlite:///{tmp_path / 'locked.db'}", registry, registry.storage["sqlite"].params(**params)
    )


async def test_sqlite_locked_database_is_unavailable_not_a_hang(tmp_path: Path) -> None:
    opened = _sqlite(tmp_path, busy_timeout_s=0.3)
    await opened.connect()
    await opened.migrate()
    await opened.write(Batch(sessions=(session("s"),)))
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE sessions SET piece = 'held' WHERE id = 's'")
        started = trio.current_time()
        with pytest.raises(StorageUnavailable) as caught:
            await opened.write(Batch(events=events("s", 1, 10)))
        waited = trio.current_time() - started
        assert 0.25 <= waited < 2.0
        assert str(tmp_path / "locked.db") in str(caught.value) and "locked" in str(caught.value)
        assert "busy_timeout_s" in str(caught.value)
        assert (await opened.get_session("s"))["piece"] is None  # readers are not blocked
        holder.execute("ROLLBACK")
        await opened.write(Batch(events=events("s", 1, 10)))
        assert len((await opened.get_session("s"))["events"]) == 10
    finally:
        holder.close()
        await opened.close()


async def test_sqlite_statement_over_its_time_limit_is_interrupted(tmp_path: Path) -> None:
    opened = _sqlite(tmp_path, timeout_s=0.2)
    await opened.connect()
    endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT max(x) FROM n"
    try:
        started = trio.current_time()
        with pytest.raises(StorageUnavailable, match="time limit"):
            await opened._read(lambda conn: conn.raw.execute(endless).fetchone(), "counting")  # type: ignore[attr-defined]
        assert trio.current_time() - started < 2.0
        assert await opened.schema_version() == 0
    finally:
        await opened.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///:memory:", "in-memory databases are not supported"),
        ("sqlite://somehost/x.db", "names a host"),
        ("sqlite://", "names no file"),
        ("sqlite:///x.db?mode=ro", "takes no query"),
    ],
)
def test_sqlite_bad_urls(url: str, message: str) -> None:
    from legato.registry import load_registry
    from legato.storage import open_storage

    with pytest.raises(StorageError, match=message):
        open_storage(url, load_registry())


async def test_sqlite_missing_directory_and_non_database(tmp_path: Path) -> None:
    from legato.registry import load_registry
    from legato.storage import open_storage

    registry = load_registry()
    missing = open_storage(f"sqlite:///{tmp_path / 'nope' / 'x.db'}", registry)
    with pytest.raises(StorageError, match=f"directory {tmp_path / 'nope'} does not exist"):
        await missing.connect()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    bad = open_storage(f"sqlite:///{junk}", registry)
    with pytest.raises(StorageError, match="not a usable SQLite database"):
        await bad.connect()


async def test_sqlite_relative_url_is_resolved_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from legato.registry import load_registry
    from legato.storage import open_storage

    monkeypatch.chdir(tmp_path)
    opened = open_storage("sqlite:///sub.db", load_registry())
    monkeypatch.chdir("/")
    await opened.connect()
    try:
        assert await opened.migrate() != []
    finally:
        await opened.close()
    assert (tmp_path / "sub.db").is_file()
