"""`legato play TRACK OUTPUT`: play a library track from `legato serve` through a playback
pipeline and write the PCM it streams to a file: what a player hears, for checking a server
and its mastering from the command line. Prints one JSON object: the server's ``track``
message, the frames written and the session's summary."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from ..engine.files import open_sink, output_format, replacing
from .common import Subparsers


def add_parser(subparsers: Subparsers) -> None:
    """Declare `legato play`."""
    p = subparsers.add_parser(
        "play",
        help="play a library track from a server (mastered) into a file, report as JSON",
        description="Start a playback session for TRACK (its path relative to the server's"
        " library), receive the PCM it streams with credit-based flow control, and write it"
        " to OUTPUT (format by extension, as for `legato master`). Prints one JSON object:"
        " the server's track message (class, fingerprint tier, loudness and crest before and"
        " expected after), frames written, time to the first block, and the summary.",
    )
    p.add_argument("track", metavar="TRACK", help="track id: path relative to the library")
    p.add_argument("output", metavar="OUTPUT", help="audio file to write")
    p.add_argument("--url", default="ws://127.0.0.1:8765/", help="server (default %(default)s)")
    p.add_argument("--pipeline", default="playback", help="pipeline (default: playback)")
    p.add_argument(
        "--token",
        default=os.environ.get("LEGATO_TOKEN"),
        help="access token for a server that requires one (default: $LEGATO_TOKEN)",
    )
    p.add_argument(
        "--format", choices=("f32le", "s16le"), default="f32le", help="PCM format to receive"
    )
    p.add_argument("--seek", type=float, metavar="S", help="start this many seconds in")
    p.set_defaults(func=command)


async def _play(args: argparse.Namespace, out_path: Path, temp: Path) -> dict[str, Any]:
    """Receive the track into ``temp``; the report, timed from the connection."""
    from ..client.player import open_player

    started = time.perf_counter()
    first_block_s = None
    frames = 0
    async with open_player(
        args.url, args.track, pipeline=args.pipeline, sample_format=args.format, token=args.token
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


def command(args: argparse.Namespace) -> int:
    """Play into OUTPUT (replaced only when complete), print the report (trio and the client
    load only here)."""
    import trio

    out_path = Path(args.output)
    output_format(out_path)  # an unknown extension fails before connecting
    with replacing(out_path) as temp:
        report = trio.run(_play, args, out_path, temp)
    print(json.dumps(report))
    return 0
