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


@dataclass(frozen=True)
class _Source:
    """A table the figures come from: the column that places a row in a period, the one that
    places it in a store, and each figure's aggregate ({when}: the row is in the period)."""

    table: str
    time: str
    store: str
    measures: tuple[tuple[str, str], ...]
    where: str = ""


_COUNTED = ", ".join(f"'{status}'" for status in COUNTED_BOOKINGS)
SOURCES = (
    _Source("member", "registered_at", "store_id", (
        ("new_members", "COUNT(CASE WHEN {when} THEN 1 END)"),)),
    _Source("purchase", "created_at", "store_id", (
        ("sales", "SUM(CASE WHEN {when} THEN amount ELSE 0 END)"),
        ("paying_members", "COUNT(DISTINCT CASE WHEN {when} THEN member_id END)"),
    ), where="voided_at IS NULL"),
    _Source("points_entry e JOIN member m ON m.id = e.member_id", "e.created_at", "m.store_id", (
        ("points_issued", f"SUM(CASE WHEN e.kind = '{PointsKind.EARN}' AND {{when}} "
                          "THEN e.delta ELSE 0 END)"),
        ("points_redeemed", f"SUM(CASE WHEN e.kind = '{PointsKind.REDEEM}' AND {{when}} "
                            "THEN -e.delta ELSE 0 END)"),
        ("points_expired", f"SUM(CASE WHEN e.kind = '{PointsKind.EXPIRE}' AND {{when}} "
                           "THEN -e.delta ELSE 0 END)"),
        ("active_members", f"COUNT(DISTINCT CASE WHEN e.kind IN ('{PointsKind.EARN}', "
                           f"'{PointsKind.REDEEM}') AND {{when}} THEN e.member_id END)"),
    )),
    _Source("booking", "starts_at", "store_id", (
        ("bookings", "COUNT(CASE WHEN {when} THEN 1 END)"),
        ("no_shows", f"COUNT(CASE WHEN status = '{BookingStatus.NO_SHOW}' AND {{when}} "
                     "THEN 1 END)"),
    ), where=f"status IN ({_COUNTED})"),
    _Source("rating", "created_at", "store_id", (
        ("ratings", "COUNT(CASE WHEN {when} THEN 1 END)"),
        ("stars", "SUM(CASE WHEN {when} THEN stars ELSE 0 END)"),
    )),
)


async def _measure(source: _Source, ranges: list[tuple[dt.datetime, dt.datetime]],
                   store_id: int | None) -> list[dict[str, int]]:
    """One statement: every figure of a source for every range."""
    p = _Params()
    columns = [f"{aggregate.format(when=_in(source.time, *r, p))} AS {name}_{i}"
               for i, r in enumerate(ranges) for name, aggregate in source.measures]
    clauses = [_in(source.time, min(r[0] for r in ranges), max(r[1] for r in ranges), p)]
    if source.where:
        clauses.append(source.where)
    if store_id is not None:
        clauses.append(f"{source.store} = {p(store_id)}")
    (row,) = await sql.fetch(f"SELECT {', '.join(columns)} FROM {source.table} "
                             f"WHERE {' AND '.join(clauses)}", *p.values)
    return [{name: int(row[f"{name}_{i}"] or 0) for name, _ in source.measures}
            for i in range(len(ranges))]


async def figures(periods: list[Period], tz: ZoneInfo, store_id: int | None
                  ) -> list[Figures]:
    """Each period's figures (in the order given): one statement a source."""
    ranges = [period.bounds(tz) for period in periods]
    out: list[dict[str, int]] = [{} for _ in ranges]
    for source in SOURCES:
        for values, measured in zip(out, await _measure(source, ranges, store_id),
                                    strict=True):
            values.update(measured)
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
