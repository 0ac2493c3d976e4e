"""What the storage backends share that does not depend on the database: the calendar periods
progress is aggregated over, the checks on what callers pass, the values of the rows written
and the shaping of rows read into what ``Storage`` returns. SQL stays with each backend, but
for the session upsert, whose conflict rules both must apply identically."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

from legato.storage import Batch, FingerprintRecord, ResultRecord, SessionRecord, StorageError

STORAGE_THREAD_NICENESS = 10
"""How much lower a backend's database thread runs than the event loop (Linux schedules
threads separately): when both want the same core, live audio goes first and rows are written
in the time left (about a tenth of the core while the loop is busy, all of it when it is
not)."""


def yield_to_live_work() -> None:
    """Lower the calling thread's CPU priority by ``STORAGE_THREAD_NICENESS``, where the OS
    lets a thread do so."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), STORAGE_THREAD_NICENESS)


PERIODS = ("daily", "weekly", "monthly")

SESSION_COLUMNS = """s.id, u.name AS user, s.pipeline, s.source, s.piece, s.genre,
    s.target_tempo, s.sample_rate, s.channels, s.started_at, s.ended_at, s.duration_s,
    s.status, s.frames_processed"""

RESULT_COLUMNS = (
    "pitch_accuracy",
    "timing_consistency",
    "tempo_stability",
    "dynamics_range_db",
    "overall_score",
    "notes",
    "voiced_frames",
    "counts",
    "feedback",
    "engine_version",
    "processing_time_ms",
)
_result_fields = attrgetter(*RESULT_COLUMNS)

_AVERAGES = (
    "avg_pitch_accuracy",
    "avg_timing_consistency",
    "avg_dynamics_range_db",
    "avg_overall_score",
)


def require_utc(value: dt.datetime) -> dt.datetime:
    """Records carry timezone-aware datetimes; a naive one is a caller's bug, not UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise StorageError(f"timestamp {value!r} has no timezone; records carry UTC datetimes")
    return value


def utc_day(value: dt.datetime) -> dt.date:
    return value.astimezone(dt.UTC).date()


def check_period(period: str) -> None:
    if period not in PERIODS:
        raise StorageError(f"unknown period {period!r}: use daily, weekly or monthly")


def check_limit(limit: int) -> None:
    if limit < 0:
        raise StorageError(f"limit must be 0 or more, got {limit}")


def period_start(day: dt.date, period: str) -> dt.date:
    """First day of the period holding ``day``: itself, the Monday of its ISO week, or the first
    of its month."""
    if period == "daily":
        return day
    if period == "weekly":
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


EXPIRED_LEASES = """
SELECT s.id, s.pipeline, s.source, s.sample_rate, s.channels, s.started_at, u.name AS user_name,
       s.piece, s.genre, s.target_tempo
FROM leases AS l JOIN sessions AS s ON s.id = l.session_id
LEFT JOIN users AS u ON u.id = s.user_id
WHERE s.status = 'active' AND l.renewed_at < {before}
  AND NOT EXISTS (SELECT 1 FROM checkpoints AS c
                  WHERE c.session_id = s.id AND c.created_at >= {before})
