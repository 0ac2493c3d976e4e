"""The storage interface: what a storage plugin provides and the records it persists.

A storage *type* (registered through the ``register_storage`` hook) claims URL schemes and
opens a ``Storage``; the host writes ``Batch``es of records through it and reads analytics
back. Storage knows records, not audio. Every write is idempotent: sessions are upserted by
id, events are keyed by (session id, seq), results by session id, checkpoints by session id
(the latest replaces the one before, and a session's end deletes it), so a retried batch never
duplicates anything.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import attrs

from .errors import LegatoError

DEFAULT_URL = "sqlite:///legato.db"
"""A SQLite file in the working directory, created on first use."""

SessionStatus = Literal["active", "completed", "abandoned", "failed"]
Period = Literal["daily", "weekly", "monthly"]


class StorageError(LegatoError):
    """A storage problem a user can act on (bad URL, wrong credentials, unknown session...)."""


class StorageUnavailable(StorageError):
    """The database cannot be reached right now; writes are spooled and retried."""


# ---- records ----------------------------------------------------------------------------


@attrs.frozen
class SessionRecord:
    """One session (live or an offline run). Written at start and again at end (upsert)."""

    id: str
    pipeline: str
    source: Literal["live", "offline"]
    sample_rate: int
    channels: int
    started_at: dt.datetime  # UTC, timezone-aware
    status: SessionStatus = "active"
    user: str | None = None
    piece: str | None = None
    genre: str | None = None
    target_tempo: float | None = None
    ended_at: dt.datetime | None = None
    duration_s: float | None = None  # seconds of audio analysed
    frames_processed: int = 0  # audio samples (per channel) analysed


@attrs.frozen
class EventRecord:
    """One event exactly as clients receive it; ``data`` is its JSON text (the whole event)."""

    session_id: str
    seq: int
    stage: str
    kind: str
    sample: int
    t: float
    data: str

    @classmethod
    def of(cls, session_id: str, seq: int, event: dict[str, Any], data: str) -> EventRecord:
        """The record of an event (in the public contract) whose JSON text is ``data``."""
        return cls(
            session_id, seq, event["stage"], event["kind"], event["sample"], event["t"], data
        )


@attrs.frozen
class ResultRecord:
    """The analysis result of a session's performance (one per session), from its summary."""

    session_id: str
    pitch_accuracy: float | None
    timing_consistency: float | None
    tempo_stability: float | None
    dynamics_range_db: float | None
    overall_score: float | None
    notes: int
    voiced_frames: int
    counts: str  # JSON object: events per kind
    feedback: str  # JSON object: the practice summary and per-stage summaries
    engine_version: str
    processing_time_ms: float
    created_at: dt.datetime


@attrs.frozen
class CheckpointRecord:
    """The latest checkpoint of a live session: what another process needs to continue it
    after event ``seq``, from audio sample ``samples`` on (``data``: the session's checkpoint,
    opaque to storage)."""

    session_id: str
    seq: int
    samples: int
    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    created_at: dt.datetime


@attrs.frozen
class Batch:
    """What one write carries; applied in one transaction, in this order. Checkpoints are
    written after the events they follow, and dropped for the sessions the batch ends."""

    sessions: tuple[SessionRecord, ...] = ()
    events: tuple[EventRecord, ...] = ()
    results: tuple[ResultRecord, ...] = ()
    checkpoints: tuple[CheckpointRecord, ...] = ()

    def __len__(self) -> int:
        return len(self.sessions) + len(self.events) + len(self.results) + len(self.checkpoints)


FINGERPRINT_VALUES = 25
"""Values per fingerprint vector (the schema's CHECK on ``fingerprints.vector``)."""


@attrs.frozen
class FingerprintRecord:
    """A track's fingerprint, keyed by the file's identity (``path`` as the caller resolved it,
    ``size`` in bytes, ``mtime_ns``) and the algorithm ``version``: a file whose size or mtime
    changed is another track row, so a stale vector is never found. ``duration_s``,
    ``sample_rate`` and ``channels`` describe the audio. A read returns what is stored;
    ``problem`` says whether it can be trusted."""

    path: str
    size: int
    mtime_ns: int
    version: int
    values: tuple[float, ...] = attrs.field(converter=tuple)
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None

    def problem(self) -> str | None:
        """Why these values cannot be used (None when they are 25 finite numbers)."""
        if len(self.values) != FINGERPRINT_VALUES:
            return f"{len(self.values)} values, expected {FINGERPRINT_VALUES}"
        for value in self.values:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"value {value!r} is not a number"
            if not math.isfinite(value):
                return f"value {value!r} is not finite"
        return None


# ---- the backend protocol ---------------------------------------------------------------


