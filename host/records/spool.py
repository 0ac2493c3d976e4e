"""The on-disk spool: batches the database could not take, kept until it can.

A spool is a directory of append-only segment files, one JSON line per batch, each line
fsync'd before the batch counts as spooled, so a crash loses nothing that was spooled. Each
spool writes its own segments (``<prefix>-<n>.jsonl``; the prefix is the time it was opened, the
process id and a number unique in the process) and holds ``<prefix>.lock`` (an
``flock``) while it runs; segments whose lock nobody holds were left by a process that ended
(or crashed) and are adopted by the next process that opens the spool, oldest first. A batch
is consumed only after the database took it, and a segment is deleted once all its batches
are consumed; a batch replayed twice (a crash between the write and the delete) is harmless
because every write is idempotent. Total size is bounded: a batch that does not fit is
refused, and the caller must account for it.

Methods are blocking (file I/O and fsync): call them from a worker thread, one at a time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import itertools
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import attrs

from ..errors import LegatoError
from ..storage import Batch, EventRecord, ResultRecord, SessionRecord

log = logging.getLogger("legato.spool")

SEGMENT_BYTES = 8 << 20
"""A segment is closed and a new one started beyond this size, so consumed batches free disk
space in steps of at most this much."""

FORMAT_VERSION = 1
_SEGMENT = re.compile(r"^(\d{13}-\d+(?:_\d+)?)-(\d{6})\.jsonl$")
_SPOOLS = itertools.count()
"""Numbers this process's spools: two opened in the same millisecond get distinct prefixes."""


class SpoolError(LegatoError):
    """The spool directory cannot be used (permissions, not a directory...)."""


# ---- batches as JSON lines ---------------------------------------------------------------


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def encode_batch(batch: Batch, batch_id: int) -> bytes:
    """One spool line (with its newline): sessions and results as objects, events as arrays."""
    sessions = [
        attrs.asdict(s) | {"started_at": _time(s.started_at), "ended_at": _time(s.ended_at)}
        for s in batch.sessions
    ]
    results = [attrs.asdict(r) | {"created_at": _time(r.created_at)} for r in batch.results]
    events = [[e.session_id, e.seq, e.stage, e.kind, e.sample, e.t, e.data] for e in batch.events]
    line = {
        "v": FORMAT_VERSION,
        "id": batch_id,
        "sessions": sessions,
        "events": events,
        "results": results,
    }
    return json.dumps(line, allow_nan=False, separators=(",", ":")).encode() + b"\n"


def decode_batch(line: bytes) -> tuple[int, Batch]:
    """The batch id and batch of one spool line; ValueError if it is not one."""
    raw: dict[str, Any] = json.loads(line)
    if raw.get("v") != FORMAT_VERSION:
        raise ValueError(f"unknown spool format version {raw.get('v')!r}")
    sessions = tuple(
        SessionRecord(
            **s
            | {"started_at": _parse_time(s["started_at"]), "ended_at": _parse_time(s["ended_at"])}
        )
        for s in raw["sessions"]
    )
    results = tuple(
        ResultRecord(**r | {"created_at": _parse_time(r["created_at"])}) for r in raw["results"]
    )
    events = tuple(EventRecord(*e) for e in raw["events"])
    return int(raw["id"]), Batch(sessions=sessions, events=events, results=results)


# ---- segments ------------------------------------------------------------------------------


@attrs.define
class Segment:
    path: Path
    size: int
    adopted: bool
    consumed: int = 0  # bytes of whole lines already taken by the database


@attrs.frozen
class Spooled:
    """One batch read back from the spool, and where it ends in its segment."""

    batch_id: int
    batch: Batch
    adopted: bool
    segment: Path
    end: int


