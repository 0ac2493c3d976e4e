"""The fingerprint cache tiers (database -> .25d sidecar -> generation -> fallback) and
`legato fingerprint`, against real SQLite files and, when reachable, a real Postgres server
(see storage_fixtures). The reference for every fingerprint is the plugin's own
``fingerprint_file`` on the same file; sidecars the tests need are written here, by hand, in the
format docs/fingerprints.md documents."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf
import trio

from legato.cli.fingerprint import Report, drive_pool, find_audio
from legato.cli.main import main as legato_main
from legato.errors import LegatoError
from legato.library.fingerprints import FingerprintCache, generate, open_fingerprint_cache
from legato.library.sidecar import read_sidecar, sidecar_path
from legato.plugins.fingerprint25d import ALGORITHM_VERSION, NAMES, fingerprint_file
from legato.stage import StageType
from legato.storage import FingerprintRecord, Storage, StorageError

if TYPE_CHECKING:
    from storage_fixtures import Backend

pytest_plugins = ("storage_fixtures",)

RATE = 22050


def write_audio(path: Path, seconds: float = 1.5, seed: int = 0, channels: int = 2) -> Path:
    """A short take: a chord with a little vibrato, clicks on a beat, some noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 110.0 * 2 ** (seed % 12 / 12)
    chord = sum(
        0.15 * np.sin(2 * np.pi * f0 * k * t * (1 + 0.002 * np.sin(5 * t))) for k in (1, 2, 3)
    )
    clicks = (np.mod(t, 0.5) < 0.01) * 0.4
    mono = chord + clicks + 0.01 * rng.standard_normal(t.size)
    audio = np.stack([mono * (1 - 0.2 * c) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.astype(np.float32), RATE)
    return path


def sidecar_json(path: Path, values: list[Any], **changes: Any) -> dict[str, Any]:
    """A sidecar document as docs/fingerprints.md describes it, for the file as it is now."""
    info = os.stat(path)
    audio = sf.info(str(path))
    data = {
        "format": "legato-25d",
        "format_version": 1,
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "duration_s": audio.frames / audio.samplerate,
        "sample_rate": audio.samplerate,
        "channels": audio.channels,
        "version": ALGORITHM_VERSION,
        "names": list(NAMES),
        "values": values,
    }
    data.update(changes)
    return data


def reference(path: Path) -> tuple[float, ...]:
    return fingerprint_file(path).values


async def stored(storage: Storage, path: Path) -> FingerprintRecord | None:
    info = os.stat(path)
    return await storage.get_fingerprint(
        str(path.resolve()), info.st_size, info.st_mtime_ns, ALGORITHM_VERSION
    )


def touch(path: Path) -> None:
    """A new mtime, same content: another identity."""
    info = os.stat(path)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))


async def execute_sql(backend: Backend, sqlite_sql: str, postgres_sql: str) -> None:
    """Run a statement on the backend's shared database behind the Storage's back."""
    if backend.name == "sqlite":
        conn = sqlite3.connect(urlsplit(backend.url).path[1:])
        try:
            with conn:
                conn.execute(sqlite_sql)
        finally:
            conn.close()
        return
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(backend.url)
        try:
            await conn.execute(postgres_sql)
        finally:
            await conn.close()

    await trio.to_thread.run_sync(asyncio.run, run())


# ---- the storage methods, identical on both backends -------------------------------------


def record(
    path: str, size: int = 1000, mtime_ns: int = 1, offset: float = 0.0
) -> FingerprintRecord:
    return FingerprintRecord(
        path=path,
        size=size,
        mtime_ns=mtime_ns,
        version=ALGORITHM_VERSION,
        values=[offset + i / 7 for i in range(25)],
        duration_s=240.5,
        sample_rate=44100,
        channels=2,
    )


