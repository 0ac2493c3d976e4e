"""The live server, over real WebSocket connections to a real server on an ephemeral port."""

from __future__ import annotations

import contextlib
import json
import math
from types import ModuleType
from typing import Any

import attrs
import numpy as np
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live import RATE, drain, phrase, receive
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from legato import hookimpl
from legato.config.pipelines import load_config, parse_config
from legato.engine.graph import Graph
from legato.engine.runner import run_file
from legato.registry import load_registry
from legato.stage import Event, OutputSpec, StageType, StreamFormat, param
from legato.testing import registry, running_server, server_url


def offline(audio: np.ndarray, channels: int = 1) -> list[Event]:
    """The events `legato run` would print, computed in the same 4096-frame blocks."""
    pipeline = load_config(None, registry()).pipeline("analyze")
    graph = Graph(pipeline, StreamFormat(RATE, channels))
    block = audio.reshape(-1, channels)
    events = []
    for i in range(0, len(block), 4096):
        events.extend(graph.process(block[i : i + 4096]))
    return events + graph.finish()


async def start(ws: WebSocketConnection, **fields: Any) -> dict[str, Any]:
    hello = await receive(ws)
    assert hello["type"] == "hello" and hello["protocol"] == 1
    body = {"type": "start", "pipeline": "analyze", "sample_rate": RATE} | fields
    await ws.send_message(json.dumps(body))
    started = await receive(ws)
    assert started["type"] == "started", started
    return hello


def without_seq(events: list[Event]) -> list[Event]:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    return [{k: v for k, v in e.items() if k != "seq"} for e in events]


async def stream_session(url: str, audio: np.ndarray, frames: int = 4096) -> tuple:
    async with open_websocket_url(url) as ws:
        await start(ws)
        for i in range(0, len(audio), frames):
            await ws.send_message(audio[i : i + frames].tobytes())
        await ws.send_message('{"type": "end"}')
        events, others, summary = await drain(ws)
        return events, others, summary, ws.closed


async def test_session_matches_offline_run(tmp_path) -> None:
    import soundfile as sf

    audio = phrase()
    path = tmp_path / "take.wav"
    sf.write(path, audio, RATE, subtype="FLOAT")
    expected: list[Event] = []
    run_file(load_config(None, registry()).pipeline("analyze"), path, expected.append)
    async with running_server() as server:
        events, others, summary, closed = await stream_session(server_url(server), audio)
    assert without_seq(events) == expected
    assert others == []
    assert closed.code == 1000
    assert summary["status"] == "completed" and summary["samples"] == len(audio)
    assert summary["stats"]["frames_dropped"] == 0
    assert summary["practice"]["counts"]["notes"] == len(
        [e for e in expected if e["kind"] == "onset"]
    )
    assert set(summary["stages"]) == {"pitch", "onsets", "dynamics"}


async def test_twenty_concurrent_sessions() -> None:
    signals = [phrase(1.0, f0=110 * 2 ** (i / 7), seed=i) for i in range(20)]
    results: dict[int, tuple] = {}
    async with running_server() as server:

        async def one(i: int) -> None:
            results[i] = await stream_session(server_url(server), signals[i], frames=512)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(one, i)
    for i, (events, _, summary, closed) in results.items():
        got = {(e["stage"], e["kind"], e["sample"]): e for e in without_seq(events)}
        want = {(e["stage"], e["kind"], e["sample"]): e for e in offline(signals[i])}
        assert got == want
        assert closed.code == 1000 and summary["status"] == "completed"


