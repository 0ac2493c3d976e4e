"""The `legato` command line: the top-level parser with one subcommand per module, and the
error handling every command shares (a LegatoError is one line on stderr and exit status 1)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import HOST_API_VERSION, __version__
from ..config.pipelines import ConfigError
from ..errors import LegatoError
from . import check, db, fingerprint, master, play, plugins, run, serve, stream, token

COMMANDS = (plugins, serve, check, run, stream, fingerprint, master, play, db, token)
"""The command modules, in the order `legato --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The `legato` parser: ``--version`` and every command's subparser, each setting ``func``."""
    parser = argparse.ArgumentParser(
        prog="legato", description="A plugin-based, real-time audio engine host."
    )
    parser.add_argument(
        "--version", action="version", version=f"legato {__version__} (host API {HOST_API_VERSION})"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names (default: ``sys.argv``); its exit status."""
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
