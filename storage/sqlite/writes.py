"""Applying a ``Batch`` in one transaction on the write connection, idempotently, and keeping
``progress_metrics`` current for the sessions it finishes."""

from __future__ import annotations

import datetime as dt
import sqlite3
from operator import attrgetter

from legato.storage import Batch, SessionRecord, StorageError

from ..common import (
    PERIODS,
    RESULT_COLUMNS,
    ended_sessions,
    finished_sessions,
    period_start,
    result_values,
    session_values,
    unknown_sessions,
    upsert_session_sql,
)
from .times import iso, midnight, period_end

_UPSERT_SESSION = upsert_session_sql("?" * 14)

_UPSERT_PERFORMANCE = """
INSERT INTO performances (id, session_id, sample_rate, channels, duration_s, recorded_at)
SELECT id, id, sample_rate, channels, duration_s, started_at FROM sessions WHERE id = ?
ON CONFLICT (id) DO UPDATE SET duration_s = excluded.duration_s
"""

_INSERT_EVENT = """
INSERT INTO events (session_id, seq, stage, kind, sample, t, data) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
"""
_event_row = attrgetter("session_id", "seq", "stage", "kind", "sample", "t", "data")

_UPSERT_CHECKPOINT = """
INSERT INTO checkpoints (session_id, seq, samples, data, created_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (session_id) DO UPDATE SET
    seq = excluded.seq, samples = excluded.samples, data = excluded.data,
    created_at = excluded.created_at
WHERE excluded.seq >= checkpoints.seq
"""

_UPSERT_RESULT = f"""
INSERT INTO analysis_results (performance_id, session_id, {", ".join(RESULT_COLUMNS)},
                              created_at)
VALUES (?, ?, {", ".join("?" for _ in RESULT_COLUMNS)}, ?)
ON CONFLICT (performance_id) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in RESULT_COLUMNS)},
    created_at = excluded.created_at
"""

_RECOMPUTE_PROGRESS = """
INSERT INTO progress_metrics (user_id, period, start, sessions, practice_s, avg_pitch_accuracy,
                              avg_timing_consistency, avg_dynamics_range_db, avg_overall_score,
                              updated_at)
SELECT :user_id, :period, :start, COUNT(*), COALESCE(SUM(s.duration_s), 0.0),
       AVG(r.pitch_accuracy), AVG(r.timing_consistency), AVG(r.dynamics_range_db),
       AVG(r.overall_score), :now
FROM sessions AS s LEFT JOIN analysis_results AS r ON r.session_id = s.id
WHERE s.user_id = :user_id AND s.started_at >= :lo AND s.started_at < :hi
  AND s.status <> 'active'
ON CONFLICT (user_id, period, start) DO UPDATE SET
    sessions = excluded.sessions,
    practice_s = excluded.practice_s,
    avg_pitch_accuracy = excluded.avg_pitch_accuracy,
    avg_timing_consistency = excluded.avg_timing_consistency,
    avg_dynamics_range_db = excluded.avg_dynamics_range_db,
    avg_overall_score = excluded.avg_overall_score,
    updated_at = excluded.updated_at
"""


def write_batch(conn: sqlite3.Connection, batch: Batch) -> None:
    """Apply ``batch`` in one ``BEGIN IMMEDIATE`` transaction: sessions upserted (users created
    on first sight), events inserted unless already stored, results upserted, then the
    progress rows of every finished session the batch touched recomputed."""
    now = iso(dt.datetime.now(dt.UTC))
    conn.execute("BEGIN IMMEDIATE")
    try:
        if batch.sessions:
            _upsert_sessions(conn, batch.sessions, now)
        if batch.events:
            conn.executemany(_INSERT_EVENT, map(_event_row, batch.events))
        if batch.results:
            conn.executemany(_UPSERT_RESULT, [result_values(r, iso) for r in batch.results])
        if batch.checkpoints:
            conn.executemany(
                _UPSERT_CHECKPOINT,
                [
                    (c.session_id, c.seq, c.samples, c.data, iso(c.created_at))
                    for c in batch.checkpoints
                ],
            )
        ended = sorted(ended_sessions(batch))
        if ended:
            conn.executemany("DELETE FROM checkpoints WHERE session_id = ?", [(i,) for i in ended])
            conn.executemany("DELETE FROM leases WHERE session_id = ?", [(i,) for i in ended])
        _recompute_progress(conn, batch, now)
        conn.execute("COMMIT")
    except sqlite3.IntegrityError as exc:
        conn.execute("ROLLBACK")
        raise _integrity_error(conn, batch, exc) from None
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


_RENEW_LEASE = """
INSERT INTO leases (session_id, holder, renewed_at) VALUES (?, ?, ?)
ON CONFLICT (session_id) DO UPDATE SET holder = excluded.holder, renewed_at = excluded.renewed_at
"""


def renew_leases(
    conn: sqlite3.Connection, holder: str, session_ids: list[str], now: dt.datetime
) -> None:
    stamp = iso(now)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_RENEW_LEASE, [(i, holder, stamp) for i in session_ids])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _upsert_sessions(
    conn: sqlite3.Connection, sessions: tuple[SessionRecord, ...], now: str
) -> None:
    names = sorted({s.user for s in sessions if s.user is not None})
    user_ids: dict[str, int] = {}
    if names:
        conn.executemany(
            "INSERT INTO users (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            [(name, now) for name in names],
        )
        marks = ", ".join("?" for _ in names)
        user_ids = dict(conn.execute(f"SELECT name, id FROM users WHERE name IN ({marks})", names))
    conn.executemany(_UPSERT_SESSION, [session_values(s, user_ids, iso) for s in sessions])
    conn.executemany(_UPSERT_PERFORMANCE, [(s.id,) for s in sessions])


def _recompute_progress(conn: sqlite3.Connection, batch: Batch, now: str) -> None:
    periods: set[tuple[int, str, dt.date]] = set()
    for session_id in finished_sessions(batch):
        row = conn.execute(
            "SELECT user_id, started_at, status FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        if row is None or row[0] is None or row[2] == "active":
            continue
        day = dt.date.fromisoformat(row[1][:10])
        periods.update((row[0], p, period_start(day, p)) for p in PERIODS)
    conn.executemany(
        _RECOMPUTE_PROGRESS,
        [
            {
                "user_id": user_id,
                "period": period,
                "start": start.isoformat(),
                "lo": midnight(start),
                "hi": midnight(period_end(start, period)),
                "now": now,
            }
            for user_id, period, start in sorted(periods)
        ],
    )


def _integrity_error(
    conn: sqlite3.Connection, batch: Batch, exc: sqlite3.IntegrityError
) -> StorageError:
    """Name the sessions a rejected batch refers to without writing them, when that is why."""
    referenced = {e.session_id for e in batch.events} | {r.session_id for r in batch.results}
    referenced -= {s.id for s in batch.sessions}
    missing = sorted(
        sid
        for sid in referenced
        if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (sid,)).fetchone() is None
    )
    if missing:
        return unknown_sessions(missing)
    return StorageError(f"batch rejected: {exc}")
