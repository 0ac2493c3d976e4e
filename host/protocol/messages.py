"""Protocol v1: every message between a client and `legato serve`, as attrs classes converted
with cattrs. JSON text frames carry control and events; binary frames carry PCM audio in the
format announced by ``start``. docs/protocol.md documents every message, field and code.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import typing
from typing import Any, Literal

import attrs
import cattrs
import orjson
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError
from cattrs.gen import make_dict_unstructure_fn, override

PROTOCOL_VERSION = 1
SAMPLE_FORMATS = {"f32le": 4, "s16le": 2}
MAX_CHANNELS = 8
SESSION_HEADER = "Legato-Session"
"""Upgrade response header carrying the session id the connection's ``hello`` will announce, so
a load balancer can learn which host holds the session (deploy/haproxy.cfg)."""
SESSION_QUERY = "session"
"""Query parameter a reconnecting client adds to its URL with the session id it resumes, so a
load balancer can send it to the host that announced that id."""


class ErrorCode:
    """Machine-readable error codes carried by ``error`` messages."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    NOT_STARTED = "not_started"
    ALREADY_STARTED = "already_started"
    UNKNOWN_PIPELINE = "unknown_pipeline"
    UNSUPPORTED_FORMAT = "unsupported_format"
    MISALIGNED_AUDIO = "misaligned_audio"
    NON_FINITE_AUDIO = "non_finite_audio"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    EVENTS_DROPPED = "events_dropped"
    TOO_MANY_SESSIONS = "too_many_sessions"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    TOO_MANY_USER_SESSIONS = "too_many_user_sessions"
    START_TIMEOUT = "start_timeout"
    RESUME_FAILED = "resume_failed"
    SESSION_ENDED = "session_ended"
    IDLE_TIMEOUT = "idle_timeout"
    STAGE_FAILED = "stage_failed"
    STORAGE_SPOOL_FULL = "storage_spool_full"
    STORAGE_FAILED = "storage_failed"
    HISTORY_UNAVAILABLE = "history_unavailable"
    HISTORY_BUSY = "history_busy"
    NO_USER = "no_user"
    UNKNOWN_SESSION = "unknown_session"
    NO_LIBRARY = "no_library"
    UNKNOWN_TRACK = "unknown_track"
    TRACK_REFUSED = "track_refused"
    BAD_SEEK = "bad_seek"
    NOT_PLAYBACK = "not_playback"
    NOT_LIVE = "not_live"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    INTERNAL = "internal_error"


ERROR_CODES = tuple(v for k, v in vars(ErrorCode).items() if k.isupper())


class CloseCode:
    """WebSocket close codes the server uses."""

    NORMAL = 1000  # after `end` and `summary`
    GOING_AWAY = 1001  # server shutdown
    POLICY = 1008  # a limit was exceeded or the protocol was broken beyond recovery
    TOO_BIG = 1009  # a message exceeded max_message_bytes
    INTERNAL = 1011  # an unexpected server fault (the server itself keeps running)
    HANDED_OFF = 1012  # the server is restarting: the session is checkpointed, resume it
    TRY_AGAIN = 1013  # max_sessions reached
    IDLE = 4001  # idle_timeout_s passed without a message
    RESUME_FAILED = 4002  # unknown session, wrong token, or grace period over
    UNAUTHORIZED = 4003  # no valid access token, or one that does not allow what was asked


CLOSE_CODES = tuple(v for k, v in vars(CloseCode).items() if k.isupper())


