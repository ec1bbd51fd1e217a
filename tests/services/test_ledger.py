"""The points ledger, stored value and punch cards, with the services called directly.

The invariant every test checks after it acts (assert_ledger):
    member.points == sum(entry.delta) == sum(lot.remaining) >= 0,
every spend's PointsUse rows add up to what it took, every lot's remaining is its delta minus what
was taken from it (so never negative, never above its delta), and balance_after is the running
sum. A stateful hypothesis test drives random sequences of operations against a model; the
concurrency tests run on SQLite and, through `any_db`, on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import random
import shutil
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bot.models import (
    CardSerial,
    Delivery,
    Member,
    PointsEntry,
    PointsUse,
    PunchCard,
    PunchUse,
    Purchase,
    Store,
    StoredValueEntry,
    TierChange,
)
from bot.rules import earning, tiers
from bot.rules.cards import card_number
from bot.runtime import Bot, open_bot
from bot.services import checkin, expiry, loyalty, members, purchases, wallet
from bot.services.loyalty import InsufficientPoints
from bot.services.purchases import PurchaseRefused
from bot.services.staff import Actor
from bot.services.wallet import WalletRefused
from tests.support import Clock, make_config

# --- helpers ----------------------------------------------------------------------------------


def config_for(db_url: str, **points):
    config = make_config(db_url)
    if points:
        config = config.replace(points=dataclasses.replace(config.points, **points))
    return config


@contextlib.asynccontextmanager
async def running(db_url: str, clock: Clock | None = None, **points) -> AsyncIterator[Bot]:
    """The bot with its database open; `points` overrides [points] settings."""
    async with open_bot(config_for(db_url, **points), clock or Clock(), scheduler=False) as bot:
        yield bot


async def actor() -> Actor:
    return Actor.cli(await Store.get(code="S001"))


async def new_member(bot: Bot, points: int = 0, *, expires_on: dt.date | None = None,
                     referrer: Member | None = None) -> Member:
    serial = await CardSerial.create()  # first: the phone and name are made from it
    member = await members.create_member(
        bot.vault, bot.config.shop.card_prefix, f"139{serial.id:08d}",
        card_no=card_number(bot.config.shop.card_prefix, serial.id), name=f"会员{serial.id}",
        tier=bot.config.tiers[0].name, referrer_id=referrer.id if referrer else None)
    if points:
        await loyalty.post_points(member.id, points, kind="adjust", reason="初始积分",
                                  key=f"seed:{member.id}", expires_on=expires_on)
    return await Member.get(id=member.id)


async def fresh(member: Member) -> Member:
    return await Member.get(id=member.id)


async def assert_ledger(member_id: int) -> int:
    """Every ledger invariant for one member; returns the balance."""
    cached, total, lots = await loyalty.check_invariant(member_id)
    assert cached == total == lots, f"points {cached}, entries {total}, lots {lots}"
    assert cached >= 0
    entries = await PointsEntry.filter(member_id=member_id).order_by("id")
    uses = await PointsUse.filter(entry_id__in=[e.id for e in entries] or [0]).values_list(
        "entry_id", "lot_id", "amount")
    by_entry: dict[int, int] = defaultdict(int)
    from_lot: dict[int, int] = defaultdict(int)
    lot_ids = {e.id for e in entries if e.delta > 0}
    for entry_id, lot_id, amount in uses:
        assert amount > 0
        assert lot_id in lot_ids, f"spend {entry_id} took from {lot_id}, not this member's lot"
        by_entry[entry_id] += amount
        from_lot[lot_id] += amount
    balance = 0
    for entry in entries:
        balance += entry.delta
        assert entry.balance_after == balance, f"entry {entry.id}: balance_after is off"
        if entry.delta > 0:
            assert 0 <= entry.remaining <= entry.delta
            assert entry.remaining == entry.delta - from_lot[entry.id], f"lot {entry.id}"
        else:
            assert entry.delta < 0 and entry.remaining == 0 and entry.expires_on is None
            assert by_entry[entry.id] == -entry.delta, f"spend {entry.id}: uses do not add up"
    return cached


async def assert_wallet(member_id: int) -> int:
    """Stored value == sum of its entries, never below zero at any point; returns it."""
    member = await Member.get(id=member_id)
    balance = 0
    for entry in await StoredValueEntry.filter(member_id=member_id).order_by("id"):
        balance += entry.delta
        assert entry.balance_after == balance >= 0
    assert member.stored_value == balance >= 0
    return balance


async def uses_of(entry: PointsEntry) -> dict[int, int]:
    rows = await PointsUse.filter(entry_id=entry.id).values_list("lot_id", "amount")
    taken: dict[int, int] = defaultdict(int)
    for lot_id, amount in rows:
        taken[lot_id] += amount
    return dict(taken)


async def spend(member_id: int, points: int, key: str) -> PointsEntry:
    return await loyalty.post_points(member_id, -points, kind="redeem", reason="兑换", key=key)


async def outcomes(*calls) -> list:
    """gather, keeping exceptions as values."""
    return await asyncio.gather(*calls, return_exceptions=True)


def unexpected(results: list, *allowed: type[BaseException]) -> list:
    return [r for r in results if isinstance(r, BaseException) and not isinstance(r, allowed)]


# --- the stateful model -----------------------------------------------------------------------


@dataclasses.dataclass
class ModelLot:
    id: int
    delta: int
    remaining: int
    expires_on: dt.date | None


@dataclasses.dataclass
class ModelPurchase:
    id: int
    day: int  # the clock offset (days) when it was made
    lots: list[int]
    voided: bool = False
    shortfall: int = 0


VOID_DAYS = 7
POINTS = {"expiry": "months", "expiry_months": 1, "void_days": VOID_DAYS,
          "referral_points": 0}


def expected_bonus(amount_fen: int) -> int:
    """config.toml: 充500送50, 充1000送120, the biggest reached."""
    return 12_000 if amount_fen >= 100_000 else 5_000 if amount_fen >= 50_000 else 0


class LedgerMachine(RuleBasedStateMachine):
    """Random sequences of earn / redeem / expire / void / adjust / check-in / stored value, each
    checked against a model of the lots (soonest-expiring first, never-expiring last)."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.mkdtemp(prefix="ledger-")
        self.clock = Clock()
        self.day = 0
        self.counter = 0
        self.lots: dict[int, ModelLot] = {}
        self.purchases: list[ModelPurchase] = []
        self.keys: list[tuple[str, int]] = []  # post_points keys used, with their entry
        self.checked_in: set[dt.date] = set()
        self.stored_value = 0
        self.refundable = 0
        self.context = running(f"sqlite://{self.dir}/ledger.db", self.clock, **POINTS)
        self.bot = self.run(self.context.__aenter__())
        self.actor = self.run(actor())
        self.member_id = self.run(new_member(self.bot)).id

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.context.__aexit__(None, None, None))
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def key(self, what: str) -> str:
        self.counter += 1
        return f"{what}:{self.counter}"

    # The model.

    @property
    def balance(self) -> int:
        return sum(lot.remaining for lot in self.lots.values())

    def take(self, amount: int, first: int | None = None) -> dict[int, int]:
        order = sorted((lot for lot in self.lots.values() if lot.remaining > 0),
                       key=lambda lot: (lot.expires_on is None, lot.expires_on or dt.date.max,
                                        lot.id))
        order.sort(key=lambda lot: lot.id != first)
        taken = {}
        for lot in order:
            if not amount:
                break
            step = min(lot.remaining, amount)
            lot.remaining -= step
            amount -= step
            taken[lot.id] = step
        assert amount == 0, "model: spent more than the balance"
        return taken

    def member(self) -> Member:
        return self.run(Member.get(id=self.member_id))

    def add_lot(self, entry: PointsEntry) -> None:
        assert entry.delta > 0 and entry.remaining == entry.delta
        self.lots[entry.id] = ModelLot(entry.id, entry.delta, entry.delta, entry.expires_on)

    def expiry(self) -> dt.date:
        return earning.expiry_for(self.bot.today(), "months", 1)

    # Points.

    @rule(amount=st.one_of(st.integers(1, 150), st.integers(100, 800_000)))
    def earn(self, amount):
        member = self.member()
        rule_ = purchases.earning_rule(self.bot.config)
        today = self.bot.today()
        points = earning.points_for(amount, rule_,
                                    tiers.multiplier(self.bot.config.tiers, member.tier),
                                    today.isoweekday())
        result = self.run(purchases.record(self.bot, member, amount, actor=self.actor, note="",
                                           key=self.key("buy")))
        assert not result.duplicate
        assert result.points == result.purchase.points == points
        # The purchase happened "now" on the test clock, so void_days counts from here.
        self.run(Purchase.filter(id=result.purchase.id).update(created_at=self.bot.now()))
        lots = []
        if points:
            entry = self.run(PointsEntry.get(idempotency_key=f"purchase:{result.purchase.id}"))
            assert entry.delta == points and entry.expires_on == self.expiry()
            assert entry.purchase_id == result.purchase.id
            self.add_lot(entry)
            lots.append(entry.id)
        else:
            assert not self.run(PointsEntry.exists(purchase_id=result.purchase.id))
        self.purchases.append(ModelPurchase(result.purchase.id, self.day, lots))
        assert result.member.points == self.balance

    @rule(n=st.integers(1, 3000))
    def redeem(self, n):
        self._redeem(n)

    @precondition(lambda self: self.balance > 0)
    @rule()
    def redeem_everything(self):
        self._redeem(self.balance)

    def _redeem(self, n: int) -> None:
        key = self.key("redeem")
        if n > self.balance:
            event("redeem: insufficient")
            with pytest.raises(InsufficientPoints):
                self.run(spend(self.member_id, n, key))
            assert not self.run(PointsEntry.exists(idempotency_key=key))
            return
        entry = self.run(spend(self.member_id, n, key))
        assert entry.delta == -n and entry.kind == "redeem"
        assert self.run(uses_of(entry)) == self.take(n)
        self.keys.append((key, entry.id))

    @rule(n=st.integers(1, 500), days=st.none() | st.sampled_from([0, 1]) | st.integers(-3, 40))
    def grant(self, n, days):
        """A lot with its own expiry (None: never; negative: already past, not yet expired)."""
        key = self.key("grant")
        expires_on = None if days is None else self.bot.today() + dt.timedelta(days=days)
        entry = self.run(loyalty.post_points(self.member_id, n, kind="adjust", reason="赠送",
                                             key=key, expires_on=expires_on))
        assert entry.expires_on == expires_on
        self.add_lot(entry)
        self.keys.append((key, entry.id))

    @rule(delta=st.integers(-2000, -1) | st.integers(1, 2000))
    def adjust(self, delta):
        key = self.key("adjust")
        call = loyalty.adjust(self.bot, self.member(), delta, reason="店长调整", actor=self.actor,
                              key=key)
        if -delta > self.balance:
            with pytest.raises(InsufficientPoints):
                self.run(call)
            return
        entry = self.run(call)
        assert entry.delta == delta and entry.kind == "adjust"
        if delta > 0:
            assert entry.expires_on == self.expiry()
            self.add_lot(entry)
        else:
            assert self.run(uses_of(entry)) == self.take(-delta)

    @precondition(lambda self: self.keys)
    @rule(data=st.data(), delta=st.integers(-50, -1) | st.integers(1, 50))
    def repeat_a_key(self, data, delta):
        """A retried post_points (same key, whatever it says) returns the first entry."""
        key, entry_id = data.draw(st.sampled_from(self.keys))
        entry = self.run(loyalty.post_points(self.member_id, delta, kind="adjust",
                                             reason="retry", key=key))
        assert entry.id == entry_id

    @rule()
    def check_in(self):
        today = self.bot.today()
        result = self.run(checkin.check_in(self.bot, self.member()))
        assert result.done == (today not in self.checked_in)
        if result.done:
            self.checked_in.add(today)
            entry = self.run(PointsEntry.get(
                idempotency_key=f"checkin:{self.member_id}:{today.isoformat()}"))
            assert entry.delta == result.points
            self.add_lot(entry)
        assert result.balance == self.balance

    @rule(days=st.sampled_from([1, 1, 2, 3, 6, 7, 32]))
    def advance(self, days):
        self.clock.advance(days=days)
        self.day += days

    @rule(days=st.sampled_from([0, 0, 0, 1, 32]))
    def expire(self, days):
        """The daily job, perhaps after some days went by."""
        self.advance(days)
        today = self.bot.today()
        expected = 0
        for lot in self.lots.values():
            if lot.expires_on is not None and lot.expires_on < today:
                expected += lot.remaining
                lot.remaining = 0
        event(f"expire: {'some' if expected else 'none'}")
        assert self.run(expiry.expire_due(today)) == expected
        assert self.run(expiry.expire_due(today)) == 0  # and only once

    @precondition(lambda self: self.purchases)
    @rule(data=st.data())
    def void(self, data):
        bought = data.draw(st.sampled_from(self.purchases[::-1]))  # newest first
        call = purchases.void(self.bot, bought.id, actor=self.actor)
        if bought.voided:
            result = self.run(call)
            assert result.duplicate and result.reversed_points == 0
            assert result.shortfall == bought.shortfall
            return
        if self.day - bought.day >= VOID_DAYS:
            event("void: too late")
            with pytest.raises(PurchaseRefused) as refused:
                self.run(call)
            assert refused.value.reason == "void_too_late.j2"
            return
        reversed_points = shortfall = 0
        for lot_id in bought.lots:
            take = min(self.lots[lot_id].delta, self.balance)
            if take:
                self.take(take, first=lot_id)
            reversed_points += take
            shortfall += self.lots[lot_id].delta - take
        event(f"void: {'shortfall' if shortfall else 'reversed'}")
        result = self.run(call)
        assert not result.duplicate
        assert (result.reversed_points, result.shortfall) == (reversed_points, shortfall)
        assert result.purchase.void_shortfall == shortfall and result.purchase.voided_at
        assert result.member.points == self.balance
        bought.voided, bought.shortfall = True, shortfall

    # Stored value.

    @rule(amount=st.one_of(st.integers(1, 60_000), st.sampled_from([50_000, 99_999, 100_000])))
    def top_up(self, amount):
        result = self.run(wallet.top_up(self.bot, self.member(), amount, actor=self.actor,
                                        key=self.key("topup")))
        bonus = expected_bonus(amount)
        self.stored_value += amount + bonus
        assert (result.amount, result.bonus, result.balance) == (amount, bonus,
                                                                  self.stored_value)

    @rule(amount=st.integers(1, 80_000))
    def pay(self, amount):
        call = wallet.pay(self.bot, self.member(), amount, actor=self.actor, key=self.key("pay"))
        if amount > self.stored_value:
            with pytest.raises(WalletRefused) as refused:
                self.run(call)
            assert refused.value.reason == "stored_value_insufficient.j2"
            return
        result = self.run(call)
        self.stored_value -= amount
        self.refundable += amount
        assert result.balance == self.stored_value

    @rule(amount=st.integers(1, 80_000))
    def refund(self, amount):
        call = wallet.refund(self.bot, self.member(), amount, actor=self.actor,
                             key=self.key("refund"))
        if amount > self.refundable:
            with pytest.raises(WalletRefused) as refused:
                self.run(call)
            assert refused.value.reason == "stored_value_refund_too_much.j2"
            return
        result = self.run(call)
        self.stored_value += amount
        self.refundable -= amount
        assert result.balance == self.stored_value

    # After every step.

    @invariant()
    def ledger_matches_the_model(self):
        assert self.run(assert_ledger(self.member_id)) == self.balance
        lots = self.run(PointsEntry.filter(member_id=self.member_id, delta__gt=0)
                        .values_list("id", "remaining", "expires_on"))
        assert {i: (r, e) for i, r, e in lots} == {
            lot.id: (lot.remaining, lot.expires_on) for lot in self.lots.values()}
        assert self.run(assert_wallet(self.member_id)) == self.stored_value


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=40, stateful_step_count=40, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])


