"""What the backend does on the database, as asyncpg coroutines (run on the bridge's loop).
Semantics are the SQLite backend's (``storage/sqlite/writes.py`` and ``queries.py``), statement
for statement where it matters; only the mechanics differ.

Writes: one transaction per batch. Events travel by binary ``COPY`` into a per-connection
temporary staging table and move to ``events`` with ``INSERT ... SELECT ... ON CONFLICT DO
NOTHING``, so a replayed batch (after an outage, or a crash between a write and its
acknowledgement) inserts nothing twice. Sessions, performances and results are upserted. The
progress_metrics rows of every period a finished session falls in are recomputed from the
sessions of that period, under a per-user advisory lock so that two processes finishing
sessions of the same user cannot overwrite each other's counts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from legato.storage import Batch, CheckpointRecord, SessionRecord, StorageError

from ..common import (
    EXPIRED_LEASES,
    RESULT_COLUMNS,
    SESSION_COLUMNS,
    check_limit,
    check_page,
    check_period,
    decode_result,
    ended_sessions,
    event_page,
    finished_sessions,
    leased_session,
    period_start,
    require_utc,
    result_values,
    session_values,
    stored_events,
    unknown_sessions,
    upsert_session_sql,
    user_stats_dict,
    utc_day,
)

STAGING = "legato_staging_events"
EVENT_COLUMNS = ("session_id", "seq", "stage", "kind", "sample", "t", "data")
PROGRESS_LOCK = 0x6C67  # advisory lock namespace of the per-user progress recomputation

CREATE_STAGING = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} (
    session_id text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    stage text NOT NULL,
    kind text NOT NULL,
    sample bigint NOT NULL,
    t double precision NOT NULL,
    data text NOT NULL
) ON COMMIT DELETE ROWS
"""

# ---- writes --------------------------------------------------------------------------------

_INSERT_USERS = """
INSERT INTO users (name, created_at)
SELECT name, now() FROM unnest($1::text[]) AS name ORDER BY name
ON CONFLICT (name) DO NOTHING
"""
_USER_IDS = "SELECT name, id FROM users WHERE name = ANY($1::text[])"

_UPSERT_SESSION = upsert_session_sql(f"${i}" for i in range(1, 15))

_UPSERT_PERFORMANCES = """
INSERT INTO performances (id, session_id, sample_rate, channels, duration_s, recorded_at)
SELECT id, id, sample_rate, channels, duration_s, started_at FROM sessions
WHERE id = ANY($1::text[])
ORDER BY id
ON CONFLICT (id) DO UPDATE SET duration_s = EXCLUDED.duration_s
"""

_LOCK_SESSIONS = """
SELECT s.id,
       EXISTS (SELECT 1 FROM events AS e
               WHERE e.session_id = s.id AND e.seq BETWEEN r.lo AND r.hi) AS overlaps
FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS r (id, lo, hi)
JOIN sessions AS s ON s.id = r.id
ORDER BY s.id
FOR KEY SHARE OF s
"""
_MOVE_EVENTS = f"""
INSERT INTO events ({", ".join(EVENT_COLUMNS)})
SELECT {", ".join(EVENT_COLUMNS)} FROM {STAGING}
ON CONFLICT (session_id, seq) DO NOTHING
"""

_UPSERT_RESULT = f"""
INSERT INTO analysis_results (performance_id, session_id, {", ".join(RESULT_COLUMNS)},
                              created_at)
VALUES ({", ".join(f"${i}" for i in range(1, len(RESULT_COLUMNS) + 4))})
ON CONFLICT (performance_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in RESULT_COLUMNS)},
    created_at = EXCLUDED.created_at
"""

_FINISHED_USERS = """
SELECT DISTINCT user_id FROM sessions
WHERE id = ANY($1::text[]) AND user_id IS NOT NULL AND status <> 'active'
ORDER BY user_id
"""
_LOCK_USER = f"SELECT pg_advisory_xact_lock({PROGRESS_LOCK}, hashint8($1))"

