"""The journal of a serving process's open sessions: one line when a recorded session starts
(its row) and one when it ends, flushed as written, in a file the process holds locked for as
long as it lives.

A process killed outright (``kill -9``, the OOM killer, a lost machine) leaves its open
sessions `active` in storage. Every `legato serve` process (and every worker of `--workers N`)
keeps its journal in ``<spool_dir>/journals/<storage>/``; at start it looks there for journals
whose lock nobody holds, records each session they left open as `abandoned` (ending where its
last stored event lies), and deletes them. A journal whose process still runs stays locked and
is not touched. A process that dies while others serve has its sessions closed by them
through their leases (``leases.py``).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import logging
import os
import secrets
from pathlib import Path
from typing import IO

import attrs
import trio

from ..storage import Batch, SessionRecord, StorageError
from .recorder import Recorder
from .recording import utc
from .spool import decode_batch, encode_batch

log = logging.getLogger("legato.records")


def journal_folder(spool_dir: Path, storage_url: str) -> Path:
    """Where the journals of processes recording into ``storage_url`` live (one folder per
    database, so a process never recovers another database's sessions)."""
    return spool_dir / "journals" / hashlib.sha256(storage_url.encode()).hexdigest()[:16]


async def recover_orphans(
    folder: Path,
    recorder: Recorder,
    now: float,
    fresh_s: float = 0.0,
) -> int:
    """Record the sessions that journals of dead processes in ``folder`` left open as
    ``abandoned`` (through ``recorder``), each ending at its last stored event, and delete
    those journals; returns how many. A session with a checkpoint stored less than ``fresh_s``
    ago is left (its journal kept): it may be continued from it, or already is, on another
    host that keeps checkpointing it; the leases close it if nobody does."""
    count = 0
    for path in sorted(folder.glob("*.journal")):
        try:
            f = path.open("rb")
        except FileNotFoundError:
            continue  # recovered by another process meanwhile
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive
            deferred = 0
            for row in _open_sessions(f.read()).values():
                if fresh_s > 0 and await _checkpointed_since(row.id, recorder, now - fresh_s):
                    deferred += 1
                    continue
                recorder.session_ended(await abandoned(row, recorder, now), None)
                count += 1
            if not deferred:
                path.unlink(missing_ok=True)
    if count:
        log.warning("%d session(s) of a process that died recorded as abandoned", count)
    return count


async def _checkpointed_since(session_id: str, recorder: Recorder, since: float) -> bool:
    """Whether the session has a checkpoint stored after ``since`` (Unix time); a database
    that cannot tell counts as no."""
    try:
        with trio.fail_after(recorder.settings.timeout_s):
            found = await recorder.storage.get_checkpoint(session_id)
    except (StorageError, trio.TooSlowError, AttributeError):
        return False
    return found is not None and found.created_at.timestamp() > since


async def abandoned(row: SessionRecord, recorder: Recorder, now: float) -> SessionRecord:
    """The final row of a session a dead process left open: how far it got by its last stored
    event (where the database cannot tell, it ends now with what its start row says)."""
    try:
        with trio.fail_after(recorder.settings.timeout_s):
            last = await recorder.storage.last_event(row.id)
    except (StorageError, trio.TooSlowError):
        last = None
    if last is None:
        return attrs.evolve(row, status="abandoned", ended_at=utc(now))
    seconds = float(last.get("t", last["sample"] / row.sample_rate))
    return attrs.evolve(
        row,
        status="abandoned",
        ended_at=row.started_at + dt.timedelta(seconds=seconds),
        duration_s=seconds,
        frames_processed=int(last["sample"]),
    )


def _open_sessions(text: bytes) -> dict[str, SessionRecord]:
    left: dict[str, SessionRecord] = {}
    for line in text.splitlines():
        if line.startswith(b"end "):
            left.pop(line[4:].decode(), None)
            continue
        try:
            _, batch = decode_batch(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by the kill
        for row in batch.sessions:
            left[row.id] = row
    return left


class Journal:
    """This process's journal, created (and locked) in ``folder``."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{secrets.token_hex(4)}.journal"
        self._file: IO[bytes] | None = self.path.open("wb", buffering=0)
        fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def started(self, row: SessionRecord) -> None:
        self._write(encode_batch(Batch(sessions=(row,)), 0))

    def ended(self, session_id: str) -> None:
        self._write(f"end {session_id}\n".encode())

    def _write(self, line: bytes) -> None:
        if self._file is not None:
            self._file.write(line)

    def close(self) -> None:
        """The process ends cleanly: every session it held was recorded as it ended."""
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None
