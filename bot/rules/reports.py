"""Periods of the owner's reports and their change against the period before (环比)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

SPANS = (1, 7, 30)  # today, the last 7 days, the last 30 days (each including today)


@dataclass(frozen=True)
class Period:
    """Local days [first, first + days)."""

    first: dt.date
    days: int

    @property
    def last(self) -> dt.date:
        return self.first + dt.timedelta(days=self.days - 1)

    def before(self) -> Period:
        """The period of the same length just before this one."""
        return Period(self.first - dt.timedelta(days=self.days), self.days)

    def dates(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=n) for n in range(self.days)]

    def bounds(self, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
        """Its start and end as UTC instants (local midnights: a day is not always 24 h)."""
        edges = day_edges(self.first, self.days, tz)
        return edges[0], edges[-1]


def ending(today: dt.date, days: int) -> Period:
    """The `days` local days up to and including today."""
    return Period(today - dt.timedelta(days=days - 1), days)


def day_edges(first: dt.date, days: int, tz: ZoneInfo) -> list[dt.datetime]:
    """The UTC instants of the local midnights that start each day, and the one after."""
    return [dt.datetime.combine(first + dt.timedelta(days=n), dt.time(), tz).astimezone(dt.UTC)
            for n in range(days + 1)]


def change(current: float | None, previous: float | None) -> float | None:
    """The relative change (0.25 = +25 %); None when there is nothing to compare with."""
    if current is None or not previous:
        return None
    return (current - previous) / previous


def per(total: int, count: int) -> int | None:
    """An average in whole units (fen), rounded half up; None when count is 0."""
    return (2 * total + count) // (2 * count) if count else None
