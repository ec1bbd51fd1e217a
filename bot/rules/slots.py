"""Free times, as pure functions: a resource's opening hours on a day, minus its closures, minus
the places its bookings hold, give the starts a service of some length can be booked at.

Starts lie on the day's grid of `step` minutes from local midnight. A booking covers the units
[start + k·step) for k < minutes / step; `taken` counts the places held per unit (UTC), and a
start is free while every unit it covers has a place left. Units line up across bookings
because every start is on the same local grid (a shop in a zone with daylight saving would see
the grid shift on the two change-over days; China has none).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.config import TimeRange

DAY_MINUTES = 24 * 60


@dataclass(frozen=True)
class Free:
    start: dt.datetime  # UTC
    places: int  # left at the tightest unit the service covers


def minute_of(t: dt.time, *, end: bool = False) -> int:
    """Minutes since midnight; time.max (config's "24:00") is the day's end."""
    if end and t == dt.time.max:
        return DAY_MINUTES
    return t.hour * 60 + t.minute


def units(start: dt.datetime, minutes: int, step: int) -> list[dt.datetime]:
    """The unit starts a booking of `minutes` from `start` covers."""
    return [start + dt.timedelta(minutes=k * step) for k in range(max(1, -(-minutes // step)))]


def local_start(day: dt.date, minute: int, tz: dt.tzinfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tz).astimezone(dt.UTC)


def _overlaps(a: int, b: int, ranges: Iterable[TimeRange]) -> bool:
    return any(a < minute_of(end, end=True) and minute_of(begin) < b for begin, end in ranges)


def free_starts(*, day: dt.date, hours: list[TimeRange], closures: list[TimeRange | None],
                taken: Mapping[dt.datetime, int], capacity: int, minutes: int, step: int,
                tz: dt.tzinfo, earliest: dt.datetime) -> list[Free]:
    """Every start on `day` (shop time) from which the whole service fits inside one opening
    range, touches no closure (None: closed all day), begins no earlier than `earliest`, and
    has a place left in each unit it covers; in time order."""
    if any(c is None for c in closures):
        return []
    closed = [c for c in closures if c is not None]
    found: list[Free] = []
    for opens, closes in hours:
        first = -(-minute_of(opens) // step) * step
        last = minute_of(closes, end=True) - minutes
        for minute in range(first, last + 1, step):
            if _overlaps(minute, minute + minutes, closed):
                continue
            start = local_start(day, minute, tz)
            if start < earliest:
                continue
            left = min(capacity - taken.get(unit, 0) for unit in units(start, minutes, step))
            if left > 0:
                found.append(Free(start, left))
    return found


def nearest(free: Iterable[Free], wanted: dt.datetime, count: int = 3) -> list[Free]:
    """The free starts closest to the one that was wanted, in time order."""
    closest = sorted(free, key=lambda f: (abs(f.start - wanted), f.start))[:count]
    return sorted(closest, key=lambda f: f.start)


def seat_numbers(taken: Mapping[dt.datetime, set[int]], wanted: list[dt.datetime],
                 capacity: int) -> dict[dt.datetime, int] | None:
    """The lowest free seat number in each unit, or None when one of them is full. The database's
    unique key on (resource, unit, seat) is what decides a race; this only picks the numbers."""
    chosen = {}
    for unit in wanted:
        free = next((n for n in range(1, capacity + 1) if n not in taken.get(unit, ())), None)
        if free is None:
            return None
        chosen[unit] = free
    return chosen
