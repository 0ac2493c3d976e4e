"""`legato serve`: the config's pipelines as live WebSocket sessions, their history recorded in
the database, playback pipelines serving the tracks of a library folder."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.pipelines import load_config
from ..errors import LegatoError
from .common import Subparsers, config_option, config_relative, db_option, plugin_registry

if TYPE_CHECKING:
    from ..config.pipelines import Config
    from ..library.tracks import Library


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
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes behind the one port (default: [server] workers, else one per"
        " usable core; 1: a single process)",
    )
    p.add_argument(
        "--auth-secret-file",
        metavar="FILE",
        help="require tokens signed with the HS256 key in FILE (`legato token issue` makes"
        " them; default: [auth] of the config, else no auth)",
    )
    p.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve wss:// and https:// with this PEM certificate chain (default: [server]"
        " tls_cert, else plain ws://)",
    )
    p.add_argument(
        "--tls-key", metavar="FILE", help="its PEM private key (default: [server] tls_key)"
    )
    p.add_argument(
        "--handoff",
        action="store_true",
        default=None,
        help="on SIGTERM, hand live sessions over to the other hosts of a cluster (checkpoint,"
        " then close 1012 so clients reconnect) instead of ending them (default: [server]"
        " handoff)",
    )
    for hidden in ("--worker-channel", "--worker-index"):  # set by the supervisor
        p.add_argument(hidden, type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run the server until SIGINT/SIGTERM (trio, the server and the library load only here)."""
    import attrs
    import trio

    from ..library.tracks import Library
    from ..server.auth import Authenticator
    from ..server.handoff import WorkerLink
    from ..server.origins import listens_on_loopback
    from ..server.server import serve
    from ..server.supervisor import supervise, usable_cores
    from ..server.tls import server_context

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    registry = plugin_registry()
    config = load_config(args.config, registry)
    given = (("host", args.host), ("port", args.port), ("handoff", args.handoff))
    overrides = {k: v for k, v in given if v is not None}
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
    settings = attrs.evolve(config.server, **overrides, **tls_files(args, config))
    if settings.tls_cert:
        server_context(settings.tls_cert, settings.tls_key)  # a bad file: one error, now
    auth_settings = config.auth
    if args.auth_secret_file:
        secret = str(Path(args.auth_secret_file).resolve())
        auth_settings = attrs.evolve(auth_settings, secret_file=secret, secret_env="")
    auth = Authenticator.from_settings(auth_settings, config_relative(config, "."))
    if auth is None and not listens_on_loopback(settings.host):
        logging.getLogger("legato.server").warning(
            "serving %s without authentication: anyone who reaches this address can start"
            " sessions under any user name and read their history; set [auth] secret_file"
            " (or --auth-secret-file) and see docs/security.md",
            settings.host,
        )
    workers = args.workers if args.workers is not None else settings.workers
    if workers < 0:
        raise LegatoError(f"--workers must be 0 (one per core) or more, got {workers}")
    workers = workers or usable_cores()
    storage = config.storage.open(registry, args.db)
    worker = None
    if args.worker_channel is not None:
        logging.getLogger().handlers[0].setFormatter(
            logging.Formatter(
                f"%(asctime)s %(levelname)s [worker {args.worker_index} pid {os.getpid()}]"
                " %(message)s"
            )
        )
        worker = WorkerLink(socket.socket(fileno=args.worker_channel), args.worker_index)
    try:
        if worker is None and workers > 1:
            supervise(settings, workers, worker_argv(args, library))
        else:
            trio.run(serve, config, settings, storage, library, worker, auth)
    except OSError as exc:
        raise LegatoError(f"cannot listen: {exc.strerror or exc}") from None
    return 0


def worker_argv(args: argparse.Namespace, library: Library | None) -> list[str]:
    """The command line of a worker: this serve's config, database and library (paths made
    absolute), without a port: the supervisor holds it."""
    argv = ["-m", "legato.cli", "serve", "--workers", "1"]
    if args.config:
        argv += ["--config", str(Path(args.config).resolve())]
    if args.db:
        argv += ["--db", args.db]
    if args.host:
        argv += ["--host", args.host]
    if args.handoff:
        argv += ["--handoff"]
    if args.auth_secret_file:
        argv += ["--auth-secret-file", str(Path(args.auth_secret_file).resolve())]
    for option, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path:
            argv += [option, str(Path(path).resolve())]
    if library is not None:
        argv += ["--library", str(library.root)]
    return argv


def tls_files(args: argparse.Namespace, config: Config) -> dict[str, str]:
    """``tls_cert``/``tls_key`` as absolute paths: given on the command line (relative to the
    working directory), else from ``[server]`` (relative to the config file)."""
    files = {}
    for name in ("tls_cert", "tls_key"):
        given = getattr(args, name)
        configured = getattr(config.server, name)
        if given:
            files[name] = str(Path(given).resolve())
        elif configured:
            files[name] = str(config_relative(config, configured))
    return files