async def test_storage_round_trip_by_identity_and_version(storage: Storage, uid: str) -> None:
    path = f"/music/{uid}/song.flac"
    mtime = 1_719_748_800_123_456_789  # nanoseconds: needs all 64 bits of the column
    first = record(path, 5000, mtime)
    assert await storage.get_fingerprint(path, 5000, mtime, ALGORITHM_VERSION) is None
    await storage.put_fingerprint(first)
    assert await storage.get_fingerprint(path, 5000, mtime, ALGORITHM_VERSION) == first
    assert await storage.get_fingerprint(path, 5001, mtime, ALGORITHM_VERSION) is None
    assert await storage.get_fingerprint(path, 5000, mtime + 1, ALGORITHM_VERSION) is None
    assert await storage.get_fingerprint(path, 5000, mtime, ALGORITHM_VERSION + 1) is None
    assert await storage.get_fingerprint(path + "x", 5000, mtime, ALGORITHM_VERSION) is None

    replaced = record(path, 5000, mtime, offset=1.0)
    await storage.put_fingerprint(replaced)
    await storage.put_fingerprint(replaced)
    assert await storage.get_fingerprint(path, 5000, mtime, ALGORITHM_VERSION) == replaced

    changed = record(path, 5000, mtime + 10, offset=2.0)
    await storage.put_fingerprint(changed)
    assert await storage.get_fingerprint(path, 5000, mtime + 10, ALGORITHM_VERSION) == changed
    assert await storage.get_fingerprint(path, 5000, mtime, ALGORITHM_VERSION) == replaced


@pytest.mark.parametrize(
    "values", [[1.0] * 24, [1.0] * 26, [math.nan] + [1.0] * 24, [math.inf] * 25, ["1"] * 25]
)
async def test_storage_refuses_bad_vectors(storage: Storage, uid: str, values: list[Any]) -> None:
    bad = FingerprintRecord(f"/music/{uid}.wav", 1, 1, ALGORITHM_VERSION, values)
    with pytest.raises(StorageError, match="fingerprint of"):
        await storage.put_fingerprint(bad)
    assert await storage.get_fingerprint(bad.path, 1, 1, ALGORITHM_VERSION) is None


# ---- the tiers ----------------------------------------------------------------------------


async def test_generated_then_database(storage: Storage, tmp_path: Path) -> None:
    song = write_audio(tmp_path / "song.wav", seed=1)
    async with open_fingerprint_cache(storage) as cache:
        first = await cache.lookup(song)
        assert first.tier == "generated", first.reason
        assert first.fingerprint is not None and first.fingerprint.values == reference(song)
        row = await stored(storage, song)
        assert row is not None and row.values == reference(song)
        assert (row.duration_s, row.sample_rate, row.channels) == (1.5, RATE, 2)
        info = os.stat(song)
        on_disk = read_sidecar(song.resolve(), info.st_size, info.st_mtime_ns)
        assert on_disk is not None and on_disk.values == reference(song)

        again = await cache.lookup(str(song))
        assert again.tier == "database", again.reason
        assert again.fingerprint == first.fingerprint
        assert cache.counts["generated"] == 1 and cache.counts["database"] == 1


async def test_sidecar_hit_with_an_empty_database(storage: Storage, tmp_path: Path) -> None:
    song = write_audio(tmp_path / "take.flac", seed=2)
    values = list(reference(song))
    sidecar_path(song).write_text(json.dumps(sidecar_json(song, values)))
    async with open_fingerprint_cache(storage) as cache:
        hit = await cache.lookup(song)
        assert hit.tier == "sidecar", hit.reason
        assert hit.fingerprint is not None and list(hit.fingerprint.values) == values
        row = await stored(storage, song)
        assert row is not None and list(row.values) == values
        assert (await cache.lookup(song)).tier == "database"
    assert cache.counts["generated"] == 0


async def test_stale_sidecar_is_recomputed(storage: Storage, tmp_path: Path) -> None:
    song = write_audio(tmp_path / "song.wav", seed=3)
    async with open_fingerprint_cache(storage) as cache:
        assert (await cache.lookup(song)).tier == "generated"
        write_audio(song, seconds=2.0, seed=4)  # new content, size and mtime
        after = await cache.lookup(song)
        assert after.tier == "generated" and "stale" in after.reason, after.reason
        assert after.fingerprint is not None and after.fingerprint.values == reference(song)
        touch(song)  # same content, new mtime: the sidecar is stale again
        touched = await cache.lookup(song)
        assert touched.tier == "generated" and "stale" in touched.reason
        assert cache.counts["invalid"] == 2
    rewritten = json.loads(sidecar_path(song).read_text())
    assert rewritten["mtime_ns"] == os.stat(song).st_mtime_ns
    assert rewritten["values"] == list(reference(song))


