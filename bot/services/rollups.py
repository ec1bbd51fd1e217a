"""The daily rollups behind the console's figures, written by a nightly job.

For each closed local day and store: the summed figures (new members, sales, points issued /
redeemed / expired, bookings, no-shows, ratings, coupons issued / redeemed, tier moves) in one
DailyFigures row, computed by the very statements the home page runs over today's rows
(bot/services/reports.py), so the two cannot count differently.

Active and paying members over a period are distinct counts: a member active on three days of
the week is one active member of the week, so a week's count is not the sum of its days'. We
keep each day's set of members (DailyMember: kind, day, store, member; one row per member, day
and kind, however many ledger rows they made that day), which answers any period and scope
exactly (a store's, or the whole shop's, where a member active in two stores counts once).
Counting distinct members over 60 days of sets is still a pass over most active members, so
the night's run also counts the windows of closed days the page needs that day
(rules/reports.closed_windows, PeriodCount, per store and for the whole shop); the page adds
today's members who are not in the window already (each of today's members looked up in the
sets by the (kind, member_id, day) index): |closed ∪ today| = |closed| + |today| - |both|.
Without that day's counts (before the night's run, or after a day was rolled up again), the
page counts the sets and today's rows together instead: slower, never wrong. Storing only
per-period counts would have been smaller, but right only for the periods chosen in advance
and only until the window moves at midnight; storing only sets, exact but slow for the owner.

A run replaces each day it rolls up (delete and insert, one transaction a batch of days), so
running it again, or for a day already done, is harmless. Each run rolls up every day from the
first row in the database to yesterday that has no rollup yet (the first run back-fills, in
batches of BATCH_DAYS days), and redoes the last REFRESH_DAYS days, which rows can still change:
a purchase voided within [points] void_days, a booking marked no-show the day after. A change
to an older day (rare: a correction long after) shows once that day is rolled up again
(`memberbot jobs run daily_figures` redoes the recent days; `refresh(bot, first, last)` any).
Until a day is rolled up the page reads its rows, so a missing rollup is slower, never wrong.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from bot.infra import sql
from bot.models import DailyFigures, DailyMember, MemberSet, PeriodCount, RollupDay, Store
from bot.rules import reports as report_rules
from bot.services import reports
from bot.services.reports import MEMBER_SOURCES, SUMMED, WHOLE_SHOP, Params

BATCH_DAYS = 31
REFRESH_DAYS = 8  # [points] void_days (7) and a day


async def first_day(tz: ZoneInfo) -> dt.date | None:
    """The local day of the earliest row any figure counts, None in an empty shop."""
    earliest = None
    for table, column in (("member", "registered_at"), ("purchase", "created_at"),
                          ("points_entry", "created_at"), ("booking", "starts_at"),
                          ("rating", "created_at"), ("coupon", "issued_at"),
                          ("tier_change", "created_at")):
        (row,) = await sql.fetch(f"SELECT MIN({column}) AS at FROM {table}")
        at = row["at"]
        if isinstance(at, str):
            at = dt.datetime.fromisoformat(at)
        if at is not None:
            day = at.astimezone(tz).date()
            earliest = day if earliest is None or day < earliest else earliest
    return earliest


def runs(days: list[dt.date], size: int = BATCH_DAYS) -> list[tuple[dt.date, int]]:
    """Consecutive days as (first, count) runs of at most `size` days."""
    out: list[tuple[dt.date, int]] = []
    for day in sorted(set(days)):
        if out and out[-1][0] + dt.timedelta(days=out[-1][1]) == day and out[-1][1] < size:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((day, 1))
    return out


async def roll_up(first: dt.date, count: int, tz: ZoneInfo, tiers: list[str],
                  now: dt.datetime) -> None:
    """Write (or rewrite) the rollups of `count` days from `first`, in one transaction."""
    days = [first + dt.timedelta(days=n) for n in range(count)]
    last = days[-1]
    edges = report_rules.day_edges(first, count, tz)
    rows: dict[tuple[int, int], dict[str, int]] = {}
    for source in reports.sources(tiers):
        for row in await reports.summed_by_day(source, edges, None):
            key = (row.pop("day"), row.pop("store_key"))
            rows.setdefault(key, {}).update(row)
    async with in_transaction():
        await DailyFigures.filter(day__gte=first, day__lte=last).delete()
        await DailyMember.filter(day__gte=first, day__lte=last).delete()
        await RollupDay.filter(day__gte=first, day__lte=last).delete()
        # Counts over windows that hold these days are counted again (count_periods).
        await PeriodCount.filter(as_of__gt=first).delete()
        await DailyFigures.bulk_create(
            [DailyFigures(day=days[n], store_key=store, **{k: values.get(k, 0) for k in SUMMED})
             for (n, store), values in sorted(rows.items())], batch_size=500)
        for source in MEMBER_SOURCES:
            p = Params()
            kind = p(str(source.kind))
            day = reports.day_case(source.time, edges, p, lambda n, p=p: p.date(days[n]))
            clauses = [reports.in_range(source.time, edges[0], edges[-1], p), source.where]
            await sql.execute(
                "INSERT INTO daily_member (kind, day, store_key, member_id) "
                f"SELECT DISTINCT {kind}, {day}, COALESCE({source.store}, 0), {source.member} "
                f"FROM {source.table} WHERE {' AND '.join(clauses)}", *p.values)
        await RollupDay.bulk_create([RollupDay(day=d, rolled_at=now) for d in days])


async def count_periods(today: dt.date) -> int:
    """Distinct members of each kind over the windows of closed days the home page needs on
    `today` (rules/reports.closed_windows), for each store and the whole shop, from the day
    sets: written only when every day of them is rolled up. How many counts were written."""
    windows = report_rules.closed_windows(today)
    first = min(a for a, _ in windows)
    yesterday = today - dt.timedelta(days=1)
    rolled = await reports.rolled_days(first, yesterday)
    if len(rolled) < (yesterday - first).days + 1:
        return 0
    stores = [0, *await Store.all().values_list("id", flat=True)]
    rows = []
    for kind in MemberSet:
        for a, b in windows:
            where = "WHERE kind = $1 AND day >= $2 AND day <= $3"
            counts = dict.fromkeys(stores, 0)
            for row in await sql.fetch("SELECT store_key, COUNT(DISTINCT member_id) AS n "
                                       f"FROM daily_member {where} GROUP BY store_key",
                                       str(kind), a, b):
                counts[int(row["store_key"])] = int(row["n"])
            (whole,) = await sql.fetch("SELECT COUNT(DISTINCT member_id) AS n "
                                       f"FROM daily_member {where}", str(kind), a, b)
            counts[WHOLE_SHOP] = int(whole["n"])
            rows += [PeriodCount(as_of=today, kind=kind, store_key=key, first_day=a, last_day=b,
                                 members=n) for key, n in counts.items()]
    async with in_transaction():
        await PeriodCount.filter(as_of=today).delete()
        await PeriodCount.filter(as_of__lt=yesterday).delete()
        await PeriodCount.bulk_create(rows, batch_size=500)
    return len(rows)


async def refresh(bot, first: dt.date, last: dt.date) -> int:
    """Roll up the days first..last again (a correction to old rows); how many days."""
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    for start, count in runs(days):
        await roll_up(start, count, bot.config.shop.tz, reports.tier_names(bot.config),
                      bot.now())
    await count_periods(bot.today())
    return len(days)


async def nightly(bot, today: dt.date) -> dict[str, Any]:
    """The job: every closed day without a rollup (all of them, the first time), and the last
    REFRESH_DAYS days again."""
    tz = bot.config.shop.tz
    yesterday = today - dt.timedelta(days=1)
    # From the first row, and at least the days the home page reads (empty days too, so
    # that a young shop's page reads rollups and counts like an old one's).
    earliest = min(await first_day(tz) or yesterday,
                   today - dt.timedelta(days=2 * max(report_rules.SPANS)))
    rolled = await reports.rolled_days(earliest, yesterday)
    recent = max(earliest, today - dt.timedelta(days=REFRESH_DAYS))
    wanted = [earliest + dt.timedelta(days=n) for n in range((yesterday - earliest).days + 1)]
    days = [day for day in wanted if day not in rolled or day >= recent]
    tiers = reports.tier_names(bot.config)
    for start, count in runs(days):
        await roll_up(start, count, tz, tiers, bot.now())
    counts = await count_periods(today)
    return {"days": len(days), "back_filled": len([d for d in days if d not in rolled]),
            "counts": counts}
