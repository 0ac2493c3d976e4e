"""Playback sessions end to end over real WebSocket connections: a library track found through
the fingerprint tiers, mastered by lwrp_master and streamed as PCM under the client's credit,
with seeking; compared sample for sample with the stage run offline over the same file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import soundfile as sf
import trio
from live import free_port, legato_serve
from test_lwrp_master import brickwall, hits, music
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from legato.client.player import PlayerError, open_player
from legato.config.pipelines import load_config, parse_config
from legato.config.settings import LibrarySettings
from legato.plugins.fingerprint25d import fingerprint_file
from legato.server.playback import PREROLL_S, with_track_measurements
from legato.testing import make_stage, registry, run_blocks, running_server, server_url

pytest_plugins = ("storage_fixtures",)  # backend, empty_url: SQLite and Postgres

RATE = 44100
CEILING = -1.0


# --- material and references ----------------------------------------------------------------


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """A library folder: a loudness-war master, a dynamic loud track, a quiet one, a nested
    folder, a file that is not audio, and a secret outside the folder."""
    root = tmp_path / "music"
    (root / "album").mkdir(parents=True)
    sf.write(root / "loud.wav", brickwall(music(8, seed=1), drive_db=14), RATE, "FLOAT")
    sf.write(root / "album" / "dynamic.flac", hits([-1, -3, -2, -1]), RATE, "PCM_24")
    sf.write(root / "quiet.wav", (0.05 * music(6, seed=2)).astype(np.float32), RATE, "FLOAT")
    (root / "notes.txt").write_text("not audio")
    (tmp_path / "secret.wav").write_bytes((root / "quiet.wav").read_bytes())
    return root


def offline(path: Path, plan: dict[str, Any]) -> np.ndarray:
    """The lwrp_master stage run over the whole file with the measurements the server used."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    params = {k: plan[k] for k in ("integrated_lufs", "crest_db") if plan[k] is not None}
    _, stage = make_stage("lwrp_master", rate, audio.shape[1], **params)
    out, _ = stage.process_audio(audio)  # type: ignore[attr-defined]
    tail, _ = stage.finish_audio()  # type: ignore[attr-defined]
    return np.concatenate([out, tail])


def true_peak(audio: np.ndarray) -> float:
    return run_blocks("dynamics", audio, RATE)[-1]["true_peak_dbtp"]


# --- the client side --------------------------------------------------------------------------


async def text(ws: WebSocketConnection) -> dict[str, Any]:
    """The next JSON message other than ``analysis`` (events); binary here is a failure."""
    with trio.fail_after(20):
        while True:
            message = await ws.get_message()
            assert isinstance(message, str), f"expected a text message, got {len(message)} bytes"
            parsed = json.loads(message)
            if parsed["type"] != "analysis":
                return parsed


async def start(ws: WebSocketConnection, **fields: Any) -> tuple[dict, dict]:
    """hello, start a playback session; the ``started`` and ``track`` messages."""
    assert (await text(ws))["type"] == "hello"
    await send(ws, "start", pipeline="playback", **fields)
    started = await text(ws)
    assert started["type"] == "started", started
    track = await text(ws)
    assert track["type"] == "track", track
    return started, track


async def send(ws: WebSocketConnection, kind: str, **fields: Any) -> None:
    await ws.send_message(json.dumps({"type": kind, **fields}))


def pcm(payload: bytes, channels: int, fmt: str = "f32le") -> np.ndarray:
    if fmt == "s16le":
        return np.frombuffer(payload, "<i2").reshape(-1, channels)
    return np.frombuffer(payload, "<f4").reshape(-1, channels)


async def receive_until(
    ws: WebSocketConnection, channels: int, stop: str = "track_end", grant_back: bool = True
) -> tuple[np.ndarray, list[dict]]:
    """PCM and text messages until a ``stop`` message; like a player, each received block's
    frames are granted again."""
    blocks, messages = [], []
    with trio.fail_after(30):
        while True:
            message = await ws.get_message()
            if isinstance(message, bytes):
                block = pcm(message, channels)
                blocks.append(block)
                if grant_back:
                    await send(ws, "credit", frames=len(block))
                continue
            parsed = json.loads(message)
            messages.append(parsed)
            if parsed["type"] == stop:
                break
    audio = np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)
    return audio, messages


