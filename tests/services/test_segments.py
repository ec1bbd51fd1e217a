"""Segments in SQL: the members a text names, on SQLite and PostgreSQL, checked against a plain
Python reading of the same expression (docs/segments.md) over random members and purchases."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.clock import local_midnight
from bot.models import Member, MemberTag, Purchase, Store
from bot.rules.segments import FIELDS, RFM_CLASSES, Condition, Expression
from bot.runtime import Bot, open_bot
from bot.services import members, segments
from tests.support import make_config

TODAY = dt.date(2026, 6, 15)
TAGS = ("瑜伽", "普拉提", "VIP")
TIERS = ("普通会员", "银卡会员", "金卡会员", "钻石会员")
STORES = (None, "S001", "S002")


@pytest.fixture
async def bot(db_url) -> AsyncIterator[Bot]:
    async with open_bot(make_config(db_url), scheduler=False) as bot:
        yield bot


# --- a world of members, and the Python reading of an expression over it ----------------------

@dataclass(frozen=True)
class Bought:
    at: dt.datetime
    fen: int
    voided: bool


@dataclass(frozen=True)
class Person:
    tier: str
    store: str | None
    birth_month: int | None
    tags: frozenset[str]
    purchases: tuple[Bought, ...]
    erased: bool = False
    opted_out: bool = False

    def live(self, since: dt.datetime | None = None) -> list[Bought]:
        return [b for b in self.purchases if not b.voided and (since is None or b.at >= since)]


def _instants(tz: dt.tzinfo) -> st.SearchStrategy[dt.datetime]:
    # Whole days back from TODAY, and times that favour the edges of the shop's days.
    seconds = st.integers(0, 86_399) | st.sampled_from([0, 1, 86_399])
    return st.builds(lambda day, s: local_midnight(TODAY - dt.timedelta(days=day), tz)
                     + dt.timedelta(seconds=s, microseconds=s % 7 * 100_000),
                     st.integers(-1, 400) | st.sampled_from([29, 30, 31, 364, 365]), seconds)


def people(tz: dt.tzinfo) -> st.SearchStrategy[list[Person]]:
    sometimes = st.sampled_from([False, False, False, True])
    bought = st.builds(Bought, _instants(tz), st.integers(0, 3) | st.integers(0, 300_000),
                       sometimes)
    person = st.builds(
        Person, st.sampled_from(TIERS), st.sampled_from(STORES),
        st.none() | st.integers(1, 12), st.frozensets(st.sampled_from(TAGS)),
        st.lists(bought, max_size=5).map(tuple), sometimes, sometimes)
    return st.lists(person, min_size=1, max_size=14)


def _value(name: str, near: dict[str, list[int]]) -> st.SearchStrategy:
    """Values for a field; the numeric ones mostly at or next to the world's own (the last
    visits, counts and sums its members have), where an off-by-one would show."""
    match name:
        case "tier":
            return st.sampled_from(TIERS)
        case "store":
            return st.sampled_from(STORES[1:])
        case "tag":
            return st.sampled_from(TAGS)
        case "rfm":
            return st.sampled_from(tuple(RFM_CLASSES))
        case "birthday_month":
            return st.integers(1, 12)
    edges = sorted({max(0, v + d) for v in near[name] for d in (-1, 0, 1)})
    anything = {"last_visit": st.integers(0, 400), "visits_12m": st.integers(0, 4),
                "spend_12m": st.integers(0, 600_000)}[name]
    return st.one_of(st.sampled_from(edges), st.sampled_from(edges), anything) if edges \
        else anything


def expressions(near: dict[str, list[int]]) -> st.SearchStrategy[Expression]:
    condition = st.sampled_from(tuple(FIELDS)).flatmap(lambda name: st.builds(
        Condition, st.just(name), st.sampled_from(FIELDS[name].operators), _value(name, near)))
    return st.lists(condition, max_size=2).map(lambda cs: Expression(tuple(cs)))


_COMPARE = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}


def _median(values: list[int]) -> Fraction:
    ordered = sorted(values)
    n = len(ordered)
    return Fraction(ordered[(n + 1) // 2 - 1] + ordered[n // 2], 2)


class Reading:
    """The expression read over a world in plain Python: what docs/segments.md says."""

    def __init__(self, world: list[Person], segment: segments.Segment, today: dt.date):
        self.segment, self.today, self.tz = segment, today, segment.tz
        self.year = local_midnight(today - dt.timedelta(days=364), self.tz)
        self.rfm_since = local_midnight(today - dt.timedelta(days=segment.rfm_days - 1), self.tz)
        buyers = [self.rfm(p) for p in world if not p.erased and p.live(self.rfm_since)]
        average = (_median if segment.rfm_baseline == "median"
                   else lambda v: Fraction(sum(v), len(v)))
        self.base = [average([b[i] for b in buyers]) for i in range(3)] if buyers else None

    def near(self, world: list[Person]) -> dict[str, list[int]]:
        """Each member's own last visit (days), visits and spend."""
        return {
            "last_visit": [(self.today - max(b.at.astimezone(self.tz).date() for b in live)).days
                           for p in world if (live := p.live())],
            "visits_12m": [len(p.live(self.year)) for p in world],
            "spend_12m": [sum(b.fen for b in p.live(self.year)) for p in world],
        }

    def rfm(self, person: Person) -> tuple[int | None, int, int]:
        window = person.live(self.rfm_since)
        last = max((b.at for b in window), default=None)
        seconds = None if last is None else (last - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
                                             ) // dt.timedelta(seconds=1)
        return seconds, len(window), sum(b.fen for b in window)

    def holds(self, c: Condition, p: Person) -> bool:
        if c.op == "!=":
            return not self.holds(Condition(c.field, "=", c.value), p)
        compare = _COMPARE[c.op]
        match c.field:
            case "tier":
                return p.tier == c.value
            case "store":
                return p.store == c.value
            case "tag":
                return c.value in p.tags
            case "birthday_month":
                return p.birth_month is not None and compare(p.birth_month, c.value)
            case "visits_12m":
                return compare(len(p.live(self.year)), c.value)
            case "spend_12m":
                return compare(sum(b.fen for b in p.live(self.year)), c.value)
            case "last_visit":
                dates = [b.at.astimezone(self.tz).date() for b in p.live()]
                days = (self.today - max(dates)).days if dates else float("inf")
                return compare(days, c.value)
            case "rfm":
                if self.base is None:
                    scores = (False, False, False)
                else:
                    values = self.rfm(p)
                    scores = tuple(v is not None and v > b for v, b in zip(values, self.base,
                                                                           strict=True))
                return scores == RFM_CLASSES[c.value]
        raise AssertionError(c.field)

    def picks(self, world: list[Person]) -> list[int]:
        return [i for i, p in enumerate(world) if not p.erased and not p.opted_out
                and all(self.holds(c, p) for c in self.segment.expression.conditions)]


