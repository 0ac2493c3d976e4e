"""`legato run INPUT`: a pipeline over an audio file, its events as JSON Lines; with ``--db``,
``--user`` or ``--piece`` the run is also recorded in the database like a live session."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from ..config.pipelines import Config, Pipeline, load_config
from ..engine.files import AudioFile
from ..engine.runner import RunResult, jsonl_sink, run_file
from ..errors import LegatoError
from ..registry import Registry
from ..stage import Event
from .common import Subparsers, config_option, db_option, plugin_registry


def add_parser(subparsers: Subparsers) -> None:
    """Declare `legato run`."""
    p = subparsers.add_parser(
        "run",
        parents=[config_option(), db_option()],
        help="run a pipeline over an audio file, events as JSON Lines",
        description="Run a pipeline over an audio file and print its events as JSON Lines."
        " With --db, --user or --piece the run is also recorded in the database like a live"
        " session, and its session id is printed on stderr.",
    )
    p.add_argument("input", metavar="INPUT", help="audio file (WAV, FLAC, OGG, ...)")
    p.add_argument("--pipeline", default="analyze", help="pipeline name (default: analyze)")
    p.add_argument("--out", help="write events to this file instead of stdout")
    p.add_argument("--user", help="record the run for this user (in --db, else [storage] url)")
    p.add_argument("--piece", help="piece name recorded with the run")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Print (or write to --out, replaced only when complete) the run's events."""
    registry = plugin_registry()
    config = load_config(args.config, registry)
    pipeline = config.pipeline(args.pipeline)
    recorded = args.db is not None or args.user is not None or args.piece is not None
    if recorded:
        AudioFile(args.input).close()  # a bad input fails before any database is touched

    def analyse(sink: Callable[[Event], None]) -> RunResult:
        if not recorded:
            return run_file(pipeline, args.input, sink)
        return record_run(args, config, pipeline, registry, sink)

    if args.out is None:
        result = analyse(jsonl_sink(sys.stdout))
    else:
        out = Path(args.out)
        partial = out.with_name(out.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8") as stream:
                result = analyse(jsonl_sink(stream))
            partial.replace(out)
        except OSError as exc:
            raise LegatoError(f"{out}: cannot write events: {exc.strerror or exc}") from None
        finally:
            partial.unlink(missing_ok=True)
        print(f"{args.input}: {result.events} events -> {out}", file=sys.stderr)
    if result.session_id is not None:
        print(result.session_id, file=sys.stderr)
    return 0


def record_run(
    args: argparse.Namespace,
    config: Config,
    pipeline: Pipeline,
    registry: Registry,
    sink: Callable[[Event], None],
) -> RunResult:
    """The run, recorded in the database of --db (or [storage]) like a live session (trio and
    the recorder load only here)."""
    import trio

    from ..records.offline import record_file
    from ..records.recording import About
    from ..server.server import open_recorder

    logging.basicConfig(level=logging.WARNING, format="legato: %(message)s", stream=sys.stderr)
    storage = config.storage.open(registry, args.db)
    about = About(user=args.user, piece=args.piece)

    async def main() -> RunResult:
        recorder = await open_recorder(storage, config.server)
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            await nursery.start(recorder.run)
            try:
                result = await record_file(pipeline, args.input, sink, recorder, about)
            except Exception as exc:  # re-raised below, outside the nursery's exception group
                failure = exc
            await recorder.close(config.server.shutdown_timeout_s)
        if failure is not None:
            raise failure
        return result

    return trio.run(main)