_RECOMPUTE_PROGRESS = """
WITH touched AS (
    SELECT DISTINCT s.user_id, p.period, p.start
    FROM sessions AS s CROSS JOIN LATERAL (VALUES
        ('daily', (s.started_at AT TIME ZONE 'UTC')::date),
        ('weekly', date_trunc('week', s.started_at AT TIME ZONE 'UTC')::date),
        ('monthly', date_trunc('month', s.started_at AT TIME ZONE 'UTC')::date)
    ) AS p (period, start)
    WHERE s.id = ANY($1::text[]) AND s.user_id IS NOT NULL AND s.status <> 'active'
),
bounds AS (
    SELECT user_id, period, start,
           (start::timestamp AT TIME ZONE 'UTC') AS lo,
           ((start + CASE period WHEN 'daily' THEN interval '1 day'
                                 WHEN 'weekly' THEN interval '7 days'
                                 ELSE interval '1 month' END)::timestamp
            AT TIME ZONE 'UTC') AS hi
    FROM touched
)
INSERT INTO progress_metrics (user_id, period, start, sessions, practice_s, avg_pitch_accuracy,
                              avg_timing_consistency, avg_dynamics_range_db, avg_overall_score,
                              updated_at)
SELECT b.user_id, b.period, b.start, count(*), coalesce(sum(s.duration_s), 0.0),
       avg(r.pitch_accuracy), avg(r.timing_consistency), avg(r.dynamics_range_db),
       avg(r.overall_score), now()
FROM bounds AS b
JOIN sessions AS s
  ON s.user_id = b.user_id AND s.started_at >= b.lo AND s.started_at < b.hi
 AND s.status <> 'active'
LEFT JOIN analysis_results AS r ON r.session_id = s.id
GROUP BY b.user_id, b.period, b.start
ORDER BY b.user_id, b.period, b.start
ON CONFLICT (user_id, period, start) DO UPDATE SET
    sessions = EXCLUDED.sessions,
    practice_s = EXCLUDED.practice_s,
    avg_pitch_accuracy = EXCLUDED.avg_pitch_accuracy,
    avg_timing_consistency = EXCLUDED.avg_timing_consistency,
    avg_dynamics_range_db = EXCLUDED.avg_dynamics_range_db,
    avg_overall_score = EXCLUDED.avg_overall_score,
    updated_at = EXCLUDED.updated_at
"""


async def write_batch(conn: asyncpg.Connection, batch: Batch, *, direct: bool = True) -> None:
    """Apply ``batch``; the caller holds the transaction. ``direct``: COPY events straight
    into ``events`` when none of their sessions has a stored event in their seq range (the
    common case: new events); otherwise, and always when ``direct`` is false, through the
    staging table and ``ON CONFLICT DO NOTHING``."""
    if batch.sessions:
        await _upsert_sessions(conn, batch.sessions)
    ranges = _seq_ranges(batch)
    if ranges:
        ids = sorted(ranges)
        rows = await conn.fetch(
            _LOCK_SESSIONS, ids, [ranges[i][0] for i in ids], [ranges[i][1] for i in ids]
        )
        known = {r["id"] for r in rows}
        _refuse_unknown([i for i in ids if i not in known])
        direct = direct and not any(r["overlaps"] for r in rows)
    if batch.events:
        records = [
            (e.session_id, e.seq, e.stage, e.kind, e.sample, e.t, e.data) for e in batch.events
        ]
        if direct and len({(r[0], r[1]) for r in records}) == len(records):
            await conn.copy_records_to_table("events", records=records, columns=EVENT_COLUMNS)
        else:
            await conn.copy_records_to_table(STAGING, records=records, columns=EVENT_COLUMNS)
            await conn.execute(_MOVE_EVENTS)
    if batch.results:
        await conn.executemany(
            _UPSERT_RESULT, [result_values(r, require_utc) for r in batch.results]
        )
    if batch.checkpoints:
        await conn.executemany(
            _UPSERT_CHECKPOINT,
            [
                (c.session_id, c.seq, c.samples, c.data, require_utc(c.created_at))
                for c in batch.checkpoints
            ],
        )
    ended = sorted(ended_sessions(batch))
    if ended:
        await conn.execute("DELETE FROM checkpoints WHERE session_id = ANY($1::text[])", ended)
        await conn.execute("DELETE FROM leases WHERE session_id = ANY($1::text[])", ended)
    finished = sorted(finished_sessions(batch))
    if finished:
        for row in await conn.fetch(_FINISHED_USERS, finished):
            await conn.execute(_LOCK_USER, row["user_id"])
        await conn.execute(_RECOMPUTE_PROGRESS, finished)