async def binary_within(ws: WebSocketConnection, seconds: float) -> bytes | None:
    """The next binary message within ``seconds`` (text messages are skipped), or None."""
    with trio.move_on_after(seconds):
        while True:
            message = await ws.get_message()
            if isinstance(message, bytes):
                return message
    return None


async def finish(ws: WebSocketConnection) -> dict:
    """``end``: the summary, then the server closes with 1000."""
    await send(ws, "end")
    summary = None
    with trio.fail_after(20):
        try:
            while True:
                message = await ws.get_message()
                if isinstance(message, str) and json.loads(message)["type"] == "summary":
                    summary = json.loads(message)
        except ConnectionClosed as closed:
            assert closed.reason.code == 1000
    assert summary is not None
    return summary


# --- end to end -------------------------------------------------------------------------------


async def test_a_track_streams_mastered_and_bit_identical_to_the_offline_stage(
    library: Path, tmp_path: Path, empty_url: str
) -> None:
    """On both storage backends: the second play finds the fingerprint in the database."""
    spool = str(tmp_path / "spool")
    async with (
        running_server(storage_url=empty_url, library=library, spool_dir=spool) as server,
        open_websocket_url(server_url(server)) as ws,
    ):
        started, track = await start(ws, track="loud.wav")
        assert started["sample_rate"] == RATE and started["channels"] == 2
        assert track["frames"] == 8 * RATE and track["duration_s"] == 8.0
        assert track["fingerprint_tier"] == "generated"
        assert track["class"] == "compressed_loud"
        expected_fp = fingerprint_file(library / "loud.wav")
        assert track["before"]["integrated_lufs"] == pytest.approx(
            expected_fp["loudness_lufs"], abs=1e-9
        )
        assert track["before"]["crest_db"] == pytest.approx(expected_fp["crest_db"], abs=1e-9)
        after = track["expected_after"]
        assert after["integrated_lufs"] < track["before"]["integrated_lufs"]
        assert after["true_peak_dbtp"] <= CEILING
        await send(ws, "credit", frames=3 * 4096)
        audio, messages = await receive_until(ws, 2)
        assert messages[-1] == {"type": "track_end", "frames": 8 * RATE}
        summary = await finish(ws)
        reference = offline(library / "loud.wav", track["mastering"])
        assert audio.shape == reference.shape
        assert np.array_equal(audio, reference)
        assert true_peak(audio) <= CEILING + 1e-6
        assert summary["status"] == "completed"
        assert summary["samples"] == 8 * RATE
        assert summary["stages"]["master"]["output_true_peak_dbtp"] <= CEILING
        async with open_websocket_url(server_url(server)) as ws:
            _, again = await start(ws, track="loud.wav")
            assert again["fingerprint_tier"] == "database"
            assert again["mastering"] == track["mastering"]
            await finish(ws)


@pytest.mark.parametrize(
    ("track", "cls"),
    [
        ("loud.wav", "compressed_loud"),
        ("album/dynamic.flac", "dynamic_loud"),
        ("quiet.wav", "quiet"),
    ],
)
async def test_each_class_is_played_as_the_offline_stage_masters_it(
    library: Path, track: str, cls: str
) -> None:
    async with (
        running_server(library=library) as server,
        open_websocket_url(server_url(server)) as ws,
    ):
        _, info = await start(ws, track=track)
        assert info["class"] == cls
        assert info["mastering"]["fallback"] is False
        await send(ws, "credit", frames=1 << 20)
        audio, _ = await receive_until(ws, 2, grant_back=False)
        await finish(ws)
    assert np.array_equal(audio, offline(library / track, info["mastering"]))
    assert true_peak(audio) <= CEILING + 1e-6
    measured = run_blocks("dynamics", audio, RATE)[-1]["integrated_lufs"]
    before, expected = info["before"]["integrated_lufs"], info["expected_after"]["integrated_lufs"]
    if cls == "quiet":
        assert info["mastering"]["gain_db"] > 0
        assert measured == pytest.approx(expected, abs=1.0)
    if cls == "dynamic_loud":  # only the limiter acts: never louder, at most a little quieter
        assert expected == before
        assert before - 1.0 < measured <= before + 0.01


