"""Track fingerprints: one read by file identity and algorithm version, one upsert."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Any

from legato.storage import FingerprintRecord

from ..common import check_fingerprint, track_values
from .threads import Connection
from .times import iso

_GET = """
SELECT t.duration_s, t.sample_rate, t.channels, f.vector
FROM tracks AS t JOIN fingerprints AS f ON f.track_id = t.id
WHERE t.path = ? AND t.size = ? AND t.mtime_ns = ? AND f.algorithm_version = ?
"""

# The track row keeps its first created_at; its audio description follows the latest write.
_UPSERT_TRACK = """
INSERT INTO tracks (path, size, mtime_ns, duration_s, sample_rate, channels, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (path, size, mtime_ns) DO UPDATE SET
    duration_s = excluded.duration_s,
    sample_rate = excluded.sample_rate,
    channels = excluded.channels
RETURNING id
"""

_UPSERT_FINGERPRINT = """
INSERT INTO fingerprints (track_id, algorithm_version, vector, created_at) VALUES (?, ?, ?, ?)
ON CONFLICT (track_id, algorithm_version) DO UPDATE SET
    vector = excluded.vector,
    created_at = excluded.created_at
"""


def _vector(text: Any) -> tuple[Any, ...]:
    """The stored JSON array as is; text that is not one reads as no values, which the caller
    sees as a bad record and recomputes."""
    try:
        values = json.loads(text)
    except (TypeError, ValueError):
        return ()
    return tuple(values) if isinstance(values, list) else ()


def get_fingerprint(
    conn: Connection, path: str, size: int, mtime_ns: int, version: int
) -> FingerprintRecord | None:
    row = conn.raw.execute(_GET, (path, size, mtime_ns, str(version))).fetchone()
    if row is None:
        return None
    duration_s, sample_rate, channels, vector = row
    return FingerprintRecord(
        path=path,
        size=size,
        mtime_ns=mtime_ns,
        version=version,
        values=_vector(vector),
        duration_s=duration_s,
        sample_rate=sample_rate,
        channels=channels,
    )


def put_fingerprint(raw: sqlite3.Connection, record: FingerprintRecord) -> None:
    """Both rows in one transaction on the write connection."""
    check_fingerprint(record)
    now = iso(dt.datetime.now(dt.UTC))
    vector = json.dumps([float(v) for v in record.values], allow_nan=False)
    raw.execute("BEGIN IMMEDIATE")
    try:
        (track_id,) = raw.execute(_UPSERT_TRACK, (*track_values(record), now)).fetchone()
        raw.execute(_UPSERT_FINGERPRINT, (track_id, str(record.version), vector, now))
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
