"""`legato serve --workers 2` as an operator runs it (real processes, real sockets, a SQLite file):
sessions spread over the workers and give what an offline run gives, a resume reaches the
worker holding its session whichever worker takes the connection, a worker killed with
SIGKILL is replaced and its sessions end `abandoned` while the other keeps serving, and
SIGTERM drains every worker."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import uuid
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import soundfile as sf
import trio
from live import (
    RATE,
    Proxy,
    alive,
    drain,
    feed_with_cuts,
    free_port,
    legato_serve,
    listening,
    offline,
    phrase,
    receive,
    wait_for,
    without_seq,
)
from trio_websocket import open_websocket_url

from legato.client.session import auth_headers, connect
from legato.server.auth import issue_token
from legato.storage import StorageError, open_storage
from legato.testing import registry

if TYPE_CHECKING:
    from storage_fixtures import Backend

pytest_plugins = ("storage_fixtures",)

BLOCK = 4096


def url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/"


def worker_of(session_id: str) -> int:
    return uuid.UUID(session_id).int & 0xFF


@pytest.fixture
def take(tmp_path: Path) -> Path:
    path = tmp_path / "take.wav"
    sf.write(path, phrase(3.0), RATE)
    return path


def blocks_of(path: Path) -> list[np.ndarray]:
    audio, _ = sf.read(path, dtype="float32")
    return [audio[i : i + BLOCK] for i in range(0, len(audio), BLOCK)]


def workers_in(log: Path) -> dict[int, int]:
    """Worker index -> pid, from the workers' log lines (the latest start of each)."""
    found: dict[int, int] = {}
    for index, pid in re.findall(r"\[worker (\d+) pid (\d+)\]", log.read_text()):
        found[int(index)] = int(pid)
    return found


def parent_of(pid: int) -> int:
    """The parent process of ``pid`` (/proc/PID/stat, field 4)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


async def stream_session(port: int, path: Path, **start: Any) -> tuple[str, list[dict[str, Any]]]:
    async with connect(url(port), sample_rate=RATE, **start) as session:
        for block in blocks_of(path):
            await session.send(block)
        await session.end()
        events = [event async for event in session.events()]
        return session.session_id, events


async def assert_resume_refused(
    port: int, hello: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A new connection resuming the session of ``hello`` (its own resume token) is refused."""
    async with open_websocket_url(url(port), extra_headers=headers) as ws:
        await receive(ws)
        resume = {
            "type": "resume",
            "session_id": hello["session_id"],
            "token": hello["resume_token"],
            "last_seq": 0,
        }
        await ws.send_message(json.dumps(resume))
        refused = await receive(ws)
        assert refused["type"] == "error" and refused["code"] == "resume_failed", refused


async def session_on(ws: Any, path: Path) -> list[dict[str, Any]]:
    """A whole session on an open connection (after its hello): its events."""
    await ws.send_message(json.dumps({"type": "start", "pipeline": "analyze", "sample_rate": RATE}))
    assert (await receive(ws))["type"] == "started"
    for block in blocks_of(path):
        await ws.send_message(block.astype("<f4").tobytes())
    await ws.send_message('{"type": "end"}')
    events, _, summary = await drain(ws)
    assert summary is not None and summary["status"] == "completed"
    return events


async def test_sessions_spread_over_the_workers_and_match_offline(
    tmp_path: Path, take: Path
) -> None:
    with legato_serve(tmp_path, "--workers", "2") as port:
        results: list[tuple[str, list[dict[str, Any]]]] = []

        async def one() -> None:
            results.append(await stream_session(port, take))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(one)
    expected = offline(take)
    assert {worker_of(session_id) for session_id, _ in results} == {0, 1}
    for _, events in results:
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert without_seq(events) == expected