async def test_the_server_sends_no_more_than_the_client_grants(library: Path) -> None:
    async with (
        running_server(library=library) as server,
        open_websocket_url(server_url(server)) as ws,
    ):
        await start(ws, track="quiet.wav")
        assert await binary_within(ws, 0.3) is None, "PCM sent before any credit"
        for grant in (1000, 1, 5000, 4096 * 3 + 7):
            await send(ws, "credit", frames=grant)
            got = 0
            while got < grant:
                payload = await binary_within(ws, 10)
                assert payload is not None
                got += len(pcm(payload, 2))
            assert got == grant
            assert await binary_within(ws, 0.2) is None, "PCM sent beyond the credit"
        await send(ws, "stats")
        stats = await text(ws)
        assert stats["playback"]["credit"] == 0
        assert stats["playback"]["frames_sent"] == 1000 + 1 + 5000 + 4096 * 3 + 7
        assert stats["playback"]["position"] == stats["playback"]["frames_sent"]
        await finish(ws)


async def test_seek_continues_from_the_frame_as_an_uninterrupted_rendering(library: Path) -> None:
    target = 6 * RATE + 123  # the pre-roll starts after the track's start
    async with (
        running_server(library=library) as server,
        open_websocket_url(server_url(server)) as ws,
    ):
        _, info = await start(ws, track="loud.wav")
        await send(ws, "credit", frames=8192)
        await send(ws, "seek", frame=target)
        await send(ws, "credit", frames=1 << 20)
        before_seek = []
        while True:
            message = await ws.get_message()
            if isinstance(message, str) and json.loads(message)["type"] != "analysis":
                assert json.loads(message) == {"type": "seeked", "frame": target}
                break
            if isinstance(message, str):
                continue
            before_seek.append(pcm(message, 2))
        assert sum(len(b) for b in before_seek) <= 8192
        after, messages = await receive_until(ws, 2, grant_back=False)
        assert messages[-1]["type"] == "track_end"
        # a seek beyond the end is refused and changes nothing
        await send(ws, "seek", frame=8 * RATE + 1)
        error = await text(ws)
        assert error["code"] == "bad_seek" and error["continues"] is True
        # a seek to the very end ends the track at once
        await send(ws, "seek", frame=8 * RATE)
        assert await text(ws) == {"type": "seeked", "frame": 8 * RATE}
        assert await text(ws) == {"type": "track_end", "frames": 8 * RATE}
        await finish(ws)
    reference = offline(library / "loud.wav", info["mastering"])[target:]
    assert after.shape == reference.shape
    assert target - PREROLL_S * RATE > 0  # the pre-roll did not reach back to the start
    assert np.max(np.abs(after - reference)) < 1e-6
    assert true_peak(after) <= CEILING + 1e-6


async def test_s16le_is_the_mastered_audio_rounded(library: Path) -> None:
    async with (
        running_server(library=library) as server,
        open_websocket_url(server_url(server)) as ws,
    ):
        _, info = await start(ws, track="quiet.wav", format="s16le")
        assert info["format"] == "s16le"
        await send(ws, "credit", frames=1 << 20)
        ints = []
        with trio.fail_after(20):
            while True:
                message = await ws.get_message()
                if isinstance(message, bytes):
                    ints.append(pcm(message, 2, "s16le"))
                elif json.loads(message)["type"] == "track_end":
                    break
        await finish(ws)
    reference = offline(library / "quiet.wav", info["mastering"])
    expected = np.clip(np.rint(reference * 32768.0), -32768, 32767).astype(np.int16)
    assert np.array_equal(np.concatenate(ints), expected)


# --- the fingerprint tiers as a player sees them -------------------------------------------------


async def test_sidecar_tier_without_a_database(library: Path) -> None:
    async with running_server(library=library) as server:
        for tier in ("generated", "sidecar"):
            async with open_websocket_url(server_url(server)) as ws:
                _, info = await start(ws, track="quiet.wav")
                assert info["fingerprint_tier"] == tier
                await finish(ws)
    assert (library / "quiet.wav.25d").is_file()


