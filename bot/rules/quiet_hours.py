"""When an SMS may go out: only inside the shop's sending window (08:00–21:00 local by default),
so nobody's phone buzzes with a notice or a promotion at midnight. Pure: callers pass the time."""

from __future__ import annotations

import datetime as dt


def next_allowed(now: dt.datetime, tz: dt.tzinfo, window: tuple[dt.time, dt.time]) -> dt.datetime:
    """`now` if it lies inside the window, else the next instant the window opens (in UTC).
    A window whose start is after its end runs over midnight (22:00–06:00 for a night shop)."""
    start, end = window
    local = now.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    inside = start <= clock < end if start <= end else clock >= start or clock < end
    if inside:
        return now
    day = local.date() if clock < start else local.date() + dt.timedelta(days=1)
    # combine + astimezone copes with a DST jump; the window's start is never skipped twice.
    return dt.datetime.combine(day, start, tz).astimezone(dt.UTC)


def allowed(now: dt.datetime, tz: dt.tzinfo, window: tuple[dt.time, dt.time]) -> bool:
    return next_allowed(now, tz, window) == now