ORDER BY s.id
"""
"""Active sessions whose holder stopped renewing their lease before ``before`` and that have no
checkpoint since (from which another process may still continue them)."""


def leased_session(row: Any, started_at: dt.datetime) -> SessionRecord:
    """The start row of a session ``EXPIRED_LEASES`` found (its columns in that order)."""
    return SessionRecord(
        id=row[0],
        pipeline=row[1],
        source=row[2],
        sample_rate=row[3],
        channels=row[4],
        started_at=started_at,
        user=row[6],
        piece=row[7],
        genre=row[8],
        target_tempo=row[9],
    )


def ended_sessions(batch: Batch) -> set[str]:
    """The sessions the batch ends: their checkpoints and leases are of no more use."""
    return {s.id for s in batch.sessions if s.status != "active"}


def finished_sessions(batch: Batch) -> set[str]:
    """The sessions whose progress rows the batch may change: those it ends or gives a result."""
    return ended_sessions(batch) | {r.session_id for r in batch.results}


# A replayed start record ("active") must not reopen a session that already finished, and an
# `abandoned` record (written for a process that died) must not undo the end another process
# recorded for a session it took over: the stored terminal status and its end figures stay.
# Otherwise the later record wins, and optional descriptions are filled in when the later
# record has them.
_REOPENS = (
    "((excluded.status = 'active' AND sessions.status <> 'active') OR"
    " (excluded.status = 'abandoned' AND sessions.status IN ('completed', 'failed')))"
)


def upsert_session_sql(marks: Iterable[str]) -> str:
    """The ``sessions`` upsert of a ``session_values`` row, its parameters spelled ``marks``
    (the backend's placeholders, one per column)."""
    return f"""
INSERT INTO sessions (id, user_id, pipeline, source, piece, genre, target_tempo, sample_rate,
                      channels, started_at, ended_at, duration_s, status, frames_processed)
VALUES ({", ".join(marks)})
ON CONFLICT (id) DO UPDATE SET
    user_id = COALESCE(excluded.user_id, sessions.user_id),
    piece = COALESCE(excluded.piece, sessions.piece),
    genre = COALESCE(excluded.genre, sessions.genre),
    target_tempo = COALESCE(excluded.target_tempo, sessions.target_tempo),
    status = CASE WHEN {_REOPENS} THEN sessions.status ELSE excluded.status END,
    ended_at = CASE WHEN {_REOPENS} THEN sessions.ended_at ELSE excluded.ended_at END,
    duration_s = CASE WHEN {_REOPENS} THEN sessions.duration_s ELSE excluded.duration_s END,
    frames_processed = CASE WHEN {_REOPENS} THEN sessions.frames_processed
                            ELSE excluded.frames_processed END
"""


def session_values(
    s: SessionRecord, user_ids: dict[str, int], stamp: Callable[[dt.datetime], Any]
) -> tuple[Any, ...]:
    """The ``sessions`` row of ``s`` in column order, its instants in the backend's form."""
    return (
        s.id,
        user_ids.get(s.user) if s.user is not None else None,
        s.pipeline,
        s.source,
        s.piece,
        s.genre,
        s.target_tempo,
        s.sample_rate,
        s.channels,
        stamp(s.started_at),
        stamp(s.ended_at) if s.ended_at is not None else None,
        s.duration_s,
        s.status,
        s.frames_processed,
    )


def result_values(r: ResultRecord, stamp: Callable[[dt.datetime], Any]) -> tuple[Any, ...]:
    """The ``analysis_results`` row of ``r``: performance id, session id, ``RESULT_COLUMNS``,
    created_at (the performance of a session has the session's id)."""
    return (r.session_id, r.session_id, *_result_fields(r), stamp(r.created_at))


def unknown_sessions(missing: list[str]) -> StorageError:
    """Why a batch that refers to sessions never written is rejected, naming a few of them."""
    shown = ", ".join(repr(s) for s in missing[:5]) + (" ..." if len(missing) > 5 else "")
    return StorageError(
        f"batch rejected: it has events or results of sessions never written ({shown});"
        " write each session's record before its events"
    )


def user_stats_dict(user: str, days: int, row: Any) -> dict[str, Any]:
    """The ``Storage.user_stats`` dict from the aggregate row (any row indexable by name)."""
    return {
        "user": user,
        "days": days,
        "sessions": row["sessions"],
        "completed": row["completed"],
        "practice_hours": row["practice_s"] / 3600.0,
        **{k: row[k] for k in _AVERAGES},
    }


def stored_events(rows: Iterable[tuple[int, str]]) -> list[dict[str, Any]]:
    """Each stored event object, ``seq`` first: what clients received in ``analysis`` messages."""
    return [{"seq": seq, **json.loads(data)} for seq, data in rows]


def event_page(
    session: dict[str, Any], rows: list[tuple[int, str]], limit: int | None
) -> dict[str, Any]:
    """``session`` with ``events`` (the first ``limit`` of ``rows``, which hold one more when
    another page follows) and ``next_after_seq`` (the ``after_seq`` of the next page, or None
    when these are the last events)."""
    more = limit is not None and len(rows) > limit
    page = rows[:limit] if more else rows
    session["events"] = stored_events(page)
    session["next_after_seq"] = page[-1][0] if more else None
    return session


def check_page(after_seq: int, limit: int | None) -> None:
    if after_seq < 0 or (limit is not None and limit < 1):
        raise StorageError(f"bad event page: after_seq {after_seq}, limit {limit}")


def decode_result(result: dict[str, Any]) -> dict[str, Any]:
    """The stored result with its JSON columns parsed."""
    result["counts"] = json.loads(result["counts"])
    result["feedback"] = json.loads(result["feedback"])
    return result


def check_fingerprint(record: FingerprintRecord) -> None:
    problem = record.problem()
    if problem is not None:
        raise StorageError(f"fingerprint of {record.path}: {problem}")


def track_values(record: FingerprintRecord) -> tuple[Any, ...]:
    """The ``tracks`` row of a fingerprint's file, in column order, without created_at."""
    return (
        record.path,
        record.size,
        record.mtime_ns,
        record.duration_s,
        record.sample_rate,
        record.channels,
    )
