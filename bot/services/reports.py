"""The figures of the console's home page, scoped to a store (a manager's) or the whole shop.

Closed days are read from the daily rollups (bot/services/rollups.py, kept by a nightly job);
today, and any day the job has not rolled up yet, from the rows themselves, through the same
statements the job runs. So a page view reads the rollups of the last 60 days, a day of rows,
and the member table's current totals, whatever the size of the ledgers.

What counts: new members by registration (their home store); sales and paying members by the
store of the purchase, voided ones left out; active members earned or spent points (purchases,
签到, exchanges) and, with points issued, redeemed and expired, count by the member's home
store; bookings (not cancelled or moved) and no-shows by their start and store; ratings by
when they were given and the store rated; coupons issued and redeemed by when, and by the
member's home store; tier moves (up or down the configured order) by when, and by the
member's home store.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import Config
from bot.infra import sql
from bot.models import BookingStatus, CouponStatus, CouponTemplate, MemberSet, PointsKind
from bot.models.rollups import PeriodCount, RollupDay
from bot.rules import reports
from bot.rules.coupons import CouponKind
from bot.rules.reports import Period

COUNTED_BOOKINGS = (BookingStatus.ACTIVE, BookingStatus.ARRIVED, BookingStatus.NO_SHOW)


class Params:
    """$1, $2, … in the order they are written into the statement."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"

    def date(self, value: dt.date) -> str:
        """A date as a value of its own (a SELECT's column): PostgreSQL must be told its
        type; SQLite keeps dates as ISO text."""
        if sql.dialect() == "postgres":
            return f"CAST({self(value)} AS DATE)"
        return self(value.isoformat())


def in_range(column: str, start: dt.datetime, end: dt.datetime, p: Params) -> str:
    return f"{column} >= {p(start)} AND {column} < {p(end)}"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _rank(column: str, tiers: list[str]) -> str:
    """A tier's place in the configured order (unknown names rank lowest, as rules/tiers)."""
    whens = " ".join(f"WHEN {_quoted(name)} THEN {n}" for n, name in enumerate(tiers))
    return f"(CASE {column} {whens} ELSE 0 END)"


@dataclass(frozen=True)
class Source:
    """A table the summed figures come from: the column that places a row in a day, the one
    that places it in a store, and each figure's value for one row (summed)."""

    table: str
    time: str
    store: str
    measures: tuple[tuple[str, str], ...]
    where: str = ""


def sources(tiers: list[str]) -> tuple[Source, ...]:
    counted = ", ".join(f"'{status}'" for status in COUNTED_BOOKINGS)
    up = f"{_rank('t.to_tier', tiers)} > {_rank('t.from_tier', tiers)}"
    down = f"{_rank('t.to_tier', tiers)} < {_rank('t.from_tier', tiers)}"
    return (
        Source("member", "registered_at", "store_id", (("new_members", "1"),)),
        Source("purchase", "created_at", "store_id", (("sales", "amount"),),
               where="voided_at IS NULL"),
        Source("points_entry e JOIN member m ON m.id = e.member_id", "e.created_at",
               "m.store_id", (
                   ("points_issued", f"CASE WHEN e.kind = '{PointsKind.EARN}' "
                                     "THEN e.delta ELSE 0 END"),
                   ("points_redeemed", f"CASE WHEN e.kind = '{PointsKind.REDEEM}' "
                                       "THEN -e.delta ELSE 0 END"),
                   ("points_expired", f"CASE WHEN e.kind = '{PointsKind.EXPIRE}' "
                                      "THEN -e.delta ELSE 0 END"),
               ), where=f"e.kind IN ('{PointsKind.EARN}', '{PointsKind.REDEEM}', "
                        f"'{PointsKind.EXPIRE}')"),
        Source("booking", "starts_at", "store_id", (
            ("bookings", "1"),
            ("no_shows", f"CASE WHEN status = '{BookingStatus.NO_SHOW}' THEN 1 ELSE 0 END"),
        ), where=f"status IN ({counted})"),
        Source("rating", "created_at", "store_id", (("ratings", "1"), ("stars", "stars"))),
        Source("coupon c JOIN member m ON m.id = c.member_id", "c.issued_at", "m.store_id",
               (("coupons_issued", "1"),)),
        Source("coupon c JOIN member m ON m.id = c.member_id", "c.redeemed_at", "m.store_id",
               (("coupons_redeemed", "1"),), where=f"c.status = '{CouponStatus.REDEEMED}'"),
        Source("tier_change t JOIN member m ON m.id = t.member_id", "t.created_at",
               "m.store_id", (("tier_ups", f"CASE WHEN {up} THEN 1 ELSE 0 END"),
                              ("tier_downs", f"CASE WHEN {down} THEN 1 ELSE 0 END"))),
    )