async def _store(bot: Bot, world: list[Person]) -> list[int]:
    """The world in the database (emptied first); the member ids, in the world's order."""
    await MemberTag.all().delete()
    await Purchase.all().delete()
    await Member.all().delete()
    stores = dict(await Store.all().values_list("code", "id"))
    serial = itertools.count(1)
    ids = []
    for person in world:
        n = next(serial)
        member = await Member.create(
            card_no=f"88{n:08d}", phone_hash=f"h{n}", phone_enc="-", name=f"会员{n}",
            tier=person.tier, store_id=stores.get(person.store), birth_month=person.birth_month,
            birth_day=1 if person.birth_month else None,
            erased_at=bot.now() if person.erased else None,
            marketing_opt_out_at=bot.now() if person.opted_out else None)
        ids.append(member.id)
        await Purchase.bulk_create([
            Purchase(member_id=member.id, amount=b.fen, created_at=b.at,
                     voided_at=b.at if b.voided else None, idempotency_key=f"p{n}:{k}")
            for k, b in enumerate(person.purchases)])
        await MemberTag.bulk_create([MemberTag(member_id=member.id, tag=t) for t in person.tags])
    return ids


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_sql_and_python_pick_the_same_members(any_db, bot, data):
    base = segments.parse("all", bot.config)
    world = data.draw(people(base.tz), label="world")
    ids = await _store(bot, world)
    near = Reading(world, base, TODAY).near(world)
    for _ in range(6):
        segment = dataclasses.replace(
            base, expression=data.draw(expressions(near), label="expression"),
            rfm_baseline=data.draw(st.sampled_from(["median", "mean"]), label="baseline"),
            rfm_days=data.draw(st.sampled_from([30, 365, 401]), label="rfm_days"))
        expected = [ids[i] for i in Reading(world, segment, TODAY).picks(world)]
        size = data.draw(st.integers(1, 5), label="batch size")
        batches = [b async for b in segments.id_batches(segment, today=TODAY, size=size)]
        assert [i for b in batches for i in b] == expected, str(segment)
        assert all(0 < len(b) <= size for b in batches)
        assert await segments.count(segment, today=TODAY) == len(expected)