async def test_every_worker_records_every_event_once(
    tmp_path: Path, take: Path, backend: Backend, empty_url: str
) -> None:
    """Both workers write to one database (SQLite file or Postgres): each session's row,
    events and result, nothing lost or duplicated."""
    with legato_serve(tmp_path, "--workers", "2", "--db", empty_url) as port:
        results: list[tuple[str, list[dict[str, Any]]]] = []

        async def one(n: int) -> None:
            results.append(await stream_session(port, take, user=f"user{n}"))

        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(one, n)
    assert {worker_of(session_id) for session_id, _ in results} == {0, 1}
    storage = open_storage(empty_url, registry())
    await storage.connect()
    try:
        for session_id, events in results:
            stored = await storage.get_session(session_id)
            assert stored["status"] == "completed"
            assert stored["analysis_result"] is not None
            assert stored["events"] == events
    finally:
        await storage.close()


@pytest.mark.parametrize("auth", [False, True], ids=["no-auth", "tokens"])
async def test_a_resume_reaches_the_worker_holding_the_session(
    tmp_path: Path, take: Path, auth: bool
) -> None:
    """The session starts on one worker; the resume comes in on a connection the supervisor
    gives the other one (the least loaded), which relays it to the owner (with auth on, with
    the client's token: the owner checks it is the same user)."""
    blocks = blocks_of(take)
    half = len(blocks) // 2
    options: list[str] = []
    headers: list[tuple[bytes, bytes]] = []
    if auth:
        key = tmp_path / "legato.key"
        key.write_text("a test key of more than thirty-two bytes for HS256\n")
        options = ["--auth-secret-file", str(key)]
        headers = auth_headers(issue_token(key.read_bytes().strip(), "ana"))
    with legato_serve(tmp_path, "--workers", "2", *options) as port:
        async with open_websocket_url(url(port), extra_headers=headers) as first:
            hello = await receive(first)
            owner = worker_of(hello["session_id"])
            await first.send_message(
                json.dumps({"type": "start", "pipeline": "analyze", "sample_rate": RATE})
            )
            assert (await receive(first))["type"] == "started"
            for block in blocks[:half]:
                await first.send_message(block.astype("<f4").tobytes())
            seen: list[dict[str, Any]] = []
            with trio.fail_after(10):
                while not seen or seen[-1]["sample"] < half * BLOCK - 4096:
                    message = await receive(first)
                    if message["type"] == "analysis":
                        seen.extend(message["events"])
            if auth:  # another user, even with the resume token, reaches nothing
                mallory = auth_headers(
                    issue_token((tmp_path / "legato.key").read_bytes().strip(), "mallory")
                )
                await assert_resume_refused(port, hello, mallory)
            async with open_websocket_url(url(port), extra_headers=headers) as second:
                other = await receive(second)
                assert worker_of(other["session_id"]) != owner  # the least-loaded worker
                resume = {
                    "type": "resume",
                    "session_id": hello["session_id"],
                    "token": hello["resume_token"],
                    "last_seq": seen[-1]["seq"],
                }
                await second.send_message(json.dumps(resume))
                resumed = await receive(second)
                assert resumed["type"] == "resumed", resumed
                assert resumed["session_id"] == hello["session_id"]
                assert resumed["samples_received"] == half * BLOCK
                for block in blocks[half:]:
                    await second.send_message(block.astype("<f4").tobytes())
                await second.send_message('{"type": "end"}')
                events, _, summary = await drain(second)
    assert summary is not None and summary["status"] == "completed"
    everything = seen + events
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert without_seq(everything) == offline(take)