class Storage(Protocol):
    """An opened backend. All methods are trio-async; a backend runs blocking or asyncio work
    on its own threads. Connection problems raise ``StorageUnavailable`` with a message that
    names the database (never the password); other user mistakes raise ``StorageError``."""

    url: str  # for messages: the URL with any password removed

    async def connect(self) -> None:
        """Open connections; fail fast with a clear ``StorageUnavailable``/``StorageError``."""

    async def migrate(self) -> list[int]:
        """Apply pending schema migrations in order; return the versions applied (none when
        up to date). Safe to run concurrently from several processes."""

    async def schema_version(self) -> int: ...

    async def write(self, batch: Batch) -> None:
        """Apply a batch atomically and idempotently (see the module docstring)."""

    async def user_stats(self, user: str, days: int, now: dt.datetime) -> dict[str, Any]:
        """Sessions of ``user`` started in the ``days`` before ``now``: ``{"user", "days",
        "sessions", "completed", "practice_hours", "avg_pitch_accuracy",
        "avg_timing_consistency", "avg_dynamics_range_db", "avg_overall_score"}``
        (averages None when there is nothing to average)."""

    async def progress(self, user: str, period: Period, since: dt.datetime) -> list[dict[str, Any]]:
        """Per-period aggregates from the progress_metrics table, oldest first: ``{"period",
        "start" (ISO date), "sessions", "practice_s", "avg_pitch_accuracy",
        "avg_timing_consistency", "avg_dynamics_range_db", "avg_overall_score"}``."""

    async def list_sessions(self, user: str | None, limit: int) -> list[dict[str, Any]]:
        """Newest first: each session's columns (``id``, ``user``, ``pipeline``, ``status``,
        ``started_at`` ISO 8601, ...) and ``overall_score`` when it has a result."""

    async def get_session(
        self, session_id: str, after_seq: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        """The session's columns, ``"events"`` (the event objects with seq > ``after_seq`` in
        seq order, at most ``limit`` of them; None: all), ``"next_after_seq"`` (the last seq of
        this page when more events follow, else None) and ``"analysis_result"`` (a dict, or
        None). ``StorageError`` if there is no such session."""

    async def last_event(self, session_id: str) -> dict[str, Any] | None:
        """The session's stored event with the highest seq (``seq`` first, as in
        ``get_session``), or None when none is stored: where a session whose process died
        stopped."""

    async def get_checkpoint(self, session_id: str) -> CheckpointRecord | None:
        """The session's latest checkpoint, or None (none written, or the session ended)."""

    async def renew_leases(self, holder: str, session_ids: list[str], now: dt.datetime) -> None:
        """``holder`` (a serving process) still holds these live sessions, as of ``now``."""

    async def expired_leases(self, before: dt.datetime) -> list[SessionRecord]:
        """The active sessions whose lease was last renewed before ``before`` and that have no
        checkpoint stored since: their holder died (on any machine), and no process continued
        them. Their start rows, as recorded."""

    async def get_fingerprint(
        self, path: str, size: int, mtime_ns: int, version: int
    ) -> FingerprintRecord | None:
        """The fingerprint stored for exactly this file identity and algorithm version, as
        stored (check ``problem()`` before use), or None."""

    async def put_fingerprint(self, record: FingerprintRecord) -> None:
        """Store a fingerprint (upsert: the track row by identity, the vector by track and
        version, replacing a bad one). ``StorageError`` when ``record.problem()``."""

    async def close(self) -> None: ...


@attrs.frozen
class StorageType:
    """A storage backend as registered by a plugin."""

    name: str
    doc: str
    schemes: tuple[str, ...]
    params: type
    """attrs class (fields declared with ``legato.stage.param``): the ``[storage]`` table's
    other keys, e.g. timeouts and pool sizes."""
    open: Callable[[str, Any], Storage]
    """``open(url, params)``: a not yet connected Storage."""

    def describe(self) -> dict[str, Any]:
        from .stage import describe_params

        return {
            "type": self.name,
            "doc": self.doc,
            "schemes": list(self.schemes),
            "params": describe_params(self.params),
        }


def scheme_of(url: str) -> str:
    try:
        scheme = urlsplit(url).scheme
    except ValueError as exc:
        raise StorageError(f"malformed database URL: {exc}") from None
    if not scheme:
        raise StorageError(
            f"database URL {url!r} has no scheme: use sqlite:///path/to/file.db or "
            "postgresql://user@host:port/db"
        )
    return scheme


def redact(url: str) -> str:
    """The URL without its password, for messages and logs (also for malformed URLs)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def open_storage(url: str, registry: Any, params: Any = None) -> Storage:
    """The backend for ``url`` from the installed plugins (``params`` None: its defaults)."""
    scheme = scheme_of(url)
    backend = registry.storage_for_scheme(scheme)
    if backend is None:
        known = sorted(s for t in registry.storage.values() for s in t.schemes)
        raise StorageError(
            f"no storage backend handles {scheme!r} URLs (installed: {', '.join(known) or 'none'})"
        )
    if params is None or not isinstance(params, backend.params):
        params = backend.params()
    return backend.open(url, params)