async def _upsert_sessions(conn: asyncpg.Connection, sessions: tuple[SessionRecord, ...]) -> None:
    names = sorted({s.user for s in sessions if s.user is not None})
    user_ids: dict[str, int] = {}
    if names:
        await conn.execute(_INSERT_USERS, names)
        user_ids = {r["name"]: r["id"] for r in await conn.fetch(_USER_IDS, names)}
    await conn.executemany(
        _UPSERT_SESSION, [session_values(s, user_ids, require_utc) for s in sessions]
    )
    await conn.execute(_UPSERT_PERFORMANCES, sorted({s.id for s in sessions}))


def _seq_ranges(batch: Batch) -> dict[str, tuple[int, int]]:
    """Per session the batch refers to, the (lowest, highest) seq of its events; (0, -1), an
    empty range, for a session that only has a result here."""
    ranges: dict[str, tuple[int, int]] = {r.session_id: (0, -1) for r in batch.results}
    for e in batch.events:
        low, high = ranges.get(e.session_id, (e.seq, e.seq))
        if high < low:
            low = high = e.seq
        ranges[e.session_id] = (min(low, e.seq), max(high, e.seq))
    return ranges


def _refuse_unknown(missing: list[str]) -> None:
    if missing:
        raise unknown_sessions(missing)


# ---- analytics ------------------------------------------------------------------------------

_USER_STATS = """
SELECT count(*) AS sessions,
       count(*) FILTER (WHERE s.status = 'completed') AS completed,
       coalesce(sum(s.duration_s), 0.0) AS practice_s,
       avg(r.pitch_accuracy) AS avg_pitch_accuracy,
       avg(r.timing_consistency) AS avg_timing_consistency,
       avg(r.dynamics_range_db) AS avg_dynamics_range_db,
       avg(r.overall_score) AS avg_overall_score
FROM sessions AS s LEFT JOIN analysis_results AS r ON r.session_id = s.id
WHERE s.user_id = (SELECT id FROM users WHERE name = $1)
  AND s.started_at >= $2 AND s.started_at <= $3
"""

_PROGRESS = """
SELECT p.period, p.start, p.sessions, p.practice_s, p.avg_pitch_accuracy,
       p.avg_timing_consistency, p.avg_dynamics_range_db, p.avg_overall_score
FROM progress_metrics AS p
WHERE p.user_id = (SELECT id FROM users WHERE name = $1)
  AND p.period = $2 AND p.start >= $3
ORDER BY p.start
"""

_LIST_SESSIONS = f"""
SELECT {SESSION_COLUMNS}, r.overall_score
FROM sessions AS s
LEFT JOIN users AS u ON u.id = s.user_id
LEFT JOIN analysis_results AS r ON r.session_id = s.id
{{where}}
ORDER BY s.started_at DESC, s.id DESC
LIMIT $1
"""
_LIST_ALL = _LIST_SESSIONS.format(where="")
_LIST_USER = _LIST_SESSIONS.format(where="WHERE s.user_id = (SELECT id FROM users WHERE name = $2)")

_SESSION = f"""
SELECT {SESSION_COLUMNS} FROM sessions AS s
LEFT JOIN users AS u ON u.id = s.user_id WHERE s.id = $1
"""
_EVENTS = "SELECT seq, data FROM events WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
_RESULT = f"""
SELECT {", ".join(RESULT_COLUMNS)}, created_at FROM analysis_results WHERE session_id = $1
"""


