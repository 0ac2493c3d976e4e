"""The `legato` command: one module per command (each with ``add_parser`` and its body), what
they share in ``common``, the parser and error handling in ``main``."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