async def test_a_slow_fingerprint_falls_back_to_the_limiter_alone(library: Path) -> None:
    config = load_config(None, registry())
    config = attrs.evolve(config, library=LibrarySettings(fingerprint_timeout_s=1e-4))
    async with (
        running_server(config, library=library) as server,
        open_websocket_url(server_url(server)) as ws,
    ):
        _, info = await start(ws, track="loud.wav")
        assert info["fingerprint_tier"] == "fallback"
        assert "not done within" in info["fingerprint_reason"]
        assert info["class"] == "unknown" and info["mastering"]["fallback"] is True
        assert info["before"] == {
            "integrated_lufs": None,
            "crest_db": None,
            "true_peak_dbtp": None,
        }
        await send(ws, "credit", frames=1 << 20)
        audio, _ = await receive_until(ws, 2, grant_back=False)
        await finish(ws)
        assert true_peak(audio) <= CEILING + 1e-6
        assert server.fingerprints is not None
        await server.fingerprints.wait_idle()  # the generation went on and was stored
        async with open_websocket_url(server_url(server)) as ws:
            _, info = await start(ws, track="loud.wav")
            assert info["fingerprint_tier"] == "sidecar"
            assert info["class"] == "compressed_loud"
            await finish(ws)


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("track", "code"),
    [
        ("../secret.wav", "track_refused"),
        ("album/../../secret.wav", "track_refused"),
        ("/etc/passwd", "track_refused"),
        ("album\\..\\..\\secret.wav", "track_refused"),
        ("escape.wav", "track_refused"),  # a symlink pointing out of the library
        ("missing.wav", "unknown_track"),
        ("album", "unknown_track"),
        ("notes.txt", "unknown_track"),
        ("telephone.wav", "unsupported_format"),  # 4 kHz: below what playback takes
        ("", "bad_message"),
    ],
)
async def test_tracks_outside_the_library_or_unreadable_are_refused(
    library: Path, track: str, code: str
) -> None:
    (library / "escape.wav").symlink_to(library.parent / "secret.wav")
    sf.write(library / "telephone.wav", np.zeros(4000, np.float32), 4000)
    async with (
        running_server(library=library) as server,
        open_websocket_url(server_url(server)) as ws,
    ):
        assert (await text(ws))["type"] == "hello"
        await send(ws, "start", pipeline="playback", track=track)
        error = await text(ws)
        assert error["type"] == "error" and error["code"] == code, error
        assert error["continues"] is True
        assert str(library.parent) not in error["message"]  # no server paths leak
        await send(ws, "start", pipeline="playback", track="quiet.wav")
        assert (await text(ws))["type"] == "started"
        assert (await text(ws))["type"] == "track"
        await finish(ws)


async def test_a_symlink_inside_the_library_is_played(library: Path) -> None:
    (library / "alias.wav").symlink_to(library / "album" / "dynamic.flac")
    async with (
        running_server(library=library) as server,
        open_websocket_url(server_url(server)) as ws,
    ):
        _, info = await start(ws, track="alias.wav")
        assert info["class"] == "dynamic_loud"
        await finish(ws)


async def test_requests_that_do_not_fit_the_session_are_refused(library: Path) -> None:
    async with (
        running_server(library=library) as server,
        open_websocket_url(server_url(server)) as ws,
    ):
        assert (await text(ws))["type"] == "hello"
        await send(ws, "start", pipeline="playback", track="quiet.wav", sample_rate=48000)
        error = await text(ws)
        assert error["code"] == "unsupported_format" and "44100" in error["message"]
        await send(ws, "start", pipeline="playback")
        assert "track" in (await text(ws))["message"]
        await send(ws, "start", pipeline="analyze")
        assert "sample_rate" in (await text(ws))["message"]
        await send(ws, "start", pipeline="analyze", sample_rate=RATE, track="quiet.wav")
        assert (await text(ws))["code"] == "bad_message"
        await send(ws, "start", pipeline="playback", track="quiet.wav", channels=2)
        assert (await text(ws))["type"] == "started"
        assert (await text(ws))["type"] == "track"
        await ws.send_message(np.zeros(512, "<f4").tobytes())
        assert (await text(ws))["code"] == "not_live"
        await send(ws, "credit", frames=0)
        assert (await text(ws))["code"] == "bad_message"
        await send(ws, "seek", frame=-1)
        assert (await text(ws))["code"] == "bad_message"
        await finish(ws)
        async with open_websocket_url(server_url(server)) as ws:
            assert (await text(ws))["type"] == "hello"
            await send(ws, "start", pipeline="analyze", sample_rate=RATE)
            assert (await text(ws))["type"] == "started"
            for kind, fields in (("credit", {"frames": 10}), ("seek", {"frame": 0})):
                await send(ws, kind, **fields)
                error = await text(ws)
                assert error["code"] == "not_playback", error


