"""`legato stream INPUT`: an audio file sent to `legato serve` in the blocks `legato run` uses,
the session's events printed exactly as `legato run` prints them, so a live server can be
checked against an offline run."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from pathlib import Path

from ..engine.runner import jsonl_sink
from ..errors import LegatoError
from .common import Subparsers


def add_parser(subparsers: Subparsers) -> None:
    """Declare `legato stream`."""
    p = subparsers.add_parser(
        "stream",
        help="stream an audio file to `legato serve`, events as JSON Lines",
        description="Send an audio file to a live server in the blocks `legato run` uses and print"
        " the session's events exactly as `legato run` prints them; the session summary goes to"
        " stderr as one JSON line (or to --summary FILE). Exits 1 if the server dropped audio or"
        " events.",
    )
    p.add_argument("input", metavar="INPUT", help="audio file (WAV, FLAC, OGG, ...)")
    p.add_argument("--url", default="ws://127.0.0.1:8765/", help="server (default %(default)s)")
    p.add_argument("--pipeline", default="analyze", help="pipeline name (default: analyze)")
    p.add_argument("--user", help="user name recorded with the session")
    p.add_argument(
        "--token",
        default=os.environ.get("LEGATO_TOKEN"),
        help="access token for a server that requires one (default: $LEGATO_TOKEN)",
    )
    p.add_argument("--piece", help="piece name recorded with the session")
    p.add_argument("--target-tempo", type=float, metavar="BPM", help="tempo to compare against")
    p.add_argument("--realtime", action="store_true", help="send at the file's real-time rate")
    p.add_argument("--summary", metavar="FILE", help="write the summary JSON here, not stderr")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Stream the file, print its events; 1 if the server reported lost audio or events (trio
    and the client load only here)."""
    import trio

    from ..client.session import INCOMPLETE, stream_file

    logging.basicConfig(level=logging.WARNING, format="legato: %(message)s", stream=sys.stderr)
    write = jsonl_sink(sys.stdout)
    options = {
        "user": args.user,
        "piece": args.piece,
        "target_tempo": args.target_tempo,
        "token": args.token,
    }
    session = trio.run(
        functools.partial(
            stream_file,
            args.input,
            args.url,
            lambda event: write({k: v for k, v in event.items() if k != "seq"}),
            realtime=args.realtime,
            pipeline=args.pipeline,
            **options,
        )
    )
    summary = json.dumps(session.summary, allow_nan=False, separators=(",", ":"))
    if args.summary is None:
        print(summary, file=sys.stderr)
    else:
        try:
            Path(args.summary).write_text(summary + "\n", encoding="utf-8")
        except OSError as exc:
            raise LegatoError(f"{args.summary}: cannot write summary: {exc.strerror}") from None
    lost = sorted({e["code"] for e in session.errors if e["code"] in INCOMPLETE})
    if lost:
        raise LegatoError(f"events are incomplete: the server reported {', '.join(lost)}")
    return 0
