"""Mastering benchmark: the lwrp_master stage's speed (× real time over a 4-minute 44.1 kHz
stereo track in 4096-frame blocks), the first-chunk latency of `legato master` with a cached
fingerprint (database hit) and a cold one (generated), the fingerprint time of the track, the
cached lookup time (database and sidecar tiers), and playback over a real WebSocket (first
block with a cold and a warm fingerprint, seek delay, streaming speed). Prints one JSON object
on stdout (progress goes to stderr)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import trio

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import Section, machine, rounded  # noqa: E402
from signals import music  # noqa: E402

from legato.client.player import open_player  # noqa: E402
from legato.engine.files import BLOCK_FRAMES, AudioFile  # noqa: E402
from legato.engine.stages import make_stage, stage_type_named  # noqa: E402
from legato.library.fingerprints import (  # noqa: E402
    FingerprintCache,
    open_fingerprint_cache,
    track_measurements,
)
from legato.plugins.fingerprint25d import fingerprint_file  # noqa: E402
from legato.registry import Registry, load_registry  # noqa: E402
from legato.storage import open_storage  # noqa: E402
from legato.testing import running_server, server_url  # noqa: E402

SAMPLE_RATE = 44100
CHANNELS = 2
TARGETS = {
    "first_chunk_warm_ms_max": 50.0,
    "fingerprint_s_max": 1.0,
    "cached_lookup_p95_ms_max": 1.0,
    "mastering_x_realtime_min": 200.0,
}


def progress(message: str) -> None:
    print(f"bench/master: {message}", file=sys.stderr, flush=True)


def mastering_speed(registry: Registry, path: Path, repeats: int) -> Section:
    """× real time of the stage alone (file read and block split before the clock), best of
    ``repeats`` runs, each with a fresh stage planned from the track's fingerprint."""
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    blocks = [
        np.ascontiguousarray(audio[i : i + BLOCK_FRAMES])
        for i in range(0, len(audio), BLOCK_FRAMES)
    ]
    fp = fingerprint_file(path)
    params = {"integrated_lufs": fp["loudness_lufs"], "crest_db": fp["crest_db"]}
    master = stage_type_named(registry, "lwrp_master")
    best = float("inf")
    cls = None
    for _ in range(repeats):
        stage = make_stage(master, AudioFile(path).format, measurements=params)
        start = time.perf_counter()
        for block in blocks:
            _, events = stage.process_audio(block)  # type: ignore[attr-defined]
            cls = cls or next((e["class"] for e in events if e["kind"] == "mastering"), None)
        stage.finish_audio()  # type: ignore[attr-defined]
        best = min(best, time.perf_counter() - start)
    seconds = len(audio) / sr
    return {"audio_s": seconds, "best_s": best, "x_realtime": seconds / best, "class": cls}


async def first_chunk(registry: Registry, cache: FingerprintCache, path: Path) -> Section:
    """From the start of `legato master`'s work on an opened cache (lookup, opening the file,
    planning the stage) to the first 4096 mastered frames in hand: the stage's look-ahead delays
    its output, so this can take a second input block."""
    start = time.perf_counter()
    result = await cache.lookup(path)
    with AudioFile(path) as source:
        master = stage_type_named(registry, "lwrp_master")
        measured = {} if result.fingerprint is None else result.fingerprint.measured()
        stage = make_stage(master, source.format, measurements=track_measurements(master, measured))
        ready = 0
        for block in source.blocks(BLOCK_FRAMES):
            ready += len(stage.process_audio(block)[0])  # type: ignore[attr-defined]
            if ready >= BLOCK_FRAMES:
                break
    elapsed = time.perf_counter() - start
    return {"ms": elapsed * 1000.0, "fingerprint_tier": result.tier}


