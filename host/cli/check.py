"""`legato check CONFIG`: validate a pipelines config and list its pipelines' stages, so a
config can be checked before a server is started with it."""

from __future__ import annotations

import argparse

from ..config.pipelines import load_config
from .common import Subparsers, plugin_registry


def add_parser(subparsers: Subparsers) -> None:
    """Declare `legato check`."""
    p = subparsers.add_parser("check", help="validate a pipelines config")
    p.add_argument("config", metavar="CONFIG", help="TOML file of pipelines")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Print each pipeline's stages; a bad config raises ConfigError (every problem listed)."""
    config = load_config(args.config, plugin_registry())
    for name, pipeline in config.pipelines.items():
        stages = ", ".join(f"{s.id} ({s.type.name})" for s in pipeline.stages)
        print(f"{config.source}: pipeline {name!r}: {stages}")
    print(f"{config.source}: OK, {len(config.pipelines)} pipeline(s)")
    return 0
