"""The client library and `legato stream`, against a real server: in-process on an ephemeral port,
or `legato serve` as a subprocess. Every result is compared with the offline runner."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import soundfile as sf
import trio
from live import Proxy, feed_with_cuts, free_port, legato_serve

from legato.client.session import BlockingSession, ClientError, Session, connect, to_s16le
from legato.config.pipelines import Config, load_config
from legato.engine.files import BLOCK_FRAMES, AudioFile
from legato.engine.runner import run_file
from legato.server.server import Server
from legato.server.session import State
from legato.testing import registry

RATE = 44100


def _notes(seconds: float, channels: int) -> np.ndarray:
    """Plucked notes every 0.4 s, so every stage has something to report."""
    t = np.arange(int(seconds * RATE)) / RATE
    out = np.zeros_like(t)
    for i, start in enumerate(np.arange(0.2, seconds - 0.1, 0.4)):
        f0 = 220.0 * 2 ** (i % 5 / 12)
        on = t >= start
        tau = t[on] - start
        out[on] += (
            0.4 * np.exp(-3 * tau) * sum(np.sin(2 * np.pi * f0 * k * tau) / k for k in (1, 2))
        )
    return np.stack([out * (1 - 0.3 * c) for c in range(channels)], axis=1)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("audio")
    sf.write(folder / "mono.wav", _notes(3.0, 1).astype(np.float32), RATE, subtype="FLOAT")
    sf.write(folder / "stereo16.wav", _notes(2.0, 2), RATE, subtype="PCM_16")
    return folder


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(None, registry())


@pytest.fixture
def start_server(nursery: trio.Nursery, config: Config) -> Callable[..., Awaitable[Server]]:
    """Start a server on a free port with some settings changed; it stops with the test."""

    async def start(**settings: Any) -> Server:
        changed = attrs.evolve(config.server, port=0, shutdown_timeout_s=2.0, **settings)
        return await nursery.start(Server(config, changed).run)

    return start


@pytest.fixture
async def server(start_server: Callable[..., Awaitable[Server]]) -> Server:
    return await start_server(resume_grace_s=5.0)


def url_of(port: int | None) -> str:
    return f"ws://127.0.0.1:{port}/"


def offline(config: Config, path: Path, block_frames: int = BLOCK_FRAMES) -> list[dict[str, Any]]:
    """What `legato run` produces, through the same JSON encoding the wire uses."""
    events: list[dict[str, Any]] = []
    run_file(config.pipeline("analyze"), path, events.append, block_frames)
    return [json.loads(json.dumps(e, allow_nan=False)) for e in events]


def without_seq(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "seq"} for e in events]


async def stream(session: Session, path: Path, block_frames: int = BLOCK_FRAMES) -> dict:
    with AudioFile(path) as audio:
        for block in audio.blocks(block_frames):
            await session.send(block)
    return await session.end()


async def collect(session: Session) -> list[dict[str, Any]]:
    return [event async for event in session.events()]


# ---- sessions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"), [("mono.wav", "f32le"), ("stereo16.wav", "s16le"), ("stereo16.wav", "f32le")]
)
async def test_session_equals_offline_run(
    server: Server, config: Config, audio_dir: Path, name: str, fmt: str
) -> None:
    path = audio_dir / name
    channels = sf.info(str(path)).channels
    async with connect(
        url_of(server.port), sample_rate=RATE, channels=channels, format=fmt, user="ana"
    ) as session:
        assert session.started["channels"] == channels and session.started["format"] == fmt
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream, session, path)
            events = await collect(session)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert without_seq(events) == offline(config, path)
    assert session.summary is not None and session.summary["status"] == "completed"
    assert session.summary["samples"] == sf.info(str(path)).frames
    assert session.errors == []


async def test_events_stay_available_after_end(
    server: Server, config: Config, audio_dir: Path
) -> None:
    path = audio_dir / "mono.wav"
    async with connect(url_of(server.port), sample_rate=RATE) as session:
        summary = await stream(session, path)
        stats = await session.stats()
        events = await collect(session)
    assert summary["type"] == "summary" and session.summary is summary
    assert stats["type"] == "stats" and stats["samples_received"] == summary["samples"]
    assert without_seq(events) == offline(config, path)


async def test_stats_mid_session(server: Server, audio_dir: Path) -> None:
    async with connect(url_of(server.port), sample_rate=RATE) as session:
        block = next(AudioFile(audio_dir / "mono.wav").blocks(1000))
        await session.send(block)
        await session.send(block)
        stats = await session.stats()
        assert stats["type"] == "stats" and stats["frames_received"] == 2
        assert stats["samples_received"] == 2000
        await session.end()


async def test_leaving_without_end_detaches(server: Server) -> None:
    with pytest.raises(KeyError):  # the caller's own exception comes out as it is
        async with connect(url_of(server.port), sample_rate=RATE) as session:
            await session.send(np.zeros(4096, dtype=np.float32))
            raise KeyError("caller")
    with trio.fail_after(2):
        while server.sessions[session.session_id].state is not State.DETACHED:
            await trio.sleep(0.01)


async def test_keepalive_outlasts_idle_timeout(
    start_server: Callable[..., Awaitable[Server]],
) -> None:
    quiet = await start_server(idle_timeout_s=1.0)
    async with connect(url_of(quiet.port), sample_rate=RATE, reconnect=False) as session:
        await trio.sleep(1.5)  # nothing to send for longer than idle_timeout_s
        await session.send(np.zeros(4096))
        summary = await session.end()
    assert summary["samples"] == 4096 and session.resumes == []


async def test_server_shutdown_ends_the_session(
    start_server: Callable[..., Awaitable[Server]],
) -> None:
    closing = await start_server()
    async with connect(url_of(closing.port), sample_rate=RATE) as session:
        await session.send(np.zeros(8192))
        await session.stats()  # a round trip: the server has the audio
        closing.shutdown()
        events = await collect(session)
        assert session.summary is not None and session.summary["samples"] == 8192
        assert events and events[-1]["kind"] == "summary"
        with pytest.raises(ClientError, match="server ended the session"):
            await session.send(np.zeros(16))


async def test_unknown_pipeline_raises_server_code(server: Server) -> None:
    with pytest.raises(ClientError) as caught:
        async with connect(url_of(server.port), pipeline="analyse", sample_rate=RATE):
            pytest.fail("connected to a pipeline that does not exist")
    assert caught.value.code == "unknown_pipeline"
    assert "did you mean 'analyze'" in caught.value.message


async def test_bad_start_and_unreachable_server(server: Server) -> None:
    with pytest.raises(ClientError) as caught:
        async with connect(url_of(server.port), sample_rate=100):
            pass
    assert caught.value.code == "bad_message" and "sample_rate" in caught.value.message
    with pytest.raises(ClientError) as caught:
        async with connect(url_of(free_port()), sample_rate=RATE):
            pass
    assert caught.value.code == "connection_failed"


async def test_send_checks_shape_and_dtype(server: Server) -> None:
    async with connect(url_of(server.port), sample_rate=RATE, channels=2) as session:
        with pytest.raises(ValueError, match=r"\(n, 2\)"):
            await session.send(np.zeros(16))
        with pytest.raises(TypeError, match="float"):
            await session.send(np.zeros((16, 2), dtype=np.int16))
        await session.end()
        with pytest.raises(ClientError) as caught:
            await session.send(np.zeros((16, 2)))
        assert caught.value.code == "session_ended"


def test_s16le_conversion_matches_server_decoding() -> None:
    k = np.arange(-32768, 32768)
    exact = k / 32768.0
    assert np.array_equal(to_s16le(exact.astype(np.float32)), k)  # a 16-bit file round-trips
    edge = np.array([1.0, 1.5, -1.0, -7.0, np.nan, np.inf, -np.inf, 0.5 / 32768, 1.5 / 32768])
    expected = [32767, 32767, -32768, -32768, 0, 0, 0, 0, 2]  # clip to [-1, 32767/32768]
    assert to_s16le(edge).tolist() == expected
    assert to_s16le(edge).dtype == np.dtype("<i2")


async def test_oversized_block_is_split_to_fit_the_server(
    start_server: Callable[..., Awaitable[Server]], config: Config, audio_dir: Path
) -> None:
    small = await start_server(max_message_bytes=4096)
    path = audio_dir / "mono.wav"
    data = sf.read(str(path), dtype="float32")[0]
    async with connect(url_of(small.port), sample_rate=RATE) as session:
        await session.send(data[:10000])  # 40000 bytes: ten messages
        await session.send(data[10000:])
        stats = await session.stats()
        events = await collect_after_end(session)
    assert stats["frames_dropped"] == 0 and stats["frames_received"] > 10
    assert sorted(map(_key, without_seq(events))) == sorted(map(_key, offline(config, path)))


async def test_sending_is_paced_to_the_server_rate_limit(
    start_server: Callable[..., Awaitable[Server]],
) -> None:
    limited = await start_server(max_frames_per_second=100.0)
    async with connect(url_of(limited.port), sample_rate=RATE) as session:
        began = trio.current_time()
        for _ in range(120):  # more than the server's bucket holds: unpaced, some would drop
            await session.send(np.zeros(64))
        elapsed = trio.current_time() - began
        summary = await session.end()
    assert summary["stats"]["frames_dropped"] == 0 and summary["samples"] == 120 * 64
    assert session.errors == []
    assert elapsed >= (120 - 50 - 1) / 100


async def collect_after_end(session: Session) -> list[dict[str, Any]]:
    await session.end()
    return await collect(session)


def _key(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True)


# ---- resume --------------------------------------------------------------------------------


@pytest.fixture
async def proxy(nursery: trio.Nursery, server: Server) -> Proxy:
    relay = Proxy(server.port or 0)
    await nursery.start(relay.run)
    return relay


async def test_resume_after_cuts_delivers_every_event_once(
    proxy: Proxy, config: Config, audio_dir: Path
) -> None:
    path, block = audio_dir / "mono.wav", 512
    blocks = list(AudioFile(path).blocks(block))
    cuts = {len(blocks) // 4, len(blocks) // 2, 3 * len(blocks) // 4}
    async with connect(url_of(proxy.port), sample_rate=RATE) as session:
        seen = await feed_with_cuts(session, blocks, cuts, proxy)
    assert proxy.connections == 1 + len(cuts)
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
    assert without_seq(seen) == offline(config, path, block)
    assert session.summary is not None and session.summary["samples"] == sum(map(len, blocks))
    assert session.summary["stats"]["frames_dropped"] == 0


async def test_resume_replays_lost_events_and_resends_lost_audio(
    proxy: Proxy, config: Config, audio_dir: Path
) -> None:
    """Events the server sent and audio the client sent are lost in the cut; the caller reads
    nothing until the end, so replayed events must not be duplicated either."""
    path = audio_dir / "stereo16.wav"
    async with connect(url_of(proxy.port), sample_rate=RATE, channels=2) as session:
        with AudioFile(path) as audio:
            for i, data in enumerate(audio.blocks(BLOCK_FRAMES)):
                if i == 4:
                    proxy.swallow_down = True
                if i == 8:
                    await trio.sleep(0.2)  # the server analyses blocks 4-7; its events vanish
                    proxy.swallow_up = True
                await session.send(data)
                if i == 12:
                    proxy.cut()
        await session.end()
        events = await collect(session)
    assert proxy.connections == 2
    [resumed] = session.resumes
    assert resumed["replayed"] > 0
    assert resumed["samples_received"] == 8 * BLOCK_FRAMES
    assert without_seq(events) == offline(config, path)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def test_no_reconnect_raises_connection_lost(proxy: Proxy, audio_dir: Path) -> None:
    with pytest.raises(ClientError) as caught:
        async with connect(url_of(proxy.port), sample_rate=RATE, reconnect=False) as session:
            await session.send(np.zeros(1000))
            proxy.cut()
            await collect(session)
    assert caught.value.code == "connection_lost"


async def test_gives_up_after_resume_grace(
    nursery: trio.Nursery, start_server: Callable[..., Awaitable[Server]]
) -> None:
    quick = await start_server(resume_grace_s=0.5)
    relay = Proxy(quick.port or 0)
    await nursery.start(relay.run)
    began = trio.current_time()
    with pytest.raises(ClientError) as caught:
        async with connect(url_of(relay.port), sample_rate=RATE, max_backoff_s=0.2) as session:
            await session.send(np.zeros(1000))
            relay.accepting = False
            relay.cut()
            await collect(session)
    assert caught.value.code == "connection_lost" and "0.5 s" in caught.value.message
    assert 0.4 < trio.current_time() - began < 3.0
    with trio.fail_after(2):  # the server gave the session up too: abandoned and forgotten
        while quick.sessions:
            await trio.sleep(0.02)


# ---- blocking wrapper ----------------------------------------------------------------------


async def test_blocking_session_in_a_thread(
    server: Server, config: Config, audio_dir: Path
) -> None:
    path = audio_dir / "stereo16.wav"

    def script() -> tuple[list[dict[str, Any]], dict, dict]:
        with BlockingSession(url_of(server.port), sample_rate=RATE, channels=2) as session:
            with AudioFile(path) as audio:
                for data in audio.blocks(BLOCK_FRAMES):
                    session.send(data)
            stats = session.stats()
            summary = session.end()
            return list(session.events()), summary, stats

    events, summary, stats = await trio.to_thread.run_sync(script)
    assert without_seq(events) == offline(config, path)
    assert summary["status"] == "completed" and stats["type"] == "stats"

    def refused() -> ClientError:
        with pytest.raises(ClientError) as caught:
            BlockingSession(url_of(server.port), pipeline="nope", sample_rate=RATE)
        return caught.value

    assert (await trio.to_thread.run_sync(refused)).code == "unknown_pipeline"


# ---- `legato stream` -----------------------------------------------------------------------


def legato(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "legato.cli", *args], capture_output=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`legato serve` as a subprocess on a free port, recording into a temporary database;
    yields its URL."""
    home = tmp_path_factory.mktemp("serve")
    with legato_serve(home, "--db", f"sqlite:///{home / 'legato.db'}") as port:
        yield url_of(port)


