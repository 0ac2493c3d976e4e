"""The ``[storage]`` params of the postgres backend."""

from __future__ import annotations

import attrs

from legato.stage import param


@attrs.frozen
class PostgresParams:
    """Pool size and timeouts. Timeouts are what turn an outage into a prompt
    ``StorageUnavailable`` (so the recorder spools) instead of a write that hangs."""

    min_size: int = param(
        0,
        doc="connections kept open even when idle (at most max_size); 0 opens them on demand,"
        " so nothing reconnects in the background during an outage (the recorder retries)",
        min=0,
        max=1000,
    )
    max_size: int = param(
        8,
        doc="most connections at once; concurrent writes and queries beyond it wait for one",
        min=1,
        max=1000,
    )
    connect_timeout_s: float = param(
        5.0,
        doc="time allowed to open one connection (TCP, TLS, authentication)",
        unit="s",
        min=0.1,
        max=600.0,
    )
    command_timeout_s: float = param(
        30.0,
        doc="time allowed for one statement (a batch write's COPY, an analytics query); on "
        "expiry the statement is cancelled on the server",
        unit="s",
        min=0.1,
        max=3600.0,
    )
    max_idle_s: float = param(
        300.0,
        doc="an idle connection above min_size is closed after this long",
        unit="s",
        min=1.0,
        max=86400.0,
    )