SUMMED = ("new_members", "sales", "points_issued", "points_redeemed", "points_expired",
          "bookings", "no_shows", "ratings", "stars", "coupons_issued", "coupons_redeemed",
          "tier_ups", "tier_downs")


@dataclass(frozen=True)
class MemberSource:
    """A day's set of members (active, paying): who, placed in a day and a store."""

    kind: MemberSet
    table: str
    time: str
    store: str
    member: str
    where: str


MEMBER_SOURCES = (
    MemberSource(MemberSet.ACTIVE, "points_entry e JOIN member m ON m.id = e.member_id",
                 "e.created_at", "m.store_id", "e.member_id",
                 f"e.kind IN ('{PointsKind.EARN}', '{PointsKind.REDEEM}')"),
    MemberSource(MemberSet.PAYING, "purchase", "created_at", "store_id", "member_id",
                 "voided_at IS NULL"),
)


def day_case(column: str, edges: list[dt.datetime], p: Params,
             value: Callable[[int], str] = str) -> str:
    """Which day of `edges` a row's time falls in, as value(n) for the n-th day (the row is
    within them; value may write parameters: each is written after its day's edge)."""
    whens = " ".join(f"WHEN {column} < {p(edge)} THEN {value(n)}"
                     for n, edge in enumerate(edges[1:]))
    return f"CASE {whens} END"


async def summed_by_day(source: Source, edges: list[dt.datetime], store_id: int | None
                        ) -> list[dict[str, int]]:
    """A source's figures for each day between the edges and each store (store_key 0: none):
    rows of {"day": n (the day's index), "store_key", figure: value}. One statement."""
    p = Params()
    day = day_case(source.time, edges, p)
    sums = ", ".join(f"SUM({value}) AS {name}" for name, value in source.measures)
    clauses = [in_range(source.time, edges[0], edges[-1], p)]
    if source.where:
        clauses.append(source.where)
    if store_id is not None:
        clauses.append(f"{source.store} = {p(store_id)}")
    rows = await sql.fetch(f"SELECT {day} AS day, COALESCE({source.store}, 0) AS store_key, "
                           f"{sums} FROM {source.table} WHERE {' AND '.join(clauses)} "
                           "GROUP BY 1, 2", *p.values)
    return [{key: int(value or 0) for key, value in row.items()} for row in rows]


@dataclass
class Days:
    """The summed figures of each day of a span, whichever way each day was read."""

    first: dt.date
    values: list[Counter] = field(default_factory=list)

    def total(self, period: Period) -> Counter:
        out: Counter = Counter()
        start = (period.first - self.first).days
        for day in self.values[start:start + period.days]:
            out.update(day)
        return out

    def series(self, name: str, period: Period) -> list[int]:
        start = (period.first - self.first).days
        return [day[name] for day in self.values[start:start + period.days]]


async def rolled_days(first: dt.date, last: dt.date) -> set[dt.date]:
    return {sql.as_date(day) for day in await RollupDay.filter(
        day__gte=first, day__lte=last).values_list("day", flat=True)}


async def _live_from(first: dt.date, today: dt.date) -> dt.date:
    """The first day from `first` on that is read from rows: today, unless a closed day is
    not rolled up yet (before the night's job ran, or a fresh install)."""
    rolled = await rolled_days(first, today)
    day = first
    while day in rolled and day < today:
        day += dt.timedelta(days=1)
    return day


async def days(first: dt.date, today: dt.date, tz: ZoneInfo, store_id: int | None,
               tiers: list[str], live_from: dt.date | None = None) -> Days:
    """Every summed figure of each day from `first` to today."""
    if live_from is None:
        live_from = await _live_from(first, today)
    count = (today - first).days + 1
    out = Days(first, [Counter() for _ in range(count)])
    if live_from > first:
        p = Params()
        clauses = [f"day >= {p(first)}", f"day < {p(live_from)}"]
        if store_id is not None:
            clauses.append(f"store_key = {p(store_id)}")
        sums = ", ".join(f"SUM({name}) AS {name}" for name in SUMMED)
        for row in await sql.fetch(f"SELECT day, {sums} FROM daily_figures "
                                   f"WHERE {' AND '.join(clauses)} GROUP BY day", *p.values):
            out.values[(sql.as_date(row["day"]) - first).days].update(
                {name: int(row[name] or 0) for name in SUMMED})
    live = (today - live_from).days + 1
    edges = reports.day_edges(live_from, live, tz)
    offset = (live_from - first).days
    for source in sources(tiers):
        for row in await summed_by_day(source, edges, store_id):
            out.values[offset + row.pop("day")].update(
                {k: v for k, v in row.items() if k != "store_key"})
    return out


WHOLE_SHOP = -1  # PeriodCount's store_key for counts over every store