CORRUPT: dict[str, Callable[[Path, list[float]], bytes]] = {
    "not JSON": lambda p, v: b'{"format": "legato-25d", "values": [1, 2',
    "not UTF-8": lambda p, v: b"\xff\xfe\x00garbage",
    "a list": lambda p, v: json.dumps([sidecar_json(p, v)]).encode(),
    "wrong format": lambda p, v: json.dumps(sidecar_json(p, v, format="other")).encode(),
    "wrong format version": lambda p, v: json.dumps(sidecar_json(p, v, format_version=2)).encode(),
    "wrong algorithm version": lambda p, v: json.dumps(
        sidecar_json(p, v, version=ALGORITHM_VERSION + 1)
    ).encode(),
    "24 values": lambda p, v: json.dumps(sidecar_json(p, v[:24])).encode(),
    "NaN": lambda p, v: json.dumps(sidecar_json(p, [math.nan, *v[1:]])).encode(),
    "Infinity": lambda p, v: json.dumps(sidecar_json(p, [*v[:-1], math.inf])).encode(),
    "text values": lambda p, v: json.dumps(sidecar_json(p, [str(x) for x in v])).encode(),
    "wrong names": lambda p, v: json.dumps(sidecar_json(p, v, names=list(NAMES)[::-1])).encode(),
    "wrong size": lambda p, v: json.dumps(sidecar_json(p, v, size=os.stat(p).st_size + 1)).encode(),
    "bad duration": lambda p, v: json.dumps(sidecar_json(p, v, duration_s=-1)).encode(),
    "too large": lambda p, v: json.dumps(sidecar_json(p, v, pad="x" * 70_000)).encode(),
}


@pytest.mark.parametrize("kind", list(CORRUPT))
async def test_corrupt_sidecar_is_recomputed_and_rewritten(
    storage: Storage, tmp_path: Path, kind: str
) -> None:
    song = write_audio(tmp_path / "song.flac", seed=5)
    truth = list(reference(song))
    sidecar_path(song).write_bytes(CORRUPT[kind](song, truth))
    async with open_fingerprint_cache(storage) as cache:
        result = await cache.lookup(song)
    assert result.tier == "generated", result.reason
    assert "sidecar: invalid" in result.reason
    assert result.fingerprint is not None and list(result.fingerprint.values) == truth
    assert cache.counts["invalid"] == 1
    info = os.stat(song)
    rewritten = read_sidecar(song.resolve(), info.st_size, info.st_mtime_ns)
    assert rewritten is not None and list(rewritten.values) == truth


async def test_corrupt_database_row_is_recomputed(
    backend: Backend, storage: Storage, tmp_path: Path
) -> None:
    song = write_audio(tmp_path / "song.wav", seed=6)
    async with open_fingerprint_cache(storage) as cache:
        assert (await cache.lookup(song)).tier == "generated"
        sidecar_path(song).unlink()
        where = f"(SELECT id FROM tracks WHERE path = '{song.resolve()}')"
        await execute_sql(
            backend,
            f"UPDATE fingerprints SET vector = '[{','.join(['1e999'] * 25)}]'"
            f" WHERE track_id = {where}",
            "UPDATE fingerprints SET vector = array_fill('Infinity'::float8, ARRAY[25])"
            f" WHERE track_id = {where}",
        )
        row = await stored(storage, song)
        assert row is not None and row.problem() is not None
        again = await cache.lookup(song)
        assert again.tier == "generated" and "corrupt row" in again.reason, again.reason
        assert again.fingerprint is not None and again.fingerprint.values == reference(song)
        assert (await cache.lookup(song)).tier == "database"
    row = await stored(storage, song)
    assert row is not None and row.values == reference(song)


async def test_generation_timeout_falls_back_then_stores_in_background(
    storage: Storage, tmp_path: Path
) -> None:
    song = write_audio(tmp_path / "long.wav", seconds=20.0, seed=7)
    async with open_fingerprint_cache(storage, timeout_s=1e-4) as cache:
        late = await cache.lookup(song)
        assert late.tier == "fallback" and late.fingerprint is None
        assert "not done within" in late.reason, late.reason
        assert cache.generating == 1
        await cache.wait_idle()
        later = await cache.lookup(song)
        assert later.tier == "database", later.reason
        assert later.fingerprint is not None and later.fingerprint.values == reference(song)
    assert sidecar_path(song).exists()
    assert dict(cache.counts) == {
        "database": 1,
        "sidecar": 0,
        "generated": 0,
        "fallback": 1,
        "invalid": 0,
    }