class ProtocolError(Exception):
    """A client message that cannot be used; becomes an ``error`` message."""

    def __init__(self, code: str, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal


def _finite(_: Any, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number")


MIN_TEMPO_BPM, MAX_TEMPO_BPM = 1.0, 1000.0
"""The range of ``start.target_tempo`` (beats per minute)."""
MAX_TOKEN_CHARS = 8192


def _tempo(_: Any, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and not MIN_TEMPO_BPM <= value <= MAX_TEMPO_BPM:  # NaN fails too
        raise ValueError(
            f"{attribute.name} must be {MIN_TEMPO_BPM:g} to {MAX_TEMPO_BPM:g} beats per minute,"
            f" got {value!r}"
        )


def _token_text(_: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and not 0 < len(value) <= MAX_TOKEN_CHARS:
        raise ValueError(f"{attribute.name} must be 1 to {MAX_TOKEN_CHARS} characters")


def _short_text(_: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and not 0 < len(value) <= 200:
        raise ValueError(f"{attribute.name} must be 1 to 200 characters")


def _track_id(_: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and not 0 < len(value) <= MAX_TRACK_ID:
        raise ValueError(f"{attribute.name} must be 1 to {MAX_TRACK_ID} characters")


MAX_TRACK_ID = 4096
"""Longest track id (a path relative to the library; PATH_MAX on Linux)."""
MAX_CREDIT = 1 << 31
"""Most frames one ``credit`` may grant, and most a playback session holds at once."""


# ---- client -> server -------------------------------------------------------------------


@attrs.frozen
class Start:
    """Begin a session: which pipeline, and the audio format of the binary frames to follow
    (live pipelines) or the track to play and the PCM format to send it in (playback
    pipelines: the rate and channels are the track's)."""

    pipeline: str = attrs.field(validator=_short_text)
    sample_rate: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            [attrs.validators.ge(8000), attrs.validators.le(384000)]
        ),
    )
    format: Literal["f32le", "s16le"] = "f32le"
    channels: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            [attrs.validators.ge(1), attrs.validators.le(MAX_CHANNELS)]
        ),
    )
    track: str | None = attrs.field(default=None, validator=_track_id)
    user: str | None = attrs.field(default=None, validator=_short_text)
    piece: str | None = attrs.field(default=None, validator=_short_text)
    genre: str | None = attrs.field(default=None, validator=_short_text)
    target_tempo: float | None = attrs.field(
        default=None,
        validator=_tempo,
    )
    token: str | None = attrs.field(default=None, validator=_token_text)


@attrs.frozen
class Audio:
    """The earlier system's JSON audio message: base64 of little-endian float32 samples."""

    data: str


@attrs.frozen
class Ping:
    id: int | str | None = None


@attrs.frozen
class StatsRequest:
    pass


@attrs.frozen
class End:
    pass


@attrs.frozen
class Resume:
    """Reattach to a dropped session; ``last_seq`` is the last event sequence number held."""

    session_id: str = attrs.field(validator=_short_text)
    token: str = attrs.field(validator=_short_text)
    last_seq: int = attrs.field(validator=attrs.validators.ge(0))
    access_token: str | None = attrs.field(default=None, validator=_token_text)


@attrs.frozen
class Credit:
    """Playback: the client can take ``frames`` more frames of PCM."""

    frames: int = attrs.field(validator=[attrs.validators.ge(1), attrs.validators.le(MAX_CREDIT)])


@attrs.frozen
class Seek:
    """Playback: continue from ``frame`` (frames from the track's start)."""

    frame: int = attrs.field(validator=attrs.validators.ge(0))


HISTORY_QUERIES = {
    "stats": ("days",),
    "sessions": ("limit",),
    "session": ("session_id", "after_seq", "limit"),
    "progress": ("period", "days"),
}
"""Each history query and the fields it takes (besides ``query`` and ``id``)."""

MAX_HISTORY_DAYS = 3660
MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer every JSON reader holds exactly (a seq is far below it)."""
MAX_HISTORY_LIMIT = 1000
"""The most sessions (query ``sessions``) or events (a page of query ``session``) one answer
holds: what one request can cost the server is bounded."""


@attrs.frozen
class History:
    """Read the session's own user's stored history (see docs/protocol.md); fields that do
    not apply to ``query`` are errors, missing ones take their defaults."""

    query: Literal["stats", "sessions", "session", "progress"]
    id: int | str | None = None
    days: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            [attrs.validators.ge(1), attrs.validators.le(MAX_HISTORY_DAYS)]
        ),
    )
    limit: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            [attrs.validators.ge(1), attrs.validators.le(MAX_HISTORY_LIMIT)]
        ),
    )
    session_id: str | None = attrs.field(default=None, validator=_short_text)
    after_seq: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            [attrs.validators.ge(0), attrs.validators.le(MAX_SAFE_INTEGER)]
        ),
    )
    period: Literal["daily", "weekly", "monthly"] | None = None
    user: str | None = attrs.field(default=None, validator=_short_text)

    def __attrs_post_init__(self) -> None:
        allowed = HISTORY_QUERIES[self.query]
        given = [
            f
            for f in ("days", "limit", "session_id", "after_seq", "period")
            if getattr(self, f) is not None
        ]
        extra = [f for f in given if f not in allowed]
        if extra:
            raise ValueError(
                f"{', '.join(extra)} does not apply to query {self.query!r}"
                f" (it takes: {', '.join(allowed)})"
            )
        if self.query == "session" and self.session_id is None:
            raise ValueError("query 'session' needs session_id")


CLIENT_MESSAGES: dict[str, type] = {
    "start": Start,
    "audio": Audio,
    "ping": Ping,
    "stats": StatsRequest,
    "end": End,
    "resume": Resume,
    "history": History,
    "credit": Credit,
    "seek": Seek,
}

for _cls in CLIENT_MESSAGES.values():
    attrs.resolve_types(_cls)

ClientMessage = Start | Audio | Ping | StatsRequest | End | Resume | History | Credit | Seek


# ---- server -> client -------------------------------------------------------------------


@attrs.frozen
class Limits:
    max_message_bytes: int
    max_frames_per_second: float
    max_realtime_factor: float
    max_sessions: int
    idle_timeout_s: float
    resume_grace_s: float
    event_buffer: int


@attrs.frozen
class Hello:
    session_id: str
    resume_token: str
    protocol: int
    server: str
    limits: Limits
    pipelines: list[str]
    sample_formats: list[str]
    playback: list[str]  # the pipelines that play library tracks (the rest take audio)


@attrs.frozen
class Started:
    session_id: str
    pipeline: str
    sample_rate: int
    format: str
    channels: int
    stages: list[dict[str, Any]]
    migratable: bool = False
    """The session is checkpointed (``checkpoint`` messages follow): if its host dies, another
    continues it from the last checkpoint, replaying the audio after it."""


@attrs.frozen
class Checkpoint:
    """The session's state up to audio sample ``samples`` (after event ``seq``) is stored: a
    resume on another host replays from there, so earlier audio need not be kept."""

    samples: int
    seq: int


@attrs.frozen
class Resumed:
    session_id: str
    last_seq: int
    samples_received: int
    replayed: int


@attrs.frozen
class Pong:
    id: int | str | None


@attrs.frozen
class Error:
    code: str
    message: str
    continues: bool


@attrs.frozen
class ServerShutdown:
    timeout_s: float


@attrs.frozen
class Stats:
    frames_received: int
    frames_analysed: int
    frames_dropped: int
    samples_received: int
    samples_analysed: int
    non_finite_samples: int
    events_produced: int
    events_sent: int
    events_dropped: int
    events_stored: int
    events_spooled: int
    events_unsaved: int
    latency_ms: dict[str, float | None]
    queues: dict[str, int]
    playback: dict[str, int] | None = None


@attrs.frozen
class Summary:
    session_id: str
    status: str
    samples: int
    duration_s: float
    practice: dict[str, Any]
    stages: dict[str, dict[str, Any]]
    stats: Stats


@attrs.frozen
class HistoryReply:
    """The answer to a ``history`` request: ``result`` is what `legato db` prints for it."""

    query: str
    id: int | str | None
    result: Any


@attrs.frozen
class Measures:
    integrated_lufs: float | None
    crest_db: float | None
    true_peak_dbtp: float | None


@attrs.frozen
class Track:
    """Playback: the track about to be streamed and how it will be mastered."""

    track: str
    frames: int
    duration_s: float
    sample_rate: int
    channels: int
    format: str
    fingerprint_tier: str
    fingerprint_reason: str
    plan_class: str | None  # sent as "class": the treatment the output stage chose
    mastering: dict[str, Any] | None
    before: Measures
    expected_after: Measures


@attrs.frozen
class Seeked:
    """Playback: binary frames after this message start at ``frame``."""

    frame: int


@attrs.frozen
class TrackEnd:
    """Playback: the last frame of the track has been sent."""

    frames: int


SERVER_MESSAGES: dict[type, str] = {
    Hello: "hello",
    Started: "started",
    Resumed: "resumed",
    Checkpoint: "checkpoint",
    Pong: "pong",
    Error: "error",
    ServerShutdown: "server_shutdown",
    Stats: "stats",
    Summary: "summary",
    HistoryReply: "history",
    Track: "track",
    Seeked: "seeked",
    TrackEnd: "track_end",
}

# ---- conversion ---------------------------------------------------------------------------

_strict = cattrs.Converter(forbid_extra_keys=True)


def _int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _float(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


_strict.register_structure_hook(int, _int)
_strict.register_structure_hook(float, _float)
_strict.register_structure_hook(str, _str)
_strict.register_structure_hook(
    int | str | None,
    lambda v, _: v if v is None else (_int(v, int) if not isinstance(v, str) else v),
)


def _explain(exc: BaseException) -> str:
    """Flatten a cattrs validation error into one readable sentence."""
    if isinstance(exc, ForbiddenExtraKeysError):
        return f"unknown field(s): {', '.join(sorted(exc.extra_fields))}"
    if isinstance(exc, ClassValidationError):
        parts = []
        for sub in exc.exceptions:
            notes = getattr(sub, "__notes__", [])
            where = notes[0].rpartition("@ attribute ")[2] if notes else ""
            parts.append(f"{where}: {_explain(sub)}" if where else _explain(sub))
        return "; ".join(parts)
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc)


def _literal_options(tp: Any) -> tuple[Any, ...]:
    """The allowed values of a ``Literal[...]`` field (or ``Literal[...] | None``)."""
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    for arg in typing.get_args(tp):
        if typing.get_origin(arg) is Literal:
            return typing.get_args(arg)
    return ()


_LITERAL_FIELDS: dict[type, list[tuple[str, tuple[Any, ...]]]] = {
    cls: [(f.name, opts) for f in attrs.fields(cls) if (opts := _literal_options(f.type))]
    for cls in CLIENT_MESSAGES.values()
}
"""Each client message's fields limited to a set of values, and those values."""


def parse_client_message(text: str) -> ClientMessage:
    """Decode one JSON text frame from a client; any problem raises ProtocolError."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"message is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "message must be a JSON object with a type")
    kind = raw.pop("type", None)
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "message has no string field 'type'")
    cls = CLIENT_MESSAGES.get(kind)
    if cls is None:
        known = ", ".join(CLIENT_MESSAGES)
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r} (known: {known})"
        )
    for name, options in _LITERAL_FIELDS[cls]:
        value = raw.get(name)
        if value is not None and value not in options:
            allowed = ", ".join(repr(o) for o in options)
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE,
                f"invalid {kind!r} message: {name} must be one of {allowed}, got {value!r}",
            )
    try:
        return _strict.structure(raw, cls)
    except Exception as exc:  # cattrs and attrs validators raise a variety of types
        detail = _explain(exc)
        missing = [
            f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING and f.name not in raw
        ]
        if missing:
            detail = f"missing field(s): {', '.join(missing)}"
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"invalid {kind!r} message: {detail}") from None


def decode_audio_json(message: Audio) -> bytes:
    """The raw float32 bytes of a JSON ``audio`` message."""
    try:
        return base64.b64decode(message.data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "audio.data is not valid base64") from None


_plain = cattrs.Converter()
_plain.register_unstructure_hook(
    Track,
    make_dict_unstructure_fn(Track, _plain, plan_class=override(rename="class")),
)


_CLIENT_TYPES: dict[type, str] = {cls: kind for kind, cls in CLIENT_MESSAGES.items()}


def warm_up() -> None:
    """Generate the encoding code of every server message now: cattrs writes it on a type's
    first use (about a millisecond each on a slow core), which in a server would land inside
    some live session's send loop."""
    for cls in SERVER_MESSAGES:
        _plain.get_unstructure_hook(cls)


def encode(message: Any) -> str:
    """One message as a JSON text frame: a server message (in ``SERVER_MESSAGES``) or a
    client message (in ``CLIENT_MESSAGES``). A client message leaves out its fields that are
    None: ``parse_client_message`` reads an absent field as its default, which for every such
    field is None, so the server parses the frame back to an equal message."""
    kind = SERVER_MESSAGES.get(type(message))
    if kind is not None:
        body = _plain.unstructure(message)
    elif (kind := _CLIENT_TYPES.get(type(message))) is not None:
        body = {k: v for k, v in _plain.unstructure(message).items() if v is not None}
    else:
        raise TypeError(f"{type(message).__name__} is not a protocol message")
    return json.dumps({"type": kind, **body}, allow_nan=False)


_EVENT_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def encode_event(seq: int, event: dict[str, Any]) -> str:
    """One event for an ``analysis`` batch: the offline event contract plus its ``seq``, as
    compact JSON. Encoded with orjson, once per event on the live path (about 15 times faster
    than the standard library here): numbers keep their exact value (shortest round-trip
    form), numpy scalars a stage leaves in an event are numbers too, and a non-finite number,
    which JSON cannot carry, becomes null."""
    return orjson.dumps({"seq": seq, **event}, option=_EVENT_OPTIONS).decode()


def encode_analysis(through: int, events: list[str]) -> str:
    """An ``analysis`` message from already-encoded events (kept encoded for replay)."""
    return f'{{"type":"analysis","through":{through},"events":[{",".join(events)}]}}'