# --- which lots a spend takes -----------------------------------------------------------------


async def test_spends_take_soonest_expiring_lots_first_and_never_expiring_last(db_url):
    async with running(db_url) as bot:
        member = await new_member(bot)
        today = bot.today()

        async def lot(points: int, days: int | None) -> int:
            entry = await loyalty.post_points(
                member.id, points, kind="adjust", reason="测试", key=f"lot:{points}:{days}",
                expires_on=None if days is None else today + dt.timedelta(days=days))
            return entry.id

        l30 = await lot(100, 30)
        l10 = await lot(40, 10)
        forever = await lot(100, None)
        l10b = await lot(30, 10)  # same day as l10, newer: after it
        l60 = await lot(20, 60)
        l5 = await lot(5, 5)
        assert await assert_ledger(member.id) == 295

        steps = [
            (50, {l5: 5, l10: 40, l10b: 5}),
            (100, {l10b: 25, l30: 75}),
            (30, {l30: 25, l60: 5}),
            (60, {l60: 15, forever: 45}),
        ]
        for number, (points, expected) in enumerate(steps):
            entry = await spend(member.id, points, f"spend:{number}")
            assert await uses_of(entry) == expected
            await assert_ledger(member.id)
        remaining = dict(await PointsEntry.filter(member_id=member.id, delta__gt=0)
                         .values_list("id", "remaining"))
        assert remaining == {l30: 0, l10: 0, forever: 55, l10b: 0, l60: 0, l5: 0}
        with pytest.raises(InsufficientPoints):
            await spend(member.id, 56, "too-much")
        await spend(member.id, 55, "rest")
        assert await assert_ledger(member.id) == 0


