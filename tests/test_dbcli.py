"""`legato db`, run as a user runs it: subprocesses against real SQLite files."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from legato.registry import load_registry
from legato.storage import Batch, EventRecord, ResultRecord, SessionRecord, open_storage

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def legato(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``cwd``, never in the source tree, whose build leftovers (a stale
    legato.egg-info) would shadow the installed plugins' entry points."""
    return subprocess.run(
        [sys.executable, "-m", "legato.cli", *args], capture_output=True, text=True, cwd=cwd
    )


def ok(*args: str, cwd: Path) -> Any:
    done = legato(*args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def one_line_error(done: subprocess.CompletedProcess[str], text: str) -> None:
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and text in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def _records(sid: str, user: str, started: dt.datetime, events: int, score: float) -> Batch:
    start = SessionRecord(
        id=sid,
        pipeline="analyze",
        source="offline",
        sample_rate=48000,
        channels=1,
        started_at=started,
        user=user,
        piece="Scales",
        status="completed",
        ended_at=started + dt.timedelta(minutes=10),
        duration_s=600.0,
        frames_processed=600 * 48000,
    )
    stored = tuple(
        EventRecord(
            sid,
            seq,
            "onsets",
            "onset",
            seq * 4800,
            seq / 10,
            json.dumps({"stage": "onsets", "kind": "onset", "sample": seq * 4800, "t": seq / 10}),
        )
        for seq in range(1, events + 1)
    )
    res = ResultRecord(
        session_id=sid,
        pitch_accuracy=score,
        timing_consistency=score,
        tempo_stability=None,
        dynamics_range_db=18.0,
        overall_score=score,
        notes=events,
        voiced_frames=0,
        counts=json.dumps({"onset": events}),
        feedback=json.dumps({"practice": {}}),
        engine_version="0.1.0",
        processing_time_ms=2.0,
        created_at=started + dt.timedelta(minutes=10),
    )
    return Batch(sessions=(start,), events=stored, results=(res,))


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database with three sessions of ann (today, 3 and 40 days ago) and one of bob."""
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'history.db'}"

    async def fill() -> None:
        storage = open_storage(url, load_registry())
        await storage.connect()
        await storage.migrate()
        day = dt.timedelta(days=1)
        for sid, user, started, score in [
            ("ann-today", "ann", NOW - dt.timedelta(hours=1), 0.9),
            ("ann-3d", "ann", NOW - 3 * day, 0.7),
            ("ann-40d", "ann", NOW - 40 * day, 0.1),
            ("bob-1", "bob", NOW - day, 0.5),
        ]:
            await storage.write(_records(sid, user, started, 25, score))
        await storage.close()

    trio.run(fill)
    return url


def test_migrate_creates_the_default_database(tmp_path: Path) -> None:
    assert ok("db", "migrate", cwd=tmp_path) == {
        "db": "sqlite:///legato.db",
        "applied": [1, 2, 3],
        "version": 3,
    }
    assert (tmp_path / "legato.db").is_file()
    assert ok("db", "migrate", cwd=tmp_path)["applied"] == []


def test_two_processes_migrating_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    command = [sys.executable, "-m", "legato.cli", "db", "migrate", "--db", url]
    running = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=tmp_path) for _ in range(2)
    ]
    answers = [json.loads(p.communicate(timeout=60)[0]) for p in running]
    assert [p.returncode for p in running] == [0, 0]
    assert sorted(v for a in answers for v in a["applied"]) == [1, 2, 3]


def test_queries_print_json(history: str, tmp_path: Path) -> None:
    def db(*args: str) -> Any:
        return ok("db", *args, "--db", history, cwd=tmp_path)

    sessions = db("sessions", "--user", "ann")
    assert [s["id"] for s in sessions] == ["ann-today", "ann-3d", "ann-40d"]
    assert sessions[0]["overall_score"] == 0.9 and sessions[0]["user"] == "ann"
    assert [s["id"] for s in db("sessions", "--limit", "2")] == ["ann-today", "bob-1"]

    session = db("session", "ann-3d")
    assert session["id"] == "ann-3d" and session["piece"] == "Scales"
    assert [e["seq"] for e in session["events"]] == list(range(1, 26))
    assert session["events"][0] == {
        "seq": 1,
        "stage": "onsets",
        "kind": "onset",
        "sample": 4800,
        "t": 0.1,
    }
    assert session["analysis_result"]["overall_score"] == 0.7
    assert session["analysis_result"]["counts"] == {"onset": 25}

    stats = db("stats", "--user", "ann", "--days", "30")
    assert (stats["user"], stats["days"], stats["sessions"], stats["completed"]) == (
        "ann",
        30,
        2,
        2,
    )
    assert stats["practice_hours"] == pytest.approx(1200 / 3600)
    assert stats["avg_overall_score"] == pytest.approx(0.8)
    assert db("stats", "--user", "ann")["days"] == 30

    monthly = db("progress", "--user", "ann", "--period", "monthly", "--days", "60")
    assert sum(row["sessions"] for row in monthly) == 3
    assert [row["start"] for row in monthly] == sorted(row["start"] for row in monthly)
    daily = db("progress", "--user", "ann", "--period", "daily", "--days", "5")
    assert [row["sessions"] for row in daily] == [1, 1]


def test_url_from_the_config(history: str, tmp_path: Path) -> None:
    config = tmp_path / "legato.toml"
    config.write_text(
        '[pipelines.p.stages.pitch]\ntype = "pitch_yin"\ninputs = ["audio"]\n\n'
        f'[storage]\nurl = "{history}"\nbusy_timeout_s = 2.0\n'
    )
    assert len(ok("db", "sessions", "--config", str(config), cwd=tmp_path)) == 4
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert ok("db", "sessions", "--config", str(config), "--db", other, cwd=tmp_path) == []


def test_reads_while_another_connection_holds_the_write_lock(history: str, tmp_path: Path) -> None:
    holder = sqlite3.connect(history.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE sessions SET piece = 'held'")
        assert ok("db", "session", "bob-1", "--db", history, cwd=tmp_path)["piece"] == "Scales"
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("session", "nobody-here"), "no session 'nobody-here'"),
        (("sessions", "--db", "sqlite:///:memory:"), "in-memory databases are not supported"),
        (("sessions", "--db", "mysql://x/y"), "no storage backend handles 'mysql' URLs"),
        (("sessions", "--db", "sqlite:///no/such/dir/x.db"), "does not exist"),
        (("migrate", "--db", "postgresql://postgres@127.0.0.1:1/x"), "127.0.0.1:1"),
    ],
)
def test_errors_are_one_line(
    history: str, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    if "--db" not in args:
        args = (*args, "--db", history)
    one_line_error(legato("db", *args, cwd=tmp_path), message)


def test_locked_database_is_reported_not_waited_on_forever(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    config = tmp_path / "busy.toml"
    config.write_text(
        '[pipelines.p.stages.pitch]\ntype = "pitch_yin"\ninputs = ["audio"]\n\n'
        f'[storage]\nurl = "sqlite:///{path}"\nbusy_timeout_s = 0.2\n'
    )
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("PRAGMA journal_mode = WAL")
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("CREATE TABLE placeholder (x)")
        done = legato("db", "migrate", "--config", str(config), cwd=tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    one_line_error(done, f"SQLite database {path} is locked by another connection")
