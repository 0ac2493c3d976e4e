"""A live session's encoded events by sequence number: what has not been sent yet, and recent
history for a resume.

A full log (``event_buffer`` events, 4096 by default: a client that stopped reading, or a
resume window) is most of a session's memory, so events older than the newest few are packed
into zlib segments: JSON events compress about fivefold, and a segment is unpacked only to
replay it. Packing costs about a microsecond per event; the newest events, which the send
loop reads, stay plain texts.
"""

from __future__ import annotations

import zlib
from collections import deque

import attrs

from ..protocol.messages import encode_event
from ..stage import Event

SEGMENT = 64
"""Events per packed segment; the newest ``SEGMENT`` to ``2 * SEGMENT`` stay unpacked."""


@attrs.frozen
class _Segment:
    first: int  # seq of its first event
    count: int
    packed: bytes  # zlib of the events' texts joined by newlines (JSON texts hold none)

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    def texts(self) -> list[str]:
        return zlib.decompress(self.packed).decode().split("\n")


class EventLog:
    """Encoded events by seq (from 1), at most ``capacity`` held: when full, the oldest go
    (a whole segment at a time once packed), counted when they were unsent."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.last_seq = 0
        self._segments: deque[_Segment] = deque()
        self._texts: list[str] = []  # the newest events; the first has seq ``_texts_first``
        self._texts_first = 1
        self._held = 0

    def continue_after(self, seq: int) -> None:
        """An empty log whose next event is ``seq + 1`` (a session restored from a checkpoint
        taken after event ``seq``)."""
        assert self._held == 0, "only an empty log continues a restored session"
        self.last_seq = seq
        self._texts_first = seq + 1

    def append(self, event: Event, sent_seq: int) -> tuple[int, str, int]:
        """Add one event; returns its seq, its encoding and how many unsent events had to be
        dropped to make room."""
        self.last_seq += 1
        text = encode_event(self.last_seq, event)
        self._texts.append(text)
        self._held += 1
        if len(self._texts) >= 2 * SEGMENT:
            self._pack()
        dropped = 0
        while self._held > self.capacity:
            dropped += self._drop_oldest(sent_seq)
        return self.last_seq, text, dropped

    def _pack(self) -> None:
        head, self._texts = self._texts[:SEGMENT], self._texts[SEGMENT:]
        packed = zlib.compress("\n".join(head).encode(), 1)
        self._segments.append(_Segment(self._texts_first, len(head), packed))
        self._texts_first += len(head)

    def _drop_oldest(self, sent_seq: int) -> int:
        """Drop the oldest segment (or text): the number of its events that were unsent."""
        if self._segments:
            segment = self._segments.popleft()
            first, count = segment.first, segment.count
        else:
            first, count = self._texts_first, 1
            del self._texts[0]
            self._texts_first += 1
        self._held -= count
        return max(0, first + count - 1 - max(sent_seq, first - 1))

    def after(self, seq: int, limit: int) -> list[str]:
        """The texts of up to ``limit`` events after ``seq`` that are still held, oldest first
        (the first has seq ``max(seq + 1, oldest())``)."""
        start = max(seq + 1, self.oldest())
        if start > self.last_seq or limit <= 0:
            return []
        if start >= self._texts_first:  # the live case: a few unsent events, unpacked
            offset = start - self._texts_first
            return self._texts[offset : offset + limit]
        found: list[str] = []
        for segment in self._segments:
            if segment.last < start:
                continue
            found.extend(segment.texts()[max(0, start - segment.first) :])
            if len(found) >= limit:
                return found[:limit]
        found.extend(self._texts)
        return found[:limit]

    def forget_sent(self, sent_seq: int, keep: int) -> None:
        """Drop sent segments whose events all lie beyond the newest ``keep`` sent ones."""
        while self._segments and self._segments[0].last <= sent_seq - keep:
            self._held -= self._segments.popleft().count

    def oldest(self) -> int:
        """The seq of the oldest event held (``last_seq + 1`` when none is)."""
        return self._segments[0].first if self._segments else self._texts_first

    def __len__(self) -> int:
        return self._held
