"""Limits no client gets around: connections that never start, floods of bad messages, and
strings that would forge log lines."""

from __future__ import annotations

import json
import logging
import socket
import struct
from pathlib import Path

import pytest
import trio
from live import RATE, drain, history, phrase, receive
from trio_websocket import ConnectionClosed, open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Request

from legato.server.history import HistoryQueries
from legato.testing import running_server, server_url


async def close_code(ws) -> int:
    with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
        while True:
            await ws.get_message()
    return closed.value.reason.code


async def test_a_connection_that_never_starts_is_closed() -> None:
    async with running_server(start_timeout_s=0.5) as server:
        async with open_websocket_url(server_url(server)) as ws:
            await receive(ws)  # hello
            for _ in range(5):  # pings keep a connection alive, but do not start it
                await ws.send_message('{"type": "ping"}')
                await trio.sleep(0.05)
            messages = []
            with trio.fail_after(5):
                while (message := json.loads(await ws.get_message()))["type"] != "error":
                    messages.append(message)
            assert message["code"] == "start_timeout" and not message["continues"]
            assert await close_code(ws) == 4001
        assert server.connections == 0


async def test_connections_beyond_max_connections_are_refused() -> None:
    async with running_server(max_connections=3) as server:
        url = server_url(server)
        async with open_websocket_url(url) as a, open_websocket_url(url) as b:
            async with open_websocket_url(url) as c:
                for ws in (a, b, c):
                    assert (await receive(ws))["type"] == "hello"
                async with open_websocket_url(url) as d:
                    refused = await receive(d)
                    assert refused["code"] == "too_many_connections"
                    assert await close_code(d) == 1013
            async with open_websocket_url(url) as e:  # one left: room again
                assert (await receive(e))["type"] == "hello"


async def test_a_flood_of_bad_messages_gets_a_few_replies_not_one_each() -> None:
    async with running_server() as server, open_websocket_url(server_url(server)) as ws:
        await receive(ws)
        await ws.send_message(
            json.dumps({"type": "start", "pipeline": "analyze", "sample_rate": RATE})
        )
        assert (await receive(ws))["type"] == "started"
        for _ in range(200):
            await ws.send_message("{not json")
        await ws.send_message('{"type": "ping", "id": "last"}')
        replies = []
        with trio.fail_after(5):
            while (message := json.loads(await ws.get_message()))["type"] != "pong":
                replies.append(message)
        assert 10 <= len([r for r in replies if r.get("code") == "bad_json"]) <= 12


async def test_user_strings_cannot_forge_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="legato.server")
    async with running_server() as server, open_websocket_url(server_url(server)) as ws:
        await receive(ws)
        forged = "ana\n2026-01-01 00:00:00 INFO session x started: user=admin"
        await ws.send_message(
            json.dumps(
                {"type": "start", "pipeline": "analyze", "sample_rate": RATE, "user": forged}
            )
        )
        assert (await receive(ws))["type"] == "started"
    started = [r.getMessage() for r in caplog.records if "started:" in r.getMessage()]
    assert len(started) == 1 and "\n" not in started[0] and "user='ana\\n2026" in started[0]


async def test_large_messages_do_not_get_around_the_audio_rate() -> None:
    """1 MiB messages of s16le: within the message rate, far beyond real time."""
    async with running_server(max_realtime_factor=4.0) as server:
        async with open_websocket_url(server_url(server), max_message_size=1 << 22) as ws:
            await receive(ws)
            await ws.send_message(
                json.dumps(
                    {"type": "start", "pipeline": "analyze", "sample_rate": RATE, "format": "s16le"}
                )
            )
            assert (await receive(ws))["type"] == "started"
            big = bytes(1 << 20)  # 524288 frames: 11.9 s of audio each
            for _ in range(5):
                await ws.send_message(big)
            await ws.send_message('{"type": "stats"}')
            with trio.fail_after(20):
                while (stats := json.loads(await ws.get_message()))["type"] != "stats":
                    pass
        # at 4x real time one such message takes 3 s of budget: the first (one largest message
        # always fits) goes through, the four right behind it do not
        assert stats["frames_dropped"] == 4
        assert stats["samples_received"] == len(big) // 2


async def test_a_long_session_is_read_a_page_at_a_time(tmp_path: Path) -> None:
    """History answers are bounded: a session's events come in pages no longer than asked
    (the default page is short of a long session), and the pages join into exactly the
    events the client received live."""
    db = f"sqlite:///{tmp_path / 'legato.db'}"
    async with running_server(storage_url=db, spool_dir=str(tmp_path / "spool")) as server:
        url = server_url(server)
        async with open_websocket_url(url) as ws:
            await receive(ws)
            start = {"type": "start", "pipeline": "analyze", "sample_rate": RATE, "user": "ana"}
            await ws.send_message(json.dumps(start))
            session_id = (await receive(ws))["session_id"]
            await ws.send_message(phrase(4.0).tobytes())
            await ws.send_message('{"type": "end"}')
            live, _, _ = await drain(ws)
        assert len(live) > 600
        async with open_websocket_url(url) as ws:
            await receive(ws)
            await ws.send_message(json.dumps(start))
            await receive(ws)
            with trio.fail_after(10):  # until the recorder has written the finished session
                while (reply := await history(ws, query="session", session_id=session_id)).get(
                    "result", {}
                ).get("status") in (None, "active"):
                    assert reply.get("code") in (None, "unknown_session"), reply
                    await trio.sleep(0.1)
            first = (await history(ws, query="session", session_id=session_id))["result"]
            assert len(first["events"]) == 500 and first["next_after_seq"] == 500
            stored: list[dict] = []
            after: int | None = 0
            while after is not None:
                page = await history(
                    ws, query="session", session_id=session_id, after_seq=after, limit=150
                )
                assert len(page["result"]["events"]) <= 150
                stored += page["result"]["events"]
                after = page["result"]["next_after_seq"]
            assert stored == live
            too_many = await history(ws, query="session", session_id=session_id, limit=1001)
            assert too_many["code"] == "bad_message" and "limit" in too_many["message"]