async def test_purchases_on_different_days_are_spent_oldest_first(db_url):
    clock = Clock()
    async with running(db_url, clock, member_day=0, referral_points=0) as bot:
        member = await new_member(bot, 50)  # never expires
        staff = await actor()
        first = await purchases.record(bot, member, 10_000, actor=staff, note="", key="d0")
        clock.advance(days=40)
        second = await purchases.record(bot, await fresh(member), 20_000, actor=staff, note="",
                                        key="d40")
        lot1 = await PointsEntry.get(idempotency_key=f"purchase:{first.purchase.id}")
        lot2 = await PointsEntry.get(idempotency_key=f"purchase:{second.purchase.id}")
        assert (lot1.delta, lot2.delta) == (100, 200)
        assert lot1.expires_on < lot2.expires_on
        entry = await spend(member.id, 150, "s1")
        assert await uses_of(entry) == {lot1.id: 100, lot2.id: 50}
        entry = await spend(member.id, 160, "s2")
        seed = await PointsEntry.get(idempotency_key=f"seed:{member.id}")
        assert await uses_of(entry) == {lot2.id: 150, seed.id: 10}
        assert await assert_ledger(member.id) == 40


# --- concurrency ------------------------------------------------------------------------------


async def test_two_hundred_concurrent_earns_and_spends(db_url, any_db):
    async with running(db_url, member_day=0, referral_points=0) as bot:
        member = await new_member(bot, 300)
        staff = await actor()
        rng = random.Random(71)
        calls, kinds = [], []
        for number in range(200):
            kind = rng.choice(["earn", "spend", "spend", "buy"])
            kinds.append(kind)
            if kind == "earn":
                calls.append(loyalty.post_points(
                    member.id, 7, kind="earn", reason="并发", key=f"e:{number}",
                    expires_on=bot.today() + dt.timedelta(days=rng.randint(1, 90))))
            elif kind == "spend":
                calls.append(spend(member.id, 13, f"s:{number}"))
            else:
                calls.append(purchases.record(bot, member, 1_000, actor=staff, note="",
                                              key=f"b:{number}"))
        results = await outcomes(*calls)
        assert not unexpected(results, InsufficientPoints)
        ok = defaultdict(int)
        for kind, result in zip(kinds, results, strict=True):
            ok[kind] += not isinstance(result, BaseException)
        assert ok["earn"] == kinds.count("earn") and ok["buy"] == kinds.count("buy")
        assert 0 < ok["spend"] <= kinds.count("spend")
        expected = 300 + 7 * ok["earn"] + 10 * ok["buy"] - 13 * ok["spend"]
        assert await assert_ledger(member.id) == expected
        assert await PointsEntry.filter(member_id=member.id, kind="redeem").count() == ok["spend"]


