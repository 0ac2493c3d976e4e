"""The `legato` command line: serve, run, check, plugins."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import HOST_API_VERSION, __version__
from ..config.pipelines import Config, ConfigError, Pipeline, load_config
from ..engine.files import AudioFile
from ..engine.runner import RunResult, jsonl_sink, run_file
from ..errors import LegatoError
from ..registry import Registry, load_registry
from ..stage import Event
from .db import add_db_commands


def _registry(warn: bool = True) -> Registry:
    registry = load_registry()
    if warn:
        for info in registry.plugins:
            if info.error:
                print(f"legato: warning: {info.error}", file=sys.stderr)
    return registry


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = _registry(warn=False)
    if args.markdown:
        from .reference import stage_reference

        print(stage_reference(registry), end="")
    else:
        print(json.dumps(registry.describe(), indent=2))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config, _registry())
    for name, pipeline in config.pipelines.items():
        stages = ", ".join(f"{s.id} ({s.type.name})" for s in pipeline.stages)
        print(f"{config.source}: pipeline {name!r}: {stages}")
    print(f"{config.source}: OK, {len(config.pipelines)} pipeline(s)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    registry = _registry()
    config = load_config(args.config, registry)
    pipeline = config.pipeline(args.pipeline)
    recorded = args.db is not None or args.user is not None or args.piece is not None
    if recorded:
        AudioFile(args.input).close()  # a bad input fails before any database is touched

    def analyse(sink: Callable[[Event], None]) -> RunResult:
        if not recorded:
            return run_file(pipeline, args.input, sink)
        return _record_run(args, config, pipeline, registry, sink)

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


def _record_run(
    args: argparse.Namespace,
    config: Config,
    pipeline: Pipeline,
    registry: Registry,
    sink: Callable[[Event], None],
) -> RunResult:
    """The run, recorded in the database of --db (or [storage]) like a live session."""
    import trio

    from ..engine.runner import RunInfo, record_file
    from ..server.server import open_recorder

    logging.basicConfig(level=logging.WARNING, format="legato: %(message)s", stream=sys.stderr)
    storage = config.storage.open(registry, args.db)
    info = RunInfo(user=args.user, piece=args.piece)

    async def main() -> RunResult:
        recorder = await open_recorder(storage, config.server)
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            await nursery.start(recorder.run)
            try:
                result = await record_file(pipeline, args.input, sink, recorder, info)
            except Exception as exc:  # re-raised below, outside the nursery's exception group
                failure = exc
            await recorder.close(config.server.shutdown_timeout_s)
        if failure is not None:
            raise failure
        return result

    return trio.run(main)


def config_relative(config: Config, path: str) -> Path:
    """A path from a config file: relative ones are relative to the file's folder."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or not Path(config.source).is_file():
        return candidate
    return Path(config.source).parent / candidate


def cmd_serve(args: argparse.Namespace) -> int:
    import attrs
    import trio

    from ..library.tracks import Library
    from ..server.server import serve

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    registry = _registry()
    config = load_config(args.config, registry)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    library = None
    if args.library:
        library = Library(args.library)
    elif config.library.path:
        library = Library(config_relative(config, config.library.path))
    if library is None and any(p.plays_tracks for p in config.pipelines.values()):
        logging.getLogger("legato.server").warning(
            "no track library: playback sessions are refused (give --library DIR or set"
            " [library] path)"
        )
    storage = config.storage.open(registry, args.db)
    try:
        trio.run(serve, config, attrs.evolve(config.server, **overrides), storage, library)
    except OSError as exc:
        raise LegatoError(f"cannot listen: {exc.strerror or exc}") from None
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    import functools

    import trio

    from ..client.session import INCOMPLETE, stream_file

    logging.basicConfig(level=logging.WARNING, format="legato: %(message)s", stream=sys.stderr)
    write = jsonl_sink(sys.stdout)
    options = {"user": args.user, "piece": args.piece, "target_tempo": args.target_tempo}
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


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from . import fingerprint as fingerprint_cmd
    from .db import open_storage_for

    return fingerprint_cmd.run(args, lambda: open_storage_for(args))


def cmd_master(args: argparse.Namespace) -> int:
    from . import master as master_cmd
    from .db import open_storage_for

    registry = _registry()
    return master_cmd.main(args, registry, open_storage_for(args, registry))


