"""`legato plugins`: the installed plugins and their stage types, as JSON, or as the Markdown
stage reference that docs/stages.md is generated from (``reference.py``)."""

from __future__ import annotations

import argparse
import json

from .common import Subparsers, plugin_registry


def add_parser(subparsers: Subparsers) -> None:
    """Declare `legato plugins`."""
    p = subparsers.add_parser(
        "plugins", help="list installed plugins and their stage types as JSON"
    )
    p.add_argument(
        "--markdown", action="store_true", help="print the stage reference as Markdown instead"
    )
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Print the registry (plugins that failed to load are listed in it, so no warnings)."""
    registry = plugin_registry(warn=False)
    if args.markdown:
        from .reference import stage_reference

        print(stage_reference(registry), end="")
    else:
        print(json.dumps(registry.describe(), indent=2))
    return 0
