"""User-facing errors: each says what was wrong and where, and the CLI prints it as one line;
and unwrapping trio's exception groups where a caller expects the one exception raised inside."""

from __future__ import annotations

from typing import NoReturn


class LegatoError(Exception):
    """An error caused by user input (config, files, names), reported without a traceback."""


def raise_single(group: BaseExceptionGroup) -> NoReturn:
    """Re-raise a group holding one exception (possibly several times) as that exception, its
    context intact, so callers catch what was raised inside (``KeyboardInterrupt``,
    ``LegatoError``...); a group of several different exceptions is re-raised as it is."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        elif all(exc is not seen for seen in leaves):  # a failure re-raised to the caller too
            leaves.append(exc)
    if len(leaves) != 1:
        raise group
    leaf, context = leaves[0], leaves[0].__context__
    try:
        raise leaf
    finally:
        leaf.__context__ = context
