"""The figures of the console's home page, scoped to a store (a manager's) or the whole shop.

One query a table for all the periods at once (conditional aggregates), and one a series for
the daily chart (a CASE over the day edges): the page costs the same few queries whether it
shows a day or thirty, on SQLite and PostgreSQL alike.

What counts: new members by registration (their home store); sales and paying members by the
store of the purchase, voided ones left out; active members earned or spent points (purchases,
签到, exchanges) and, with points issued, redeemed and expired, count by the member's home
store; bookings (not cancelled or moved) and no-shows by their start and store; ratings by
when they were given and the store rated.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from bot.infra import sql
from bot.models import BookingStatus, PointsKind
from bot.rules import reports
from bot.rules.reports import Period

COUNTED_BOOKINGS = (BookingStatus.ACTIVE, BookingStatus.ARRIVED, BookingStatus.NO_SHOW)


class _Params:
    """$1, $2, … in the order they are written into the statement."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _in(column: str, start: dt.datetime, end: dt.datetime, p: _Params) -> str:
    return f"{column} >= {p(start)} AND {column} < {p(end)}"


@dataclass(frozen=True)
class Figures:
    new_members: int = 0
    active_members: int = 0
    sales: int = 0  # fen
    paying_members: int = 0
    points_issued: int = 0
    points_redeemed: int = 0
    points_expired: int = 0
    bookings: int = 0
    no_shows: int = 0
    ratings: int = 0
    stars: int = 0  # their sum

    @property
    def average_spend(self) -> int | None:
        """客单价: sales per paying member, in fen."""
        return reports.per(self.sales, self.paying_members)

    @property
    def average_rating(self) -> float | None:
        return round(self.stars / self.ratings, 2) if self.ratings else None

    def value(self, name: str) -> float | None:
        return getattr(self, name)


@dataclass(frozen=True)
class Compared:
    """One period's figures and the period before's."""

    period: Period
    current: Figures
    previous: Figures

    def change(self, name: str) -> float | None:
        return reports.change(self.current.value(name), self.previous.value(name))


async def _ranged(select: str, table: str, column: str, ranges, p: _Params, store_id,
                  *, where: str = "", store_column: str = "store_id") -> dict[str, Any]:
    """Run `select` (whose per-range columns already took their parameters from p) over the
    rows of every range, in the store if one is given."""
    low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    clauses = [_in(column, low, high, p)]
    if where:
        clauses.append(where)
    if store_id is not None:
        clauses.append(f"{store_column} = {p(store_id)}")
    rows = await sql.fetch(f"SELECT {select} FROM {table} WHERE {' AND '.join(clauses)}",
                           *p.values)
    return rows[0]


