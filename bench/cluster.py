"""What moving sessions between hosts costs and how fast it is, on this machine.

Prints one JSON object on stdout (progress goes to stderr):

- ``checkpoint``: for the ``analyze`` pipeline at 44.1 kHz mono and 48 kHz stereo, a session's
  checkpoint size (total and per stage) and its CPU (made, and written to the database), each
  against the CPU of analysing ``checkpoint_interval_s`` of audio (the default 5 s), in the same
  run: the share a session pays for being migratable.
- ``failover``: `deploy/try-cluster` (HAProxy, three hosts, the database): a session streams in
  real time; once a checkpoint is stored the host holding it is killed with SIGKILL; the time
  from the kill to the first event the client had not received before, for ``--failovers``
  sessions in turn (HAProxy's health checks, the reconnect, the takeover and the replay
  included), and whether every session then matched an uninterrupted one.
- ``rolling_restart``: ``--sessions`` sessions stream while try-cluster restarts the three
  hosts one by one (SIGHUP; each hands its sessions off on SIGTERM): how long it took, how many
  sessions moved, sessions moved per second, and whether every session completed with the
  events of an offline run.

    python bench/cluster.py                      # Postgres at 127.0.0.1:5432 if it answers
    python bench/cluster.py --db sqlite:///x.db  # one machine: a shared SQLite file works too
    python bench/cluster.py --quick              # smaller: 1 failover, 6 sessions
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import trio
from common import Section, machine, rounded
from signals import music

from legato.client.session import connect
from legato.config.pipelines import load_config
from legato.config.settings import ServerSettings
from legato.engine.runner import run_file
from legato.protocol.messages import Start
from legato.server.session import open_live
from legato.storage import Batch, CheckpointRecord, SessionRecord, open_storage
from legato.testing import registry, split

ROOT = Path(__file__).resolve().parent.parent
TRY_CLUSTER = ROOT / "deploy" / "try-cluster"
BLOCK = 512
HOSTS = 3
BENCH_SETTINGS = {"resume_grace_s": 20.0, "shutdown_timeout_s": 10.0}
INTERVAL_S = ServerSettings().checkpoint_interval_s
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGETS = {"checkpoint_cpu_share_max": 0.02, "failover_s_max": 2.0}

_START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _START:6.1f} s] {message}", file=sys.stderr, flush=True)


# --- checkpoints ---------------------------------------------------------------------------------


def checkpoint_costs(rate: int, channels: int, db_url: str, repeats: int) -> Section:
    """One session's checkpoint after 20 s of music: size, CPU to make it, CPU to write it,
    against the CPU of analysing INTERVAL_S of audio, all on this process's CPU clock."""
    pipeline = load_config(None, registry()).pipeline("analyze")
    start = Start(pipeline="analyze", sample_rate=rate, channels=channels)
    ids = (str(uuid.uuid4()), "token")
    session = open_live(start, pipeline, ServerSettings(), ids, None)
    audio = music(20.0, rate, channels).audio.astype(np.float32).reshape(-1, channels)
    blocks = split(audio, [BLOCK])
    per_interval = round(INTERVAL_S * rate / BLOCK)
    began = time.process_time()
    for block in blocks[:per_interval]:
        session.graph.process(block)
    analysis = time.process_time() - began
    for block in blocks[per_interval:]:
        session.graph.process(block)
    made: list[float] = []
    for _ in range(repeats):
        began = time.process_time()
        data = session.capture().to_bytes()
        made.append(time.process_time() - began)
    stages = session.graph.checkpoint()
    written = trio.run(write_cost, db_url, session.id, data, repeats)
    make_s, write_s = min(made), written
    return {
        "signal": f"{audio.shape[0] / rate:g} s, {channels} channel(s) at {rate} Hz",
        "bytes": len(data),
        "bytes_per_stage": {stage: len(blob) for stage, blob in stages.items()},
        "analysis_cpu_ms_per_interval": analysis * 1e3,
        "checkpoint_make_cpu_ms": make_s * 1e3,
        "checkpoint_write_cpu_ms": write_s * 1e3,
        "cpu_share_of_analysis": (make_s + write_s) / analysis,
        "database": db_url.split("://", 1)[0],
    }


async def write_cost(db_url: str, session_id: str, data: bytes, repeats: int) -> float:
    """Best CPU time (all threads of this process) of writing one checkpoint."""
    storage = open_storage(db_url, registry())
    await storage.connect()
    await storage.migrate()
    try:
        row = SessionRecord(
            id=session_id,
            pipeline="analyze",
            source="live",
            sample_rate=44100,
            channels=1,
            started_at=time_now(),
        )
        await storage.write(Batch(sessions=(row,)))
        best = float("inf")
        for seq in range(1, repeats + 1):
            record = CheckpointRecord(session_id, seq, seq * BLOCK, data, time_now())
            began = time.process_time()
            await storage.write(Batch(checkpoints=(record,)))
            best = min(best, time.process_time() - began)
        return best
    finally:
        await storage.close()


