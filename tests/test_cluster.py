"""A cluster as an operator tries it: `deploy/try-cluster` runs HAProxy with deploy/haproxy.cfg in
front of three `legato serve` hosts sharing the machine's Postgres (real processes, real
sockets). New sessions spread over the hosts; every connection cut at the load balancer resumes
on the host holding its session, with the events of an offline run stored once; the sessions of
a host killed with SIGKILL are recorded `abandoned` by a surviving host while the others keep
serving; SIGTERM drains and stops everything."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import trio
from live import RATE, alive, offline, phrase, receive, without_seq
from trio_websocket import open_websocket_url

from legato.client.session import ClientError, connect
from legato.registry import load_registry
from legato.storage import StorageError, open_storage

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
try:
    import cluster as launcher  # bench/cluster.py: runs deploy/try-cluster
finally:
    sys.path.remove(str(BENCH))

Cluster = launcher.Cluster
HOSTS = launcher.HOSTS
BLOCK = 512

pytestmark = pytest.mark.skipif(
    shutil.which("haproxy") is None,
    reason="HAProxy is not installed (apt-get install haproxy; .ci/run installs it)",
)


pytest_plugins = ("storage_fixtures",)


@pytest.fixture(scope="module")
def database(postgres_database: str) -> str:
    return postgres_database


@pytest.fixture
def take(tmp_path: Path) -> Path:
    path = tmp_path / "take.wav"
    sf.write(path, phrase(3.0), RATE)
    return path


@contextmanager
def running_cluster(tmp_path: Path, database: str, **server: float) -> Iterator[Cluster]:
    """`deploy/try-cluster` (bench/cluster.py's launcher) with quick grace and drain times."""
    settings = {"resume_grace_s": 3.0, "shutdown_timeout_s": 5.0, **server}
    with launcher.cluster(tmp_path, database, settings) as running:
        yield running


@pytest.fixture
def cluster(tmp_path: Path, database: str) -> Iterator[Cluster]:
    with running_cluster(tmp_path, database) as running:
        yield running


async def stored(url: str, session_id: str) -> tuple[str | None, list[int]]:
    """The stored status of a session (None: no row yet) and the seq numbers of its stored
    events."""
    storage = open_storage(url, load_registry())
    await storage.connect()
    try:
        found = await storage.get_session(session_id)
    except StorageError:
        return None, []
    finally:
        await storage.close()
    return found["status"], [e["seq"] for e in found["events"]]


def test_try_cluster_announces_serves_the_page_and_stops_on_sigterm(cluster: Cluster) -> None:
    assert len(cluster.hosts) == HOSTS and cluster.up() == {"host1", "host2", "host3"}
    http = cluster.url.replace("ws://", "http://")
    with urllib.request.urlopen(http, timeout=5) as reply:
        assert b"legato" in reply.read()
    with urllib.request.urlopen(http + "healthz", timeout=5) as reply:
        assert json.loads(reply.read())["status"] == "serving"
    pids = [h["pid"] for h in cluster.hosts] + [cluster.haproxy_pid]
    cluster.proc.send_signal(signal.SIGTERM)
    assert cluster.proc.wait(timeout=60) == 0
    assert not any(alive(pid) for pid in pids)


async def test_new_sessions_spread_over_the_hosts(cluster: Cluster) -> None:
    """Three held sessions through the load balancer land on three different hosts."""
    async with trio.open_nursery() as nursery:
        started = 0

        async def hold() -> None:
            nonlocal started
            async with open_websocket_url(cluster.url) as ws:
                await receive(ws)
                start = {"type": "start", "pipeline": "analyze", "sample_rate": RATE}
                await ws.send_message(json.dumps(start))
                assert (await receive(ws))["type"] == "started"
                started += 1
                await trio.sleep_forever()

        for _ in range(HOSTS):
            nursery.start_soon(hold)
            await trio.sleep(0.3)  # each counted by HAProxy before the next arrives
        with trio.fail_after(10):
            while started < HOSTS:
                await trio.sleep(0.05)
        assert [cluster.health(i)["sessions"] for i in range(HOSTS)] == [1, 1, 1]
        nursery.cancel_scope.cancel()


async def test_resumes_through_the_load_balancer_reach_the_host_holding_the_session(
    cluster: Cluster, take: Path, database: str
) -> None:
    """Six sessions stream while the load balancer cuts every connection three times: each
    client reconnects with its session id and lands on the host holding the session (on any
    other it would get `resume_failed`); the events equal an offline run, seq numbers
    unbroken, and each is stored exactly once."""
    audio, _ = sf.read(take, dtype="float32")
    blocks = [audio[i : i + BLOCK] for i in range(0, len(audio), BLOCK)]
    sessions = 6
    cut_before = [len(blocks) // 4, len(blocks) // 2, 3 * len(blocks) // 4]
    arrived = [0] * len(cut_before)
    made = [trio.Event() for _ in cut_before]
    results: dict[str, list[dict[str, Any]]] = {}

    async def cutter() -> None:
        """Each cut once every session waits at it, so every session is cut three times."""
        for k, event in enumerate(made):
            while arrived[k] < sessions:
                await trio.sleep(0.01)
            cluster.cut()
            event.set()

    async def one() -> None:
        async with connect(cluster.url, sample_rate=RATE) as session:
            seen: list[dict[str, Any]] = []

            async def feed() -> None:
                for i, block in enumerate(blocks):
                    if i in cut_before:
                        k = cut_before.index(i)
                        arrived[k] += 1
                        await made[k].wait()
                    await session.send(block)
                    await trio.sleep(0.002)
                await session.end()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                async for event in session.events():
                    seen.append(event)
            results[session.session_id] = seen
            assert len(session.resumes) >= 1

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cutter)
            for _ in range(sessions):
                nursery.start_soon(one)
    expected = offline(take, BLOCK)
    assert len(results) == sessions
    for seen in results.values():
        assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
        assert without_seq(seen) == expected
    for session_id, seen in results.items():
        with trio.fail_after(20):
            while True:
                status, seqs = await stored(database, session_id)
                if status == "completed" and len(seqs) >= len(seen):
                    break
                await trio.sleep(0.2)
        assert seqs == list(range(1, len(seen) + 1))


async def test_a_killed_hosts_session_without_checkpoint_is_abandoned_by_a_survivor(
    tmp_path: Path, take: Path, database: str
) -> None:
    """Checkpoints off: SIGKILL the host of a streaming session: its client's resume fails
    (the session lived in that process), a surviving host records the session `abandoned`
    once the resume grace period is over, and new sessions keep working through the load
    balancer."""
    with running_cluster(tmp_path, database, checkpoint_interval_s=0) as cluster:
        await killed_without_checkpoint(cluster, take, database)


async def killed_without_checkpoint(cluster: Cluster, take: Path, database: str) -> None:
    audio, _ = sf.read(take, dtype="float32")
    with pytest.raises(ClientError) as failed:
        async with connect(cluster.url, sample_rate=RATE, max_backoff_s=0.2) as session:
            await session.send(audio[:RATE])
            with trio.fail_after(10):
                async for _ in session.events():
                    break
            holder = cluster.holder()
            lost = session.session_id
            with trio.fail_after(10):
                while not (await stored(database, lost))[1]:
                    await trio.sleep(0.1)
            os.kill(cluster.hosts[holder]["pid"], signal.SIGKILL)
            with trio.fail_after(30):
                async for _ in session.events():
                    pass
    assert failed.value.code == "resume_failed"
    with trio.fail_after(30):
        while (await stored(database, lost))[0] != "abandoned":
            await trio.sleep(0.2)
    with trio.fail_after(10):
        while f"host{holder + 1}" in cluster.up():
            await trio.sleep(0.1)
    async with connect(cluster.url, sample_rate=RATE) as again:
        await again.send(audio)
        summary = await again.end()
    assert summary["status"] == "completed"


async def test_a_killed_hosts_session_continues_on_another_host(
    tmp_path: Path, take: Path, database: str
) -> None:
    """Checkpoints every 0.3 s: SIGKILL the host of a streaming session after a checkpoint is
    stored; the client resumes through the load balancer on another host, which continues the
    session from the checkpoint. The events, their seq numbers and the summary are those of an
    uninterrupted session; each event is stored once and the session ends `completed`."""
    audio, _ = sf.read(take, dtype="float32")
    blocks = [audio[i : i + BLOCK] for i in range(0, len(audio), BLOCK)]
    with running_cluster(tmp_path, database, checkpoint_interval_s=0.3) as cluster:
        async with connect(cluster.url, sample_rate=RATE) as quiet:
            for block in blocks:
                await quiet.send(block)
            reference = await quiet.end()
            expected = [e async for e in quiet.events()]
        seen: list[dict[str, Any]] = []
        async with connect(cluster.url, sample_rate=RATE) as session:
            assert session.started["migratable"] is True
            holder = cluster.holder()
            for block in blocks[: len(blocks) // 2]:
                await session.send(block)
                await trio.sleep(0.004)
            with trio.fail_after(20):
                while (
                    ck := await launcher.stored_checkpoint(database, session.session_id)
                ) is None:
                    await trio.sleep(0.05)
            assert ck.samples > 0
            os.kill(cluster.hosts[holder]["pid"], signal.SIGKILL)
            for block in blocks[len(blocks) // 2 :]:
                await session.send(block)
            summary = await session.end()
            seen = [e async for e in session.events()]
            assert len(session.resumes) >= 1
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
    assert without_seq(seen) == without_seq(expected) == offline(take, BLOCK)
    assert summary["status"] == "completed"
    assert (summary["practice"], summary["stages"]) == (reference["practice"], reference["stages"])
    with trio.fail_after(20):
        while True:
            status, seqs = await stored(database, session.session_id)
            if status == "completed" and len(seqs) >= len(seen):
                break
            await trio.sleep(0.2)
    assert seqs == list(range(1, len(seen) + 1))
    assert await launcher.stored_checkpoint(database, session.session_id) is None


async def test_a_rolling_restart_loses_nothing(tmp_path: Path, take: Path, database: str) -> None:
    """20 sessions stream while try-cluster restarts the three hosts one by one (SIGHUP: each
    host hands its sessions off on SIGTERM and comes back): every session completes with the
    events and summary of an offline run, its seq numbers unbroken, each event stored once."""
    audio, _ = sf.read(take, dtype="float32")
    blocks = [audio[i : i + BLOCK] for i in range(0, len(audio), BLOCK)]
    sessions = 20
    results: dict[str, tuple[list[dict[str, Any]], dict[str, Any], int]] = {}
    with running_cluster(
        tmp_path, database, checkpoint_interval_s=1.0, resume_grace_s=20.0
    ) as cluster:

        async def one() -> None:
            async with connect(cluster.url, sample_rate=RATE) as session:
                for block in blocks:
                    await session.send(block)
                    await trio.sleep(0.05)
                summary = await session.end()
                seen = [e async for e in session.events()]
                results[session.session_id] = (seen, summary, len(session.resumes))

        async def restart() -> None:
            await trio.sleep(2.0)
            cluster.proc.send_signal(signal.SIGHUP)
            assert cluster.proc.stdout is not None
            line = await trio.to_thread.run_sync(cluster.proc.stdout.readline)
            restarted = json.loads(line)["restarted"]
            assert [h["port"] for h in restarted] == [h["port"] for h in cluster.hosts]
            assert not {h["pid"] for h in restarted} & {h["pid"] for h in cluster.hosts}

        with trio.fail_after(150):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(restart)
                for _ in range(sessions):
                    nursery.start_soon(one)
    expected = offline(take, BLOCK)
    assert len(results) == sessions
    assert sum(resumes for _, _, resumes in results.values()) >= sessions  # every one moved
    for session_id, (seen, summary, _) in results.items():
        assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
        assert without_seq(seen) == expected
        assert summary["status"] == "completed"
        status, seqs = await stored(database, session_id)
        assert (status, seqs) == ("completed", list(range(1, len(seen) + 1)))