async def distinct_members(periods: list[Period], live_from: dt.date, today: dt.date,
                           tz: ZoneInfo, store_id: int | None) -> dict[MemberSet, list[int]]:
    """Active and paying members in each period, each counted once however many days.

    When every closed day is rolled up and the night's job counted its windows (PeriodCount),
    a period's members are those counts, plus today's members who were not already in the
    period's closed days (today's rows, each looked up in the day sets by its index). Else
    the day sets of the rolled-up days and the rows of the days after, counted together."""
    if live_from == today:
        counted = await _counted(periods, today, tz, store_id)
        if counted is not None:
            return counted
    first = min(period.first for period in periods)
    out = {}
    for source in MEMBER_SOURCES:
        p = Params()
        flags = ", ".join(f"CASE WHEN day >= {p(period.first)} AND day <= {p(period.last)} "
                          f"THEN 1 ELSE 0 END AS p{i}" for i, period in enumerate(periods))
        rolled = [f"kind = {p(str(source.kind))}", f"day >= {p(first)}",
                  f"day < {p(live_from)}"]
        if store_id is not None:
            rolled.append(f"store_key = {p(store_id)}")
        bounds = [period.bounds(tz) for period in periods]
        live_flags = ", ".join(f"CASE WHEN {in_range(source.time, *b, p)} THEN 1 ELSE 0 END "
                               f"AS p{i}" for i, b in enumerate(bounds))
        live = [in_range(source.time, reports.day_edges(live_from, 1, tz)[0],
                         max(b[1] for b in bounds), p), source.where]
        if store_id is not None:
            live.append(f"{source.store} = {p(store_id)}")
        counts = ", ".join(f"COUNT(DISTINCT CASE WHEN p{i} = 1 THEN member_id END) AS c{i}"
                           for i in range(len(periods)))
        (row,) = await sql.fetch(
            f"SELECT {counts} FROM (SELECT member_id, {flags} FROM daily_member "
            f"WHERE {' AND '.join(rolled)} UNION ALL "
            f"SELECT {source.member} AS member_id, {live_flags} FROM {source.table} "
            f"WHERE {' AND '.join(live)}) x", *p.values)
        out[source.kind] = [int(row[f"c{i}"] or 0) for i in range(len(periods))]
    return out


async def _counted(periods: list[Period], today: dt.date, tz: ZoneInfo, store_id: int | None
                   ) -> dict[MemberSet, list[int]] | None:
    """The distinct counts from the night's PeriodCount rows and today's rows; None when a
    window the periods need was not counted for today."""
    yesterday = today - dt.timedelta(days=1)
    closed = [(period.first, min(period.last, yesterday)) if period.first <= yesterday
              else None for period in periods]
    rows = await PeriodCount.filter(
        as_of=today, store_key=WHOLE_SHOP if store_id is None else store_id).values_list(
        "kind", "first_day", "last_day", "members")
    known = {(kind, sql.as_date(a), sql.as_date(b)): n for kind, a, b, n in rows}
    if any(window and (str(kind), *window) not in known
           for kind in MemberSet for window in closed):
        return None
    out = {}
    for source in MEMBER_SOURCES:
        # Today's members of the kind, and of them those already in each period's closed days.
        p = Params()
        seen = []
        overlaps = [i for i, (period, window) in enumerate(zip(periods, closed, strict=True))
                    if period.last >= today and window]
        for i in overlaps:
            window = closed[i]
            clauses = [f"d.kind = {p(str(source.kind))}", "d.member_id = x.member_id",
                       f"d.day >= {p(window[0])}", f"d.day <= {p(window[1])}"]
            if store_id is not None:
                clauses.append(f"d.store_key = {p(store_id)}")
            seen.append(f"COUNT(DISTINCT CASE WHEN EXISTS (SELECT 1 FROM daily_member d "
                        f"WHERE {' AND '.join(clauses)}) THEN x.member_id END) AS s{i}")
        live = [in_range(source.time, *reports.day_edges(today, 1, tz), p), source.where]
        if store_id is not None:
            live.append(f"{source.store} = {p(store_id)}")
        (row,) = await sql.fetch(
            f"SELECT {', '.join(['COUNT(DISTINCT x.member_id) AS today', *seen])} FROM "
            f"(SELECT {source.member} AS member_id FROM {source.table} "
            f"WHERE {' AND '.join(live)}) x", *p.values)
        counts = []
        for i, (period, window) in enumerate(zip(periods, closed, strict=True)):
            before = known[(str(source.kind), *window)] if window else 0
            if period.last < today:
                counts.append(before)
            else:
                already = int(row[f"s{i}"] or 0) if window else 0
                counts.append(before + int(row["today"] or 0) - already)
        out[source.kind] = counts
    return out


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
    coupons_issued: int = 0
    coupons_redeemed: int = 0
    tier_ups: int = 0
    tier_downs: int = 0

    @property
    def average_spend(self) -> int | None:
        """客单价: sales per paying member, in fen."""
        return reports.per(self.sales, self.paying_members)

    @property
    def average_rating(self) -> float | None:
        return round(self.stars / self.ratings, 2) if self.ratings else None

    @property
    def coupon_rate(self) -> float | None:
        """Coupons redeemed in the period against coupons issued in it (the same period's
        flows: it can pass 100 % when older coupons are redeemed)."""
        return reports.rate(self.coupons_redeemed, self.coupons_issued)

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