# --- the parts that are not random ------------------------------------------------------------

async def test_old_forms_and_the_coupon_cli_api_still_work(bot):
    ids = []
    for n in range(3):
        registration = await members.register(bot, f"o_seg_{n}", f"137{n:08d}", f"会员{n}",
                                              None, bot.now())
        ids.append(registration.member.id)
    await Member.filter(id=ids[1]).update(tier="金卡会员")

    async def chosen(text: str) -> list[int]:
        batches = segments.members(segments.parse(text, bot.config), size=2)
        return [member.id async for batch in batches for member in batch]

    assert await chosen("all") == ids
    assert await chosen("tier:金卡会员") == await chosen("tier=金卡会员") == [ids[1]]
    assert await chosen("tier!=金卡会员") == [ids[0], ids[2]]


async def test_a_segment_leaves_out_erased_and_opted_out_members(bot):
    """`coupon issue --segment all` once used stock for an erased (注销) member: a campaign's
    audience is only members who may receive one."""
    ids = []
    for n in range(3):
        registration = await members.register(bot, f"o_seg_x{n}", f"136{n:08d}", f"会员{n}",
                                              None, bot.now())
        ids.append(registration.member.id)
    await Member.filter(id=ids[0]).update(erased_at=bot.now(), marketing_opt_out_at=bot.now())
    await Member.filter(id=ids[1]).update(marketing_opt_out_at=bot.now())
    await Member.filter(id=ids[2]).update(tier="金卡会员")
    for text in ("all", "tier=金卡会员", "tier!=普通会员", "last_visit>1d"):
        segment = segments.parse(text, bot.config)
        assert [i async for b in segments.id_batches(segment) for i in b] == [ids[2]]
        assert await segments.count(segment) == 1


async def test_unknown_names_are_refused_with_their_position(bot):
    with pytest.raises(segments.SegmentSyntaxError) as caught:
        segments.parse("tier=黑卡会员", bot.config)
    assert caught.value.position == 5
    registration = await members.register(bot, "o_seg_t", "13500000001", "会员", None, bot.now())
    await MemberTag.create(member=registration.member, tag="瑜伽")
    assert await segments.parse_checked("tag=瑜伽", bot.config)
    with pytest.raises(segments.SegmentSyntaxError) as caught:
        await segments.parse_checked("tier=金卡会员 tag!=瑜珈", bot.config)
    assert (caught.value.position, caught.value.example) == (15, "tag=瑜伽")


async def test_rfm_scores_against_the_median_of_the_buyers(bot):
    """Four buyers and one who never bought. Medians: the last visit halfway between B's and
    C's, 1.5 visits, ¥700: high means strictly above."""
    now = local_midnight(TODAY, bot.config.shop.tz)
    ids = []
    for n, (days_ago, visits, fen) in enumerate([(1, 3, 90_000), (20, 2, 50_000),
                                                  (200, 1, 100_000), (300, 1, 10_000),
                                                  (0, 0, 0)]):
        registration = await members.register(bot, f"o_rfm{n}", f"138{n:08d}", f"会员{n}",
                                              None, bot.now())
        ids.append(registration.member.id)
        for k in range(visits):
            await Purchase.create(member_id=ids[-1], amount=fen // visits,
                                  created_at=now - dt.timedelta(days=days_ago + k),
                                  idempotency_key=f"rfm{n}:{k}")
    a, b, c, d, never = ids

    async def chosen(text: str) -> list[int]:
        segment = segments.parse(text, bot.config)
        return [i async for b in segments.id_batches(segment, today=TODAY) for i in b]

    assert await chosen("rfm=重要价值") == [a]
    assert await chosen("rfm=一般价值") == [b]
    assert await chosen("rfm=重要挽留") == [c]
    assert await chosen("rfm=一般挽留") == [d, never]
    assert await chosen("rfm!=一般挽留") == [a, b, c]
    assert await chosen("rfm=重要发展") == []