async def test_resume_through_cuts_with_the_client_library(tmp_path: Path, take: Path) -> None:
    """The client reconnects through a proxy that cuts it: whichever worker each reconnect
    lands on, no event is lost or repeated."""
    blocks = [block[i : i + 512] for block in blocks_of(take) for i in range(0, BLOCK, 512)]
    cuts = {len(blocks) // 4, len(blocks) // 2, 3 * len(blocks) // 4}
    with legato_serve(tmp_path, "--workers", "2") as port:
        proxy = Proxy(port)
        async with trio.open_nursery() as outer:
            await outer.start(proxy.run)
            async with connect(url(proxy.port), sample_rate=RATE) as session:
                seen = await feed_with_cuts(session, blocks, cuts, proxy)
            outer.cancel_scope.cancel()
    assert proxy.connections == 1 + len(cuts)
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
    assert without_seq(seen) == offline(take, 512)


async def test_a_killed_worker_is_replaced_and_its_sessions_abandoned(
    tmp_path: Path, take: Path
) -> None:
    db = tmp_path / "legato.db"
    with legato_serve(tmp_path, "--workers", "2", "--db", f"sqlite:///{db}") as port:
        log = tmp_path / "serve.log"
        wait_for(lambda: len(workers_in(log)) == 2)
        async with open_websocket_url(url(port)) as doomed:
            hello = await receive(doomed)
            victim = worker_of(hello["session_id"])
            start = {"type": "start", "pipeline": "analyze", "sample_rate": RATE, "user": "ann"}
            await doomed.send_message(json.dumps(start))
            assert (await receive(doomed))["type"] == "started"
            await doomed.send_message(blocks_of(take)[0].astype("<f4").tobytes())
            await trio.sleep(0.5)  # its session row reaches the database
            old_pid = workers_in(log)[victim]
            os.kill(old_pid, signal.SIGKILL)
            _, _, summary = await drain(doomed)
        assert summary is None  # the process holding it is gone
        wait_for(lambda: workers_in(log).get(victim, old_pid) != old_pid)

        def status() -> str | None:
            with sqlite3.connect(db) as conn:
                row = conn.execute(
                    "SELECT status FROM sessions WHERE id = ?", (hello["session_id"],)
                ).fetchone()
            return row[0] if row else None

        wait_for(lambda: status() == "abandoned")
        assert "exited with status" in log.read_text()
        await trio.sleep(0.5)  # the replacement reports ready just after its log line
        for _ in range(2):  # whichever worker takes it: the session died with its worker
            await assert_resume_refused(port, hello)
        # the replacement serves sessions: connections held open spread over both workers
        async with trio.open_nursery() as held:
            taken: list[int] = []
            replacement = trio.Event()

            async def hold() -> None:
                async with open_websocket_url(url(port)) as ws:
                    hello_again = await receive(ws)
                    taken.append(worker_of(hello_again["session_id"]))
                    if taken[-1] == victim and not replacement.is_set():
                        replacement.set()
                        events = await session_on(ws, take)
                        assert without_seq(events) == offline(take)
                    else:
                        await trio.sleep_forever()

            with trio.fail_after(20):
                while not replacement.is_set():
                    held.start_soon(hold)
                    await trio.sleep(0.2)
                    assert len(taken) < 8, taken
            held.cancel_scope.cancel()


async def test_sigterm_drains_every_worker(tmp_path: Path, take: Path) -> None:
    with legato_serve(tmp_path, "--workers", "2") as port:
        log = tmp_path / "serve.log"
        wait_for(lambda: len(workers_in(log)) == 2)
        pids = list(workers_in(log).values())
        supervisor = parent_of(pids[0])
        assert parent_of(pids[1]) == supervisor
        results: list[list[dict[str, Any]]] = []
        async with trio.open_nursery() as nursery:

            async def session() -> None:
                async with open_websocket_url(url(port)) as ws:
                    await receive(ws)
                    await ws.send_message(
                        json.dumps({"type": "start", "pipeline": "analyze", "sample_rate": RATE})
                    )
                    assert (await receive(ws))["type"] == "started"
                    for block in blocks_of(take):
                        await ws.send_message(block.astype("<f4").tobytes())
                    events, others, summary = await drain(ws)
                    assert summary is not None and summary["status"] == "completed"
                    assert any(m["type"] == "server_shutdown" for m in others)
                    results.append(without_seq(events))

            nursery.start_soon(session)
            nursery.start_soon(session)
            await trio.sleep(1.0)  # both sessions started and streaming
            os.kill(supervisor, signal.SIGTERM)
        assert len(results) == 2 and all(r == offline(take) for r in results)
        wait_for(lambda: not any(alive(pid) for pid in [*pids, supervisor]))


async def test_a_restart_abandons_what_a_killed_server_left_open(
    tmp_path: Path, take: Path
) -> None:
    """Two single-process servers share a SQLite file. One is killed with SIGKILL; a server
    started afterwards records its open session as abandoned, and leaves alone the session
    the other, living, server holds."""
    db = tmp_path / "legato.db"
    served = ["--workers", "1", "--db", f"sqlite:///{db}"]

    async def open_session(port: int, user: str) -> tuple[Any, str]:
        ws_context = open_websocket_url(url(port))
        ws = await ws_context.__aenter__()
        hello = await receive(ws)
        start = {"type": "start", "pipeline": "analyze", "sample_rate": RATE, "user": user}
        await ws.send_message(json.dumps(start))
        assert (await receive(ws))["type"] == "started"
        await ws.send_message(blocks_of(take)[0].astype("<f4").tobytes())
        return ws_context, hello["session_id"]

    def status(session_id: str) -> str | None:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT status FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return row[0] if row else None

    def last_stored(session_id: str) -> dict[str, Any] | None:
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT data FROM events WHERE session_id = ? ORDER BY seq DESC LIMIT 1",
                (session_id,),
            ).fetchone()
        return json.loads(row[0]) if row else None

    living_home, doomed_home = tmp_path / "living", tmp_path / "doomed"
    living_home.mkdir()
    doomed_home.mkdir()
    with legato_serve(living_home, *served) as living:
        kept_context, kept = await open_session(living, "kim")
        port = free_port()
        command = [sys.executable, "-m", "legato.cli", "serve", *served, "--port", str(port)]
        with (doomed_home / "serve.log").open("wb") as log:
            doomed = subprocess.Popen(command, stderr=log, cwd=doomed_home)
        try:
            wait_for(lambda: listening(port))
            lost_context, lost = await open_session(port, "lou")
            wait_for(lambda: status(kept) == "active" and last_stored(lost) is not None)
            doomed.kill()
            doomed.wait(timeout=10)
            with contextlib.suppress(Exception):
                await lost_context.__aexit__(None, None, None)
        finally:
            doomed.kill()
        assert status(lost) == "active"  # nobody has looked yet
        with legato_serve(doomed_home, *served):
            wait_for(lambda: status(lost) == "abandoned")
            assert status(kept) == "active", "a living server's session is not touched"
        last = last_stored(lost)
        assert last is not None
        with sqlite3.connect(db) as conn:
            started, ended, duration, frames = conn.execute(
                "SELECT started_at, ended_at, duration_s, frames_processed FROM sessions"
                " WHERE id = ?",
                (lost,),
            ).fetchone()
        assert (duration, frames) == (last["t"], last["sample"])  # where it stopped
        elapsed = dt.datetime.fromisoformat(ended) - dt.datetime.fromisoformat(started)
        assert elapsed.total_seconds() == pytest.approx(last["t"], abs=1e-3)
        await kept_context.__aexit__(None, None, None)


