"""Persistence end to end: live sessions through a real server recorded in a real database
(every event exactly once, as the client received it; the result; abandoned sessions),
`legato run --db`, the history messages (a client reads only its own user's data), and a
Postgres server stopped and restarted in the middle of a live session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import soundfile as sf
import trio
from live import RATE, drain, history, phrase, receive
from trio_websocket import WebSocketConnection, open_websocket_url

from legato.config.settings import ServerSettings
from legato.protocol.messages import CLIENT_MESSAGES, ERROR_CODES, SERVER_MESSAGES, Stats
from legato.storage import Storage, open_storage
from legato.testing import registry, running_server, server_url

BLOCK = 4096
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_CLUSTER = ["pg_ctlcluster", "--skip-systemctl-redirect"]


async def start(ws: WebSocketConnection, **fields: Any) -> str:
    hello = await receive(ws)
    body = {"type": "start", "pipeline": "analyze", "sample_rate": RATE} | fields
    await ws.send_message(json.dumps(body))
    started = await receive(ws)
    assert started["type"] == "started", started
    return hello["session_id"]


async def until(ws: WebSocketConnection, kind: str, events: list[dict]) -> dict[str, Any]:
    """The next message of type ``kind``; events of ``analysis`` messages on the way are kept."""
    while (message := await receive(ws))["type"] != kind:
        assert message["type"] == "analysis", message
        events.extend(message["events"])
    return message


async def session(url: str, audio: np.ndarray, **fields: Any) -> tuple[list[dict], dict]:
    """One whole session: its events as received, and its summary."""
    async with open_websocket_url(url) as ws:
        await start(ws, **fields)
        for i in range(0, len(audio), BLOCK):
            await ws.send_message(audio[i : i + BLOCK].tobytes())
        await ws.send_message('{"type": "end"}')
        events, others, summary = await drain(ws, timeout_s=30.0)
    assert summary is not None and others == [], others
    return events, summary


@asynccontextmanager
async def reading(url: str) -> AsyncIterator[Storage]:
    storage = open_storage(url, registry())
    await storage.connect()
    try:
        yield storage
    finally:
        await storage.close()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'legato.db'}"


def spool(tmp_path: Path) -> str:
    return str(tmp_path / "spool")


# ---- live sessions --------------------------------------------------------------------------


async def test_live_session_is_recorded_with_every_event_exactly_once(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    audio = phrase(2.4)
    fields = {"user": "ana", "piece": "Etude 3", "genre": "classical", "target_tempo": 150.0}
    async with (
        running_server(storage_url=url, spool_dir=spool(tmp_path)) as server,
        open_websocket_url(server_url(server)) as ws,
    ):
        session_id = await start(ws, **fields)
        for i in range(0, len(audio), BLOCK):
            await ws.send_message(audio[i : i + BLOCK].tobytes())
        await trio.sleep(0.6)  # analysed, and one flush interval more
        await ws.send_message('{"type": "stats"}')
        events: list[dict] = []
        stats = await until(ws, "stats", events)
        await ws.send_message('{"type": "end"}')
        rest, others, summary = await drain(ws, timeout_s=30.0)
        events += rest
    assert stats["type"] == "stats" and stats["samples_analysed"] == len(audio)
    assert stats["events_stored"] == stats["events_produced"] > 0
    assert stats["events_spooled"] == stats["events_unsaved"] == 0
    assert summary is not None and others == []
    async with reading(url) as storage:
        found = await storage.get_session(session_id)
    assert found["events"] == events, "stored exactly as received, each once, in seq order"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert found["status"] == "completed" and found["source"] == "live"
    assert {k: found[k] for k in fields} == fields
    assert found["pipeline"] == "analyze" and found["frames_processed"] == len(audio)
    assert found["duration_s"] == pytest.approx(len(audio) / RATE)
    result = found["analysis_result"]
    practice = summary["practice"]
    assert result["pitch_accuracy"] == pytest.approx(practice["pitch_accuracy"])
    assert result["timing_consistency"] == pytest.approx(practice["timing_consistency"])
    deviation = practice["tempo_deviation_pct"]
    assert result["tempo_stability"] == pytest.approx(max(0.0, 1 - abs(deviation) / 100))
    assert result["notes"] == practice["counts"]["notes"] > 0
    assert result["voiced_frames"] == practice["counts"]["voiced_frames"]
    feedback = result["feedback"]
    feedback = json.loads(feedback) if isinstance(feedback, str) else feedback
    assert feedback == {"practice": practice, "stages": summary["stages"]}
    assert result["processing_time_ms"] > 0


async def test_a_session_not_resumed_in_time_is_recorded_abandoned(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    audio = phrase(1.0)
    async with (
        running_server(storage_url=url, spool_dir=spool(tmp_path), resume_grace_s=0.2) as server,
        reading(url) as storage,
    ):
        async with open_websocket_url(server_url(server)) as ws:
            session_id = await start(ws, user="ana")
            await ws.send_message(audio.tobytes())
            await until(ws, "analysis", [])  # some analysis came back; now the client goes away
        with trio.fail_after(10):
            while True:
                with contextlib.suppress(Exception):
                    found = await storage.get_session(session_id)
                    if found["status"] != "active":
                        break
                await trio.sleep(0.05)
    assert found["status"] == "abandoned"
    assert found["frames_processed"] == len(audio)
    assert [e["seq"] for e in found["events"]] == list(range(1, len(found["events"]) + 1))


def test_legato_run_db_records_the_offline_run(tmp_path: Path) -> None:
    path = tmp_path / "take.wav"
    sf.write(path, phrase(1.5), RATE, subtype="FLOAT")
    url = sqlite_url(tmp_path)
    command = [sys.executable, "-m", "legato.cli", "run", str(path), "--db", url]
    done = subprocess.run(
        [*command, "--user", "ana", "--piece", "scales"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    session_id = done.stderr.strip().splitlines()[-1]
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert printed

    async def stored() -> dict[str, Any]:
        async with reading(url) as storage:
            return await storage.get_session(session_id)

    found = trio.run(stored)
    assert found["source"] == "offline" and found["status"] == "completed"
    assert found["user"] == "ana" and found["piece"] == "scales"
    assert [e.pop("seq") for e in found["events"]] == list(range(1, len(printed) + 1))
    assert found["events"] == printed
    assert found["analysis_result"]["notes"] == sum(e["kind"] == "onset" for e in printed)
    assert not (tmp_path / "legato.db-spool").exists(), "nothing needed spooling"


# ---- history ------------------------------------------------------------------------------


async def test_history_messages_read_only_the_own_users_data(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    async with (
        running_server(storage_url=url, spool_dir=spool(tmp_path)) as server,
        reading(url) as storage,
    ):
        address = server_url(server)
        _, ana = await session(address, phrase(1.0), user="ana")
        _, ben = await session(address, phrase(1.0, seed=1), user="ben")
        async with open_websocket_url(address) as ws:
            current = await start(ws, user="ana")
            with trio.fail_after(5):  # written within a flush interval
                while len(await storage.list_sessions("ana", 10)) < 2:
                    await trio.sleep(0.05)
            stats = await history(ws, query="stats", days=7, id=1)
            assert stats["type"] == "history" and stats["id"] == 1 and stats["query"] == "stats"
            assert stats["result"]["user"] == "ana" and stats["result"]["days"] == 7
            assert stats["result"]["sessions"] == 2  # the finished one and this one
            listed = await history(ws, query="sessions", limit=10)
            assert {s["id"] for s in listed["result"]} == {ana["session_id"], current}
            assert all(s["user"] == "ana" for s in listed["result"])
            own = await history(ws, query="session", session_id=ana["session_id"])
            expected = await storage.get_session(ana["session_id"])
            assert own["result"] == json.loads(json.dumps(expected))
            others = await history(ws, query="session", session_id=ben["session_id"])
            unknown = await history(ws, query="session", session_id="no-such-session")
            assert others["type"] == unknown["type"] == "error"
            assert others["code"] == unknown["code"] == "unknown_session"
            assert others["continues"] and ben["session_id"] not in json.dumps(listed)
            assert others["message"].replace(ben["session_id"], "X") == unknown["message"].replace(
                "no-such-session", "X"
            )
            progress = await history(ws, query="progress", period="daily", days=3)
            assert progress["type"] == "history" and isinstance(progress["result"], list)
            bad = await history(ws, query="stats", session_id="x")
            assert bad["code"] == "bad_message"
        async with open_websocket_url(address) as ws:
            await start(ws)
            anonymous = await history(ws, query="stats")
            assert anonymous["code"] == "no_user" and anonymous["continues"]


async def test_history_without_storage_is_unavailable() -> None:
    async with running_server() as server, open_websocket_url(server_url(server)) as ws:
        await start(ws, user="ana")
        reply = await history(ws, query="sessions")
        assert reply["code"] == "history_unavailable" and reply["continues"]


# ---- Postgres stopped and restarted mid-session -----------------------------------------------


def _pg(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _cluster(action: str, *extra: str) -> subprocess.CompletedProcess[str]:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    return subprocess.run(
        [*PG_CLUSTER, version, "main", action, *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


async def spooling(ws: WebSocketConnection, events: list[dict]) -> dict[str, Any]:
    """Ask for stats until the session's events are being spooled; returns those stats.
    Keeps the cluster stopped meanwhile (other tests on this machine may start it)."""
    with trio.fail_after(20):
        while True:
            await ws.send_message('{"type": "stats"}')
            message = await until(ws, "stats", events)
            if message["events_spooled"] > 0:
                return message
            await trio.to_thread.run_sync(_stopped)
            await trio.sleep(0.2)


@pytest.fixture
def fresh_postgres() -> Any:
    """A new database on the local server (dropped afterwards); skips loudly if there is none."""
    try:
        _pg("SELECT 1")
    except Exception as exc:
        pytest.skip(f"POSTGRES NOT REACHABLE at 127.0.0.1:5432 ({exc}); outage test not run")
    name = f"legato_test_{secrets.token_hex(6)}"
    _pg(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        _ensure_running()
        _pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _stopped() -> None:
    done = _cluster("stop", "-m", "fast")
    assert done.returncode == 0 or "not running" in done.stderr + done.stdout, done


def _ensure_running() -> None:
    """Start the cluster unless it runs (another test on this machine may have started it)."""
    started = _cluster("start")
    assert started.returncode == 0 or "already running" in started.stdout, started


async def test_postgres_restart_mid_session_loses_and_duplicates_nothing(
    tmp_path: Path, fresh_postgres: str
) -> None:
    audio = phrase(6.0)
    blocks = [audio[i : i + BLOCK] for i in range(0, len(audio), BLOCK)]
    outage_from, outage_to = len(blocks) // 3, 2 * len(blocks) // 3
    tallies: list[dict[str, Any]] = []
    events: list[dict] = []
    settings = {"spool_dir": spool(tmp_path), "storage_timeout_s": 2.0, "storage_retry_max_s": 0.5}
    try:
        async with running_server(storage_url=fresh_postgres, **settings) as server:
            async with open_websocket_url(server_url(server)) as ws:
                session_id = await start(ws, user="ana")
                for i, block in enumerate(blocks):
                    if i == outage_from:
                        await trio.to_thread.run_sync(_stopped)
                    if i == outage_to:
                        tallies.append(await spooling(ws, events))
                        await trio.to_thread.run_sync(_ensure_running)
                    await ws.send_message(block.tobytes())
                    await trio.sleep(BLOCK / RATE / 4)  # four times real time
                await ws.send_message('{"type": "end"}')
                rest, others, summary = await drain(ws, timeout_s=30.0)
                events += rest
            recorder = server.recorder
            assert recorder is not None
            with trio.fail_after(30):
                while not (recorder.spool.empty and recorder.pending_events == 0):
                    await trio.sleep(0.05)
    finally:
        await trio.to_thread.run_sync(_ensure_running)
    assert summary is not None and summary["status"] == "completed"
    assert summary["stats"]["frames_dropped"] == 0 and summary["stats"]["events_unsaved"] == 0
    assert [o["code"] for o in others if o["type"] == "error"] == []
    stats = tallies[0]
    assert stats["type"] == "stats" and stats["events_spooled"] > 0, stats
    async with reading(fresh_postgres) as storage:
        found = await storage.get_session(session_id)
    assert found["events"] == events, "every event exactly once after the restart"
    assert found["status"] == "completed"
    assert found["analysis_result"] is not None


# ---- the documentation ---------------------------------------------------------------------


def test_protocol_doc_names_every_code_message_and_setting() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    names = [*ERROR_CODES, *CLIENT_MESSAGES, *(f.name for f in attrs.fields(ServerSettings))]
    names += [f.name for f in attrs.fields(Stats)]
    names += list(SERVER_MESSAGES.values())
    assert [n for n in names if f"`{n}`" not in text] == []


# ---- the benchmark's smoke test -----------------------------------------------------------


def test_storage_benchmark_quick_run(tmp_path: Path) -> None:
    bench = Path(__file__).resolve().parent.parent / "bench" / "storage.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert set(report) == {
        "config",
        "machine",
        "write",
        "analytics",
        "live",
        "targets",
        "targets_met",
        "elapsed_s",
    }
    sqlite = report["write"]["sqlite"]
    assert sqlite["batch_1000"]["events_per_s"] > 0 and sqlite["batch_5000"]["events_per_s"] > 0
    assert sqlite["recorder"]["stored"] == sqlite["recorder"]["events"]
    for backend, section in report["analytics"].items():
        if "error" in section:
            assert backend == "postgres", section  # no server here; reported, not hidden
            continue
        assert set(section["queries"]) == {"user_stats", "progress", "list_sessions", "get_session"}
        assert section["get_session_events"] == report["config"]["analytics_events_per_session"]
    live = report["live"]
    assert live["sessions_stored"] == live["sessions"] + 1  # and the warm-up session
    assert live["events_stored"] == live["events_produced"] > 0 and live["storage_kept_up"]
    assert live["sessions_with_every_event_once"] == live["sessions_stored"]
    assert live["statuses"] == {"completed": live["sessions_stored"]}
    assert report["elapsed_s"] < 30
    assert list(tmp_path.iterdir()) == [], "nothing left behind in the working directory"
