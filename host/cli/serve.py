"""`legato serve`: the config's pipelines as live WebSocket sessions, their history recorded in
the database, playback pipelines serving the tracks of a library folder."""

from __future__ import annotations

import argparse
import logging
import sys

from ..config.pipelines import load_config
from ..errors import LegatoError
from .common import Subparsers, config_option, config_relative, db_option, plugin_registry


def add_parser(subparsers: Subparsers) -> None:
    """Declare `legato serve`."""
    p = subparsers.add_parser(
        "serve",
        parents=[config_option(), db_option()],
        help="serve the config's pipelines as live WebSocket sessions",
        description="Serve the config's pipelines as live WebSocket sessions until interrupted."
        " Sessions are recorded in the database (the history `legato db` reads), where"
        " playback pipelines also look up track fingerprints.",
    )
    p.add_argument("--host", help="address to listen on (default 127.0.0.1, or [server] host)")
    p.add_argument("--port", type=int, help="port (default 8765, or [server] port; 0 = any)")
    p.add_argument(
        "--library",
        metavar="DIR",
        help="folder of tracks for playback pipelines (default: [library] path; none: playback"
        " is refused)",
    )
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run the server until SIGINT/SIGTERM (trio, the server and the library load only here)."""
    import attrs
    import trio

    from ..library.tracks import Library
    from ..server.server import serve

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    registry = plugin_registry()
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