def cmd_play(args: argparse.Namespace) -> int:
    from . import play as play_cmd

    return play_cmd.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="legato", description="A plugin-based, real-time audio engine host."
    )
    parser.add_argument(
        "--version", action="version", version=f"legato {__version__} (host API {HOST_API_VERSION})"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins and their stage types as JSON")
    p.add_argument(
        "--markdown", action="store_true", help="print the stage reference as Markdown instead"
    )
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("serve", help="serve the config's pipelines as live WebSocket sessions")
    p.add_argument("--config", help="TOML file of pipelines (default: the built-in config)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1, or [server] host)")
    p.add_argument("--port", type=int, help="port (default 8765, or [server] port; 0 = any)")
    p.add_argument(
        "--db",
        metavar="URL",
        help="database for session history (default: [storage] url, else sqlite:///legato.db)",
    )
    p.add_argument(
        "--library",
        metavar="DIR",
        help="folder of tracks for playback pipelines (default: [library] path; none: playback"
        " is refused)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check", help="validate a pipelines config")
    p.add_argument("config", metavar="CONFIG", help="TOML file of pipelines")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="run a pipeline over an audio file, events as JSON Lines")
    p.add_argument("input", metavar="INPUT", help="audio file (WAV, FLAC, OGG, ...)")
    p.add_argument("--config", help="TOML file of pipelines (default: the built-in config)")
    p.add_argument("--pipeline", default="analyze", help="pipeline name (default: analyze)")
    p.add_argument("--out", help="write events to this file instead of stdout")
    p.add_argument(
        "--db",
        metavar="URL",
        help="also record the run in this database (session id printed on stderr)",
    )
    p.add_argument("--user", help="record the run for this user (in --db, else [storage] url)")
    p.add_argument("--piece", help="piece name recorded with the run")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
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
    p.add_argument("--piece", help="piece name recorded with the session")
    p.add_argument("--target-tempo", type=float, metavar="BPM", help="tempo to compare against")
    p.add_argument("--realtime", action="store_true", help="send at the file's real-time rate")
    p.add_argument("--summary", metavar="FILE", help="write the summary JSON here, not stderr")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser(
        "fingerprint",
        help="fingerprint audio files and folders into the database and .25d sidecars",
        description="Fingerprint audio files, and folders recursively, in parallel; files whose"
        " fingerprint is already in the database or a valid .25d sidecar are skipped, so an"
        " interrupted run resumes. Progress and a per-tier summary go to stderr. Exits 1 if some"
        " file could not be fingerprinted (each is named on stderr).",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio file or folder")
    p.add_argument(
        "--db",
        metavar="URL",
        help="database for the fingerprints (default: [storage] url, else sqlite:///legato.db)",
    )
    p.add_argument("--config", help="TOML config whose [storage] table to use")
    p.add_argument("--json", action="store_true", help="print one JSON line per file on stdout")
    p.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="worker processes (default: one per available core)",
    )
    p.add_argument(
        "--no-sidecar",
        action="store_true",
        help="neither read nor write .25d sidecar files next to the audio",
    )
    p.set_defaults(func=cmd_fingerprint)

    p = sub.add_parser(
        "master",
        help="master an audio file through lwrp_master, report as JSON",
        description="Master INPUT into OUTPUT (format by OUTPUT's extension: float WAV/AIFF,"
        " 24-bit FLAC, Vorbis OGG, ...; same rate and channels) with the lwrp_master stage,"
        " using the input's fingerprint from the database, its .25d sidecar, or generated"
        " within --timeout (else the fallback chain). OUTPUT is replaced only when complete."
        " Prints one JSON object: class, fingerprint tier, input and output loudness, true"
        " peak and crest.",
    )
    p.add_argument("input", metavar="INPUT", help="audio file (WAV, FLAC, OGG, ...)")
    p.add_argument("output", metavar="OUTPUT", help="mastered file to write")
    p.add_argument(
        "--db",
        metavar="URL",
        help="database for the fingerprints (default: [storage] url, else sqlite:///legato.db)",
    )
    p.add_argument("--config", help="TOML config whose [storage] table to use")
    p.add_argument(
        "--no-sidecar",
        action="store_true",
        help="neither read nor write a .25d sidecar file next to the audio",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for a fingerprint generation (default %(default)g)",
    )
    p.set_defaults(func=cmd_master)

    p = sub.add_parser(
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
        "--format", choices=("f32le", "s16le"), default="f32le", help="PCM format to receive"
    )
    p.add_argument("--seek", type=float, metavar="S", help="start this many seconds in")
    p.set_defaults(func=cmd_play)
    add_db_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue.render(exc.filename), file=sys.stderr)
        print(f"legato: {len(exc.issues)} problem(s) in {exc.filename}", file=sys.stderr)
        return 1
    except LegatoError as exc:
        print(f"legato: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`); not an error
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
