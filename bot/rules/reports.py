"""Periods of the owner's reports and their change against the period before (环比)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from fractions import Fraction
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


def rate(part: int, whole: int) -> float | None:
    """part / whole (0.25 = 25 %); None when whole is 0."""
    return part / whole if whole else None


@dataclass(frozen=True)
class PointValue:
    """What one point is worth to the member, in fen (a fraction), and what says so."""

    fen: Fraction
    basis: str  # "exchange": the best coupon 兑换; "earning": the points a yuan earns


def point_value(exchanges: list[tuple[int, int]], per_yuan: Fraction) -> PointValue:
    """A point's worth for the points liability. Points are spent only at 兑换, for coupons:
    the most a point takes off there (amount off in fen / points it costs, over the coupons
    with a fixed amount off) is what the shop owes for it at worst. With no such coupon, the
    earning rate stands in: a point is worth the spend that earned it (1 / per_yuan yuan)."""
    rates = [Fraction(fen, cost) for fen, cost in exchanges if cost > 0 and fen > 0]
    if rates:
        return PointValue(max(rates), "exchange")
    return PointValue(Fraction(100) / per_yuan if per_yuan else Fraction(0), "earning")


def points_fen(points: int, fen_per_point: Fraction) -> int:
    """Points in whole fen, rounded half up."""
    value = points * fen_per_point
    return (2 * value.numerator + value.denominator) // (2 * value.denominator)


def in_tier_order(tiers: list[str], counts: dict[str, int]) -> list[tuple[str, int]]:
    """Members per tier: the configured tiers in order (none left out, even at 0), then any
    other name members still carry (a tier removed from the config), by name."""
    return ([(name, counts.get(name, 0)) for name in tiers]
            + sorted((name, n) for name, n in counts.items() if name not in tiers and n))


def closed_windows(today: dt.date) -> list[tuple[dt.date, dt.date]]:
    """The windows of closed days (first, last) whose distinct members the home page needs on
    `today`: each period's days before today, and each period before (SPANS)."""
    yesterday = today - dt.timedelta(days=1)
    out = []
    for days in SPANS:
        period = ending(today, days)
        if days > 1:
            out.append((period.first, yesterday))
        before = period.before()
        out.append((before.first, before.last))
    return out