async def test_formats_s16le_stereo_and_json_audio() -> None:
    audio = phrase(1.0)
    stereo = np.stack([audio, audio * 0.5], axis=1)
    async with running_server() as server, open_websocket_url(server_url(server)) as ws:
        await start(ws, format="s16le", channels=2)
        pcm = np.clip(np.round(stereo * 32768), -32768, 32767).astype("<i2")
        await ws.send_message(pcm[:20000].tobytes())
        f32 = (pcm[20000:].astype(np.float32) / 32768).astype("<f4")
        import base64

        await ws.send_message(
            json.dumps({"type": "audio", "data": base64.b64encode(f32.tobytes()).decode()})
        )
        await ws.send_message('{"type": "end"}')
        (
            events,
            others,
            summary,
        ) = await drain(ws)
    decoded = (pcm.astype(np.float32) / 32768).reshape(-1, 2)
    got = {(e["stage"], e["kind"], e["sample"]) for e in events}
    assert got == {(e["stage"], e["kind"], e["sample"]) for e in offline(decoded.ravel(), 2)}
    assert others == [] and summary["samples"] == len(audio)


class CuttableProxy:
    """A TCP proxy in front of the server whose connections can be cut mid-stream, as a
    dropped network would (no WebSocket close handshake)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.scopes: list[trio.CancelScope] = []
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started()
            await trio.serve_listeners(self._relay, listeners, handler_nursery=nursery)

    async def _relay(self, client: trio.SocketStream) -> None:
        async with client, await trio.open_tcp_stream("127.0.0.1", self.target_port) as server:
            with trio.CancelScope() as scope:
                self.scopes.append(scope)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, client, server)
                    nursery.start_soon(self._pipe, server, client)

    @staticmethod
    async def _pipe(source: trio.SocketStream, sink: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async for chunk in source:
                await sink.send_all(chunk)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await sink.send_eof()

    def cut(self) -> None:
        for scope in self.scopes:
            scope.cancel()


async def test_resume_after_cutting_the_connection() -> None:
    audio = phrase(3.0)
    half = len(audio) // 2 // 512 * 512
    first: list[Event] = []
    async with running_server(resume_grace_s=5.0) as server, trio.open_nursery() as nursery:
        proxy = CuttableProxy(server.port)
        await nursery.start(proxy.run)
        with contextlib.suppress(ConnectionClosed):
            async with open_websocket_url(
                f"ws://127.0.0.1:{proxy.port}/", disconnect_timeout=0.5
            ) as ws:
                hello = await start(ws)
                for i in range(0, half, 512):
                    await ws.send_message(audio[i : i + 512].tobytes())
                while len(first) < 50:
                    message = await receive(ws)
                    first.extend(message.get("events", []))
                proxy.cut()
                while True:  # whatever was already in flight, until the cut is noticed
                    first.extend(json.loads(await ws.get_message()).get("events", []))
        await trio.sleep(0.2)
        async with open_websocket_url(server_url(server)) as ws:
            await receive(ws)  # a fresh hello
            resume = {
                "type": "resume",
                "session_id": hello["session_id"],
                "token": hello["resume_token"],
                "last_seq": first[-1]["seq"],
            }
            await ws.send_message(json.dumps(resume))
            resumed = await receive(ws)
            assert resumed["type"] == "resumed" and 0 < resumed["samples_received"] <= half
            for i in range(resumed["samples_received"], len(audio), 512):
                await ws.send_message(audio[i : i + 512].tobytes())
            await ws.send_message('{"type": "end"}')
            rest, others, summary = await drain(ws)
        nursery.cancel_scope.cancel()
    events = first + rest
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    got = {(e["stage"], e["kind"], e["sample"]): e for e in without_seq(events)}
    want = {(e["stage"], e["kind"], e["sample"]): e for e in offline(audio)}
    assert got == want
    assert summary["status"] == "completed" and others == []


async def test_resume_with_wrong_token_is_refused() -> None:
    async with running_server() as server, open_websocket_url(server_url(server)) as ws:
        hello = await start(ws)
        async with open_websocket_url(server_url(server)) as intruder:
            await receive(intruder)
            await intruder.send_message(
                json.dumps(
                    {
                        "type": "resume",
                        "session_id": hello["session_id"],
                        "token": "guess",
                        "last_seq": 0,
                    }
                )
            )
            error = await receive(intruder)
            assert error["code"] == "resume_failed" and error["continues"] is False
            with pytest.raises(ConnectionClosed) as closed:
                await intruder.get_message()
            assert closed.value.reason.code == 4002
        await ws.send_message('{"type": "end"}')
        _, _, summary = await drain(ws)
        assert summary["status"] == "completed"


async def test_abandoned_session_ends_after_grace() -> None:
    async with running_server(resume_grace_s=0.2) as server:
        async with open_websocket_url(server_url(server)) as ws:
            await start(ws)
            await ws.send_message(phrase(0.5).tobytes())
        with trio.fail_after(5):
            while server.sessions:
                await trio.sleep(0.05)


async def test_shutdown_drains_sessions() -> None:
    audio = phrase(2.0)
    async with (
        running_server(shutdown_timeout_s=5.0) as server,
        open_websocket_url(server_url(server)) as ws,
    ):
        await start(ws)
        for i in range(0, len(audio), 512):
            await ws.send_message(audio[i : i + 512].tobytes())
        await ws.send_message('{"type": "ping", "id": 1}')
        events: list[Event] = []
        while (message := await receive(ws))["type"] != "pong":  # all audio has arrived
            events.extend(message["events"])
        server.shutdown()
        rest, others, summary = await drain(ws)
        events += rest
        closed = ws.closed
    assert {"type": "server_shutdown", "timeout_s": 5.0} in others
    assert summary["status"] == "completed" and summary["samples"] == len(audio)
    assert len(without_seq(events)) == len(offline(audio))
    assert closed.code == 1001


async def test_limits() -> None:
    async with running_server(max_sessions=1, idle_timeout_s=1.0) as server:
        url = server_url(server)
        async with open_websocket_url(url) as first:
            await start(first)
            async with open_websocket_url(url) as second:
                error = await receive(second)
                assert error["code"] == "too_many_sessions"
                with pytest.raises(ConnectionClosed) as closed:
                    await second.get_message()
                assert closed.value.reason.code == 1013
            error = await receive(first)  # sends nothing for idle_timeout_s
            assert error["code"] == "idle_timeout"
            with pytest.raises(ConnectionClosed) as closed:
                await first.get_message()
            assert closed.value.reason.code == 4001


async def test_rate_limit_and_oversized_message() -> None:
    async with running_server(max_frames_per_second=20.0, max_message_bytes=65536) as server:
        async with open_websocket_url(server_url(server)) as ws:
            await start(ws)
            block = np.zeros(64, np.float32).tobytes()
            for _ in range(100):
                await ws.send_message(block)
            await ws.send_message('{"type": "stats"}')
            messages = [await receive(ws)]
            while messages[-1]["type"] != "stats":
                messages.append(await receive(ws))
            stats = messages[-1]
            assert stats["frames_received"] == 100
            assert stats["frames_dropped"] >= 70
            assert any(m.get("code") == "rate_limited" for m in messages)
        async with open_websocket_url(server_url(server)) as ws:
            await start(ws)
            await ws.send_message(np.zeros(20000, np.float32).tobytes())
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
            assert closed.value.reason.code == 1009


# ---- garbage: nothing a client sends takes the server or other sessions down -------------

garbage = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=6,
    ).map(lambda v: json.dumps(v)),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["start", "audio", "ping", "stats", "end", "resume", "x"])},
        optional={
            "pipeline": st.sampled_from(["analyze", "nope", 3]),
            "sample_rate": st.sampled_from([44100, 0, -1, 4.5, "44100", 10**9]),
            "format": st.sampled_from(["f32le", "s16le", "u8", None]),
            "channels": st.sampled_from([1, 2, 0, 99, True]),
            "data": st.sampled_from(["AAAAAA==", "!!", "AACAfw==", ""]),
            "session_id": st.text(max_size=5),
            "token": st.text(max_size=5),
            "last_seq": st.integers(-5, 5),
            "target_tempo": st.sampled_from([96, -1, 0, 1e400]),
        },
    ).map(lambda v: json.dumps(v)),
    st.sampled_from(
        [
            np.full(7, np.nan, np.float32).tobytes(),
            np.array([np.inf, -np.inf, 1e38], np.float32).tobytes(),
            b"\x00\x01\x02",
        ]
    ),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(garbage, min_size=1, max_size=12), st.booleans())
def test_garbage_never_takes_the_server_down(messages: list, start_first: bool) -> None:
    audio = phrase(1.0)

    async def main() -> None:
        async with running_server() as server:
            url = server_url(server)
            good: dict[str, Any] = {}

            async def good_session() -> None:
                good["result"] = await stream_session(url, audio, frames=2048)

            async def bad_session() -> None:
                async with open_websocket_url(url) as ws:
                    await receive(ws)
                    if start_first:
                        await ws.send_message(
                            json.dumps(
                                {"type": "start", "pipeline": "analyze", "sample_rate": RATE}
                            )
                        )
                    for message in messages:
                        await ws.send_message(message)
                    with trio.move_on_after(0.5):
                        while True:
                            reply = json.loads(await ws.get_message())
                            if reply["type"] == "error":
                                assert reply["code"] and reply["message"]

            async with trio.open_nursery() as nursery:
                nursery.start_soon(good_session)
                with trio.move_on_after(10):
                    with contextlib.suppress(ConnectionClosed):
                        await bad_session()
            events, _others, summary, closed = good["result"]
            assert closed.code == 1000 and summary["status"] == "completed"
            assert len(events) == len(offline(audio))
            # and the server still accepts new sessions
            await stream_session(url, audio[:4096])

    trio.run(main)


# ---- faults inside the server stay inside one session ------------------------------------


@attrs.frozen
class ExplodeParams:
    after: int = param(3, doc="blocks before failing", min=0)


class Explode:
    def __init__(self, params: ExplodeParams, fmt: StreamFormat) -> None:
        self.left = params.after

    def process(self, block: np.ndarray) -> list[Event]:
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("kernel fault")
        return []

    def finish(self) -> list[Event]:
        return []


def explode_plugin() -> ModuleType:
    module = ModuleType("explode_plugin")
    module.LEGATO_API_VERSION = 1  # type: ignore[attr-defined]

    @hookimpl
    def register_stages(register):
        register(
            StageType(
                "explode",
                "fails on purpose",
                ExplodeParams,
                Explode,
                (OutputSpec("none", "nothing", "variable", {}),),
            )
        )

    module.register_stages = register_stages  # type: ignore[attr-defined]
    return module


async def test_a_failing_stage_ends_only_its_session(monkeypatch) -> None:
    registry = load_registry(extra_modules={"explode_plugin": explode_plugin()})
    config = parse_config(
        '[pipelines.bad.stages.x]\ntype = "explode"\ninputs = ["audio"]\n'
        '[pipelines.analyze.stages.p]\ntype = "pitch_yin"\ninputs = ["audio"]\n',
        "t.toml",
        registry,
    )
    audio = phrase(1.0)
    async with running_server(config) as server, open_websocket_url(server_url(server)) as ws:
        await start(ws, pipeline="bad")

        async def send_all() -> None:
            try:
                for i in range(0, len(audio), 512):
                    await ws.send_message(audio[i : i + 512].tobytes())
            except ConnectionClosed:
                pass  # the server ends a failed session: the summary is already on its way

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all)
            _events, others, summary = await drain(ws)
        assert summary["status"] == "failed"
        assert any(m.get("code") == "stage_failed" for m in others)
        result = await stream_session(server_url(server), audio)
        assert result[2]["status"] == "completed"


async def test_an_exception_in_a_handler_closes_only_that_connection(monkeypatch) -> None:
    from legato.server.session import Session

    def broken_stats(self: Session) -> None:
        raise RuntimeError("bug")

    async with running_server() as server:
        url = server_url(server)
        async with open_websocket_url(url) as ws:
            await start(ws)
            monkeypatch.setattr(Session, "stats", broken_stats)
            await ws.send_message('{"type": "stats"}')
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
            assert closed.value.reason.code == 1011
        monkeypatch.undo()
        _events, _, summary, closed = await stream_session(url, phrase(0.5))
        assert closed.code == 1000 and summary["status"] == "completed"
        assert not math.isnan(summary["duration_s"])
