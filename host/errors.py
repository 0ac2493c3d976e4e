"""User-facing errors: each says what was wrong and where, and the CLI prints it as one line."""

from __future__ import annotations


class LegatoError(Exception):
    """An error caused by user input (config, files, names), reported without a traceback."""