def time_now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


# --- the cluster ---------------------------------------------------------------------------------


class Cluster:
    """A running `deploy/try-cluster` and what it announced (the tests drive it too)."""

    def __init__(self, proc: subprocess.Popen[bytes], announced: dict[str, Any]) -> None:
        self.proc = proc
        self.url: str = announced["url"]
        self.hosts: list[dict[str, int]] = announced["hosts"]
        self.haproxy_pid: int = announced["haproxy_pid"]
        self.admin_socket: str = announced["admin_socket"]

    def admin(self, command: str) -> str:
        """One command on HAProxy's runtime API."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.admin_socket)
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def cut(self) -> None:
        """Every connection the load balancer holds to every host, shut at once."""
        for index in range(len(self.hosts)):
            self.admin(f"shutdown sessions server legato_hosts/host{index + 1}")

    def health(self, index: int) -> dict[str, Any]:
        """What host ``index`` answers on ``/healthz``."""
        port = self.hosts[index]["port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            answer: dict[str, Any] = json.loads(reply.read())
            return answer

    def holder(self) -> int:
        """The index of the one host holding a session."""
        return next(i for i in range(len(self.hosts)) if self.health(i)["sessions"] == 1)

    def up(self) -> set[str]:
        """The hosts HAProxy counts up."""
        lines = self.admin("show stat").splitlines()
        names = lines[0][2:].split(",")
        rows = [dict(zip(names, line.split(","), strict=False)) for line in lines[1:] if line]
        return {r["svname"] for r in rows if r["svname"].startswith("host") and r["status"] == "UP"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def cluster(scratch: Path, db_url: str, settings: dict[str, float]) -> Iterator[Cluster]:
    """`deploy/try-cluster` of three hosts on ``db_url``, the built-in pipelines and these
    ``[server]`` settings, in ``scratch`` (its log: ``cluster.log``); stopped with SIGINT."""
    scratch.mkdir(parents=True, exist_ok=True)
    default = resources.files("legato.config").joinpath("default.toml").read_text()
    config = scratch / "cluster.toml"
    lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
    config.write_text(f"{default}\n[server]\n{lines}")
    legato = Path(sys.executable).with_name("legato")
    command = [
        sys.executable, str(TRY_CLUSTER), "--port", str(free_port()), "--hosts", str(HOSTS),
        "--db", db_url, "--config", str(config), "--legato", str(legato),
    ]  # fmt: skip
    logs = (scratch / "cluster.log").open("wb")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=logs, cwd=scratch)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        if not line:
            proc.wait(timeout=30)
            tail = (scratch / "cluster.log").read_text()[-3000:]
            raise RuntimeError(f"try-cluster exited: {tail}")
        yield Cluster(proc, json.loads(line))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        logs.close()


def offline_events(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    run_file(load_config(None, registry()).pipeline("analyze"), path, events.append, BLOCK)
    return json.loads(json.dumps(events))


def without_seq(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "seq"} for e in events]


async def stored_checkpoint(db_url: str, session_id: str) -> CheckpointRecord | None:
    storage = open_storage(db_url, registry())
    await storage.connect()
    try:
        return await storage.get_checkpoint(session_id)
    finally:
        await storage.close()


async def one_failover(c: Cluster, blocks: list[np.ndarray], db_url: str) -> tuple[float, list]:
    """Stream in real time, kill the holder once a checkpoint is stored, and time the first
    event after the kill that the client had not received before it."""
    rate = 44100
    arrivals: list[tuple[float, dict[str, Any]]] = []
    async with connect(c.url, sample_rate=rate) as session:
        holder = c.holder()
        killed: list[tuple[float, int]] = []

        async def feed() -> None:
            half = len(blocks) // 2
            for block in blocks[:half]:
                await session.send(block)
                await trio.sleep(len(block) / rate)
            while await stored_checkpoint(db_url, session.session_id) is None:
                await trio.sleep(0.05)
            newest = max((e["seq"] for _, e in arrivals), default=0)
            killed.append((time.perf_counter(), newest))
            os.kill(c.hosts[holder]["pid"], signal.SIGKILL)
            for block in blocks[half:]:
                await session.send(block)
                await trio.sleep(len(block) / rate)
            await session.end()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            async for event in session.events():
                arrivals.append((time.perf_counter(), event))
    at, newest = killed[0]
    first_new = next(t for t, e in arrivals if e["seq"] > newest) - at
    return first_new, [e for _, e in arrivals]


async def failovers(scratch: Path, take: Path, db_url: str, count: int) -> Section:
    """``count`` failovers, each on a cluster of its own (three hosts, one killed)."""
    import soundfile as sf

    audio, _ = sf.read(take, dtype="float32")
    blocks = [audio[i : i + BLOCK] for i in range(0, len(audio), BLOCK)]
    expected = offline_events(take)
    times, exact = [], True
    for k in range(count):
        log(f"failover {k + 1} of {count}")
        settings = {**BENCH_SETTINGS, "checkpoint_interval_s": 1.0}
        with cluster(scratch / f"failover-{k}", db_url, settings) as c:
            seconds, events = await one_failover(c, blocks, db_url)
        times.append(seconds)
        exact = exact and without_seq(events) == expected
    return {
        "checkpoint_interval_s": 1.0,
        "kill_to_first_new_event_s": times,
        "max_s": max(times),
        "events_equal_an_uninterrupted_session": exact,
    }


async def rolling_restart(c: Cluster, take: Path, sessions: int) -> Section:
    import soundfile as sf

    audio, _ = sf.read(take, dtype="float32")
    blocks = [audio[i : i + BLOCK] for i in range(0, len(audio), BLOCK)]
    expected = offline_events(take)
    results: list[tuple[bool, int, str]] = []
    timing: dict[str, float] = {}

    async def one() -> None:
        async with connect(c.url, sample_rate=44100) as session:
            for block in blocks:
                await session.send(block)
                await trio.sleep(len(block) / 44100)
            summary = await session.end()
            events = [e async for e in session.events()]
            exact = without_seq(events) == expected and [e["seq"] for e in events] == list(
                range(1, len(events) + 1)
            )
            results.append((exact, len(session.resumes), summary["status"]))

    async def restart() -> None:
        await trio.sleep(3.0)
        assert c.proc.stdout is not None
        began = time.perf_counter()
        c.proc.send_signal(signal.SIGHUP)
        await trio.to_thread.run_sync(c.proc.stdout.readline)
        timing["restart_s"] = time.perf_counter() - began

    async with trio.open_nursery() as nursery:
        nursery.start_soon(restart)
        for _ in range(sessions):
            nursery.start_soon(one)
    moved = sum(resumes for _, resumes, _ in results)
    return {
        "sessions": sessions,
        "hosts_restarted": 3,
        "restart_s": timing["restart_s"],
        "sessions_moved": moved,
        "sessions_moved_per_s": moved / timing["restart_s"],
        "completed": sum(status == "completed" for _, _, status in results),
        "every_session_equal_to_offline": all(exact for exact, _, _ in results),
        "loses_nothing": all(exact and status == "completed" for exact, _, status in results),
    }


# --- report --------------------------------------------------------------------------------------


def postgres_database() -> str | None:
    """A new database on the local Postgres server (dropped at exit), or None."""
    try:
        import asyncpg
    except ImportError:
        return None
    name = f"legato_bench_{uuid.uuid4().hex[:10]}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=3)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f"CREATE DATABASE {name}"))
    except (OSError, asyncpg.PostgresError):
        return None
    import atexit

    atexit.register(lambda: asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="database URL (default: a new Postgres database, else SQLite)")
    parser.add_argument("--sessions", type=int, default=20, help="sessions in the rolling restart")
    parser.add_argument("--failovers", type=int, default=3, help="hosts killed, one per cluster")
    parser.add_argument("--repeats", type=int, default=20, help="checkpoints timed (best of)")
    parser.add_argument("--quick", action="store_true", help="1 failover, 6 sessions")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.failovers, args.repeats = 6, 1, 5
    return args


def main() -> int:
    args = parse_args()
    if shutil.which("haproxy") is None:
        print("HAProxy is not installed (apt-get install haproxy)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="legato-bench-cluster-") as scratch_dir:
        scratch = Path(scratch_dir)
        db_url = args.db or postgres_database() or f"sqlite:///{scratch / 'cluster.db'}"
        log(f"checkpoints ({db_url.split('://')[0]})")
        report: Section = {
            "checkpoint": {
                "interval_s": INTERVAL_S,
                "mono_44100": checkpoint_costs(44100, 1, db_url, args.repeats),
                "stereo_48000": checkpoint_costs(48000, 2, db_url, args.repeats),
            }
        }
        take = scratch / "take.wav"
        import soundfile as sf

        sf.write(take, music(8.0, 44100).audio, 44100)
        report["failover"] = trio.run(failovers, scratch, take, db_url, args.failovers)
        log(f"rolling restart with {args.sessions} sessions")
        with cluster(scratch / "rolling", db_url, BENCH_SETTINGS) as c:
            report["rolling_restart"] = trio.run(rolling_restart, c, take, args.sessions)
    shares = [
        s["cpu_share_of_analysis"] for k, s in report["checkpoint"].items() if k != "interval_s"
    ]
    report["targets_met"] = {
        "checkpoint_cpu_under_2_percent": max(shares) < TARGETS["checkpoint_cpu_share_max"],
        "failover_under_2_s": report["failover"]["max_s"] < TARGETS["failover_s_max"],
        "rolling_restart_loses_nothing": report["rolling_restart"]["loses_nothing"],
    }
    report["machine"] = machine(["legato", "trio", "asyncpg"])
    print(json.dumps(rounded(report), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