async def lookup_times(lookup: Callable[[], Awaitable[Any]], n: int) -> Section:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await lookup()
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000.0
    return {"n": n, "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


async def cache_figures(registry: Registry, tmp: Path, path: Path, n: int) -> Section:
    storage = open_storage(f"sqlite:///{tmp / 'bench.db'}", registry)
    await storage.connect()
    await storage.migrate()
    try:
        async with open_fingerprint_cache(storage) as cache:
            cold = await first_chunk(registry, cache, path)
            warm = await first_chunk(registry, cache, path)
            database = await lookup_times(lambda: cache.lookup(path), n)
            tier = (await cache.lookup(path)).tier
            database["tier"] = tier
    finally:
        await storage.close()
    async with open_fingerprint_cache(None) as cache:
        sidecar = await lookup_times(lambda: cache.lookup(path), n)
        sidecar["tier"] = (await cache.lookup(path)).tier
    return {
        "first_chunk_cold": cold,
        "first_chunk_warm": warm,
        "lookup_database": database,
        "lookup_sidecar": sidecar,
    }


async def play_once(url: str, track: str, seek_s: float | None) -> Section:
    """One playback session as a player runs it: connect, start, grant 2 s, and read the whole
    track (from ``seek_s`` when given, seeking once the first block is in)."""
    start = time.perf_counter()
    first = seek_first = None
    frames = 0
    async with open_player(url, track, buffer_s=2.0) as player:
        tier = player.track["fingerprint_tier"]
        async for block in player:
            now = time.perf_counter()
            if first is None:
                first = now - start
                if seek_s is not None:
                    seek_at = now
                    await player.seek_seconds(seek_s)
                    continue
            elif seek_s is not None and seek_first is None:
                seek_first = now - seek_at
            frames += len(block)
        elapsed = time.perf_counter() - start
    section: Section = {"fingerprint_tier": tier, "first_block_ms": (first or 0.0) * 1000.0}
    if seek_s is None:
        section["x_realtime"] = frames / SAMPLE_RATE / elapsed
    else:
        section["seek_to_first_block_ms"] = (seek_first or 0.0) * 1000.0
    return section


async def playback_figures(tmp: Path, path: Path, duration_s: float) -> Section:
    """A real server with a library holding ``path`` and a SQLite database: the first block of
    PCM a player receives with a cold fingerprint (generated) and a cached one (database), the
    delay of a seek, and how fast a whole track streams with a 2 s credit window."""
    library = tmp / "library"
    library.mkdir()
    shutil.copyfile(path, library / "track.wav")
    db = f"sqlite:///{tmp / 'playback.db'}"
    async with running_server(storage_url=db, library=library) as server:
        url = server_url(server)
        cold = await play_once(url, "track.wav", None)
        warm = await play_once(url, "track.wav", None)
        seek = await play_once(url, "track.wav", duration_s / 2)
    return {"cold": cold, "warm": warm, "seek": seek}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="30 s signal, fewer repetitions")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    seconds, repeats, lookups = (30.0, 1, 50) if args.quick else (240.0, 3, 500)
    registry = load_registry()
    report: dict[str, Any] = {
        "config": {
            "seconds": seconds,
            "sample_rate": SAMPLE_RATE,
            "channels": CHANNELS,
            "block_frames": BLOCK_FRAMES,
            "repeats": repeats,
        },
        "machine": machine(["numpy", "soundfile", "trio"]),
    }
    with tempfile.TemporaryDirectory(prefix="legato-bench-master-") as tmp_name:
        tmp = Path(tmp_name)
        progress(f"generating {seconds:g} s of stereo music")
        track = tmp / "track.wav"
        sf.write(str(track), music(seconds, SAMPLE_RATE, CHANNELS).audio, SAMPLE_RATE, "FLOAT")
        progress("fingerprint time")
        fp_times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fingerprint_file(track)
            fp_times.append(time.perf_counter() - start)
        report["fingerprint"] = {"best_s": min(fp_times), "audio_s": seconds}
        progress("mastering speed")
        report["mastering"] = mastering_speed(registry, track, repeats)
        progress("first chunk and cached lookups")
        fresh = tmp / "fresh.wav"
        shutil.copyfile(track, fresh)
        report.update(trio.run(cache_figures, registry, tmp, fresh, lookups))
        progress("playback over WebSocket")
        report["playback"] = trio.run(playback_figures, tmp, track, seconds)
    lookup_p95 = max(report["lookup_database"]["p95_ms"], report["lookup_sidecar"]["p95_ms"])
    met = {
        "first_chunk_warm": report["first_chunk_warm"]["ms"] < TARGETS["first_chunk_warm_ms_max"],
        "playback_first_block_warm": report["playback"]["warm"]["first_block_ms"]
        < TARGETS["first_chunk_warm_ms_max"],
        "fingerprint": report["fingerprint"]["best_s"] < TARGETS["fingerprint_s_max"],
        "cached_lookup": lookup_p95 < TARGETS["cached_lookup_p95_ms_max"],
        "mastering": report["mastering"]["x_realtime"] >= TARGETS["mastering_x_realtime_min"],
    }
    report["targets"] = TARGETS
    report["targets_detail"] = met
    report["targets_met"] = all(met.values())
    report["elapsed_s"] = time.perf_counter() - started
    print(json.dumps(rounded(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