def _lock(path: Path) -> int | None:
    """An exclusive flock on ``path`` (created if missing), or None if another process has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """See the module docstring. ``open`` before use, ``close`` at the end."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.prefix = f"{time.time_ns() // 1_000_000:013d}-{os.getpid()}_{next(_SPOOLS)}"
        self.segments: list[Segment] = []  # oldest first; adopted ones before this process's
        self._locks: dict[str, int] = {}  # prefix -> fd holding its flock
        self._active: Segment | None = None
        self._active_fd: int | None = None
        self._next_index = 0
        self._reader: tuple[Path, Any] | None = None

    # ---- lifecycle --------------------------------------------------------------------

    def open(self) -> list[Path]:
        """Adopt segments left by processes that ended; returns their paths. The directory
        is created when something is first spooled, but must be creatable now."""
        where = self.directory
        while not where.exists():
            where = where.parent
        if where == self.directory and not where.is_dir():
            raise SpoolError(f"spool directory {where} is not a directory")
        if not os.access(where, os.W_OK | os.X_OK):
            raise SpoolError(f"spool directory {self.directory}: {where} is not writable")
        return self._adopt() if where == self.directory else []

    def _adopt(self) -> list[Path]:
        found: dict[str, list[tuple[int, Path]]] = {}
        for path in self.directory.iterdir():
            match = _SEGMENT.match(path.name)
            if match and match.group(1) != self.prefix:
                found.setdefault(match.group(1), []).append((int(match.group(2)), path))
        adopted = []
        for prefix in sorted(found):
            fd = _lock(self.directory / f"{prefix}.lock")
            if fd is None:
                continue  # a running process owns these
            self._locks[prefix] = fd
            for _, path in sorted(found[prefix]):
                with contextlib.suppress(FileNotFoundError):  # adopted and finished meanwhile
                    self.segments.append(Segment(path, path.stat().st_size, adopted=True))
                    adopted.append(path)
            self._release_if_done(prefix)
        return adopted

    def close(self) -> None:
        """Close files and release locks; this process's lock file goes when it left nothing."""
        self._close_reader()
        self._seal()
        while self.segments and self.segments[0].consumed >= self.segments[0].size:
            self._delete_head()
        for prefix in list(self._locks):
            if not any(s.path.name.startswith(prefix + "-") for s in self.segments):
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / f"{prefix}.lock").unlink()
            os.close(self._locks.pop(prefix))

    # ---- state ------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        """Disk space held, including batches consumed from segments not yet deleted."""
        return sum(s.size for s in self.segments)

    @property
    def empty(self) -> bool:
        return all(s.consumed >= s.size for s in self.segments)

    # ---- writing ------------------------------------------------------------------------

    def append(self, batch: Batch, batch_id: int) -> bool:
        """Add a batch durably (written and fsync'd); False if it does not fit in
        ``max_bytes``. OSError (e.g. disk full) leaves the spool as it was."""
        line = encode_batch(batch, batch_id)
        if self.bytes + len(line) > self.max_bytes:
            return False
        if self._active is None or self._active.size >= self.segment_bytes:
            self._start_segment()
        assert self._active is not None and self._active_fd is not None
        size = self._active.size
        try:
            written = os.write(self._active_fd, line)
            while written < len(line):
                written += os.write(self._active_fd, line[written:])
            os.fsync(self._active_fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._active_fd, size)
            raise
        self._active.size = size + len(line)
        return True

    def _start_segment(self) -> None:
        self._seal()
        if self.prefix not in self._locks:
            self.directory.mkdir(parents=True, exist_ok=True)
            own = _lock(self.directory / f"{self.prefix}.lock")
            assert own is not None  # a fresh prefix: nobody else can hold it
            self._locks[self.prefix] = own
        path = self.directory / f"{self.prefix}-{self._next_index:06d}.jsonl"
        self._next_index += 1
        self._active_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._active = Segment(path, 0, adopted=False)
        self.segments.append(self._active)
        _fsync_dir(self.directory)

    def _seal(self) -> None:
        """Stop appending to the active segment (so it can be read back and deleted)."""
        if self._active_fd is not None:
            os.close(self._active_fd)
        self._active, self._active_fd = None, None

    # ---- reading back -------------------------------------------------------------------

    def next(self) -> Spooled | None:
        """The oldest batch not consumed yet, or None when the spool is empty. Unreadable
        lines (a torn last line after a crash, corruption) are logged and skipped."""
        while self.segments:
            head = self.segments[0]
            if head.consumed >= head.size:
                if head is self._active:
                    return None  # caught up with what is being written
                self._delete_head()
                continue
            if head is self._active:
                self._seal()  # read what it holds; new batches start a new segment
            item = self._read(head)
            if item is not None:
                return item
        return None

    def _read(self, head: Segment) -> Spooled | None:
        if self._reader is None or self._reader[0] != head.path:
            self._close_reader()
            self._reader = (head.path, head.path.open("rb"))
        stream = self._reader[1]
        stream.seek(head.consumed)
        line = stream.readline()
        end = head.consumed + len(line)
        if not line.endswith(b"\n"):
            log.error(
                "spool %s: incomplete last line (%d bytes) skipped: a write was cut short",
                head.path,
                len(line),
            )
            head.consumed = head.size
            return None
        try:
            batch_id, batch = decode_batch(line)
        except (ValueError, TypeError, KeyError) as exc:
            log.error(
                "spool %s: unreadable batch at byte %d skipped: %s", head.path, head.consumed, exc
            )
            head.consumed = end
            return None
        return Spooled(batch_id, batch, head.adopted, head.path, end)

    def consume(self, item: Spooled) -> None:
        """The database took ``item``: never read it again (its segment goes when done)."""
        head = self.segments[0]
        assert head.path == item.segment, "batches are consumed in order"
        head.consumed = item.end
        if head.consumed >= head.size and head is not self._active:
            self._delete_head()

    def _delete_head(self) -> None:
        head = self.segments.pop(0)
        if self._reader is not None and self._reader[0] == head.path:
            self._close_reader()
        with contextlib.suppress(FileNotFoundError):
            head.path.unlink()
        self._release_if_done(head.path.name.rsplit("-", 1)[0])

    def _release_if_done(self, prefix: str) -> None:
        """An adopted prefix whose segments are all gone: drop its lock file."""
        if prefix == self.prefix or prefix not in self._locks:
            return
        if any(s.path.name.startswith(prefix + "-") for s in self.segments):
            return
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{prefix}.lock").unlink()
        os.close(self._locks.pop(prefix))

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader[1].close()
            self._reader = None
