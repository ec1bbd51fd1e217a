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
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from bot.config import TimeRange

DAY_MINUTES = 24 * 60


class Free(NamedTuple):  # a tuple: thousands are made per free-days call
    start: dt.datetime  # UTC
    places: int  # left at the tightest unit the service covers


def minute_of(t: dt.time, *, end: bool = False) -> int:
    """Minutes since midnight; time.max (config's "24:00") is the day's end."""
    if end and t == dt.time.max:
        return DAY_MINUTES
    return t.hour * 60 + t.minute


def _span(minutes: int, step: int) -> int:
    return max(1, -(-minutes // step))


def units(start: dt.datetime, minutes: int, step: int) -> list[dt.datetime]:
    """The unit starts a booking of `minutes` from `start` covers."""
    return [start + dt.timedelta(minutes=k * step) for k in range(_span(minutes, step))]


def local_start(day: dt.date, minute: int, tz: dt.tzinfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tz).astimezone(dt.UTC)


def _overlaps(a: int, b: int, ranges: Iterable[TimeRange]) -> bool:
    return any(a < minute_of(end, end=True) and minute_of(begin) < b for begin, end in ranges)


def free_starts(**day) -> list[Free]:
    """Every start on `day` (shop time) from which the whole service fits inside one opening
    range, touches no closure (None: closed all day), begins no earlier than `earliest`, and
    has a place left in each unit it covers; in time order (iter_free_starts has the
    arguments)."""
    return list(iter_free_starts(**day))


def iter_free_starts(*, day: dt.date, hours: list[TimeRange], closures: list[TimeRange | None],
                     taken: Mapping[dt.datetime, int], capacity: int, minutes: int, step: int,
                     tz: dt.tzinfo, earliest: dt.datetime) -> Iterator[Free]:
    """free_starts one at a time: whether a day has any free start stops at the first."""
    if any(c is None for c in closures):
        return
    closed = [c for c in closures if c is not None]
    span = _span(minutes, step)
    midnight = local_start(day, 0, tz)
    # On a day without a clock change, wall minute m is midnight + m: one datetime per grid
    # unit instead of one per unit a start covers (the free-time bench's hot loop).
    steady = local_start(day + dt.timedelta(days=1), 0, tz) - midnight == dt.timedelta(days=1)
    for opens, closes in hours:
        first = -(-minute_of(opens) // step) * step
        last = minute_of(closes, end=True) - minutes
        if last < first:
            continue
        if steady:
            grid = [midnight + dt.timedelta(minutes=m)
                    for m in range(first, last + span * step, step)]
            left = [capacity - taken.get(unit, 0) for unit in grid]
        for i, minute in enumerate(range(first, last + 1, step)):
            if closed and _overlaps(minute, minute + minutes, closed):
                continue
            start = grid[i] if steady else local_start(day, minute, tz)
            if start < earliest:
                continue
            places = min(left[i:i + span]) if steady else \
                min(capacity - taken.get(unit, 0) for unit in units(start, minutes, step))
            if places > 0:
                yield Free(start, places)


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
