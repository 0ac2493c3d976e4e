"""The server's RFC 6455 layer: the frame parser on its own (any split, any garbage), and the
wire behaviour of a real server seen from a raw socket (close codes, close timeouts, pings)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from legato.server.websocket import FrameParser, Violation, unmask
from legato.testing import running_server

MAX = 1 << 16


def client_frame(opcode: int, payload: bytes, final: bool = True, rsv: int = 0) -> bytes:
    """A masked client frame, as RFC 6455 5.2 lays it out."""
    n = len(payload)
    first = (0x80 if final else 0) | rsv | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + unmask(payload, mask)


messages = st.lists(
    st.tuples(st.sampled_from([1, 2]), st.binary(max_size=300), st.integers(1, 4)), max_size=8
)


@settings(max_examples=200, deadline=None)
@given(messages, st.data())
def test_any_split_of_the_stream_yields_the_same_messages(msgs, data) -> None:
    wire = b""
    for opcode, payload, parts in msgs:
        if opcode == 1:
            payload = payload.decode("latin-1").encode()  # valid UTF-8
        cuts = sorted({0, len(payload), *(len(payload) * i // parts for i in range(parts))})
        pieces = [payload[a:b] for a, b in itertools.pairwise(cuts)] or [b""]
        for i, piece in enumerate(pieces):
            wire += client_frame(opcode if i == 0 else 0, piece, final=i == len(pieces) - 1)
        wire += client_frame(9, b"ping")  # control frames may come between messages
    splits = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    parser, got = FrameParser(MAX), []
    for a, b in zip([0, *splits], [*splits, len(wire)], strict=False):
        parser.feed(wire[a:b])
        got.extend(parser.frames())
    expected = []
    for opcode, payload, _ in msgs:
        if opcode == 1:
            payload = payload.decode("latin-1").encode()
        expected += [(opcode, payload), (9, b"ping")]
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_gives_frames_or_a_violation_never_a_crash(garbage: bytes) -> None:
    parser = FrameParser(MAX)
    parser.feed(garbage)
    try:
        for opcode, _ in parser.frames():
            assert opcode in (1, 2, 8, 9, 10)
    except Violation as violation:
        assert violation.code in (1002, 1009)


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (client_frame(3, b"x"), 1002),  # reserved data opcode
        (client_frame(0xB, b"x"), 1002),  # reserved control opcode
        (client_frame(1, b"x", rsv=0x40), 1002),  # RSV1 without an extension
        (client_frame(0, b"x"), 1002),  # continuation of nothing
        (client_frame(9, b"x", final=False), 1002),  # fragmented ping
        (client_frame(9, b"x" * 126), 1002),  # control frame over 125 bytes
        (bytes((0x82, 0x05)) + b"hello", 1002),  # unmasked
        (bytes((0x82, 0xFF)) + (1 << 40).to_bytes(8, "big"), 1009),  # announced too big
    ],
)
def test_violations_name_their_close_code(wire: bytes, code: int) -> None:
    parser = FrameParser(MAX)
    parser.feed(wire)
    with pytest.raises(Violation) as raised:
        parser.frames()
    assert raised.value.code == code


# ---- against a real server -----------------------------------------------------------------


class Raw:
    """A client on a plain socket that says exactly what a test tells it to."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def connect(cls, port: int) -> Raw:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        raw = cls(stream)
        while b"\r\n\r\n" not in raw.buffer:
            raw.buffer += await stream.receive_some()
        head, _, raw.buffer = raw.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return raw

    async def frame(self) -> tuple[int, bytes] | None:
        """The next server frame (opcode, payload); None when the server closed TCP."""
        while True:
            if len(self.buffer) >= 2:
                size, head = self.buffer[1] & 0x7F, 2
                if size == 126:
                    size, head = int.from_bytes(self.buffer[2:4], "big"), 4
                elif size == 127:
                    size, head = int.from_bytes(self.buffer[2:10], "big"), 10
                if len(self.buffer) >= head + size:
                    opcode, payload = self.buffer[0] & 0x0F, self.buffer[head : head + size]
                    self.buffer = self.buffer[head + size :]
                    return opcode, payload
            chunk = await self.stream.receive_some()
            if not chunk:
                return None
            self.buffer += chunk

    async def close_code(self) -> int:
        """Read up to the server's close frame: its code."""
        while (got := await self.frame()) is not None:
            opcode, payload = got
            if opcode == 8:
                return int.from_bytes(payload[:2], "big")
        raise AssertionError("the server dropped TCP without a close frame")

    async def hello(self) -> dict:
        opcode, payload = await self.frame()  # type: ignore[misc]
        assert opcode == 1
        return json.loads(payload)


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (client_frame(1, b"\xff\xfe not utf-8"), 1007),
        (client_frame(5, b"x"), 1002),
        (client_frame(8, b"\x03\xe8\xff"), 1007),  # close reason not UTF-8
        (client_frame(8, (999).to_bytes(2, "big")), 1002),  # close code that may not be sent
        (client_frame(2, b"\0" * (2 << 20)), 1009),
    ],
)
async def test_the_server_closes_violations_with_the_rfc_code(wire: bytes, code: int) -> None:
    async with running_server() as server:
        raw = await Raw.connect(server.port)
        assert (await raw.hello())["type"] == "hello"
        await raw.stream.send_all(wire)
        assert await raw.close_code() == code
        await raw.stream.send_all(client_frame(8, code.to_bytes(2, "big")))
        with trio.fail_after(5):
            assert await raw.frame() is None  # and then the server closes TCP


async def test_a_close_the_peer_never_answers_drops_tcp_in_close_timeout() -> None:
    async with running_server(max_sessions=0, close_timeout_s=0.5) as server:
        clients = [await Raw.connect(server.port) for _ in range(20)]
        with trio.fail_after(3):
            for raw in clients:  # refused (server full): a close frame, then silence
                error = json.loads((await raw.frame())[1])  # type: ignore[index]
                assert error["code"] == "too_many_sessions"
                assert await raw.close_code() == 1013
                assert await raw.frame() is None  # dropped though we never answered
        assert server.connections == 0


async def test_pings_are_answered_and_a_clean_close_is_echoed() -> None:
    async with running_server() as server:
        raw = await Raw.connect(server.port)
        await raw.hello()
        for i in range(100):
            await raw.stream.send_all(client_frame(9, str(i).encode()))
        for i in range(100):
            assert await raw.frame() == (10, str(i).encode())
        await raw.stream.send_all(client_frame(8, (1000).to_bytes(2, "big") + b"bye"))
        assert await raw.close_code() == 1000
        with trio.fail_after(5):
            assert await raw.frame() is None


async def test_a_bad_upgrade_gets_an_http_answer() -> None:
    async with running_server() as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        reply = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some():
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 400") and b"Sec-WebSocket-Key" in reply
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.close()  # a connection that says nothing and goes holds nothing