@pytest.mark.parametrize(("each", "expected"), [(100, 1), (10, 10), (30, 3)])
async def test_fuint_71_concurrent_spends_never_overdraw(db_url, any_db, each, expected):
    """fuint #71: twenty tills spending from one 100-point account at the same moment."""
    async with running(db_url) as bot:
        member = await new_member(bot, 100)
        results = await outcomes(*(spend(member.id, each, f"s:{i}") for i in range(20)))
        assert not unexpected(results, InsufficientPoints)
        assert sum(isinstance(r, PointsEntry) for r in results) == expected
        assert await assert_ledger(member.id) == 100 - each * expected


async def test_a_repeated_earn_key_acts_once(db_url, any_db):
    async with running(db_url) as bot:
        member = await new_member(bot)
        results = await outcomes(*(
            loyalty.post_points(member.id, 10, kind="earn", reason="重复", key="same-earn")
            for _ in range(50)))
        assert not unexpected(results)
        assert len({r.id for r in results}) == 1
        assert await PointsEntry.filter(member_id=member.id).count() == 1
        assert await assert_ledger(member.id) == 10


@pytest.mark.parametrize(("start", "each"), [(70, 30), (100, 70)])
async def test_a_repeated_spend_key_acts_once_and_replays(db_url, any_db, start, each):
    """50 deliveries of one redemption (WeChat retries, a double tap): one entry, and every call
    gets that entry back, whether or not a second spend of the same size would still fit."""
    async with running(db_url) as bot:
        member = await new_member(bot, start)
        results = await outcomes(*(spend(member.id, each, "same-spend") for _ in range(50)))
        assert await PointsEntry.filter(member_id=member.id, kind="redeem").count() == 1
        assert await assert_ledger(member.id) == start - each
        assert not unexpected(results), "a replayed key raised instead of returning its entry"
        assert len({r.id for r in results}) == 1


async def test_a_repeated_purchase_key_records_once(db_url, any_db):
    async with running(db_url, member_day=0) as bot:
        member = await new_member(bot)
        staff = await actor()
        results = await outcomes(*(
            purchases.record(bot, member, 12_850, actor=staff, note="", key="same-buy")
            for _ in range(20)))
        assert not unexpected(results)
        assert sum(not r.duplicate for r in results) == 1
        assert len({r.purchase.id for r in results}) == 1
        assert await Purchase.filter(member_id=member.id).count() == 1
        assert await PointsEntry.filter(member_id=member.id, kind="earn").count() == 1
        assert await assert_ledger(member.id) == 128


async def test_a_repeated_adjust_key_acts_once(db_url, any_db):
    async with running(db_url) as bot:
        member = await new_member(bot, 100)
        staff = await actor()
        results = await outcomes(*(
            loyalty.adjust(bot, member, -70, reason="更正", actor=staff, key="same-adjust")
            for _ in range(20)))
        assert not unexpected(results), "a replayed key raised instead of returning its entry"
        assert len({r.id for r in results}) == 1
        assert await assert_ledger(member.id) == 30


async def test_concurrent_first_purchases_reward_a_referral_once(db_url, any_db):
    """A referred member's first purchases arriving together (some too small to earn points):
    the referral reward is paid once to each side, and the tier goes up once."""
    async with running(db_url, member_day=0, referral_points=200) as bot:
        referrer = await new_member(bot)
        member = await new_member(bot, referrer=referrer)
        staff = await actor()
        amounts = [50, 20_000, 99, 20_000, 20_000, 20_000, 20_000, 20_000, 50, 20_000]
        results = await outcomes(*(
            purchases.record(bot, member, amount, actor=staff, note="", key=f"first:{i}")
            for i, amount in enumerate(amounts)))
        assert not unexpected(results)
        assert sum(r.referral_points for r in results) == 200
        assert await PointsEntry.filter(idempotency_key__startswith="referral:").count() == 2
        assert await assert_ledger(referrer.id) == 200
        assert await assert_ledger(member.id) == 200 + sum(r.points for r in results)
        assert [r.new_tier for r in results if r.new_tier] == ["银卡会员"]
        assert await TierChange.filter(member_id=member.id).count() == 1


# --- voids ------------------------------------------------------------------------------------


async def test_void_twice_reverses_once(db_url):
    async with running(db_url, member_day=0) as bot:
        member = await new_member(bot, 10)
        staff = await actor()
        bought = await purchases.record(bot, member, 5_000, actor=staff, note="", key="b")
        first = await purchases.void(bot, bought.purchase.id, actor=staff)
        second = await purchases.void(bot, bought.purchase.id, actor=staff)
        assert (first.duplicate, first.reversed_points, first.shortfall) == (False, 50, 0)
        assert (second.duplicate, second.reversed_points, second.shortfall) == (True, 0, 0)
        assert await PointsEntry.filter(member_id=member.id, kind="reverse").count() == 1
        assert await assert_ledger(member.id) == 10


