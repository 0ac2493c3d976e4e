"""The `legato` command line: serve, run, check, plugins."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import HOST_API_VERSION, __version__
from .config import ConfigError, load_config
from .errors import LegatoError
from .registry import Registry, load_registry
from .runner import jsonl_sink, run_file


def _registry(warn: bool = True) -> Registry:
    registry = load_registry()
    if warn:
        for info in registry.plugins:
            if info.error:
                print(f"legato: warning: {info.error}", file=sys.stderr)
    return registry


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = _registry(warn=False)
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
    config = load_config(args.config, _registry())
    pipeline = config.pipeline(args.pipeline)
    if args.out is None:
        run_file(pipeline, args.input, jsonl_sink(sys.stdout))
        return 0
    out = Path(args.out)
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as stream:
            result = run_file(pipeline, args.input, jsonl_sink(stream))
        partial.replace(out)
    except OSError as exc:
        raise LegatoError(f"{out}: cannot write events: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    print(f"{args.input}: {result.events} events -> {out}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import attrs
    import trio

    from .server import serve

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    config = load_config(args.config, _registry())
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        trio.run(serve, config, attrs.evolve(config.server, **overrides))
    except OSError as exc:
        raise LegatoError(f"cannot listen: {exc.strerror or exc}") from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="legato", description="A plugin-based, real-time audio engine host."
    )
    parser.add_argument(
        "--version", action="version", version=f"legato {__version__} (host API {HOST_API_VERSION})"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins and their stage types as JSON")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("serve", help="serve the config's pipelines as live WebSocket sessions")
    p.add_argument("--config", help="TOML file of pipelines (default: the built-in config)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1, or [server] host)")
    p.add_argument("--port", type=int, help="port (default 8765, or [server] port; 0 = any)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check", help="validate a pipelines config")
    p.add_argument("config", metavar="CONFIG", help="TOML file of pipelines")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="run a pipeline over an audio file, events as JSON Lines")
    p.add_argument("input", metavar="INPUT", help="audio file (WAV, FLAC, OGG, ...)")
    p.add_argument("--config", help="TOML file of pipelines (default: the built-in config)")
    p.add_argument("--pipeline", default="analyze", help="pipeline name (default: analyze)")
    p.add_argument("--out", help="write events to this file instead of stdout")
    p.set_defaults(func=cmd_run)
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
