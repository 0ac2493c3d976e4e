"""Settings tables of a config: ``[server]``, with the limits every session obeys and how their
records reach storage (also used by offline runs that persist); ``[library]``, the tracks
playback pipelines stream and how their fingerprints are found; and ``[auth]``, who clients
are."""

from __future__ import annotations

import ipaddress

import attrs

from ..stage import param


@attrs.frozen
class ServerSettings:
    """Where to listen, the limits enforced on every connection and session, and the recorder's
    batching, timeouts and spool."""

    host: str = param("127.0.0.1", doc="address to listen on")
    allowed_origins: tuple[str, ...] = param(
        (),
        doc="page origins (`https://app.example.org`) whose scripts may open sessions; empty:"
        " only the server's own page; `*`: any. Upgrades with another `Origin` get 403 (clients"
        " that send none are not browsers and are judged by their token)",
    )
    hosts: tuple[str, ...] = param(
        (),
        doc="names the `Host` of an upgrade may carry (port ignored); empty: any when listening"
        " on a public address, and only localhost, 127.0.0.1 and ::1 when listening on loopback"
        " (against DNS rebinding)",
    )
    port: int = param(8765, doc="TCP port (0 picks a free one)", min=0, max=65535)
    tls_cert: str = param(
        "",
        doc="PEM certificate chain: with it the port serves `wss://` and `https://` only"
        " (relative to the config file; empty: plain `ws://` and `http://`)",
    )
    tls_key: str = param(
        "", doc="PEM private key of tls_cert (relative to the config file; empty: in tls_cert)"
    )
    workers: int = param(
        0,
        doc="worker processes serving sessions behind the one port (`legato serve --workers`);"
        " 0: one per usable core; 1: a single process",
        min=0,
        max=256,
    )
    max_sessions: int = param(
        512, doc="sessions (live or awaiting resume) before new ones are refused", min=1, max=100000
    )
    max_connections: int = param(
        1024,
        doc="open connections (started or not) before new ones are refused with 1013; keeps"
        " clients that never send `start` from holding the server",
        min=1,
        max=1_000_000,
    )
    max_connections_per_address: int = param(
        64,
        doc="open connections from one client address before its new ones are refused with"
        " 1013 (0: no cap); loopback addresses are not capped (local tools, and a proxy on this"
        " machine that is not in trusted_proxies)",
        min=0,
        max=1_000_000,
    )
    trusted_proxies: tuple[str, ...] = param(
        (),
        doc="addresses of reverse proxies in front of the server: for connections from them,"
        " the client address is the one they add to `X-Forwarded-For`",
    )
    max_sessions_per_user: int = param(
        16,
        doc="sessions one user may hold at once (live, playback or awaiting resume); a `start`"
        " beyond it is refused with `too_many_user_sessions` (0: no cap)",
        min=0,
        max=1_000_000,
    )
    start_timeout_s: float = param(
        30.0,
        doc="a connection that has not sent `start` or `resume` within this is closed",
        unit="s",
        min=0.5,
        max=3600.0,
    )
    max_message_bytes: int = param(
        1 << 20, doc="largest WebSocket message accepted", unit="bytes", min=1024, max=64 << 20
    )
    max_frames_per_second: float = param(
        400.0,
        doc="audio messages per second per session, averaged over one second; excess is dropped"
        " and counted",
        unit="1/s",
        min=1.0,
        max=100000.0,
    )
    max_realtime_factor: float = param(
        16.0,
        doc="audio a session may send per second, as a multiple of real time (bursts of two"
        " seconds of it); beyond it messages are dropped and reported (`rate_limited`)",
        min=1.0,
        max=10000.0,
    )
    idle_timeout_s: float = param(
        60.0, doc="a connection that sends nothing for this long is closed", unit="s", min=1.0
    )
    close_timeout_s: float = param(
        5.0,
        doc="a close the server starts completes within this, or the TCP connection is dropped",
        unit="s",
        min=0.1,
    )
    resume_grace_s: float = param(
        30.0, doc="how long a dropped session waits to be resumed", unit="s", min=0.0, max=3600.0
    )
    shutdown_timeout_s: float = param(
        10.0, doc="on SIGINT/SIGTERM, time allowed to drain sessions", unit="s", min=0.0
    )
    handoff: bool = param(
        False,
        doc="on SIGTERM, hand live sessions to the other hosts of a cluster instead of ending"
        " them: each stores a checkpoint and its client is told to reconnect (close 1012);"
        " SIGINT still drains",
    )
    checkpoint_interval_s: float = param(
        5.0,
        doc="how often a live session stores a checkpoint, from which another host continues it"
        " if this one dies (0: never; needs storage and a pipeline whose stages all checkpoint)",
        unit="s",
        min=0.0,
        max=3600.0,
    )
    event_buffer: int = param(
        4096,
        doc="unsent events kept per session for slow clients (about 23 s of the analyze"
        " pipeline, about 0.2 MB: older events are kept zlib-packed); beyond it the oldest"
        " unsent events are dropped, counted and reported",
        min=64,
        max=10_000_000,
    )
    audio_queue: int = param(
        256, doc="audio messages queued ahead of analysis per session", min=4, max=100000
    )
    spool_dir: str = param(
        "",
        doc="directory where records wait while the database is unavailable; empty: next to a"
        " SQLite file (`<file>-spool`), else `legato-spool` in the working directory",
    )
    spool_max_bytes: int = param(
        256 << 20,
        doc="disk space the spool may take; beyond it new events are lost, counted and reported"
        " (`storage_spool_full`)",
        unit="bytes",
        min=1 << 16,
        max=1 << 40,
    )
    flush_interval_s: float = param(
        0.25,
        doc="longest time a record waits in memory before it is written",
        unit="s",
        min=0.005,
        max=0.25,
    )
    flush_events: int = param(
        1000,
        doc="events waiting that trigger a write before flush_interval_s: small writes keep the"
        " database thread's bursts short next to the audio path; a write that lags takes all"
        " that waits, so batches grow under load",
        min=1,
        max=1000000,
    )
    max_pending_events: int = param(
        100_000,
        doc="events held in memory while a write is stuck; beyond it they move to the spool",
        min=1000,
        max=10_000_000,
    )
    storage_timeout_s: float = param(
        10.0,
        doc="a database call taking longer counts as an outage (its batch is spooled)",
        unit="s",
        min=0.1,
        max=600.0,
    )
    storage_retry_max_s: float = param(
        30.0,
        doc="longest wait between attempts to reach an unavailable database (backoff doubles"
        " from 0.25 s)",
        unit="s",
        min=0.25,
        max=3600.0,
    )

    def problems(self) -> list[tuple[str, str]]:
        """What is wrong beyond each value's own type and range: (key, message) pairs."""
        problems = []
        for address in self.trusted_proxies:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                problems.append(("trusted_proxies", f"{address!r} is not an IP address"))
        return problems


