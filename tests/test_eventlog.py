"""The session's event log: whatever is appended, sent and forgotten, what it hands out is the
right events in seq order, it holds no more than its capacity, and every unsent event it lets
go is counted."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from legato.server.eventlog import SEGMENT, EventLog


def event(i: int) -> dict:
    return {"stage": "s", "kind": "k", "sample": i, "t": i / 100, "text": "x\ny" * (i % 3)}


operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 3 * SEGMENT)),
        st.tuples(st.just("send"), st.integers(0, 4 * SEGMENT)),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(st.integers(64, 600), st.integers(0, 300), operations, st.integers(0, 3 * SEGMENT))
def test_the_log_hands_out_held_events_in_order(capacity, keep, ops, probe) -> None:
    log, sent, dropped_unsent = EventLog(capacity), 0, 0
    for op, n in ops:
        if op == "append":
            for _ in range(n):
                seq, text, dropped = log.append(event(log.last_seq + 1), sent)
                assert json.loads(text)["seq"] == seq == log.last_seq
                dropped_unsent += dropped
        else:
            taken = log.after(sent, n)
            first = max(sent + 1, log.oldest())
            assert [json.loads(t)["seq"] for t in taken] == list(range(first, first + len(taken)))
            assert len(taken) == min(n, max(0, log.last_seq - first + 1))
            sent = first + len(taken) - 1 if taken else sent
            before = log.oldest()
            log.forget_sent(sent, keep)
            assert log.oldest() <= max(before, sent - keep + 1), "kept the newest `keep` sent"
        assert len(log) <= capacity
        assert len(log) == log.last_seq - log.oldest() + 1
    # unsent events were only ever lost to the capacity, and each such loss was counted
    lost_unsent = max(0, log.oldest() - 1 - sent)
    assert dropped_unsent >= lost_unsent
    window = log.after(probe, 10**6)
    start = max(probe + 1, log.oldest())
    assert [json.loads(t) for t in window] == [
        {"seq": seq, **event(seq)} for seq in range(start, log.last_seq + 1)
    ]


def test_a_full_log_of_unsent_events_is_packed_small() -> None:
    log = EventLog(4096)
    for i in range(1, 4097):
        log.append(event(i) | {"f0": 220.0 + i / 7, "confidence": 0.9 - i / 1e5}, 0)
    held = sum(len(s.packed) for s in log._segments) + sum(len(t) for t in log._texts)
    plain = sum(len(t) for t in log.after(0, 4096))
    assert len(log) == 4096 and held < plain / 2.5
