"""Time: everything stored or compared is UTC; the shop's dates are local to its timezone."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def local_midnight(day: dt.date, tz: dt.tzinfo) -> dt.datetime:
    """The instant a local day starts, in UTC. Everything stored or compared is UTC: SQLite
    keeps datetimes as text, where 08:00+08:00 and 00:00+00:00 do not compare as equal."""
    return dt.datetime.combine(day, dt.time(), tz).astimezone(dt.UTC)


def local_today(now: dt.datetime, tz: dt.tzinfo) -> dt.date:
    """The shop's calendar date at an instant."""
    return now.astimezone(tz).date()
