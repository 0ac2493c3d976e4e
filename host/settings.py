"""Server settings: the ``[server]`` table of a config, with the limits every session obeys."""

from __future__ import annotations

import attrs

from .stage import param


@attrs.frozen
class ServerSettings:
    """Where to listen and the limits enforced on every connection and session."""

    host: str = param("127.0.0.1", doc="address to listen on")
    port: int = param(8765, doc="TCP port (0 picks a free one)", min=0, max=65535)
    max_sessions: int = param(
        512, doc="sessions (live or awaiting resume) before new ones are refused", min=1, max=100000
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
    idle_timeout_s: float = param(
        60.0, doc="a connection that sends nothing for this long is closed", unit="s", min=1.0
    )
    resume_grace_s: float = param(
        30.0, doc="how long a dropped session waits to be resumed", unit="s", min=0.0, max=3600.0
    )
    shutdown_timeout_s: float = param(
        10.0, doc="on SIGINT/SIGTERM, time allowed to drain sessions", unit="s", min=0.0
    )
    event_buffer: int = param(
        16384,
        doc="events kept per session for resume and slow clients; beyond it the oldest unsent"
        " events are dropped, counted and reported",
        min=64,
        max=10_000_000,
    )
    audio_queue: int = param(
        256, doc="audio messages queued ahead of analysis per session", min=4, max=100000
    )
