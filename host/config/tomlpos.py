"""Maps TOML key paths to the line that defines them, so config errors can point at a line.

The standard library's parser gives no positions; this scans table headers and ``key = value``
lines, which covers how pipeline configs are written (tables and dotted keys). Keys inside
inline tables or multi-line values fall back to the nearest enclosing key that has a line.
"""

from __future__ import annotations

import re
import tomllib

_SIMPLE = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_SIMPLE}(?:\s*\.\s*{_SIMPLE})*"
_HEADER = re.compile(rf"^\s*\[\[?\s*(?P<key>{_DOTTED})\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(rf"^\s*(?P<key>{_DOTTED})\s*=")
_PART = re.compile(
    r"""\s*(?:"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>[^']*)'|(?P<bare>[A-Za-z0-9_-]+))\s*"""
)


def split_key(text: str) -> tuple[str, ...]:
    """Split a TOML key (``a."b.c".d``) into its parts."""
    parts: list[str] = []
    pos = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if not match:
            return tuple(parts)
        if match.group("dq") is not None:
            parts.append(_unescape(match.group("dq")))
        else:
            parts.append(match.group("sq") or match.group("bare") or "")
        pos = match.end()
        if pos < len(text) and text[pos] == ".":
            pos += 1
    return tuple(parts)


def _unescape(body: str) -> str:
    """Decode a basic-string key's escapes exactly as TOML does."""
    try:
        return tomllib.loads(f'k = "{body}"')["k"]
    except tomllib.TOMLDecodeError:
        return body


def key_lines(source: str) -> dict[tuple[str, ...], int]:
    """Return {key path: 1-based line} for every table header and assignment in ``source``."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    depth = 0  # open brackets of a multi-line array: assignments inside are not keys
    for number, line in enumerate(source.split("\n"), start=1):  # TOML breaks only on \n
        if depth == 0:
            header = _HEADER.match(line)
            if header:
                table = split_key(header.group("key"))
                _define(lines, table, number)
                continue
            assign = _ASSIGN.match(line)
            if assign:
                _define(lines, table + split_key(assign.group("key")), number)
                value = line[assign.end() :]
                depth = max(0, _bracket_balance(value))
                continue
        else:
            depth = max(0, depth + _bracket_balance(line))
    return lines


def _define(lines: dict[tuple[str, ...], int], path: tuple[str, ...], number: int) -> None:
    """Record ``path`` and the implicit tables above it at their first appearance."""
    for end in range(1, len(path) + 1):
        lines.setdefault(path[:end], number)


def _bracket_balance(text: str) -> int:
    text = re.sub(r'"[^"]*"|\'[^\']*\'', "", text).split("#", 1)[0]
    return text.count("[") - text.count("]")


def line_of(lines: dict[tuple[str, ...], int], path: tuple[str, ...]) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    for end in range(len(path), 0, -1):
        found = lines.get(path[:end])
        if found is not None:
            return found
    return None