async def test_a_killed_workers_checkpointed_session_continues_in_its_replacement(
    tmp_path: Path, take: Path
) -> None:
    """Checkpoints every 0.3 s: SIGKILL the worker holding a streaming session once a
    checkpoint is stored; the client's resume reaches the replacement worker, which continues
    the session from the checkpoint: the events of an offline run, seq numbers unbroken."""
    db = tmp_path / "legato.db"
    config = tmp_path / "quick.toml"
    default = resources.files("legato.config").joinpath("default.toml").read_text()
    config.write_text(f"{default}\n[server]\ncheckpoint_interval_s = 0.3\n")
    served = ["--workers", "2", "--db", f"sqlite:///{db}", "--config", str(config)]
    audio, _ = sf.read(take, dtype="float32")
    blocks = [audio[i : i + 512] for i in range(0, len(audio), 512)]

    def checkpointed(session_id: str) -> bool:
        with sqlite3.connect(db) as conn:
            found = conn.execute(
                "SELECT samples FROM checkpoints WHERE session_id = ?", (session_id,)
            ).fetchone()
        return found is not None and found[0] > 0

    with legato_serve(tmp_path, *served) as port:
        log = tmp_path / "serve.log"
        wait_for(lambda: len(workers_in(log)) == 2)
        async with connect(url(port), sample_rate=RATE, max_backoff_s=0.2) as session:
            assert session.started["migratable"] is True
            for block in blocks[: len(blocks) // 2]:
                await session.send(block)
                await trio.sleep(0.004)
            with trio.fail_after(20):
                while not checkpointed(session.session_id):
                    await trio.sleep(0.05)
            os.kill(workers_in(log)[worker_of(session.session_id)], signal.SIGKILL)
            for block in blocks[len(blocks) // 2 :]:
                await session.send(block)
            summary = await session.end()
            seen = [e async for e in session.events()]
            assert len(session.resumes) >= 1
    assert summary["status"] == "completed"
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
    assert without_seq(seen) == offline(take, 512)
    assert "continued here from its checkpoint" in log.read_text()


async def test_a_killed_hosts_session_is_abandoned_through_its_lease(
    tmp_path: Path, take: Path, postgres_database: str
) -> None:
    """Two single-process servers on one Postgres database, each with its own spool and
    journal folder (as on two machines). SIGKILL one while a session streams: the other
    records that session abandoned once its lease has expired, and leaves its own alone."""
    config = tmp_path / "short.toml"
    default = resources.files("legato.config").joinpath("default.toml").read_text()
    config.write_text(f"{default}\n[server]\nresume_grace_s = 1.0\ncheckpoint_interval_s = 0\n")
    served = ["--workers", "1", "--db", postgres_database, "--config", str(config)]

    async def status(session_id: str) -> str | None:
        storage = open_storage(postgres_database, registry())
        await storage.connect()
        try:
            return str((await storage.get_session(session_id))["status"])
        except StorageError:
            return None
        finally:
            await storage.close()

    async def open_session(port: int) -> tuple[Any, str]:
        context = open_websocket_url(url(port))
        ws = await context.__aenter__()
        hello = await receive(ws)
        start = {"type": "start", "pipeline": "analyze", "sample_rate": RATE}
        await ws.send_message(json.dumps(start))
        assert (await receive(ws))["type"] == "started"
        await ws.send_message(blocks_of(take)[0].astype("<f4").tobytes())
        return context, hello["session_id"]

    homes = [tmp_path / "machine-a", tmp_path / "machine-b"]
    for home in homes:
        home.mkdir()
    with legato_serve(homes[0], *served) as survivor:
        kept_context, kept = await open_session(survivor)
        port = free_port()
        command = [sys.executable, "-m", "legato.cli", "serve", *served, "--port", str(port)]
        with (homes[1] / "serve.log").open("wb") as log:
            doomed = subprocess.Popen(command, stderr=log, cwd=homes[1])
        try:
            wait_for(lambda: listening(port))
            lost_context, lost = await open_session(port)
            with trio.fail_after(20):
                while await status(lost) != "active":
                    await trio.sleep(0.1)
            await trio.sleep(2.5)  # its lease renewed at least once
            doomed.kill()
            doomed.wait(timeout=10)
        finally:
            doomed.kill()
        with contextlib.suppress(Exception):
            await lost_context.__aexit__(None, None, None)
        with trio.fail_after(30):
            while await status(lost) != "abandoned":
                await trio.sleep(0.2)
        assert await status(kept) == "active", "a living host's session is not touched"
        # the dead host's journal is still there, in a folder no other host reads: the lease
        # closed the session
        assert list((homes[1] / "legato-spool" / "journals").glob("*/*.journal"))
        await kept_context.__aexit__(None, None, None)
