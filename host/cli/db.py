"""`legato db`: migrate the session database and read its analytics as JSON on stdout.

The database is ``--db URL`` if given, else the config's ``[storage] url`` (``--config``, or the
built-in config: ``sqlite:///legato.db``). Every command applies pending migrations first, so
a query never meets an old schema. Problems (a bad URL, an unreachable database, an unknown
session) raise ``StorageError``, which the CLI prints as one line with exit status 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .common import Subparsers, config_option, db_option, open_storage_for

if TYPE_CHECKING:
    from ..storage import Storage


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``low``, refused with a usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def _run(args: argparse.Namespace, query: Callable[[Storage], Awaitable[Any]]) -> int:
    """Print ``query``'s answer from the migrated database as JSON."""
    import trio

    storage = open_storage_for(args)

    async def main() -> Any:
        await storage.connect()
        try:
            await storage.migrate()
            return await query(storage)
        finally:
            await storage.close()

    print(json.dumps(trio.run(main), indent=2))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply pending migrations; print the database, what was applied and the version."""
    import trio

    storage = open_storage_for(args)

    async def main() -> dict[str, Any]:
        await storage.connect()
        try:
            applied = await storage.migrate()
            return {
                "db": storage.url,
                "applied": applied,
                "version": await storage.schema_version(),
            }
        finally:
            await storage.close()

    print(json.dumps(trio.run(main), indent=2))
    return 0


def _now() -> dt.datetime:
    """Now, in UTC: the end of every "recent days" window."""
    return dt.datetime.now(dt.UTC)


def cmd_stats(args: argparse.Namespace) -> int:
    """`legato db stats`: a user's totals over the last --days."""
    return _run(args, lambda s: s.user_stats(args.user, args.days, _now()))


def cmd_sessions(args: argparse.Namespace) -> int:
    """`legato db sessions`: the newest --limit sessions (of --user)."""
    return _run(args, lambda s: s.list_sessions(args.user, args.limit))


def cmd_session(args: argparse.Namespace) -> int:
    """`legato db session ID`: one session, its events (all, or one page) and its result."""
    return _run(args, lambda s: s.get_session(args.id, args.after_seq, args.limit))


def cmd_progress(args: argparse.Namespace) -> int:
    """`legato db progress`: a user's aggregates per --period since --days back."""
    since = _now() - dt.timedelta(days=args.days)
    return _run(args, lambda s: s.progress(args.user, args.period, since))


def add_parser(subparsers: Subparsers) -> None:
    """Declare `legato db` and its subcommands, each with ``--db`` and ``--config``."""
    where = [db_option(), config_option()]
    db = subparsers.add_parser(
        "db",
        help="migrate the session database and query it (JSON on stdout)",
        description="Each command applies pending schema migrations first.",
    )
    commands = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")

    p = commands.add_parser("migrate", parents=where, help="apply pending schema migrations")
    p.set_defaults(func=cmd_migrate)

    p = commands.add_parser("stats", parents=where, help="a user's totals over recent days")
    p.add_argument("--user", required=True, help="user name")
    p.add_argument("--days", type=_at_least(1), default=30, help="days back (default 30)")
    p.set_defaults(func=cmd_stats)

    p = commands.add_parser("sessions", parents=where, help="sessions, newest first")
    p.add_argument("--user", help="only this user's sessions")
    p.add_argument("--limit", type=_at_least(0), default=50, help="at most N (default 50)")
    p.set_defaults(func=cmd_sessions)

    p = commands.add_parser(
        "session", parents=where, help="one session with its events and analysis result"
    )
    p.add_argument("id", metavar="ID", help="session id")
    p.add_argument(
        "--after-seq",
        type=int,
        default=0,
        metavar="SEQ",
        help="only events after this seq (the previous page's next_after_seq)",
    )
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="at most N events (default: all)"
    )
    p.set_defaults(func=cmd_session)

    p = commands.add_parser(
        "progress", parents=where, help="a user's per-period aggregates, oldest first"
    )
    p.add_argument("--user", required=True, help="user name")
    p.add_argument(
        "--period",
        choices=("daily", "weekly", "monthly"),
        default="weekly",
        help="period (default weekly)",
    )
    p.add_argument(
        "--days", type=_at_least(1), default=90, help="from the period N days back (default 90)"
    )
    p.set_defaults(func=cmd_progress)