def test_stream_prints_what_run_prints(served: str, audio_dir: Path, tmp_path: Path) -> None:
    path = audio_dir / "stereo16.wav"
    streamed = legato("stream", "--url", served, "--piece", "scales", str(path))
    assert streamed.returncode == 0, streamed.stderr.decode()
    assert streamed.stdout == legato("run", str(path)).stdout
    summary = json.loads(streamed.stderr.decode().splitlines()[-1])
    assert summary["type"] == "summary" and summary["status"] == "completed"
    saved = tmp_path / "summary.json"
    quiet = legato("stream", "--url", served, "--summary", str(saved), str(path))
    assert quiet.returncode == 0 and quiet.stderr == b""
    assert quiet.stdout == streamed.stdout
    assert json.loads(saved.read_text())["samples"] == summary["samples"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pipeline", "analyse"], "unknown pipeline 'analyse'"),
        (["--url", "ws://127.0.0.1:1/"], "cannot connect to ws://127.0.0.1:1/"),
        (["--url", "http://example.org/"], "not a ws:// or wss:// URL"),
        (["--target-tempo", "-5"], "target_tempo must be 1 to 1000 beats per minute"),
    ],
)
def test_stream_errors_are_one_line(
    served: str, audio_dir: Path, args: list[str], message: str
) -> None:
    done = legato("stream", "--url", served, *args, str(audio_dir / "mono.wav"))
    stderr = done.stderr.decode()
    assert done.returncode == 1 and done.stdout == b""
    assert stderr.count("\n") == 1 and message in stderr and "Traceback" not in stderr


def test_stream_missing_file(served: str, tmp_path: Path) -> None:
    done = legato("stream", "--url", served, str(tmp_path / "missing.wav"))
    assert done.returncode == 1 and b"missing.wav: no such file" in done.stderr
