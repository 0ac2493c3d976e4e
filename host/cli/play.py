"""`legato play TRACK OUTPUT`: play a library track from `legato serve` through a playback
pipeline and write the PCM it streams to a file: what a player hears, for checking a server
and its mastering from the command line. Prints one JSON object: the server's ``track``
message, the frames written and the session's summary."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import trio

from ..client.player import open_player
from .master import open_sink, output_format, replacing


async def _play(args: argparse.Namespace, out_path: Path, temp: Path) -> dict[str, Any]:
    started = time.perf_counter()
    first_block_s = None
    frames = 0
    async with open_player(
        args.url, args.track, pipeline=args.pipeline, sample_format=args.format
    ) as player:
        if args.seek:
            await player.seek_seconds(args.seek)
        with open_sink(temp, out_path, player.sample_rate, player.channels) as sink:
            async for block in player:
                if first_block_s is None:
                    first_block_s = time.perf_counter() - started
                sink.write(block)
                frames += len(block)
        summary = await player.end()
    return {
        "track": player.track,
        "output_path": str(out_path),
        "frames": frames,
        "first_block_ms": None if first_block_s is None else round(first_block_s * 1000, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "events": len(player.events),
        "notices": player.notices,
        "summary": summary,
    }


def main(args: argparse.Namespace) -> int:
    out_path = Path(args.output)
    output_format(out_path)  # an unknown extension fails before connecting
    with replacing(out_path) as temp:
        report = trio.run(_play, args, out_path, temp)
    print(json.dumps(report))
    return 0
