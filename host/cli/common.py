"""What several `legato` commands share: the plugin registry (with load warnings), the database
of ``--db``/``--config``, paths relative to a config file, and the ``--config`` and ``--db``
options, declared once as argparse parent parsers so their help cannot drift apart.

Imports no command module (the commands import this one), and nothing heavy at import time:
`legato --help` builds every command's parser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from ..config.pipelines import Config
    from ..registry import Registry
    from ..storage import Storage

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What each command module's ``add_parser`` adds its subcommand to."""


def config_option() -> argparse.ArgumentParser:
    """A parent parser with ``--config``: the TOML config a command reads its pipelines,
    ``[server]``, ``[storage]`` or ``[library]`` from."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--config", help="TOML config of pipelines and settings (default: the built-in config)"
    )
    return parent


def db_option() -> argparse.ArgumentParser:
    """A parent parser with ``--db URL``: the database, overriding the config's ``[storage]``
    url (``open_storage_for`` opens it)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--db",
        metavar="URL",
        help="database URL, e.g. sqlite:///legato.db or postgresql://user@host:5432/db"
        " (default: [storage] url of --config, else sqlite:///legato.db)",
    )
    return parent


def plugin_registry(warn: bool = True) -> Registry:
    """The installed plugins; with ``warn``, each one that failed to load is named on stderr,
    since a command missing a stage type should say why."""
    from ..registry import load_registry

    registry = load_registry()
    if warn:
        for info in registry.plugins:
            if info.error:
                print(f"legato: warning: {info.error}", file=sys.stderr)
    return registry


def open_storage_for(args: argparse.Namespace, registry: Registry | None = None) -> Storage:
    """The Storage for ``--db`` or the ``[storage]`` table of ``--config`` (every command that
    takes both opens its database this way)."""
    from ..config.pipelines import load_config

    registry = registry or plugin_registry()
    return load_config(args.config, registry).storage.open(registry, args.db)


def config_relative(config: Config, path: str) -> Path:
    """A path from a config file: relative ones are relative to the file's folder."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or not Path(config.source).is_file():
        return candidate
    return Path(config.source).parent / candidate