async def test_concurrent_lookups_share_one_generation(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    song = write_audio(tmp_path / "song.wav", seed=8)
    calls: list[Path] = []
    release = threading.Event()

    def held(path: Path, stage_type: StageType | None) -> FingerprintRecord:
        calls.append(path)
        release.wait(10)
        return generate(path, stage_type)

    monkeypatch.setattr("legato.library.fingerprints.generate", held)
    results = []
    async with open_fingerprint_cache(storage) as cache:

        async def look() -> None:
            results.append(await cache.lookup(song))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(look)
            await trio.sleep(0.3)  # all four past the database and sidecar tiers
            release.set()
    assert len(calls) == 1
    tiers = [r.tier for r in results]
    assert set(tiers) <= {"generated", "database"} and "generated" in tiers
    assert {r.fingerprint for r in results} == {results[0].fingerprint}
    assert results[0].fingerprint is not None
    assert results[0].fingerprint.values == reference(song)


async def test_unreadable_and_missing_files_fall_back(storage: Storage, tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF but not really a wave file")
    async with open_fingerprint_cache(storage) as cache:
        bad = await cache.lookup(junk)
        missing = await cache.lookup(tmp_path / "nowhere.flac")
        folder = await cache.lookup(tmp_path)
    assert bad.tier == "fallback" and "not a readable audio file" in bad.reason
    assert missing.tier == "fallback" and "nowhere.flac" in missing.reason
    assert folder.tier == "fallback" and "not a regular file" in folder.reason
    assert cache.counts["fallback"] == 3
    assert not sidecar_path(junk).exists()


async def test_database_outage_falls_through_to_the_sidecar(
    backend: Backend, tmp_path: Path
) -> None:
    song = write_audio(tmp_path / "song.flac", seed=9)
    async with open_fingerprint_cache(None) as offline:
        assert (await offline.lookup(song)).tier == "generated"
    unconnected = backend.open()
    async with open_fingerprint_cache(unconnected) as cache:
        hit = await cache.lookup(song)
    assert hit.tier == "sidecar" and "not connected" in hit.reason, hit.reason
    assert hit.fingerprint is not None and hit.fingerprint.values == reference(song)


async def test_without_sidecars_nothing_is_read_or_written(
    storage: Storage, tmp_path: Path
) -> None:
    song = write_audio(tmp_path / "song.wav", seed=10)
    sidecar_path(song).write_text(json.dumps(sidecar_json(song, [0.5] * 25)))
    before = sidecar_path(song).read_bytes()
    async with open_fingerprint_cache(storage, sidecars=False) as cache:
        result = await cache.lookup(song)
    assert result.tier == "generated"
    assert result.fingerprint is not None and result.fingerprint.values == reference(song)
    assert sidecar_path(song).read_bytes() == before


async def test_lookup_needs_a_running_cache(tmp_path: Path) -> None:
    song = write_audio(tmp_path / "song.wav", seed=11)
    with pytest.raises(RuntimeError, match="run must be running"):
        await FingerprintCache(None).lookup(song)
    with pytest.raises(ValueError, match="timeout_s"):
        FingerprintCache(None, timeout_s=0)


def test_generate_reports_unreadable_files_by_name(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(LegatoError, match="empty.wav"):
        generate(empty)


# ---- legato fingerprint -------------------------------------------------------------------


def library(root: Path) -> dict[str, Path]:
    """Three good tracks in nested folders, a damaged one, and files that are not tracks."""
    tracks = {
        "a": write_audio(root / "a.wav", seed=12),
        "b": write_audio(root / "disc 1" / "b.flac", seed=13, channels=1),
        "c": write_audio(root / "disc 2" / "c.ogg", seed=14),
    }
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (root / "notes.txt").write_text("not audio")
    (root / "._a.wav").write_bytes(b"AppleDouble")
    write_audio(root / ".cache" / "hidden.wav", seed=15)
    return tracks


def fingerprint_cli(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[dict[str, Any]], str]:
    status = legato_main(["fingerprint", "--jobs", "2", *args])
    out, err = capsys.readouterr()
    return status, [json.loads(line) for line in out.splitlines()], err


def test_cli_over_a_folder_twice(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tracks = library(tmp_path / "music")
    url = backend.fresh_url()
    status, lines, err = fingerprint_cli(capsys, str(tmp_path / "music"), "--db", url, "--json")
    assert status == 1  # broken.wav
    by_path = {line["path"]: line for line in lines}
    assert set(by_path) == {str(p) for p in tracks.values()} | {str(tmp_path / "music/broken.wav")}
    for path in tracks.values():
        line = by_path[str(path)]
        assert line["tier"] == "generated"
        assert line["version"] == ALGORITHM_VERSION and line["names"] == list(NAMES)
        assert line["values"] == list(reference(path))
        assert sidecar_path(path).exists()
    broken = by_path[str(tmp_path / "music/broken.wav")]
    assert broken["tier"] == "failed" and "broken.wav" in broken["error"]
    assert set(broken) == {"path", "tier", "version", "error"}
    assert "broken.wav" in err
    summary = err.rstrip().splitlines()[-1]
    assert summary.startswith("legato: fingerprint: 4 files in ")
    assert summary.endswith(": 0 database, 0 sidecar, 3 generated, 1 failed")
    sidecars = {p: sidecar_path(p).stat().st_mtime_ns for p in tracks.values()}

    status, lines, err = fingerprint_cli(capsys, str(tmp_path / "music"), "--db", url, "--json")
    assert status == 1
    assert sorted(line["tier"] for line in lines) == ["database"] * 3 + ["failed"]
    assert "3 database, 0 sidecar, 0 generated, 1 failed" in err
    assert {p: sidecar_path(p).stat().st_mtime_ns for p in tracks.values()} == sidecars

    status, lines, err = fingerprint_cli(capsys, str(tracks["a"]), "--db", backend.fresh_url())
    assert (status, lines) == (0, [])
    assert "1 files in" in err and "0 database, 1 sidecar, 0 generated, 0 failed" in err


def test_cli_rewrites_a_missing_sidecar_and_honours_no_sidecar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    song = write_audio(tmp_path / "song.wav", seed=16)
    url = f"sqlite:///{tmp_path / 'fp.db'}"
    status, lines, _ = fingerprint_cli(capsys, str(song), "--db", url, "--no-sidecar", "--json")
    assert status == 0 and [line["tier"] for line in lines] == ["generated"]
    assert not sidecar_path(song).exists()
    status, lines, _ = fingerprint_cli(capsys, str(song), "--db", url, "--json")
    assert [line["tier"] for line in lines] == ["database"]
    info = os.stat(song)
    written = read_sidecar(song.resolve(), info.st_size, info.st_mtime_ns)
    assert written is not None and list(written.values) == lines[0]["values"]

    sidecar_path(song).write_text("{}")
    status, lines, err = fingerprint_cli(capsys, str(song), "--db", url, "--json")
    assert [line["tier"] for line in lines] == ["database"]
    assert "(1 stale or corrupt cache entries replaced)" in err
    assert read_sidecar(song.resolve(), info.st_size, info.st_mtime_ns) == written


def test_cli_rejects_bad_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert legato_main(["fingerprint", str(tmp_path), "--jobs", "0"]) == 1
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_find_audio_walks_folders_once_each(tmp_path: Path) -> None:
    tracks = library(tmp_path)
    problems: list[tuple[str, str]] = []
    found = find_audio(
        [str(tmp_path), str(tracks["a"]), str(tmp_path / "notes.txt")],
        lambda *p: problems.append(p),
    )
    assert found == [
        tmp_path / "a.wav",
        tmp_path / "broken.wav",
        tmp_path / "disc 1" / "b.flac",
        tmp_path / "disc 2" / "c.ogg",
        tmp_path / "notes.txt",
    ]
    assert problems == []


def crash_on_b(path: str) -> FingerprintRecord:
    """A worker that dies on one file, as a decoder crash would take a process down."""
    if path.endswith("b.wav"):
        os._exit(3)
    return generate(path)


def test_a_dying_worker_takes_no_other_file_with_it(tmp_path: Path) -> None:
    paths = [
        write_audio(tmp_path / f"{name}.wav", seconds=0.5, seed=i) for i, name in enumerate("abcd")
    ]
    results: list[tuple[Path, Any]] = []
    drive_pool(paths, 2, results.append, crash_on_b)
    outcome = {path.name: result for path, result in results}
    assert sorted(outcome) == ["a.wav", "b.wav", "c.wav", "d.wav"]
    assert isinstance(outcome["b.wav"], str) and "worker process died" in outcome["b.wav"]
    for name in ("a.wav", "c.wav", "d.wav"):
        assert outcome[name].values == reference(tmp_path / name)


def test_progress_bar_and_plain_lines() -> None:
    now = [100.0]
    err = io.StringIO()
    report = Report(None, err, tty=True, clock=lambda: now[0])
    report.start(4)
    fake = record("/x.wav")
    assert err.getvalue() == "\r\033[K0/4 [------------------------]   0.0%  -- files/s  ETA --"
    for _ in range(3):
        now[0] += 2.0
        report.result(Path("/x.wav"), "generated", fake)
    bar = err.getvalue().split("\r\033[K")[-1]
    assert bar.startswith("3/4 [") and "75.0%" in bar
    assert "0.5 files/s" in bar and "ETA 2.0s" in bar
    report.failed("/y.wav", "/y.wav: unreadable")
    report.finish()
    assert "ETA 2.0s\r\033[Klegato: /y.wav: unreadable\n" in err.getvalue()
    tail = err.getvalue().split("\n")
    assert tail[-1] == ""
    tail.pop()
    assert (
        tail[-1]
        == "legato: fingerprint: 4 files in 6.0s: 0 database, 0 sidecar, 3 generated, 1 failed"
    )

    plain = io.StringIO()
    report = Report(None, plain, tty=False, clock=lambda: now[0])
    report.start(30)
    for _ in range(30):
        now[0] += 1.0
        report.result(Path("/x.wav"), "database", fake)
    lines = plain.getvalue().splitlines()
    assert lines[:3] == [
        "legato: fingerprint: 10/30 files, 1.0 files/s, ETA 20s",
        "legato: fingerprint: 20/30 files, 1.0 files/s, ETA 10s",
        "legato: fingerprint: 30/30 files, 1.0 files/s, ETA 0.0s",
    ]
    assert "\r" not in plain.getvalue()


@pytest.fixture
def lockable(backend: Backend) -> Backend:
    """The backend, when another session can hold a lock that makes its reads wait."""
    if backend.name != "postgres":
        pytest.skip("a real hang needs a server-side table lock: Postgres only")
    return backend


async def test_a_hung_database_is_skipped_after_its_timeout(
    lockable: Backend, storage: Storage, tmp_path: Path
) -> None:
    """Postgres with the fingerprints table locked by another session: lookups (and the write
    after a sidecar hit) wait database_timeout_s, then go on without it."""
    import asyncpg

    song = write_audio(tmp_path / "song.wav", seed=12)
    async with open_fingerprint_cache(None) as offline:
        assert (await offline.lookup(song)).tier == "generated"  # writes the sidecar
    locked, release = threading.Event(), threading.Event()

    async def hold_lock() -> None:
        conn = await asyncpg.connect(lockable.url)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE fingerprints IN ACCESS EXCLUSIVE MODE")
                locked.set()
                while not release.is_set():
                    await asyncio.sleep(0.01)
        finally:
            await conn.close()

    holder = threading.Thread(target=asyncio.run, args=(hold_lock(),))
    holder.start()
    try:
        assert await trio.to_thread.run_sync(locked.wait, 10)
        async with open_fingerprint_cache(storage, database_timeout_s=0.3) as cache:
            with trio.fail_after(5):
                hit = await cache.lookup(song)
    finally:
        release.set()
        await trio.to_thread.run_sync(holder.join)
    assert hit.tier == "sidecar", hit.reason
    assert "database: no answer within 0.3 s" in hit.reason
    assert "not stored in the database (no answer within 0.3 s)" in hit.reason
    assert hit.fingerprint is not None and hit.fingerprint.values == reference(song)