def iso(value: dt.datetime) -> str:
    """The text form the SQLite backend stores and returns: ISO 8601, UTC, microseconds."""
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _plain(row: asyncpg.Record) -> dict[str, Any]:
    return {k: iso(v) if isinstance(v, dt.datetime) else v for k, v in row.items()}


async def user_stats(
    conn: asyncpg.Connection, user: str, days: int, now: dt.datetime
) -> dict[str, Any]:
    """Sessions started in [now - days, now]; averages over those that have a result."""
    require_utc(now)
    row = await conn.fetchrow(_USER_STATS, user, now - dt.timedelta(days=days), now)
    return user_stats_dict(user, days, row)


async def progress(
    conn: asyncpg.Connection, user: str, period: str, since: dt.datetime
) -> list[dict[str, Any]]:
    """Rows of ``period`` from the one holding ``since`` (UTC) on, oldest first."""
    check_period(period)
    first = period_start(utc_day(require_utc(since)), period)
    rows = await conn.fetch(_PROGRESS, user, period, first)
    return [_plain(r) | {"start": r["start"].isoformat()} for r in rows]


async def list_sessions(
    conn: asyncpg.Connection, user: str | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first (ties by id, descending), with the result's ``overall_score`` or None."""
    check_limit(limit)
    if user is None:
        rows = await conn.fetch(_LIST_ALL, limit)
    else:
        rows = await conn.fetch(_LIST_USER, limit, user)
    return [_plain(r) for r in rows]


async def get_session(
    conn: asyncpg.Connection, session_id: str, after_seq: int = 0, limit: int | None = None
) -> dict[str, Any]:
    """The session, a page of its events (each the stored event object with ``seq`` first)
    and its result, read from one snapshot."""
    check_page(after_seq, limit)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        row = await conn.fetchrow(_SESSION, session_id)
        if row is None:
            raise StorageError(f"no session {session_id!r}")
        session = _plain(row)
        stored = await conn.fetch(
            _EVENTS, session_id, after_seq, None if limit is None else limit + 1
        )
        result = await conn.fetchrow(_RESULT, session_id)
    event_page(session, [(r["seq"], r["data"]) for r in stored], limit)
    session["analysis_result"] = decode_result(_plain(result)) if result is not None else None
    return session


_UPSERT_CHECKPOINT = """
INSERT INTO checkpoints (session_id, seq, samples, data, created_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (session_id) DO UPDATE SET
    seq = excluded.seq, samples = excluded.samples, data = excluded.data,
    created_at = excluded.created_at
WHERE excluded.seq >= checkpoints.seq
"""


_RENEW_LEASE = """
INSERT INTO leases (session_id, holder, renewed_at) VALUES ($1, $2, $3)
ON CONFLICT (session_id) DO UPDATE SET holder = excluded.holder, renewed_at = excluded.renewed_at
"""


async def renew_leases(
    conn: asyncpg.Connection, holder: str, session_ids: list[str], now: dt.datetime
) -> None:
    stamp = require_utc(now)
    await conn.executemany(_RENEW_LEASE, [(i, holder, stamp) for i in session_ids])


async def expired_leases(conn: asyncpg.Connection, before: dt.datetime) -> list[SessionRecord]:
    rows = await conn.fetch(EXPIRED_LEASES.format(before="$1"), require_utc(before))
    return [leased_session(tuple(r.values()), r["started_at"]) for r in rows]


async def get_checkpoint(conn: asyncpg.Connection, session_id: str) -> CheckpointRecord | None:
    row = await conn.fetchrow(
        "SELECT seq, samples, data, created_at FROM checkpoints WHERE session_id = $1",
        session_id,
    )
    if row is None:
        return None
    return CheckpointRecord(
        session_id, row["seq"], row["samples"], bytes(row["data"]), row["created_at"]
    )


async def last_event(conn: asyncpg.Connection, session_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT seq, data FROM events WHERE session_id = $1 ORDER BY seq DESC LIMIT 1", session_id
    )
    return stored_events([(row["seq"], row["data"])])[0] if row is not None else None