async def test_concurrent_voids_reverse_once(db_url, any_db):
    async with running(db_url, member_day=0) as bot:
        member = await new_member(bot, 10)
        staff = await actor()
        bought = await purchases.record(bot, member, 5_000, actor=staff, note="", key="b")
        results = await outcomes(*(purchases.void(bot, bought.purchase.id, actor=staff)
                                   for _ in range(10)))
        assert not unexpected(results)
        assert sum(not r.duplicate for r in results) == 1
        assert sum(r.reversed_points for r in results) == 50
        assert await PointsEntry.filter(member_id=member.id, kind="reverse").count() == 1
        assert await assert_ledger(member.id) == 10


@pytest.mark.parametrize("round_", range(3))
async def test_a_void_racing_spends_neither_fails_nor_overdraws(db_url, any_db, round_):
    """A manager voids a purchase while the member spends its points at another till: whatever
    the order, the void goes through, and what it could not take back is the shortfall."""
    async with running(db_url, member_day=0) as bot:
        member = await new_member(bot)
        staff = await actor()
        bought = await purchases.record(bot, member, 10_000, actor=staff, note="", key="b")
        spends = [spend(member.id, 10, f"s:{i}") for i in range(10)]
        results = await outcomes(*spends[:round_ * 4],
                                 purchases.void(bot, bought.purchase.id, actor=staff),
                                 *spends[round_ * 4:])
        voided = results.pop(round_ * 4)
        assert not unexpected(results, InsufficientPoints)
        assert isinstance(voided, purchases.VoidResult), f"the void failed: {voided!r}"
        spent = 10 * sum(isinstance(r, PointsEntry) for r in results)
        assert (voided.reversed_points, voided.shortfall) == (100 - spent, spent)
        assert (await Purchase.get(id=bought.purchase.id)).void_shortfall == spent
        assert await assert_ledger(member.id) == 0


async def test_buy_and_void_loops_never_farm_points(db_url):
    """Including the referral reward: both sides get it once, and a void takes it back."""
    async with running(db_url, member_day=0, referral_points=200) as bot:
        referrer = await new_member(bot, 30)
        member = await new_member(bot, 7, referrer=referrer)
        staff = await actor()
        for round_ in range(5):
            bought = await purchases.record(bot, await fresh(member), 200_000, actor=staff,
                                            note="", key=f"buy:{round_}")
            assert bought.points > 0
            voided = await purchases.void(bot, bought.purchase.id, actor=staff)
            assert voided.shortfall == 0
            assert await assert_ledger(member.id) == 7
            assert await assert_ledger(referrer.id) == 30
        # Referral keys are per referred member: the reward was given and reversed once.
        assert await PointsEntry.filter(idempotency_key__startswith="referral:").count() == 2


async def test_void_after_the_points_were_spent_writes_off_the_shortfall(db_url):
    async with running(db_url, member_day=0) as bot:
        member = await new_member(bot)
        staff = await actor()
        bought = await purchases.record(bot, member, 8_000, actor=staff, note="", key="b")
        await spend(member.id, 80, "all")
        result = await purchases.void(bot, bought.purchase.id, actor=staff)
        assert (result.reversed_points, result.shortfall) == (0, 80)
        purchase = await Purchase.get(id=bought.purchase.id)
        assert purchase.void_shortfall == 80 and purchase.voided_at is not None
        assert await assert_ledger(member.id) == 0
        assert not await PointsEntry.exists(member_id=member.id, kind="reverse")
        # Voiding again changes nothing and reports the same shortfall.
        again = await purchases.void(bot, bought.purchase.id, actor=staff)
        assert again.duplicate and again.shortfall == 80


async def test_void_after_a_partial_spend_takes_the_rest_from_other_lots(db_url):
    async with running(db_url, member_day=0) as bot:
        today = bot.today()
        member = await new_member(bot, 30, expires_on=today + dt.timedelta(days=3000))
        staff = await actor()
        bought = await purchases.record(bot, member, 10_000, actor=staff, note="", key="b")
        lot = await PointsEntry.get(idempotency_key=f"purchase:{bought.purchase.id}")
        await spend(member.id, 60, "part")  # the purchase's lot expires sooner: 60 from it
        assert (await PointsEntry.get(id=lot.id)).remaining == 40
        result = await purchases.void(bot, bought.purchase.id, actor=staff)
        # 100 to take back, 70 there: 40 from the lot itself, 30 from the other, 30 written off.
        assert (result.reversed_points, result.shortfall) == (70, 30)
        reversal = await PointsEntry.get(member_id=member.id, kind="reverse")
        seed = await PointsEntry.get(idempotency_key=f"seed:{member.id}")
        assert await uses_of(reversal) == {lot.id: 40, seed.id: 30}
        assert await assert_ledger(member.id) == 0


async def test_void_takes_from_the_purchase_lot_first(db_url):
    async with running(db_url, member_day=0) as bot:
        member = await new_member(bot, 500, expires_on=bot.today() + dt.timedelta(days=1))
        staff = await actor()
        bought = await purchases.record(bot, member, 10_000, actor=staff, note="", key="b")
        result = await purchases.void(bot, bought.purchase.id, actor=staff)
        assert (result.reversed_points, result.shortfall) == (100, 0)
        lot = await PointsEntry.get(idempotency_key=f"purchase:{bought.purchase.id}")
        seed = await PointsEntry.get(idempotency_key=f"seed:{member.id}")
        assert (lot.remaining, seed.remaining) == (0, 500)
        assert await assert_ledger(member.id) == 500


async def test_void_only_within_void_days(db_url):
    clock = Clock()
    async with running(db_url, clock, member_day=0, void_days=7) as bot:
        member = await new_member(bot)
        staff = await actor()
        late = await purchases.record(bot, member, 5_000, actor=staff, note="", key="late")
        in_time = await purchases.record(bot, member, 6_000, actor=staff, note="", key="ok")
        clock.advance(days=6, hours=23)
        assert (await purchases.void(bot, in_time.purchase.id, actor=staff)).reversed_points == 60
        clock.advance(hours=1, minutes=1)
        with pytest.raises(PurchaseRefused) as refused:
            await purchases.void(bot, late.purchase.id, actor=staff)
        assert refused.value.reason == "void_too_late.j2"
        assert refused.value.values["days"] == 7
        assert (await Purchase.get(id=late.purchase.id)).voided_at is None
        assert await assert_ledger(member.id) == 50
        with pytest.raises(PurchaseRefused) as unknown:
            await purchases.void(bot, 999_999, actor=staff)
        assert unknown.value.reason == "void_unknown.j2"


