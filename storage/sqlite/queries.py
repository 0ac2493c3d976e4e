"""The analytics reads, each on a read connection (see ``Storage`` in legato.storage for the
shapes they return)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from legato.storage import CheckpointRecord, SessionRecord, StorageError

from ..common import (
    EXPIRED_LEASES,
    RESULT_COLUMNS,
    SESSION_COLUMNS,
    check_limit,
    check_page,
    check_period,
    decode_result,
    event_page,
    leased_session,
    period_start,
    stored_events,
    user_stats_dict,
    utc_day,
)
from .threads import Connection
from .times import iso


def user_stats(conn: Connection, user: str, days: int, now: dt.datetime) -> dict[str, Any]:
    """Sessions started in [now - days, now]; averages over those that have a result."""
    row = next(
        conn.db.query(
            """SELECT COUNT(*) AS sessions,
                      COUNT(CASE WHEN s.status = 'completed' THEN 1 END) AS completed,
                      COALESCE(SUM(s.duration_s), 0.0) AS practice_s,
                      AVG(r.pitch_accuracy) AS avg_pitch_accuracy,
                      AVG(r.timing_consistency) AS avg_timing_consistency,
                      AVG(r.dynamics_range_db) AS avg_dynamics_range_db,
                      AVG(r.overall_score) AS avg_overall_score
               FROM sessions AS s LEFT JOIN analysis_results AS r ON r.session_id = s.id
               WHERE s.user_id = (SELECT id FROM users WHERE name = :user)
                 AND s.started_at >= :since AND s.started_at <= :until""",
            {"user": user, "since": iso(now - dt.timedelta(days=days)), "until": iso(now)},
        )
    )
    return user_stats_dict(user, days, row)


def progress(conn: Connection, user: str, period: str, since: dt.datetime) -> list[dict[str, Any]]:
    """Rows of ``period`` from the one holding ``since`` (UTC) on, oldest first."""
    check_period(period)
    first = period_start(utc_day(since), period).isoformat()
    return list(
        conn.db.query(
            """SELECT p.period, p.start, p.sessions, p.practice_s, p.avg_pitch_accuracy,
                      p.avg_timing_consistency, p.avg_dynamics_range_db, p.avg_overall_score
               FROM progress_metrics AS p
               WHERE p.user_id = (SELECT id FROM users WHERE name = :user)
                 AND p.period = :period AND p.start >= :first
               ORDER BY p.start""",
            {"user": user, "period": period, "first": first},
        )
    )


def list_sessions(conn: Connection, user: str | None, limit: int) -> list[dict[str, Any]]:
    """Newest first (ties by id, descending), with the result's ``overall_score`` or None."""
    check_limit(limit)
    where = ""
    if user is not None:
        where = "WHERE s.user_id = (SELECT id FROM users WHERE name = :user)"
    return list(
        conn.db.query(
            f"""SELECT {SESSION_COLUMNS}, r.overall_score
                FROM sessions AS s
                LEFT JOIN users AS u ON u.id = s.user_id
                LEFT JOIN analysis_results AS r ON r.session_id = s.id
                {where}
                ORDER BY s.started_at DESC, s.id DESC
                LIMIT :limit""",
            {"user": user, "limit": limit},
        )
    )


def get_session(
    conn: Connection, session_id: str, after_seq: int = 0, limit: int | None = None
) -> dict[str, Any]:
    """The session, a page of its events and its result, read from one snapshot. Each event
    is the stored event object with ``seq`` first: what clients received in ``analysis``
    messages."""
    check_page(after_seq, limit)
    conn.raw.execute("BEGIN")
    rows = list(
        conn.db.query(
            f"""SELECT {SESSION_COLUMNS} FROM sessions AS s
                LEFT JOIN users AS u ON u.id = s.user_id WHERE s.id = ?""",
            (session_id,),
        )
    )
    if not rows:
        raise StorageError(f"no session {session_id!r}")
    session = rows[0]
    stored = conn.raw.execute(
        "SELECT seq, data FROM events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        (session_id, after_seq, -1 if limit is None else limit + 1),
    ).fetchall()
    event_page(session, stored, limit)
    result = next(
        conn.db.query(
            f"""SELECT {", ".join(RESULT_COLUMNS)}, created_at
                FROM analysis_results WHERE session_id = ?""",
            (session_id,),
        ),
        None,
    )
    session["analysis_result"] = decode_result(result) if result is not None else None
    conn.raw.execute("COMMIT")
    return session


def get_checkpoint(conn: Connection, session_id: str) -> CheckpointRecord | None:
    row = conn.raw.execute(
        "SELECT seq, samples, data, created_at FROM checkpoints WHERE session_id = ?",
        (session_id,),
    ).fetchone()
    if row is None:
        return None
    seq, samples, data, created_at = row
    return CheckpointRecord(
        session_id, seq, samples, bytes(data), dt.datetime.fromisoformat(created_at)
    )


def expired_leases(conn: Connection, before: dt.datetime) -> list[SessionRecord]:
    rows = conn.raw.execute(EXPIRED_LEASES.format(before="?"), (iso(before), iso(before)))
    return [leased_session(r, dt.datetime.fromisoformat(r[5])) for r in rows.fetchall()]


def last_event(conn: Connection, session_id: str) -> dict[str, Any] | None:
    rows = conn.raw.execute(
        "SELECT seq, data FROM events WHERE session_id = ? ORDER BY seq DESC LIMIT 1",
        (session_id,),
    ).fetchall()
    return stored_events(rows)[0] if rows else None