async def figures(periods: list[Period], tz: ZoneInfo, store_id: int | None
                  ) -> list[Figures]:
    """Each period's figures (in the order given)."""
    ranges = [period.bounds(tz) for period in periods]
    n = len(ranges)
    out: list[dict[str, int]] = [{} for _ in ranges]

    p = _Params()
    cols = ", ".join(f"COUNT(CASE WHEN {_in('registered_at', *r, p)} THEN 1 END) AS n{i}"
                     for i, r in enumerate(ranges))
    row = await _ranged(cols, "member", "registered_at", ranges, p, store_id)
    for i in range(n):
        out[i]["new_members"] = int(row[f"n{i}"] or 0)

    p = _Params()
    cols = ", ".join(
        f"COALESCE(SUM(CASE WHEN {_in('created_at', *r, p)} THEN amount ELSE 0 END), 0) "
        f"AS s{i}, COUNT(DISTINCT CASE WHEN {_in('created_at', *r, p)} THEN member_id END) "
        f"AS m{i}" for i, r in enumerate(ranges))
    row = await _ranged(cols, "purchase", "created_at", ranges, p, store_id,
                       where="voided_at IS NULL")
    for i in range(n):
        out[i]["sales"] = int(row[f"s{i}"] or 0)
        out[i]["paying_members"] = int(row[f"m{i}"] or 0)

    p = _Params()
    parts = []
    for i, r in enumerate(ranges):
        parts.append(
            f"COALESCE(SUM(CASE WHEN e.kind = '{PointsKind.EARN}' AND "
            f"{_in('e.created_at', *r, p)} THEN e.delta ELSE 0 END), 0) AS i{i}, "
            f"COALESCE(SUM(CASE WHEN e.kind = '{PointsKind.REDEEM}' AND "
            f"{_in('e.created_at', *r, p)} THEN -e.delta ELSE 0 END), 0) AS r{i}, "
            f"COALESCE(SUM(CASE WHEN e.kind = '{PointsKind.EXPIRE}' AND "
            f"{_in('e.created_at', *r, p)} THEN -e.delta ELSE 0 END), 0) AS x{i}, "
            f"COUNT(DISTINCT CASE WHEN e.kind IN ('{PointsKind.EARN}', '{PointsKind.REDEEM}') "
            f"AND {_in('e.created_at', *r, p)} THEN e.member_id END) AS a{i}")
    row = await _ranged(", ".join(parts), "points_entry e JOIN member m ON m.id = e.member_id",
                       "e.created_at", ranges, p, store_id, store_column="m.store_id")
    for i in range(n):
        out[i].update(points_issued=int(row[f"i{i}"] or 0),
                      points_redeemed=int(row[f"r{i}"] or 0),
                      points_expired=int(row[f"x{i}"] or 0),
                      active_members=int(row[f"a{i}"] or 0))

    p = _Params()
    counted = ", ".join(f"'{status}'" for status in COUNTED_BOOKINGS)
    cols = ", ".join(
        f"COUNT(CASE WHEN {_in('starts_at', *r, p)} THEN 1 END) AS b{i}, "
        f"COUNT(CASE WHEN status = '{BookingStatus.NO_SHOW}' AND "
        f"{_in('starts_at', *r, p)} THEN 1 END) AS ns{i}" for i, r in enumerate(ranges))
    row = await _ranged(cols, "booking", "starts_at", ranges, p, store_id,
                       where=f"status IN ({counted})")
    for i in range(n):
        out[i].update(bookings=int(row[f"b{i}"] or 0), no_shows=int(row[f"ns{i}"] or 0))

    p = _Params()
    cols = ", ".join(
        f"COUNT(CASE WHEN {_in('created_at', *r, p)} THEN 1 END) AS c{i}, "
        f"COALESCE(SUM(CASE WHEN {_in('created_at', *r, p)} THEN stars ELSE 0 END), 0) "
        f"AS t{i}" for i, r in enumerate(ranges))
    row = await _ranged(cols, "rating", "created_at", ranges, p, store_id)
    for i in range(n):
        out[i].update(ratings=int(row[f"c{i}"] or 0), stars=int(row[f"t{i}"] or 0))
    return [Figures(**values) for values in out]


async def home(today: dt.date, tz: ZoneInfo, store_id: int | None) -> list[Compared]:
    """Today, 7 and 30 days, each against the period before."""
    periods = [reports.ending(today, days) for days in reports.SPANS]
    both = await figures(periods + [period.before() for period in periods], tz, store_id)
    k = len(periods)
    return [Compared(period, both[i], both[k + i]) for i, period in enumerate(periods)]


@dataclass(frozen=True)
class Daily:
    dates: list[dt.date]
    new_members: list[int]
    sales: list[int]  # fen


def _day_case(column: str, edges: list[dt.datetime], p: _Params) -> str:
    whens = " ".join(f"WHEN {column} < {p(edge)} THEN {n}" for n, edge in enumerate(edges[1:]))
    return f"CASE {whens} END"


async def daily(period: Period, tz: ZoneInfo, store_id: int | None) -> Daily:
    """New members and sales for each day of a period (the chart)."""
    edges = reports.day_edges(period.first, period.days, tz)
    series = {}
    for name, table, column, value, where in (
            ("new_members", "member", "registered_at", "COUNT(*)", ""),
            ("sales", "purchase", "created_at", "COALESCE(SUM(amount), 0)",
             "voided_at IS NULL")):
        p = _Params()
        day = _day_case(column, edges, p)
        clauses = [_in(column, edges[0], edges[-1], p)]
        if where:
            clauses.append(where)
        if store_id is not None:
            clauses.append(f"store_id = {p(store_id)}")
        rows = await sql.fetch(f"SELECT {day} AS day, {value} AS v FROM {table} "
                               f"WHERE {' AND '.join(clauses)} GROUP BY 1", *p.values)
        values = [0] * period.days
        for row in rows:
            if row["day"] is not None:
                values[int(row["day"])] = int(row["v"] or 0)
        series[name] = values
    return Daily(period.dates(), series["new_members"], series["sales"])
