"""The recording of one stream, the same for a live session and an offline run: its session row,
the practice summary built from its events as they go by, and the records handed to a recorder
(none when nothing is kept: the summary is still made)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from typing import Any, Literal

import attrs

from ..stage import Event, StreamFormat
from ..storage import EventRecord, SessionRecord, SessionStatus
from .practice import PracticeSummary, result_record
from .recorder import Notify, Recorder, Tally

log = logging.getLogger("legato.records")


def utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


@attrs.frozen
class About:
    """What a stream is about, as a client's ``start`` or the command line says."""

    user: str | None = None
    piece: str | None = None
    genre: str | None = None
    target_tempo: float | None = None


class Recording:
    """``start``, then ``add`` every event with its seq and JSON text, then ``end`` once."""

    def __init__(
        self,
        recorder: Recorder | None,
        session_id: str,
        pipeline: str,
        source: Literal["live", "offline"],
        fmt: StreamFormat,
        about: About = About(),
    ) -> None:
        self.recorder = recorder
        self.session_id = session_id
        self.pipeline = pipeline
        self.source = source
        self.format = fmt
        self.about = about
        self.started_at = time.time()
        self.practice = PracticeSummary(fmt.sample_rate, about.target_tempo)
        self.tally = Tally()
        self.processing_s = 0.0
        """Time spent in the pipeline itself, stored with the result."""
        self._ended = False

    def start(self, notify: Notify | None = None) -> None:
        """Hand the session's row to the recorder; ``notify(code, message)`` tells the client
        about events that could not be kept."""
        if self.recorder is not None:
            self.tally = self.recorder.session_started(self.row("active", 0), notify)

    def add(self, entries: Iterable[tuple[int, Event, str]]) -> None:
        """Events (seq, event in the public contract, its JSON text), in seq order."""
        records = []
        for seq, event, text in entries:
            self.practice.add(event)
            if self.recorder is not None:
                records.append(EventRecord.of(self.session_id, seq, event, text))
        if records:
            assert self.recorder is not None
            self.recorder.events(records)

    def summary(self) -> dict[str, Any]:
        """The practice summary and each stage's own summary, as the client receives them."""
        return {"practice": self.practice.result(), "stages": self.practice.stage_summaries}

    def end(self, status: SessionStatus, samples: int, summary: dict[str, Any] | None) -> None:
        """Hand the final row and the result (from ``summary``, else made now) to the
        recorder, once."""
        if self.recorder is None or self._ended:
            return
        self._ended = True
        try:
            summary = summary or self.summary()
            result = result_record(self.session_id, summary, self.processing_s * 1000.0)
        except Exception:  # a summary that cannot be stored must not take the server down
            log.exception("session %s: its analysis result cannot be stored", self.session_id)
            result = None
        self.recorder.session_ended(self.row(status, samples), result)

    def row(self, status: SessionStatus, samples: int) -> SessionRecord:
        """The session's row with ``status`` after ``samples`` frames analysed."""
        about = self.about
        return SessionRecord(
            id=self.session_id,
            pipeline=self.pipeline,
            source=self.source,
            sample_rate=self.format.sample_rate,
            channels=self.format.channels,
            started_at=utc(self.started_at),
            status=status,
            user=about.user,
            piece=about.piece,
            genre=about.genre,
            target_tempo=about.target_tempo,
            ended_at=None if status == "active" else utc(time.time()),
            duration_s=samples / self.format.sample_rate,
            frames_processed=samples,
        )