async def test_void_after_the_points_expired_does_not_take_them_twice(db_url):
    """year_end expiry: bought on 31 December, voided on 2 January (within void_days). The
    purchase's points already expired on 1 January; the void must not take the same points a
    second time out of what the member earned in the new year."""
    new_year_eve = dt.datetime(2031, 12, 31, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
    clock = Clock()
    clock.offset = new_year_eve - dt.datetime.now(dt.UTC)
    async with running(db_url, clock, member_day=0, expiry="year_end") as bot:
        member = await new_member(bot)
        staff = await actor()
        bought = await purchases.record(bot, member, 10_000, actor=staff, note="", key="b")
        await Purchase.filter(id=bought.purchase.id).update(created_at=bot.now())
        clock.advance(days=2)
        assert await expiry.expire_due(bot.today()) == 100
        await purchases.record(bot, await fresh(member), 30_000, actor=staff, note="", key="c")
        assert await assert_ledger(member.id) == 300
        result = await purchases.void(bot, bought.purchase.id, actor=staff)
        assert await assert_ledger(member.id) == 300, (
            f"the void took {result.reversed_points} points the member no longer had from this "
            "purchase (they expired)")


# --- stored value -----------------------------------------------------------------------------


async def test_concurrent_stored_value_pays_never_overdraw(db_url, any_db):
    async with running(db_url) as bot:
        member = await new_member(bot)
        staff = await actor()
        await wallet.top_up(bot, member, 10_000, actor=staff, key="t")
        member = await fresh(member)
        results = await outcomes(*(wallet.pay(bot, member, 1_000, actor=staff, key=f"p:{i}")
                                   for i in range(50)))
        assert not unexpected(results, WalletRefused)
        assert {r.reason for r in results if isinstance(r, WalletRefused)} == {
            "stored_value_insufficient.j2"}
        assert sum(isinstance(r, wallet.StoredValueResult) for r in results) == 10
        assert await assert_wallet(member.id) == 0


async def test_top_up_bonus_tiers_are_separate_entries(db_url):
    async with running(db_url) as bot:
        member = await new_member(bot)
        staff = await actor()
        cases = [(49_999, 0), (50_000, 5_000), (99_999, 5_000), (100_000, 12_000)]
        balance = 0
        for number, (amount, bonus) in enumerate(cases):
            result = await wallet.top_up(bot, await fresh(member), amount, actor=staff,
                                         key=f"t{number}")
            balance += amount + bonus
            assert (result.amount, result.bonus, result.balance) == (amount, bonus, balance)
            rows = await StoredValueEntry.filter(idempotency_key__startswith=f"t{number}")\
                .order_by("id").values_list("kind", "delta", "idempotency_key")
            expected = [("topup", amount, f"t{number}")]
            if bonus:
                expected.append(("bonus", bonus, f"t{number}:bonus"))
            assert rows == expected
        assert await assert_wallet(member.id) == balance


async def test_stored_value_keys_act_once(db_url):
    async with running(db_url) as bot:
        member = await new_member(bot)
        staff = await actor()
        first = await wallet.top_up(bot, member, 100_000, actor=staff, key="t")
        again = await wallet.top_up(bot, await fresh(member), 100_000, actor=staff, key="t")
        assert (again.duplicate, again.amount, again.bonus) == (True, 100_000, 12_000)
        assert first.balance == again.balance == 112_000
        await wallet.pay(bot, await fresh(member), 2_000, actor=staff, key="p")
        replay = await wallet.pay(bot, await fresh(member), 2_000, actor=staff, key="p")
        assert replay.duplicate and replay.amount == 2_000
        await wallet.refund(bot, await fresh(member), 500, actor=staff, key="r")
        replay = await wallet.refund(bot, await fresh(member), 500, actor=staff, key="r")
        assert replay.duplicate
        assert await StoredValueEntry.filter(member_id=member.id).count() == 4
        assert await assert_wallet(member.id) == 112_000 - 2_000 + 500


async def test_concurrent_repeats_of_one_stored_value_key_act_once(db_url, any_db):
    """A pay retried while the first is in flight: once, and the retry is told so (not that the
    card is now short)."""
    async with running(db_url) as bot:
        member = await new_member(bot)
        staff = await actor()
        await wallet.top_up(bot, member, 3_000, actor=staff, key="t")
        member = await fresh(member)
        results = await outcomes(*(wallet.pay(bot, member, 2_000, actor=staff, key="p")
                                   for _ in range(20)))
        assert await StoredValueEntry.filter(member_id=member.id, kind="pay").count() == 1
        assert await assert_wallet(member.id) == 1_000
        assert not unexpected(results), "a replayed key was refused instead of replayed"
        assert sum(not r.duplicate for r in results) == 1


async def test_a_repeated_top_up_key_adds_amount_and_bonus_once(db_url, any_db):
    async with running(db_url) as bot:
        member = await new_member(bot)
        staff = await actor()
        results = await outcomes(*(wallet.top_up(bot, member, 50_000, actor=staff, key="t")
                                   for _ in range(20)))
        assert not unexpected(results)
        assert sum(not r.duplicate for r in results) == 1
        assert {(r.amount, r.bonus) for r in results} == {(50_000, 5_000)}
        assert await StoredValueEntry.filter(member_id=member.id).count() == 2
        assert await assert_wallet(member.id) == 55_000


async def test_refund_cannot_exceed_what_was_paid(db_url):
    async with running(db_url) as bot:
        member = await new_member(bot)
        staff = await actor()
        await wallet.top_up(bot, member, 10_000, actor=staff, key="t")
        with pytest.raises(WalletRefused) as refused:  # a top-up is not a payment
            await wallet.refund(bot, await fresh(member), 1, actor=staff, key="r0")
        assert refused.value.reason == "stored_value_refund_too_much.j2"
        await wallet.pay(bot, await fresh(member), 3_000, actor=staff, key="p")
        await wallet.refund(bot, await fresh(member), 2_000, actor=staff, key="r1")
        with pytest.raises(WalletRefused) as refused:
            await wallet.refund(bot, await fresh(member), 1_001, actor=staff, key="r2")
        assert refused.value.values == {"refundable": 1_000}
        await wallet.refund(bot, await fresh(member), 1_000, actor=staff, key="r3")
        with pytest.raises(WalletRefused):
            await wallet.refund(bot, await fresh(member), 1, actor=staff, key="r4")
        assert await assert_wallet(member.id) == 10_000


async def test_concurrent_refunds_cannot_exceed_what_was_paid(db_url, any_db):
    """Two managers refunding the same ¥100 payment at once must not put ¥200 back."""
    async with running(db_url) as bot:
        member = await new_member(bot)
        staff = await actor()
        await wallet.top_up(bot, member, 10_000, actor=staff, key="t")
        await wallet.pay(bot, await fresh(member), 10_000, actor=staff, key="p")
        member = await fresh(member)
        results = await outcomes(*(wallet.refund(bot, member, 10_000, actor=staff, key=f"r{i}")
                                   for i in range(10)))
        assert not unexpected(results, WalletRefused)
        refunded = await StoredValueEntry.filter(member_id=member.id, kind="refund").count()
        assert await assert_wallet(member.id) == 10_000 * refunded
        assert refunded == 1, f"¥100 paid, ¥{100 * refunded} refunded"


# --- punch cards ------------------------------------------------------------------------------


def product(bot: Bot, code: str):
    return next(p for p in bot.config.punch_cards if p.code == code)


@pytest.mark.parametrize("clerks", [2, 20])
async def test_the_last_visit_goes_to_one_clerk(db_url, any_db, clerks):
    async with running(db_url) as bot:
        member = await new_member(bot)
        staff = await actor()
        card = (await wallet.sell_punch_card(bot, member, product(bot, "CARE5"), actor=staff,
                                               key="sell")).card
        await PunchCard.filter(id=card.id).update(remaining=1)
        results = await outcomes(*(wallet.use_punch_card(bot, member, None, actor=staff,
                                                         key=f"use:{i}")
                                   for i in range(clerks)))
        assert not unexpected(results, WalletRefused)
        assert sum(isinstance(r, wallet.PunchResult) for r in results) == 1
        assert {r.reason for r in results if isinstance(r, WalletRefused)} == {"punch_none.j2"}
        assert (await PunchCard.get(id=card.id)).remaining == 0
        assert await PunchUse.filter(card_id=card.id).count() == 1


async def test_a_repeated_punch_key_uses_one_visit(db_url, any_db):
    """A clerk's 核次 delivered twice at once, on the card's last visit: one visit, and the
    repeat is told it was done (not that the card is used up)."""
    async with running(db_url) as bot:
        member = await new_member(bot)
        staff = await actor()
        card = (await wallet.sell_punch_card(bot, member, product(bot, "CARE5"), actor=staff,
                                               key="sell")).card
        await PunchCard.filter(id=card.id).update(remaining=1)
        results = await outcomes(*(wallet.use_punch_card(bot, member, None, actor=staff,
                                                         key="same-use") for _ in range(20)))
        assert await PunchUse.filter(card_id=card.id).count() == 1
        assert (await PunchCard.get(id=card.id)).remaining == 0
        assert not unexpected(results), "a replayed key was refused instead of replayed"
        assert sum(not r.duplicate for r in results) == 1
        assert {r.remaining for r in results} == {0}


async def test_concurrent_visits_use_each_visit_once(db_url, any_db):
    async with running(db_url) as bot:
        member = await new_member(bot)
        staff = await actor()
        card = (await wallet.sell_punch_card(bot, member, product(bot, "CARE5"), actor=staff,
                                               key="sell")).card
        results = await outcomes(*(wallet.use_punch_card(bot, member, None, actor=staff,
                                                         key=f"use:{i}") for i in range(12)))
        assert not unexpected(results, WalletRefused)
        done = [r for r in results if isinstance(r, wallet.PunchResult)]
        assert sorted(r.remaining for r in done) == [0, 1, 2, 3, 4]
        assert (await PunchCard.get(id=card.id)).remaining == 0


async def test_expired_punch_cards_cannot_be_used(db_url):
    clock = Clock()
    async with running(db_url, clock) as bot:
        member = await new_member(bot)
        staff = await actor()
        care = product(bot, "CARE5")
        card = (await wallet.sell_punch_card(bot, member, care, actor=staff, key="sell")).card
        assert card.expires_on == bot.today() + dt.timedelta(days=care.valid_days)
        clock.advance(days=care.valid_days)  # its last day: still fine
        assert (await wallet.use_punch_card(bot, member, None, actor=staff,
                                            key="u1")).remaining == 4
        clock.advance(days=1)
        assert await wallet.active_punch_cards(member.id, bot.today()) == []
        for named in (None, care):
            with pytest.raises(WalletRefused) as refused:
                await wallet.use_punch_card(bot, member, named, actor=staff, key=f"u2{named}")
            assert refused.value.reason == "punch_none.j2"
        assert (await PunchCard.get(id=card.id)).remaining == 4


async def test_two_products_need_a_name(db_url):
    async with running(db_url) as bot:
        member = await new_member(bot)
        staff = await actor()
        wash, care = product(bot, "WASH10"), product(bot, "CARE5")
        await wallet.sell_punch_card(bot, member, wash, actor=staff, key="s1")
        care_card = (await wallet.sell_punch_card(bot, member, care, actor=staff, key="s2")).card
        with pytest.raises(WalletRefused) as refused:
            await wallet.use_punch_card(bot, member, None, actor=staff, key="u0")
        assert refused.value.reason == "punch_which.j2"
        assert refused.value.values["names"] == sorted([wash.name, care.name])
        assert not await PunchUse.exists(idempotency_key="u0")
        used = await wallet.use_punch_card(bot, member, care, actor=staff, key="u1")
        assert (used.card.id, used.remaining) == (care_card.id, 4)
        # Same key again: the same visit, not a second one.
        again = await wallet.use_punch_card(bot, member, care, actor=staff, key="u1")
        assert again.duplicate and again.remaining == 4
        # Once one product is used up, the other needs no name.
        await PunchCard.filter(id=care_card.id).update(remaining=0)
        used = await wallet.use_punch_card(bot, member, None, actor=staff, key="u2")
        assert used.card.product == "WASH10" and used.remaining == 9


# --- the expiry job ---------------------------------------------------------------------------


async def test_expired_lots_expire_entirely_and_once(db_url):
    async with running(db_url) as bot:
        member = await new_member(bot)
        day = dt.date(2031, 6, 15)

        async def lot(points: int, expires_on: dt.date) -> int:
            entry = await loyalty.post_points(member.id, points, kind="earn", reason="测试",
                                              key=f"lot:{points}", expires_on=expires_on)
            return entry.id

        a = await lot(100, day - dt.timedelta(days=30))
        b = await lot(40, day - dt.timedelta(days=1))
        last_day = await lot(25, day)  # its last day: spendable today
        await lot(7, day + dt.timedelta(days=1))
        assert await expiry.expire_due(day) == 140
        assert await expiry.expire_due(day) == 0
        expired = await PointsEntry.filter(member_id=member.id, kind="expire").order_by("id")
        assert [(e.idempotency_key, e.delta) for e in expired] == [
            (f"expire:{a}", -100), (f"expire:{b}", -40)]
        assert await assert_ledger(member.id) == 32
        assert await expiry.expire_due(day + dt.timedelta(days=1)) == 25
        assert (await PointsEntry.get(id=last_day)).remaining == 0
        assert await assert_ledger(member.id) == 7


async def test_a_partly_spent_lot_expires_only_its_remainder(db_url):
    async with running(db_url) as bot:
        member = await new_member(bot)
        day = dt.date(2031, 6, 15)
        old = await loyalty.post_points(member.id, 100, kind="earn", reason="旧",
                                        key="old", expires_on=day - dt.timedelta(days=1))
        await loyalty.post_points(member.id, 50, kind="earn", reason="新", key="new",
                                  expires_on=day + dt.timedelta(days=100))
        await spend(member.id, 70, "s")
        assert await expiry.expire_due(day) == 30
        entry = await PointsEntry.get(idempotency_key=f"expire:{old.id}")
        assert entry.delta == -30 and await uses_of(entry) == {old.id: 30}
        assert await assert_ledger(member.id) == 50


async def test_expiry_running_alongside_spends(db_url, any_db):
    async with running(db_url) as bot:
        day = bot.today()
        members = [await new_member(bot) for _ in range(3)]
        for member in members:
            for number in range(5):
                await loyalty.post_points(
                    member.id, 20, kind="earn", reason="测试", key=f"{member.id}:{number}",
                    expires_on=day + dt.timedelta(days=-2 if number % 2 else 30))
        calls = [expiry.expire_due(day), expiry.expire_due(day)]
        calls += [spend(m.id, 15, f"s:{m.id}:{i}") for m in members for i in range(4)]
        results = await outcomes(*calls)
        assert not unexpected(results, InsufficientPoints)
        for member in members:
            await assert_ledger(member.id)
            for lot in await PointsEntry.filter(member_id=member.id, delta__gt=0,
                                                expires_on__lt=day):
                assert lot.remaining == 0
                assert await PointsEntry.filter(idempotency_key=f"expire:{lot.id}").count() <= 1
        assert await expiry.expire_due(day) == 0


async def test_expiry_notices_once_per_member_and_date_over_a_week(db_url):
    async with running(db_url) as bot:
        start = dt.date(2031, 6, 1)
        assert bot.config.points.expiry_notice_days == 7
        a, b, c = [await new_member(bot) for _ in range(3)]
        plan = [(a, 100, 3), (a, 50, 3), (a, 30, 5), (b, 10, 10), (c, 99, 40)]
        for number, (member, points, days) in enumerate(plan):
            await loyalty.post_points(member.id, points, kind="earn", reason="测试",
                                      key=f"lot:{number}",
                                      expires_on=start + dt.timedelta(days=days))
        for offset in range(7):
            await expiry.notify_expiring(bot, start + dt.timedelta(days=offset))
        rows = await Delivery.filter(key__startswith="expiry-notice:").order_by("key")
        expected = {
            f"expiry-notice:{a.id}:{start + dt.timedelta(days=3)}": 150,
            f"expiry-notice:{a.id}:{start + dt.timedelta(days=5)}": 30,
        }
        # b's lot (day 10) comes into the 7-day window on day 3; c's (day 40) never does.
        expected[f"expiry-notice:{b.id}:{start + dt.timedelta(days=10)}"] = 10
        assert sorted(row.key for row in rows) == sorted(expected)
        for row in rows:
            assert row.purpose == "points_expiring"
            assert f"{expected[row.key]} 积分" in row.payload["text"]


async def test_expiry_notices_for_a_member_with_more_lots_than_a_batch(db_url, monkeypatch):
    """notify_expiring reads lots in batches of BATCH rows; a member whose expiring lots fill a
    whole batch must still get every date, with the whole sum."""
    monkeypatch.setattr(expiry, "BATCH", 4)
    async with running(db_url) as bot:
        start = dt.date(2031, 6, 1)
        member = await new_member(bot)
        other = await new_member(bot)
        for number in range(6):
            await loyalty.post_points(member.id, 10, kind="earn", reason="测试",
                                      key=f"lot:{number}",
                                      expires_on=start + dt.timedelta(days=1 + number % 3))
        await loyalty.post_points(other.id, 5, kind="earn", reason="测试", key="other",
                                  expires_on=start + dt.timedelta(days=2))
        await expiry.notify_expiring(bot, start)
        rows = {row.key: row.payload["text"]
                for row in await Delivery.filter(key__startswith="expiry-notice:")}
        expected = {f"expiry-notice:{member.id}:{start + dt.timedelta(days=d)}": 20
                    for d in (1, 2, 3)}
        expected[f"expiry-notice:{other.id}:{start + dt.timedelta(days=2)}"] = 5
        assert sorted(rows) == sorted(expected)
        for key, points in expected.items():
            assert f"{points} 积分" in rows[key], rows[key]


async def test_check_invariant_detects_a_broken_ledger(db_url):
    """The checker itself: a hand-made inconsistency must not pass."""
    async with running(db_url) as bot:
        member = await new_member(bot, 50)
        await Member.filter(id=member.id).update(points=51)
        with pytest.raises(AssertionError):
            await assert_ledger(member.id)
        await Member.filter(id=member.id).update(points=50)
        await PointsEntry.filter(member_id=member.id).update(remaining=49)
        with pytest.raises(AssertionError):
            await assert_ledger(member.id)

