"""Storage benchmark: sustained write throughput of each backend (``Storage.write`` in batches
of 1000 and 5000 events, and through the recorder), p50/p95/p99 of each analytics query on a
database of 1M events and 10k sessions, and the live load (bench/load.py's clients, 100 paced
sessions) against `legato serve --db sqlite:///...`. Prints one JSON object on stdout (progress
goes to stderr).

Events are real: the analyze pipeline's output over bench/signals.py's music line, encoded as
clients receive them (with ``seq``), replayed under many session ids. SQLite writes to a file in
a fresh temporary directory; Postgres to a fresh database on the local server (dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import trio

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import load  # noqa: E402
from common import Section  # noqa: E402
from signals import music  # noqa: E402

from legato import __version__  # noqa: E402
from legato.config.pipelines import load_config  # noqa: E402
from legato.engine.graph import Graph  # noqa: E402
from legato.protocol.messages import encode_event  # noqa: E402
from legato.records.recorder import Recorder, RecorderSettings  # noqa: E402
from legato.stage import StreamFormat  # noqa: E402
from legato.storage import (  # noqa: E402
    Batch,
    EventRecord,
    ResultRecord,
    SessionRecord,
    Storage,
    open_storage,
)
from legato.testing import registry  # noqa: E402

RATE = 44100
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGETS = {
    "sqlite_events_per_s": 150_000,
    "postgres_events_per_s": 100_000,
    "analytics_p95_ms": 20.0,
    "live_p99_ms": 25.0,
}
USERS = 100


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- realistic records --------------------------------------------------------------------


class Events:
    """One session's worth of real analyze-pipeline events, re-keyed for any session id."""

    def __init__(self, seconds: float) -> None:
        pipeline = load_config(None, registry()).pipeline("analyze")
        graph = Graph(pipeline, StreamFormat(RATE, 1))
        audio = music(seconds, RATE, 1, seed=3).audio.astype(np.float32).reshape(-1, 1)
        raw = []
        for i in range(0, len(audio), 512):
            raw.extend(graph.process(audio[i : i + 512]))
        raw.extend(graph.finish())
        self.templates = []
        for event in raw:
            tail = encode_event(0, event).split(",", 1)[1]  # everything after "seq"
            self.templates.append(
                (event["stage"], event["kind"], event["sample"], event["t"], tail)
            )
        self.mean_bytes = float(np.mean([len(t[4]) + 10 for t in self.templates]))

    def make(self, session_id: str, count: int, first_seq: int = 1) -> list[EventRecord]:
        out = []
        n = len(self.templates)
        for seq in range(first_seq, first_seq + count):
            stage, kind, sample, t, tail = self.templates[(seq - 1) % n]
            out.append(
                EventRecord(session_id, seq, stage, kind, sample, t, f'{{"seq":{seq},{tail}')
            )
        return out


def session_row(
    session_id: str, user: str, started: dt.datetime, status: str = "completed"
) -> SessionRecord:
    ended = status != "active"
    return SessionRecord(
        id=session_id,
        pipeline="analyze",
        source="live",
        sample_rate=RATE,
        channels=1,
        started_at=started,
        status=status,  # type: ignore[arg-type]
        user=user,
        piece="Etude",
        target_tempo=96.0,
        ended_at=started + dt.timedelta(minutes=10) if ended else None,
        duration_s=600.0 if ended else None,
        frames_processed=600 * RATE if ended else 0,
    )


def result_row(session_id: str, rng: np.random.Generator) -> ResultRecord:
    return ResultRecord(
        session_id=session_id,
        pitch_accuracy=float(rng.uniform(0.4, 1.0)),
        timing_consistency=float(rng.uniform(0.4, 1.0)),
        tempo_stability=float(rng.uniform(0.4, 1.0)),
        dynamics_range_db=float(rng.uniform(6, 30)),
        overall_score=float(rng.uniform(0.4, 1.0)),
        notes=int(rng.integers(20, 400)),
        voiced_frames=int(rng.integers(100, 5000)),
        counts='{"notes":120,"voiced_frames":2400}',
        feedback='{"practice":{},"stages":{}}',
        engine_version=__version__,
        processing_time_ms=float(rng.uniform(50, 500)),
        created_at=NOW,
    )


# ---- databases ----------------------------------------------------------------------------