AUTH_SCOPES = ("practice", "playback", "history", "admin")
"""What a token may allow: live sessions, playback, reading one's history, everything."""


@attrs.frozen
class AuthSettings:
    """The ``[auth]`` table: with a key, every client presents a signed token (a JWT naming its
    user, expiry and scopes); without one (the default), clients are who they say they are."""

    secret_file: str = param(
        "",
        doc="file holding the HS256 key tokens are signed with (relative to the config file);"
        " `legato serve --auth-secret-file` overrides it",
    )
    secret_env: str = param(
        "", doc="environment variable holding the HS256 key (instead of `secret_file`)"
    )
    public_key_file: str = param(
        "",
        doc="PEM public key of an identity provider that signs tokens with RS256 or ES256"
        " (relative to the config file)",
    )
    issuer: str = param("", doc="the `iss` tokens must carry (empty: not checked)")
    audience: str = param("", doc="the `aud` tokens must carry (empty: tokens carry none)")
    leeway_s: float = param(
        30.0, doc="clock skew allowed when checking expiry", unit="s", min=0.0, max=3600.0
    )

    @property
    def enabled(self) -> bool:
        return bool(self.secret_file or self.secret_env or self.public_key_file)


FINGERPRINT_TIMEOUT_S = 30.0
"""Default longest wait for a track's fingerprint to be generated."""


@attrs.frozen
class LibrarySettings:
    """The ``[library]`` table: the folder playback pipelines serve and how tracks' fingerprints
    are found."""

    path: str = param(
        "",
        doc="folder of the tracks playback pipelines stream (track ids are paths relative to"
        " it); empty: no library, playback sessions are refused. `legato serve --library DIR`"
        " overrides it",
    )
    fingerprint_timeout_s: float = param(
        FINGERPRINT_TIMEOUT_S,
        doc="longest wait for a track's fingerprint to be generated before playback starts with"
        " the fallback mastering (the generation finishes in the background and is cached)",
        unit="s",
        min=0.1,
        max=3600.0,
    )
    sidecars: bool = param(
        True,
        doc="read and write `.25d` fingerprint sidecars next to the tracks (false: the database"
        " only, for a read-only library)",
    )
