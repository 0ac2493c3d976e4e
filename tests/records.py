"""Storage records shaped like what the analyze pipeline produces, for the tests of the
storage backends and of the recorder."""

from __future__ import annotations

import datetime as dt
import json

from legato.storage import EventRecord, SessionRecord


def session_record(
    session_id: str,
    status: str,
    user: str | None,
    started_at: dt.datetime,
    seconds: float,
    duration_s: float | None = None,
) -> SessionRecord:
    """A live mono session at 44.1 kHz; one that is no longer active ended ``seconds`` after it
    started, with ``duration_s`` of audio analysed."""
    ended = status != "active"
    return SessionRecord(
        id=session_id,
        pipeline="analyze",
        source="live",
        sample_rate=44100,
        channels=1,
        started_at=started_at,
        status=status,  # type: ignore[arg-type]
        user=user,
        ended_at=started_at + dt.timedelta(seconds=seconds) if ended else None,
        duration_s=duration_s if ended else None,
    )


def pitch_events(session_id: str, first: int, count: int) -> list[EventRecord]:
    """Events shaped like the analyze pipeline's pitch events, as a client receives them."""
    out = []
    for seq in range(first, first + count):
        sample = 512 * seq
        body = {
            "seq": seq,
            "stage": "pitch",
            "kind": "pitch",
            "sample": sample,
            "t": sample / 44100,
            "f0": 220.0 + seq % 7,
            "voiced": True,
            "confidence": 0.93,
            "midi": 57,
            "note": "A3",
            "cents": 1.5,
        }
        text = json.dumps(body, separators=(",", ":"))
        out.append(EventRecord(session_id, seq, "pitch", "pitch", sample, body["t"], text))
    return out
