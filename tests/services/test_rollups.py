"""The home page's figures from daily rollups and the day's rows, checked against a plain Python
count of random rows: with nothing rolled up, some days rolled up (gaps anywhere), every closed
day rolled up, for the whole shop and each store; on SQLite and PostgreSQL, in a time zone
whose days are not all 24 hours. And the nightly job: it back-fills, re-running it changes
nothing, it redoes the days rows can still change in."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.jobs.scheduler import JOBS, Scheduler
from bot.models import (
    Booking,
    BookingStatus,
    Coupon,
    CouponStatus,
    CouponTemplate,
    DailyFigures,
    DailyMember,
    Member,
    PeriodCount,
    PointsEntry,
    Purchase,
    Rating,
    Resource,
    RollupDay,
    Service,
    Store,
    TierChange,
)
from bot.rules import reports as rules
from bot.runtime import Bot, open_bot
from bot.services import reports, rollups
from tests.support import Clock, make_config

NEW_YORK = ZoneInfo("America/New_York")  # 2026-03-08 is 23 hours long
TODAY = dt.date(2026, 3, 20)
TIERS = ["普通会员", "银卡会员", "金卡会员"]
STORES = ("S001", "S002", None)
NOW = dt.datetime.combine(TODAY, dt.time(15), NEW_YORK)


@pytest.fixture
async def bot(db_url) -> AsyncIterator[Bot]:
    async with open_bot(make_config(db_url), scheduler=False) as bot:
        yield bot


# --- a random shop, and the Python count of its figures ----------------------------------------

def _instants() -> st.SearchStrategy[dt.datetime]:
    """Local times from 65 days before TODAY to the day after, favouring midnights and the
    last days (a member active today and in the days before is counted once)."""
    minutes = st.one_of(st.sampled_from([0, 1, 23 * 60 + 59]), st.integers(0, 24 * 60 - 1))
    return st.builds(
        lambda back, m: dt.datetime.combine(TODAY - dt.timedelta(days=back),
                                            dt.time(m // 60, m % 60), NEW_YORK),
        st.one_of(st.integers(-1, 8), st.integers(-1, 65)), minutes)


@dataclass(frozen=True)
class Row:
    member: int  # index into the world's members
    at: dt.datetime
    kind: str = ""
    value: int = 0
    store: str | None = None
    flag: bool = False


def _rows(count: int, **fields) -> st.SearchStrategy[list[Row]]:
    return st.lists(st.builds(Row, member=st.integers(0, count - 1), at=_instants(), **fields),
                    max_size=12)


@st.composite
def worlds(draw) -> dict:
    count = draw(st.integers(1, 6))
    return {
        "members": draw(st.lists(st.tuples(st.sampled_from(STORES), _instants()),
                                 min_size=count, max_size=count)),
        "points": draw(_rows(count, kind=st.sampled_from(["earn", "redeem", "expire",
                                                          "adjust"]),
                             value=st.integers(1, 500))),
        "purchases": draw(_rows(count, store=st.sampled_from(STORES),
                                value=st.integers(1, 100000), flag=st.booleans())),
        "bookings": draw(_rows(count, store=st.sampled_from(["S001", "S002"]),
                               kind=st.sampled_from(list(BookingStatus)))),
        "ratings": draw(_rows(count, store=st.sampled_from(STORES), value=st.integers(1, 5))),
        # flag: redeemed, at `at` plus 0..3 days (kind holds the days)
        "coupons": draw(_rows(count, flag=st.booleans(), value=st.integers(0, 3))),
        "tiers": draw(_rows(count, kind=st.sampled_from([*TIERS, "旧等级"]),
                            store=st.sampled_from([*TIERS, "旧等级"]))),
    }


_keys = itertools.count(1)


async def _store(world: dict) -> list[int]:
    for model in (TierChange, Coupon, Rating, Booking, Purchase, PointsEntry, Member,
                  DailyFigures, DailyMember, RollupDay, PeriodCount):
        await model.all().delete()
    stores = dict(await Store.all().values_list("code", "id"))
    ids = []
    for store, at in world["members"]:
        n = next(_keys)
        member = await Member.create(card_no=f"88{n:08d}", phone_hash=f"h{n}", phone_enc="-",
                                     tier=TIERS[0], store_id=stores.get(store), registered_at=at)
        ids.append(member.id)
    await PointsEntry.bulk_create([
        PointsEntry(member_id=ids[r.member], kind=r.kind, reason="t", balance_after=0,
                    delta=r.value if r.kind in ("earn", "adjust") else -r.value,
                    idempotency_key=f"e{next(_keys)}", created_at=r.at)
        for r in world["points"]])
    await Purchase.bulk_create([
        Purchase(member_id=ids[r.member], store_id=stores.get(r.store), amount=r.value,
                 voided_at=r.at if r.flag else None, idempotency_key=f"p{next(_keys)}",
                 created_at=r.at) for r in world["purchases"]])
    service = await Service.get_or_none(code="cut") or await Service.create(
        code="cut", name="剪", minutes=30)
    resource = await Resource.get_or_none(code="chair") or await Resource.create(
        code="chair", name="椅", store_id=stores["S001"])
    await Booking.bulk_create([
        Booking(key=f"b{next(_keys)}", member_id=ids[r.member], service=service,
                resource=resource, store_id=stores[r.store], starts_at=r.at,
                ends_at=r.at + dt.timedelta(minutes=30), status=r.kind)
        for r in world["bookings"]])
    await Rating.bulk_create([
        Rating(visit=f"v{next(_keys)}", key=f"r{next(_keys)}", member_id=ids[r.member],
               store_id=stores.get(r.store), stars=r.value, created_at=r.at)
        for r in world["ratings"]])
    template = await CouponTemplate.get_or_none(code="T") or await CouponTemplate.create(
        code="T", name="券", kind="amount_off")
    await Coupon.bulk_create([
        Coupon(template=template, member_id=ids[r.member], code=f"C{next(_keys)}",
               source="manual", issue_key=f"c{next(_keys)}", valid_from=r.at,
               expires_at=r.at + dt.timedelta(days=30), issued_at=r.at,
               status=CouponStatus.REDEEMED if r.flag else CouponStatus.ISSUED,
               redeemed_at=r.at + dt.timedelta(days=r.value) if r.flag else None)
        for r in world["coupons"]])
    await TierChange.bulk_create([
        TierChange(member_id=ids[r.member], from_tier=r.store, to_tier=r.kind,
                   reason="evaluation", created_at=r.at) for r in world["tiers"]])
    return ids


def _day(at: dt.datetime) -> dt.date:
    return at.astimezone(NEW_YORK).date()


def expected(world: dict, period: rules.Period, scope: str | bool | None) -> dict:
    """The figures of a period, counted row by row. scope: a store code, None for members
    of no store, True for the whole shop."""
    def inside(at: dt.datetime) -> bool:
        return period.first <= _day(at) <= period.last

    def ours(store: str | None) -> bool:
        return scope is True or store == scope

    home = [store for store, _ in world["members"]]
    out: Counter = Counter()
    out["new_members"] = sum(inside(at) and ours(s) for s, at in world["members"])
    active = set()
    for r in world["points"]:
        if inside(r.at) and ours(home[r.member]):
            if r.kind == "earn":
                out["points_issued"] += r.value
            if r.kind == "redeem":
                out["points_redeemed"] += r.value
            if r.kind == "expire":
                out["points_expired"] += r.value
            if r.kind in ("earn", "redeem"):
                active.add(r.member)
    out["active_members"] = len(active)
    paying = set()
    for r in world["purchases"]:
        if inside(r.at) and ours(r.store) and not r.flag:
            out["sales"] += r.value
            paying.add(r.member)
    out["paying_members"] = len(paying)
    for r in world["bookings"]:
        if inside(r.at) and ours(r.store) and r.kind in reports.COUNTED_BOOKINGS:
            out["bookings"] += 1
            out["no_shows"] += r.kind == BookingStatus.NO_SHOW
    for r in world["ratings"]:
        if inside(r.at) and ours(r.store):
            out["ratings"] += 1
            out["stars"] += r.value
    for r in world["coupons"]:
        if ours(home[r.member]):
            out["coupons_issued"] += inside(r.at)
            out["coupons_redeemed"] += r.flag and inside(r.at + dt.timedelta(days=r.value))
    rank = {name: n for n, name in enumerate(TIERS)}
    for r in world["tiers"]:
        if inside(r.at) and ours(home[r.member]):
            out["tier_ups"] += rank.get(r.kind, 0) > rank.get(r.store, 0)
            out["tier_downs"] += rank.get(r.kind, 0) < rank.get(r.store, 0)
    return out


def as_counter(figures: reports.Figures) -> Counter:
    return Counter({k: v for k, v in vars(figures).items() if v})


PERIODS = [rules.ending(TODAY, n) for n in rules.SPANS]
PERIODS += [period.before() for period in PERIODS]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(world=worlds(), data=st.data())
async def test_figures_from_rollups_and_rows_are_the_figures_of_the_rows(any_db, bot, world,
                                                                        data):
    await _store(world)
    stores = dict(await Store.all().values_list("code", "id"))
    first = min(period.first for period in PERIODS)
    closed = [first + dt.timedelta(days=n) for n in range((TODAY - first).days)]
    rolled_some = data.draw(st.lists(st.sampled_from(closed), max_size=20), label="rolled")
    for step, days in (("none", []), ("some", rolled_some), ("all", closed),
                       ("counted", [])):
        for start, count in rollups.runs(days, size=data.draw(st.integers(1, 40), label="b")):
            await rollups.roll_up(start, count, NEW_YORK, TIERS, NOW)
        if step == "counted":  # the night's distinct counts of the page's windows
            assert await rollups.count_periods(TODAY) > 0
        for scope in (True, "S001", "S002"):
            store_id = None if scope is True else stores[scope]
            got, by_day = await reports.figures(PERIODS, TODAY, NEW_YORK, store_id, TIERS)
            for period, figures in zip(PERIODS, got, strict=True):
                assert as_counter(figures) == +expected(world, period, scope), (
                    step, scope, period)
            month = rules.ending(TODAY, 30)
            assert by_day.series("sales", month) == [
                expected(world, rules.Period(day, 1), scope)["sales"] for day in month.dates()]


# --- the job ----------------------------------------------------------------------------------

async def _member(bot: Bot, at: dt.datetime, store: str = "S001") -> Member:
    n = next(_keys)
    return await Member.create(card_no=f"77{n:08d}", phone_hash=f"j{n}", phone_enc="-",
                               tier=TIERS[0], store=await Store.get(code=store),
                               registered_at=at)


async def test_the_first_run_back_fills_every_day_and_a_second_changes_nothing(db_url):
    clock = Clock()
    async with open_bot(make_config(db_url), clock, scheduler=False) as bot:
        tz = bot.config.shop.tz
        today = bot.today()
        old = dt.datetime.combine(today - dt.timedelta(days=100), dt.time(10), tz)
        m = await _member(bot, old)
        for back in (100, 40, 3, 1, 0):
            at = dt.datetime.combine(today - dt.timedelta(days=back), dt.time(12), tz)
            await Purchase.create(member=m, store_id=m.store_id, amount=1000 * back + 1,
                                  idempotency_key=f"j{next(_keys)}", created_at=at)
        result = await rollups.nightly(bot, today)
        assert result == {"days": 100, "back_filled": 100, "counts": 2 * 5 * 4}
        days = await RollupDay.all().values_list("day", flat=True)
        assert len(days) == 100 and max(days) == today - dt.timedelta(days=1)
        assert await DailyFigures.filter(sales__gt=0).count() == 4  # today's is not closed
        before = sorted(await DailyFigures.all().values_list("day", "store_key", "sales",
                                                              "new_members"))
        members = sorted(await DailyMember.all().values_list("kind", "day", "member_id"))
        again = await rollups.nightly(bot, today)
        assert again == {"days": rollups.REFRESH_DAYS, "back_filled": 0, "counts": 40}
        assert sorted(await DailyFigures.all().values_list(
            "day", "store_key", "sales", "new_members")) == before
        assert sorted(await DailyMember.all().values_list("kind", "day", "member_id")) == members
        # The page: 30 days of sales, closed days from the rollups, today from its rows.
        home = await reports.home(today, tz, None, TIERS)
        month = home.compared[2]
        assert month.current.sales == 3001 + 1001 + 1  # not 100 or 40 days ago
        assert month.current.paying_members == 1


async def test_a_void_within_the_refresh_window_reaches_the_rollup(db_url):
    async with open_bot(make_config(db_url), scheduler=False) as bot:
        tz = bot.config.shop.tz
        today = bot.today()
        m = await _member(bot, dt.datetime.combine(today - dt.timedelta(days=5), dt.time(9), tz))
        bought = await Purchase.create(
            member=m, store_id=m.store_id, amount=5000, idempotency_key="void-me",
            created_at=dt.datetime.combine(today - dt.timedelta(days=5), dt.time(12), tz))
        await rollups.nightly(bot, today)
        week = (await reports.home(today, tz, m.store_id, TIERS)).compared[1]
        assert (week.current.sales, week.current.paying_members) == (5000, 1)
        await Purchase.filter(id=bought.id).update(voided_at=bot.now())
        await rollups.nightly(bot, today + dt.timedelta(days=1))
        week = (await reports.home(today, tz, m.store_id, TIERS)).compared[1]
        assert (week.current.sales, week.current.paying_members) == (0, 0)


async def test_the_job_is_registered_and_runs_through_the_scheduler(db_url):
    async with open_bot(make_config(db_url), scheduler=False) as bot:
        job = {job.name: job for job in JOBS}["daily_figures"]
        await _member(bot, bot.now() - dt.timedelta(days=3))
        assert await Scheduler(bot, jobs=(job,), worker="w").run(job)
        assert await RollupDay.all().count() >= 3