def _pg_admin(admin: str, sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(admin, timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@contextmanager
def database(backend: str, scratch: Path, admin: str) -> Iterator[str]:
    """The URL of a fresh, empty database of ``backend``."""
    if backend == "sqlite":
        folder = Path(tempfile.mkdtemp(dir=scratch))
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    name = f"legato_bench_{secrets.token_hex(5)}"
    _pg_admin(admin, f"CREATE DATABASE {name}")
    try:
        base = admin.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        _pg_admin(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@asynccontextmanager
async def connected(url: str) -> Any:
    storage = open_storage(url, registry())
    await storage.connect()
    await storage.migrate()
    try:
        yield storage
    finally:
        await storage.close()


# ---- write throughput ---------------------------------------------------------------------


async def write_rate(url: str, events: Events, total: int, batch: int) -> Section:
    """Events/s through ``Storage.write``: sessions of 5000 events, ``batch`` events a write."""
    per_session = 5000
    ids = [f"w{batch}-{i}" for i in range(-(-total // per_session))]
    batches = []
    for i, session_id in enumerate(ids):
        records = events.make(session_id, min(per_session, total - i * per_session))
        for j in range(0, len(records), batch):
            batches.append(Batch(events=tuple(records[j : j + batch])))
    async with connected(url) as storage:
        rows = tuple(session_row(s, "writer", NOW, "active") for s in ids)
        await storage.write(Batch(sessions=rows))
        began = time.perf_counter()
        for b in batches:
            await storage.write(b)
        elapsed = time.perf_counter() - began
    return {"events": total, "batch": batch, "seconds": elapsed, "events_per_s": total / elapsed}


async def recorder_rate(url: str, events: Events, total: int, scratch: Path) -> Section:
    """Events/s through the recorder: 20 sessions handing over 500 events at a time, as fast
    as the recorder takes them (waiting for room like an offline run), until all are
    written and the recorder closed."""
    sessions = 20
    per = total // sessions
    records = {f"r-{i}": events.make(f"r-{i}", per) for i in range(sessions)}
    storage = open_storage(url, registry())
    recorder = Recorder(storage, RecorderSettings(spool_dir=Path(tempfile.mkdtemp(dir=scratch))))
    await recorder.start()
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.run)
        began, cpu = time.perf_counter(), time.process_time()
        for session_id in records:
            recorder.session_started(session_row(session_id, "rec", NOW, "active"))
        for start in range(0, per, 500):
            for rows in records.values():
                recorder.events(rows[start : start + 500])
            await recorder.wait_room()
        await recorder.close(60.0)
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu
    totals = recorder.totals
    return {
        "events": per * sessions,
        "seconds": elapsed,
        "events_per_s": per * sessions / elapsed,
        "cpu_us_per_event": cpu / (per * sessions) * 1e6,
        "stored": totals.stored,
        "spooled": totals.spooled,
        "unsaved": totals.unsaved,
    }


# ---- analytics ----------------------------------------------------------------------------


async def populate(storage: Storage, events: Events, sessions: int, per_session: int) -> Section:
    """``sessions`` completed sessions of ``per_session`` events each, 100 users, started over
    the last year, each with a result; written 100 sessions per batch (the bulk path)."""
    rng = np.random.default_rng(7)
    offsets = rng.uniform(0, 365 * 86400, sessions)
    began = time.perf_counter()
    ids = []
    for start in range(0, sessions, 100):
        rows, evs, results = [], [], []
        for i in range(start, min(start + 100, sessions)):
            session_id = f"s{i:06d}"
            ids.append(session_id)
            started = NOW - dt.timedelta(seconds=float(offsets[i]))
            rows.append(session_row(session_id, f"user{i % USERS:03d}", started))
            evs.extend(events.make(session_id, per_session))
            results.append(result_row(session_id, rng))
        await storage.write(Batch(tuple(rows), tuple(evs), tuple(results)))
    elapsed = time.perf_counter() - began
    return {
        "sessions": sessions,
        "events": sessions * per_session,
        "users": USERS,
        "seconds": elapsed,
        "events_per_s": sessions * per_session / elapsed,
        "ids": ids,
    }


def percentiles(values_s: list[float]) -> Section:
    ms = np.asarray(values_s) * 1000.0
    p50, p95, p99 = (float(p) for p in np.percentile(ms, (50, 95, 99)))
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": float(ms.max()), "n": ms.size}


async def timed(runs: int, query: Callable[[int], Awaitable[Any]]) -> Section:
    await query(0)  # warm caches once, as a running server's are
    times = []
    for i in range(runs):
        began = time.perf_counter()
        await query(i)
        times.append(time.perf_counter() - began)
    return percentiles(times)


async def analytics(
    url: str, events: Events, sessions: int, per_session: int, runs: int
) -> Section:
    async with connected(url) as storage:
        log(f"  populating {sessions} sessions x {per_session} events")
        built = await populate(storage, events, sessions, per_session)
        ids = built.pop("ids")
        rng = np.random.default_rng(11)
        users = [f"user{u:03d}" for u in rng.integers(0, USERS, runs + 1)]
        picks = [ids[k] for k in rng.integers(0, len(ids), runs + 1)]
        since = NOW - dt.timedelta(days=90)
        queries = {
            "user_stats": lambda i: storage.user_stats(users[i], 30, NOW),
            "progress": lambda i: storage.progress(users[i], "weekly", since),
            "list_sessions": lambda i: storage.list_sessions(users[i], 50),
            "get_session": lambda i: storage.get_session(picks[i]),
        }
        out: Section = {"database": built, "queries": {}}
        for name, query in queries.items():
            out["queries"][name] = await timed(runs, query)
            log(f"  {name}: p95 {out['queries'][name]['p95_ms']:.2f} ms")
        sample = await storage.get_session(picks[0])
        out["get_session_events"] = len(sample["events"])
        out["queries_note"] = (
            "user_stats over 30 days; progress weekly since 90 days back; list_sessions "
            "limit 50; get_session of one session with its events and result; a random one "
            "of 100 users (or sessions) per run, run one after another"
        )
    return out


# ---- live load ----------------------------------------------------------------------------


NO_STORAGE = (
    "import sys, attrs, trio; from legato.config.pipelines import load_config; "
    "from legato.registry import load_registry; from legato.server.server import serve; "
    "config = load_config(None, load_registry()); "
    "trio.run(serve, config, attrs.evolve(config.server, port=int(sys.argv[1])))"
)
"""The same server without storage (`legato serve` always records), for the baseline."""


def paced(
    command: Callable[..., list[str]], sessions: int, seconds: float, server_core: int | None
) -> Section:
    """One warm-up session, then ``sessions`` paced ones, against a fresh server process."""
    serve = load.legato_command
    load.legato_command = command
    try:
        frames = load.make_frames(min(load.SIGNAL_SECONDS, max(seconds, 3.0)))
        with load.serving("legato", server_core) as (pid, port):
            trio.run(load.drive, "legato", pid, port, 1, 0.3, frames)
            run = trio.run(load.drive, "legato", pid, port, sessions, seconds, frames)
    finally:
        load.legato_command = serve
    return run


def summary(run: Section) -> Section:
    return {
        "latency_ms": run["latency_ms"],
        "kept_real_time": run["kept_real_time"],
        "failures": run["failures"],
        "frames_dropped": run.get("frames_dropped"),
        "server_cpu_percent": run["server"]["cpu_percent"],
        "server_rss_peak_mb": run["server"]["rss_peak_mb"],
        "cores_busy_percent": run["cores_busy_percent"],
    }


def live(sessions: int, seconds: float, scratch: Path) -> Section:
    """bench/load.py's paced clients against `legato serve --db sqlite:///...` and, as the
    baseline, the same server without storage; then whether storage kept up: every event the
    clients received is in the database, the spool empty."""
    db = scratch / "live" / "legato.db"
    db.parent.mkdir()
    url = f"sqlite:///{db}"
    serve = load.legato_command
    server_core, pinning = load.pin_cores()
    run = paced(
        lambda port, workers=1: [*serve(port, workers), "--db", url], sessions, seconds, server_core
    )
    log("live: the same without storage")
    bare = [sys.executable, "-c", NO_STORAGE]
    baseline = paced(lambda port, workers=1: [*bare, str(port)], sessions, seconds, server_core)

    async def stored() -> list[Section]:
        async with connected(url) as storage:
            listed = await storage.list_sessions(None, sessions + 10)
            return [await storage.get_session(s["id"]) for s in listed]

    found = trio.run(stored)
    statuses: dict[str, int] = {}
    produced = stored_events = consistent = 0
    for session in found:
        statuses[session["status"]] = statuses.get(session["status"], 0) + 1
        seqs = [e["seq"] for e in session["events"]]
        counts = (session["analysis_result"] or {}).get("counts", {})
        made = sum(v for k, v in counts.items() if k.endswith("_events"))
        produced += made
        stored_events += len(seqs)
        consistent += seqs == list(range(1, len(seqs) + 1)) and len(seqs) == made
    leftover = sorted(p.name for p in (db.parent / "legato.db-spool").glob("*.jsonl"))
    return {
        "db": "sqlite (file)",
        "pinning": pinning,
        "sessions": sessions,
        "seconds": seconds,
        **summary(run),
        "without_storage": summary(baseline),
        "sessions_stored": len(found),
        "statuses": statuses,
        "events_produced": produced,
        "events_stored": stored_events,
        "sessions_with_every_event_once": consistent,
        "spool_segments_left": leftover,
        "storage_kept_up": consistent == len(found) and not leftover,
        "note": "read back from the database after the server drained and closed (the "
        "warm-up session included): events_produced sums each session's result counts (every "
        "event its analysis produced), and a session has every event once when its stored "
        "seqs are exactly 1..that count",
    }


# ---- orchestration --------------------------------------------------------------------------


def machine() -> Section:
    import sqlite3

    return common.machine(("legato", "sqlite-utils", "asyncpg", "trio")) | {
        "sqlite": sqlite3.sqlite_version
    }


def targets_met(report: Section) -> dict[str, bool | None]:
    def rate(backend: str) -> float | None:
        section = report["write"].get(backend, {})
        best = [section[k]["events_per_s"] for k in ("batch_1000", "batch_5000") if k in section]
        return max(best) if best else None

    p95s = [
        q["p95_ms"]
        for section in report["analytics"].values()
        if "queries" in section
        for q in section["queries"].values()
    ]
    live_run = report.get("live", {})
    p99 = live_run.get("latency_ms", {}).get("p99")
    sqlite_rate, pg_rate = rate("sqlite"), rate("postgres")
    return {
        "sqlite_at_least_150k_events_per_s": None
        if sqlite_rate is None
        else sqlite_rate >= TARGETS["sqlite_events_per_s"],
        "postgres_at_least_100k_events_per_s": None
        if pg_rate is None
        else pg_rate >= TARGETS["postgres_events_per_s"],
        "analytics_p95_under_20ms": None if not p95s else max(p95s) < TARGETS["analytics_p95_ms"],
        "live_100_sessions_p99_under_25ms_with_storage": None
        if p99 is None
        else p99 < TARGETS["live_p99_ms"] and bool(live_run.get("kept_real_time")),
        "live_storage_kept_up": live_run.get("storage_kept_up"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=500_000, help="events per throughput run")
    p.add_argument("--sessions", type=int, default=10_000, help="sessions in the analytics db")
    p.add_argument("--per-session", type=int, default=100, help="events per analytics session")
    p.add_argument("--runs", type=int, default=200, help="timed runs of each query")
    p.add_argument("--live-sessions", type=int, default=100, help="paced live sessions")
    p.add_argument("--live-seconds", type=float, default=10.0, help="audio per live session")
    p.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    p.add_argument("--pg-admin", default=PG_ADMIN, help="Postgres URL to create databases with")
    p.add_argument("--no-live", action="store_true", help="skip the live load")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test under 30 s")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.sessions, args.per_session, args.runs = 20_000, 200, 100, 20
        args.live_sessions, args.live_seconds = 2, 2.0
    args.backends = [b for b in args.backends.split(",") if b]
    return args


def bench_backend(backend: str, args: argparse.Namespace, events: Events, scratch: Path) -> tuple:
    write: Section = {}
    with database(backend, scratch, args.pg_admin) as url:
        for batch in (1000, 5000):
            log(f"{backend}: Storage.write, batches of {batch}")
            write[f"batch_{batch}"] = trio.run(write_rate, url, events, args.events, batch)
        log(f"{backend}: through the recorder")
        write["recorder"] = trio.run(recorder_rate, url, events, args.events, scratch)
    with database(backend, scratch, args.pg_admin) as url:
        log(f"{backend}: analytics")
        queries = trio.run(analytics, url, events, args.sessions, args.per_session, args.runs)
    return write, queries


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    info = machine()
    events = Events(30.0)
    report: Section = {
        "config": {
            "events_per_throughput_run": args.events,
            "analytics_sessions": args.sessions,
            "analytics_events_per_session": args.per_session,
            "query_runs": args.runs,
            "event_json_mean_bytes": events.mean_bytes,
            "event_kinds": sorted({t[1] for t in events.templates}),
            "live": {"sessions": args.live_sessions, "seconds": args.live_seconds},
        },
        "machine": info,
        "write": {},
        "analytics": {},
    }
    with tempfile.TemporaryDirectory(prefix="legato-bench-") as tmp:
        scratch = Path(tmp)
        for backend in args.backends:
            try:
                report["write"][backend], report["analytics"][backend] = bench_backend(
                    backend, args, events, scratch
                )
            except Exception as exc:  # e.g. no Postgres server here: report it, go on
                log(f"{backend}: {type(exc).__name__}: {exc}")
                report["write"][backend] = {"error": f"{type(exc).__name__}: {exc}"}
                report["analytics"][backend] = {"error": f"{type(exc).__name__}: {exc}"}
        if not args.no_live:
            log(f"live: {args.live_sessions} sessions x {args.live_seconds} s, storage on")
            report["live"] = live(args.live_sessions, args.live_seconds, scratch)
    report["targets"] = TARGETS
    report["targets_met"] = targets_met(report)
    report["elapsed_s"] = time.monotonic() - began
    print(json.dumps(common.rounded(report), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
