"""Track fingerprints: one read by file identity and algorithm version, one upsert (the
SQLite backend's ``fingerprints.py``, statement for statement)."""

from __future__ import annotations

import asyncpg

from legato.storage import FingerprintRecord

from ..common import check_fingerprint, track_values

_GET = """
SELECT t.duration_s, t.sample_rate, t.channels, f.vector
FROM tracks AS t JOIN fingerprints AS f ON f.track_id = t.id
WHERE t.path = $1 AND t.size = $2 AND t.mtime_ns = $3 AND f.algorithm_version = $4
"""

# The track row keeps its first created_at; its audio description follows the latest write.
_UPSERT_TRACK = """
INSERT INTO tracks (path, size, mtime_ns, duration_s, sample_rate, channels, created_at)
VALUES ($1, $2, $3, $4, $5, $6, now())
ON CONFLICT (path, size, mtime_ns) DO UPDATE SET
    duration_s = EXCLUDED.duration_s,
    sample_rate = EXCLUDED.sample_rate,
    channels = EXCLUDED.channels
RETURNING id
"""

_UPSERT_FINGERPRINT = """
INSERT INTO fingerprints (track_id, algorithm_version, vector, created_at)
VALUES ($1, $2, $3, now())
ON CONFLICT (track_id, algorithm_version) DO UPDATE SET
    vector = EXCLUDED.vector,
    created_at = EXCLUDED.created_at
"""


async def get_fingerprint(
    conn: asyncpg.Connection, path: str, size: int, mtime_ns: int, version: int
) -> FingerprintRecord | None:
    row = await conn.fetchrow(_GET, path, size, mtime_ns, str(version))
    if row is None:
        return None
    return FingerprintRecord(
        path=path,
        size=size,
        mtime_ns=mtime_ns,
        version=version,
        values=row["vector"],
        duration_s=row["duration_s"],
        sample_rate=row["sample_rate"],
        channels=row["channels"],
    )


async def put_fingerprint(conn: asyncpg.Connection, record: FingerprintRecord) -> None:
    """Both rows in one transaction."""
    check_fingerprint(record)
    async with conn.transaction():
        track_id = await conn.fetchval(_UPSERT_TRACK, *track_values(record))
        await conn.execute(
            _UPSERT_FINGERPRINT,
            track_id,
            str(record.version),
            [float(v) for v in record.values],
        )