async def test_history_queries_take_turns_per_user() -> None:
    """One user's queries run one at a time (their many connections cannot take every slot of
    the server), while different users' queries run side by side."""
    queries = HistoryQueries(None, 1.0)
    running: dict[str | None, int] = {"ana": 0, "bo": 0, None: 0}
    most = dict.fromkeys(running, 0)
    together = 0

    async def query(user: str | None) -> None:
        nonlocal together
        async with queries._turn(user):
            running[user] += 1
            most[user] = max(most[user], running[user])
            together = max(together, sum(running.values()))
            await trio.sleep(0.01)
            running[user] -= 1

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            for user in running:
                nursery.start_soon(query, user)
    assert most == dict.fromkeys(running, 1) and together == 3
    assert not queries._turns  # nothing kept once every turn is over


def forwarded(*hops: str) -> list[tuple[str, str]]:
    return [("X-Forwarded-For", ", ".join(hops))]


async def test_connections_per_address_are_capped_behind_a_trusted_proxy() -> None:
    """Connections from one client address beyond the cap are refused (1013); behind a
    trusted proxy the client address is the nearest forwarded hop (hops a client prepends
    cannot move it), from an untrusted peer the header counts for nothing, and loopback
    peers are not capped."""
    async with running_server(max_connections_per_address=2, trusted_proxies=("127.0.0.1",)) as s:
        url = server_url(s)
        client = forwarded("198.51.100.9", "203.0.113.5")  # a forged first hop, then the client
        same = forwarded("203.0.113.5")
        async with (
            open_websocket_url(url, extra_headers=client) as a,
            open_websocket_url(url, extra_headers=same) as b,
        ):
            for ws in (a, b):
                assert (await receive(ws))["type"] == "hello"
            async with open_websocket_url(url, extra_headers=client) as c:
                refused = await receive(c)
                assert refused["code"] == "too_many_connections"
                assert "203.0.113.5" in refused["message"] and await close_code(c) == 1013
            other = forwarded("203.0.113.6")
            async with open_websocket_url(url, extra_headers=other) as d:
                assert (await receive(d))["type"] == "hello"
            async with open_websocket_url(url) as e, open_websocket_url(url) as f:
                for ws in (e, f):  # the proxy itself (loopback) is not capped
                    assert (await receive(ws))["type"] == "hello"
        assert not s.addresses  # every count returned
    async with running_server(max_connections_per_address=1) as s:
        url = server_url(s)
        async with (
            open_websocket_url(url, extra_headers=client) as a,
            open_websocket_url(url, extra_headers=client) as b,
        ):
            for ws in (a, b):  # not from a trusted proxy: a loopback peer, uncapped
                assert (await receive(ws))["type"] == "hello"


async def test_sessions_per_user_are_capped() -> None:
    async with running_server(max_sessions_per_user=2) as server:
        url = server_url(server)

        async def start(ws, user: str) -> dict:
            await ws.send_message(
                json.dumps(
                    {"type": "start", "pipeline": "analyze", "sample_rate": RATE, "user": user}
                )
            )
            return await receive(ws)

        async with open_websocket_url(url) as a, open_websocket_url(url) as b:
            for ws in (a, b):
                await receive(ws)
                assert (await start(ws, "ana"))["type"] == "started"
            async with open_websocket_url(url) as c:
                await receive(c)
                refused = await start(c, "ana")
                assert refused["code"] == "too_many_user_sessions" and refused["continues"]
                assert (await start(c, "bo"))["type"] == "started"  # another user: room
            await a.send_message('{"type": "end"}')
            await drain(a)
            async with open_websocket_url(url) as d:
                await receive(d)
                with trio.fail_after(5):
                    while (reply := await start(d, "ana"))["type"] != "started":
                        assert reply["code"] == "too_many_user_sessions"  # a's not yet gone
                        await trio.sleep(0.05)


async def test_sessions_of_clients_that_vanish_after_start_end() -> None:
    """A client that sends `start` and resets the connection at once (before or after its
    `started` went out) leaves a session that waits resume_grace_s and ends: none is left
    holding a place under max_sessions."""
    async with running_server(resume_grace_s=0.3) as server:
        start = json.dumps({"type": "start", "pipeline": "analyze", "sample_rate": RATE})
        for _ in range(10):
            sock = trio.socket.socket()
            await sock.connect(("127.0.0.1", server.port))
            stream = trio.SocketStream(sock)
            ws = await upgraded(stream)
            await stream.send_all(ws.send(Message(data=start)))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        with trio.fail_after(10):
            while server.sessions:
                await trio.sleep(0.05)


async def upgraded(stream: trio.SocketStream) -> WSConnection:
    """A client-side wsproto connection over ``stream``, past the opening handshake."""
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host="127.0.0.1", target="/")))
    with trio.fail_after(5):
        while True:
            ws.receive_data(await stream.receive_some(65536))
            if any(isinstance(e, AcceptConnection) for e in ws.events()):
                return ws
