"""The SQLite schema as numbered migrations, and the code that applies them.

Tables (times are ISO 8601 UTC text with microseconds, see ``times.iso``; JSON is text):

- ``users``: ``id`` integer key, ``name`` unique, ``created_at`` (first seen).
- ``sessions``: ``id`` (the session id), ``user_id`` (null when anonymous), ``pipeline``,
  ``source`` (live|offline), ``piece``, ``genre``, ``target_tempo`` (BPM), ``sample_rate``,
  ``channels``, ``started_at``, ``ended_at``, ``duration_s`` (audio analysed), ``status``
  (active|completed|abandoned|failed), ``frames_processed`` (samples per channel).
- ``performances``: one per session for now, ``id`` = the session id; ``session_id``,
  ``sample_rate``, ``channels``, ``duration_s``, ``recorded_at`` (= the session's start).
- ``events``: every event a session produced, keyed by (``session_id``, ``seq``); ``stage``,
  ``kind``, ``sample``, ``t`` copied out of ``data`` (the event's JSON) for queries. WITHOUT
  ROWID: the rows live in the key's B-tree, so a session's events are stored together (reading
  one session is a contiguous range scan) and each insert writes one tree, not a table and an
  index.
- ``analysis_results``: per performance (``performance_id`` key, ``session_id``): the summary
  scores, ``notes``, ``voiced_frames``, ``counts`` and ``feedback`` (JSON objects),
  ``engine_version``, ``processing_time_ms``, ``created_at``.
- ``progress_metrics``: per (``user_id``, ``period`` daily|weekly|monthly, ``start`` ISO date):
  ``sessions``, ``practice_s`` and the averages of the results, recomputed whenever one of the
  user's sessions in that period finishes.
- ``tracks``: audio files by identity (``path``, ``size``, ``mtime_ns``: nanoseconds, exact
  where a float mtime is not) with ``duration_s``, ``sample_rate``, ``channels``.
- ``fingerprints``: per (``track_id``, ``algorithm_version``): ``vector`` (JSON array of the 25
  values), ``created_at``.

Indexes serve the analytics: sessions by (user, start) and by start alone (newest first, ties
by id), events by their key, progress by its key, results by session.
"""

from __future__ import annotations

import datetime as dt

import sqlite_utils

from legato.storage import StorageError

from .times import iso

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "initial schema",
        (
            """CREATE TABLE users (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL
            )""",
            """CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                user_id INTEGER REFERENCES users (id),
                pipeline TEXT NOT NULL,
                source TEXT NOT NULL CHECK (source IN ('live', 'offline')),
                piece TEXT,
                genre TEXT,
                target_tempo REAL,
                sample_rate INTEGER NOT NULL,
                channels INTEGER NOT NULL,
                started_at TEXT NOT NULL,
                ended_at TEXT,
                duration_s REAL,
                status TEXT NOT NULL
                    CHECK (status IN ('active', 'completed', 'abandoned', 'failed')),
                frames_processed INTEGER NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX sessions_user_started ON sessions (user_id, started_at, id)",
            "CREATE INDEX sessions_started ON sessions (started_at, id)",
            """CREATE TABLE performances (
                id TEXT PRIMARY KEY,
                session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
                sample_rate INTEGER NOT NULL,
                channels INTEGER NOT NULL,
                duration_s REAL,
                recorded_at TEXT NOT NULL
            )""",
            "CREATE INDEX performances_session ON performances (session_id)",
            """CREATE TABLE events (
                session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
                seq INTEGER NOT NULL,
                stage TEXT NOT NULL,
                kind TEXT NOT NULL,
                sample INTEGER NOT NULL,
                t REAL NOT NULL,
                data TEXT NOT NULL,
                PRIMARY KEY (session_id, seq)
            ) WITHOUT ROWID""",
            """CREATE TABLE analysis_results (
                performance_id TEXT PRIMARY KEY
                    REFERENCES performances (id) ON DELETE CASCADE,
                session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
                pitch_accuracy REAL,
                timing_consistency REAL,
                tempo_stability REAL,
                dynamics_range_db REAL,
                overall_score REAL,
                notes INTEGER NOT NULL,
                voiced_frames INTEGER NOT NULL,
                counts TEXT NOT NULL,
                feedback TEXT NOT NULL,
                engine_version TEXT NOT NULL,
                processing_time_ms REAL NOT NULL,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX analysis_results_session ON analysis_results (session_id)",
            """CREATE TABLE progress_metrics (
                user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                period TEXT NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly')),
                start TEXT NOT NULL,
                sessions INTEGER NOT NULL,
                practice_s REAL NOT NULL,
                avg_pitch_accuracy REAL,
                avg_timing_consistency REAL,
                avg_dynamics_range_db REAL,
                avg_overall_score REAL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (user_id, period, start)
            ) WITHOUT ROWID""",
            """CREATE TABLE tracks (
                id INTEGER PRIMARY KEY,
                path TEXT NOT NULL,
                size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL,
                duration_s REAL,
                sample_rate INTEGER,
                channels INTEGER,
                created_at TEXT NOT NULL,
                UNIQUE (path, size, mtime_ns)
            )""",
            """CREATE TABLE fingerprints (
                track_id INTEGER NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
                algorithm_version TEXT NOT NULL,
                vector TEXT NOT NULL CHECK (json_array_length(vector) = 25),
                created_at TEXT NOT NULL,
                PRIMARY KEY (track_id, algorithm_version)
            ) WITHOUT ROWID""",
        ),
    ),
    (
        2,
        "checkpoints of live sessions",
        (
            """CREATE TABLE checkpoints (
                session_id TEXT PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
                seq INTEGER NOT NULL CHECK (seq >= 0),
                samples INTEGER NOT NULL CHECK (samples >= 0),
                data BLOB NOT NULL,
                created_at TEXT NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    (
        3,
        "leases of live sessions",
        (
            """CREATE TABLE leases (
                session_id TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                renewed_at TEXT NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
)

LATEST = MIGRATIONS[-1][0]

_CREATE_LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


def schema_version(db: sqlite_utils.Database) -> int:
    """The highest migration applied (0 for an empty database)."""
    if not db["schema_migrations"].exists():
        return 0
    return db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]


def _check_known(version: int, path: str) -> None:
    if version > LATEST:
        raise StorageError(
            f"SQLite database {path} has schema version {version}, newer than this legato knows"
            f" ({LATEST}); upgrade legato"
        )


def apply_migrations(db: sqlite_utils.Database, path: str) -> list[int]:
    """Apply the pending migrations, each in its own ``BEGIN IMMEDIATE`` transaction that
    re-reads the version under the write lock, so two processes migrating at once apply each
    migration exactly once; returns the versions this call applied."""
    current = schema_version(db)
    _check_known(current, path)
    applied: list[int] = []
    conn = db.conn
    for version, name, statements in MIGRATIONS:
        if version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_CREATE_LEDGER)
            current = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
            ).fetchone()[0]
            if version <= current:
                conn.execute("COMMIT")
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, iso(dt.datetime.now(dt.UTC))),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied.append(version)
        current = version
    return applied
