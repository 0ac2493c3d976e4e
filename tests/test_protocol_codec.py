"""Client messages encoded by the protocol (what legato.client sends) parse back, on the
server's side, to equal messages; and the JSON is what the client wrote by hand before."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from legato.protocol import (
    CLIENT_MESSAGES,
    HISTORY_QUERIES,
    MAX_CHANNELS,
    MAX_CREDIT,
    MAX_HISTORY_DAYS,
    MAX_HISTORY_LIMIT,
    MAX_TEMPO_BPM,
    MIN_TEMPO_BPM,
    SAMPLE_FORMATS,
    Audio,
    ClientMessage,
    Credit,
    End,
    History,
    Ping,
    Resume,
    Seek,
    Start,
    StatsRequest,
    encode,
    parse_client_message,
)

short_text = st.text(min_size=1, max_size=200)
ids = st.none() | st.integers() | st.text(max_size=20)


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


starts = st.builds(
    Start,
    pipeline=short_text,
    sample_rate=optional(st.integers(8000, 384000)),
    format=st.sampled_from(sorted(SAMPLE_FORMATS)),
    channels=optional(st.integers(1, MAX_CHANNELS)),
    track=optional(st.text(min_size=1, max_size=300)),
    user=optional(short_text),
    piece=optional(short_text),
    genre=optional(short_text),
    target_tempo=optional(st.floats(MIN_TEMPO_BPM, MAX_TEMPO_BPM)),
    token=optional(st.text(min_size=1, max_size=100)),
)


@st.composite
def histories(draw: st.DrawFn) -> History:
    query = draw(st.sampled_from(sorted(HISTORY_QUERIES)))
    fields = HISTORY_QUERIES[query]
    values = {
        "days": st.integers(1, MAX_HISTORY_DAYS),
        "limit": st.integers(1, MAX_HISTORY_LIMIT),
        "session_id": short_text,
        "after_seq": st.integers(0, 2**53 - 1),
        "period": st.sampled_from(["daily", "weekly", "monthly"]),
    }
    chosen = {
        name: draw(strategy if name == "session_id" and query == "session" else optional(strategy))
        for name, strategy in values.items()
        if name in fields
    }
    return History(query=query, id=draw(ids), **chosen)


client_messages = st.one_of(
    starts,
    st.builds(Audio, data=st.text()),
    st.builds(Ping, id=ids),
    st.just(StatsRequest()),
    st.just(End()),
    st.builds(
        Resume,
        session_id=short_text,
        token=short_text,
        last_seq=st.integers(min_value=0),
        access_token=optional(st.text(min_size=1, max_size=100)),
    ),
    histories(),
    st.builds(Credit, frames=st.integers(1, MAX_CREDIT)),
    st.builds(Seek, frame=st.integers(min_value=0)),
)


@settings(max_examples=500, deadline=None)
@given(client_messages)
def test_client_messages_parse_back_to_equal_messages(message: ClientMessage) -> None:
    text = encode(message)
    assert parse_client_message(text) == message
    raw = json.loads(text)
    assert CLIENT_MESSAGES[raw["type"]] is type(message)
    assert None not in raw.values()  # absent, as clients have always left them


def test_the_json_is_what_the_client_sent_before() -> None:
    start = Start(pipeline="analyze", sample_rate=44100, format="s16le", channels=2, user="ana")
    before = {
        "type": "start",
        "pipeline": "analyze",
        "sample_rate": 44100,
        "format": "s16le",
        "channels": 2,
        "user": "ana",
    }
    assert encode(start) == json.dumps(before)
    assert json.loads(encode(Start(pipeline="playback", track="a.wav"))) == {
        "type": "start",
        "pipeline": "playback",
        "track": "a.wav",
        "format": "f32le",
    }
    resume = Resume(session_id="s", token="t", last_seq=3)
    assert encode(resume) == json.dumps(
        {"type": "resume", "session_id": "s", "token": "t", "last_seq": 3}
    )
    assert encode(Credit(frames=5)) == json.dumps({"type": "credit", "frames": 5})
    assert encode(Seek(frame=7)) == json.dumps({"type": "seek", "frame": 7})
    for message, kind in [(End(), "end"), (StatsRequest(), "stats"), (Ping(), "ping")]:
        assert json.loads(encode(message)) == {"type": kind}