async def figures(periods: list[Period], today: dt.date, tz: ZoneInfo, store_id: int | None,
                  tiers: list[str]) -> tuple[list[Figures], Days]:
    """Each period's figures (in the order given; none may end after today), and the
    summed figures of each day they cover."""
    first = min(period.first for period in periods)
    live_from = await _live_from(first, today)
    by_day = await days(first, today, tz, store_id, tiers, live_from)
    distinct = await distinct_members(periods, live_from, today, tz, store_id)
    out = []
    for i, period in enumerate(periods):
        total = by_day.total(period)
        out.append(Figures(**{name: total[name] for name in SUMMED},
                           active_members=distinct[MemberSet.ACTIVE][i],
                           paying_members=distinct[MemberSet.PAYING][i]))
    return out, by_day


@dataclass(frozen=True)
class Home:
    compared: list[Compared]
    days: Days  # the summed figures of every day the periods cover (for the charts)


async def home(today: dt.date, tz: ZoneInfo, store_id: int | None, tiers: list[str]) -> Home:
    """Today, 7 and 30 days, each against the period before."""
    periods = [reports.ending(today, days) for days in reports.SPANS]
    both, by_day = await figures(periods + [period.before() for period in periods], today,
                                 tz, store_id, tiers)
    k = len(periods)
    return Home([Compared(period, both[i], both[k + i]) for i, period in enumerate(periods)],
                by_day)


@dataclass(frozen=True)
class Daily:
    dates: list[dt.date]
    new_members: list[int]
    sales: list[int]  # fen
    tier_ups: list[int]
    tier_downs: list[int]


def daily_of(by_day: Days, period: Period) -> Daily:
    return Daily(period.dates(), *(by_day.series(name, period) for name in (
        "new_members", "sales", "tier_ups", "tier_downs")))


async def daily(period: Period, today: dt.date, tz: ZoneInfo, store_id: int | None,
                tiers: list[str]) -> Daily:
    """New members, sales and tier moves for each day of a period ending today (the charts)."""
    return daily_of(await days(period.first, today, tz, store_id, tiers), period)


# --- what stands now: the members' tiers, and what the shop owes them ---

@dataclass(frozen=True)
class Standing:
    tiers: list[tuple[str, int]]  # members per tier, in the configured order, then others
    points: int  # the points members hold
    stored_value: int  # fen the shop owes on stored-value cards
    point_value: reports.PointValue

    @property
    def points_liability(self) -> int:
        """The points members hold, in fen at what a point is worth."""
        return reports.points_fen(self.points, self.point_value.fen)


async def point_value(config: Config) -> reports.PointValue:
    """What a point is worth: the most a point takes off at 兑换 among the active coupons
    with a fixed amount off, else the earning rate (rules/reports.point_value)."""
    exchanges = await CouponTemplate.filter(
        active=True, points_cost__gt=0,
        kind__in=[CouponKind.AMOUNT_OFF, CouponKind.THRESHOLD]).values_list(
        "amount_off", "points_cost")
    return reports.point_value(exchanges, Fraction(str(config.points.per_yuan)))


async def standing(config: Config, store_id: int | None) -> Standing:
    """Members per tier (erased members left out), their points and stored value: one pass
    over the member table (their current balances, not the ledgers)."""
    p = Params()
    where = f"WHERE store_id = {p(store_id)} " if store_id is not None else ""
    rows = await sql.fetch(
        "SELECT tier, COUNT(CASE WHEN erased_at IS NULL THEN 1 END) AS members, "
        "COALESCE(SUM(points), 0) AS points, COALESCE(SUM(stored_value), 0) AS stored "
        f"FROM member {where}GROUP BY tier", *p.values)
    counts = {row["tier"]: int(row["members"]) for row in rows}
    return Standing(
        tiers=reports.in_tier_order([t.name for t in config.tiers], counts),
        points=sum(int(row["points"]) for row in rows),
        stored_value=sum(int(row["stored"]) for row in rows),
        point_value=await point_value(config))


def tier_names(config: Config) -> list[str]:
    return [tier.name for tier in config.tiers]
