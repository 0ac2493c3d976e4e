"""Instants as stored text, and the bounds of the calendar periods progress is aggregated over
(UTC)."""

from __future__ import annotations

import datetime as dt

from ..common import require_utc


def iso(value: dt.datetime) -> str:
    """The one text form of an instant, stored and returned as is: ISO 8601 in UTC with
    microseconds (``2025-03-01T18:30:00.000000+00:00``). Fixed width, so text order is time
    order and range scans on the indexes need no conversion."""
    return require_utc(value).astimezone(dt.UTC).isoformat(timespec="microseconds")


def period_end(start: dt.date, period: str) -> dt.date:
    """The first day after the period that starts on ``start``."""
    if period == "daily":
        return start + dt.timedelta(days=1)
    if period == "weekly":
        return start + dt.timedelta(days=7)
    return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def midnight(day: dt.date) -> str:
    """The stored text of 00:00 UTC on ``day``."""
    return iso(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC))
