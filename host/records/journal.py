"""A worker's journal of its open sessions (`legato serve --workers N`): one line when a recorded
session starts (its row) and one when it ends, flushed as written. A worker killed outright
leaves its open sessions `active` in storage; the worker started in its place reads the
journal and records each session it finds open as `abandoned`, so nothing stays `active`
forever."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import attrs

from ..storage import Batch, SessionRecord
from .recorder import Recorder
from .recording import utc
from .spool import decode_batch, encode_batch

log = logging.getLogger("legato.records")


class Journal:
    """The journal file at ``path``; ``recover`` first, then ``started``/``ended``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = None

    def recover(self, recorder: Recorder | None, now: float) -> int:
        """Record every session a previous journal left open as ``abandoned`` (through
        ``recorder``; none: forgotten) and start the journal afresh; returns how many."""
        left: dict[str, SessionRecord] = {}
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            if line.startswith(b"end "):
                left.pop(line[4:].decode(), None)
                continue
            try:
                _, batch = decode_batch(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by the kill
            for row in batch.sessions:
                left[row.id] = row
        if recorder is not None:
            for row in left.values():
                abandoned = attrs.evolve(row, status="abandoned", ended_at=utc(now))
                recorder.session_ended(abandoned, None)
        if left:
            log.warning("%d session(s) of a worker that died recorded as abandoned", len(left))
        self._file = self.path.open("wb", buffering=0)
        return len(left)

    def started(self, row: SessionRecord) -> None:
        self._write(encode_batch(Batch(sessions=(row,)), 0))

    def ended(self, session_id: str) -> None:
        self._write(f"end {session_id}\n".encode())

    def _write(self, line: bytes) -> None:
        if self._file is not None:
            self._file.write(line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            os.unlink(self.path)