async def test_without_a_library_playback_is_refused_and_live_sessions_work() -> None:
    async with running_server() as server, open_websocket_url(server_url(server)) as ws:
        assert (await text(ws))["type"] == "hello"
        await send(ws, "start", pipeline="playback", track="a.wav")
        error = await text(ws)
        assert error["code"] == "no_library" and "--library" in error["message"]
        await send(ws, "start", pipeline="analyze", sample_rate=RATE)
        assert (await text(ws))["type"] == "started"


async def test_legato_play_writes_what_the_player_hears(library: Path, tmp_path: Path) -> None:
    out = tmp_path / "played.wav"
    async with running_server(library=library) as server:
        proc = await trio.run_process(
            [sys.executable, "-m", "legato.cli", "play", "album/dynamic.flac", str(out)]
            + ["--url", server_url(server)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        report = json.loads(proc.stdout)
        refused = await trio.run_process(
            [sys.executable, "-m", "legato.cli", "play", "../secret.wav", str(tmp_path / "x.wav")]
            + ["--url", server_url(server)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert report["track"]["class"] == "dynamic_loud"
    assert report["summary"]["status"] == "completed"
    played, rate = sf.read(out, dtype="float32", always_2d=True)
    assert rate == RATE and report["frames"] == len(played)
    assert np.array_equal(
        played, offline(library / "album" / "dynamic.flac", report["track"]["mastering"])
    )
    assert refused.returncode == 1
    assert b"track_refused" in refused.stderr or b"refused" in refused.stderr
    assert not (tmp_path / "x.wav").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".x.wav")]


async def test_the_python_player_seeks_and_survives_a_refused_seek(library: Path) -> None:
    async with running_server(library=library) as server:
        url = server_url(server)
        async with open_player(url, "loud.wav", buffer_s=0.5) as player:
            first = await player.__aiter__().__anext__()
            assert player.position == len(first)
            await player.seek(8 * RATE + 5)  # refused: playback goes on
            await player.seek(7 * RATE)
            rest = np.concatenate([block async for block in player])
            assert [n["code"] for n in player.notices] == ["bad_seek"]
            summary = await player.end()
        with pytest.raises(PlayerError) as refused:
            async with open_player(url, "../secret.wav"):
                pass
    assert refused.value.code == "track_refused"
    assert len(rest) == RATE and player.position == 8 * RATE
    assert summary is not None and summary["status"] == "completed"
    reference = offline(library / "loud.wav", player.track["mastering"])
    assert np.max(np.abs(rest - reference[7 * RATE :])) < 1e-6


async def test_a_dropped_playback_session_resumes_and_seeks_back(library: Path) -> None:
    async with running_server(library=library) as server:
        url = server_url(server)
        async with open_websocket_url(url) as ws:
            hello = await text(ws)
            await send(ws, "start", pipeline="playback", track="quiet.wav")
            assert (await text(ws))["type"] == "started"
            info = await text(ws)
            await send(ws, "credit", frames=10_000)
            got = 0
            while got < 10_000:
                payload = await binary_within(ws, 10)
                assert payload is not None
                got += len(pcm(payload, 2))
        async with open_websocket_url(url) as ws:
            assert (await text(ws))["type"] == "hello"
            await send(
                ws,
                "resume",
                session_id=hello["session_id"],
                token=hello["resume_token"],
                last_seq=0,
            )
            resumed = await text(ws)
            assert resumed["type"] == "resumed" and resumed["samples_received"] == 10_000
            assert await binary_within(ws, 0.3) is None  # the credit starts again from 0
            await send(ws, "seek", frame=4000)
            await send(ws, "credit", frames=RATE)
            audio, _ = await receive_until(ws, 2, stop="seeked", grant_back=False)
            assert len(audio) == 0
            blocks = []
            while sum(len(b) for b in blocks) < RATE:
                payload = await binary_within(ws, 10)
                assert payload is not None
                blocks.append(pcm(payload, 2))
            summary = await finish(ws)
    reference = offline(library / "quiet.wav", info["mastering"])
    assert np.array_equal(np.concatenate(blocks), reference[4000 : 4000 + RATE])
    assert summary["samples"] == 10_000 + RATE


def test_legato_serve_finds_a_library_relative_to_its_config(library: Path) -> None:
    """The operator's path: a config naming the library, `legato serve`, `legato play`."""
    home = library.parent
    port = free_port()
    default = (
        Path(__file__).resolve().parent.parent / "host" / "config" / "default.toml"
    ).read_text()
    (home / "legato.toml").write_text(
        f'{default}\n[server]\nport = {port}\n\n[library]\npath = "music"\n'
    )
    serve = ("--config", str(home / "legato.toml"), "--db", f"sqlite:///{home / 'legato.db'}")
    out = home / "played.flac"
    with legato_serve(home, *serve, port=port):
        played = subprocess.run(
            [sys.executable, "-m", "legato.cli", "play", "quiet.wav", str(out)]
            + ["--url", f"ws://127.0.0.1:{port}/", "--seek", "1.5"],
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
    assert played.returncode == 0, played.stderr + (home / "serve.log").read_text()
    report = json.loads(played.stdout)
    assert report["track"]["class"] == "quiet"
    assert sf.info(str(out)).frames == 6 * RATE - int(1.5 * RATE) == report["frames"]
    missing = subprocess.run(
        [sys.executable, "-m", "legato.cli", "serve", "--library", str(library / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1 and "nope" in missing.stderr
    assert "Traceback" not in missing.stderr


async def test_players_stream_side_by_side_with_a_live_session(library: Path) -> None:
    """Four players with unlimited credit and a live session at once: every player gets its
    whole track exactly, and the live session is analysed to the end meanwhile."""
    results: dict[int, np.ndarray] = {}
    infos: dict[int, dict] = {}
    async with running_server(library=library) as server:
        url = server_url(server)

        async def play(n: int) -> None:
            async with open_websocket_url(url) as ws:
                _, infos[n] = await start(ws, track="loud.wav")
                await send(ws, "credit", frames=1 << 30)
                results[n], _ = await receive_until(ws, 2, grant_back=False)
                await finish(ws)

        async def live() -> None:
            async with open_websocket_url(url) as ws:
                assert (await text(ws))["type"] == "hello"
                await send(ws, "start", pipeline="analyze", sample_rate=RATE)
                assert (await text(ws))["type"] == "started"
                tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * RATE) / RATE)).astype("<f4")
                for k in range(0, len(tone), 4096):
                    await ws.send_message(tone[k : k + 4096].tobytes())
                summary = await finish(ws)
                results[-1] = np.array([summary["samples"]])

        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(play, n)
            nursery.start_soon(live)
    reference = offline(library / "loud.wav", infos[0]["mastering"])
    for n in range(4):
        assert np.array_equal(results[n], reference), n
    assert results[-1][0] == 2 * RATE


def test_stages_take_only_the_measurements_they_accept() -> None:
    """A silent track's loudness below lwrp_master's range is refused (the stage plans from
    the rest), and a value the config sets is never replaced."""
    config = load_config(None, registry())
    playback = with_track_measurements(
        config.pipeline("playback"), {"integrated_lufs": -80.0, "crest_db": 6.0}
    )
    params = playback.stages[0].params
    assert params.integrated_lufs is None and params.crest_db == 6.0
    text = (Path(__file__).resolve().parent.parent / "host" / "config" / "default.toml").read_text()
    text = text.replace('inputs = ["audio"]\n# integrated', 'inputs = ["audio"]\ncrest_db = 9.0\n#')
    pinned = parse_config(text, "pinned.toml", registry()).pipeline("playback")
    params = with_track_measurements(pinned, {"integrated_lufs": -8.0, "crest_db": 6.0})
    assert params.stages[0].params.integrated_lufs == -8.0
    assert params.stages[0].params.crest_db == 9.0
