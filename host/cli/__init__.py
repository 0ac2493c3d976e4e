"""The `legato` command: one module per command, the parser in ``main``."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
