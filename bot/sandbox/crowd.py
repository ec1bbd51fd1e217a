"""A crowd of demo members for trying a campaign in the sandbox: every tier, followers and
SMS-only members, a few who said 退订, purchases spread over the year so that tiers and RFM
classes mean something, and birthdays (some this month).

It is all made up from a fixed seed, so every sandbox holds the same crowd, and it is written
in one transaction of bulk inserts, so a sandbox start stays fast and a crash half-way leaves
nothing half-seeded. A second start finds the crowd and does nothing."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from tortoise.transactions import in_transaction

from bot.clock import local_midnight
from bot.config import Config
from bot.infra.db import IntegrityError
from bot.infra.vault import Vault
from bot.models import CardSerial, Follower, Member, PointsEntry, PointsKind, Purchase, Store
from bot.rules import earning, tiers
from bot.rules.cards import card_number

CROWD_SIZE = 60
SEED = 20261224
PHONE_PREFIX = "1370000"  # 13700000001 … : no real person's numbers
OPENID_PREFIX = "o_demo_crowd_"
SURNAMES = "张王李赵刘陈杨黄周吴徐孙马朱胡郭何林罗高"
TITLES = ("女士", "先生")
# Yuan a member spends over the year, per tier they should end up in (index into [[tiers]]);
# the share of the crowd in each tier falls as the tier rises.
SPEND_BANDS = ((0, 800), (1_000, 4_500), (5_000, 18_000), (20_000, 40_000))
TIER_WEIGHTS = (5, 4, 3, 2)


def crowd_openid(number: int) -> str:
    return f"{OPENID_PREFIX}{number:02d}"


def crowd_phone(number: int) -> str:
    return f"{PHONE_PREFIX}{number:04d}"


def wechat_of(number: int) -> str | None:
    """The crowd member's openid; every seventh never used WeChat (only SMS reaches them)."""
    return None if number % 7 == 0 else crowd_openid(number)


def phone_of_openid(openid: str, size: int = CROWD_SIZE) -> str | None:
    """The phone of the crowd member whose WeChat account this is (None: no one's)."""
    digits = openid.removeprefix(OPENID_PREFIX)
    if digits == openid or not digits.isascii() or not digits.isdigit() \
            or not 0 < int(digits) <= size:
        return None
    return crowd_phone(int(digits)) if wechat_of(int(digits)) == openid else None


@dataclass
class DemoMember:
    number: int
    name: str
    phone: str
    openid: str | None  # None: never used WeChat, so only SMS reaches them
    following: bool
    opted_out: bool  # said 退订: in no marketing send
    birthday: tuple[int, int, int]
    purchases: list[tuple[dt.date, int]] = field(default_factory=list)  # (day, fen)

    @property
    def spend(self) -> int:
        return sum(fen for _, fen in self.purchases)


def crowd(today: dt.date, size: int = CROWD_SIZE) -> list[DemoMember]:
    """The crowd as of `today` (the shop's date): pure, the same for the same arguments."""
    rng = random.Random(SEED)
    people = []
    for number in range(1, size + 1):
        band = rng.choices(range(len(SPEND_BANDS)), weights=TIER_WEIGHTS)[0]
        low, high = SPEND_BANDS[band]
        target = rng.randint(low, high) * 100
        visits = rng.randint(1, 3) if band == 0 else rng.randint(2, 10)
        # Some have not been back for months (RFM's 挽留 classes), most came recently.
        latest = rng.randint(100, 300) if rng.random() < 0.3 else rng.randint(0, 60)
        days = sorted({rng.randint(latest, 364) for _ in range(visits - 1)} | {latest})
        shares = [rng.random() + 0.2 for _ in days]
        purchases = [(today - dt.timedelta(days=ago), max(100, round(target * s / sum(shares))))
                     for ago, s in zip(days, shares, strict=True)]
        month = today.month if number % 6 == 0 else rng.randint(1, 12)
        people.append(DemoMember(
            number=number,
            name=f"{rng.choice(SURNAMES)}{rng.choice(TITLES)}",
            phone=crowd_phone(number),
            openid=wechat_of(number),
            following=number % 9 != 0,
            opted_out=number % 11 == 0,
            birthday=(rng.randint(1965, 2004), month, rng.randint(1, 28)),
            purchases=sorted(purchases),
        ))
    return people


async def seed_crowd(config: Config, vault: Vault, today: dt.date) -> int:
    """Write the crowd unless it is there; how many members were added (0 on a restart)."""
    people = crowd(today)
    if await Member.exists(phone_hash=vault.lookup_hash(people[0].phone)):
        return 0
    try:
        await _write(config, vault, today, people)
    except IntegrityError:  # another start wrote it first
        return 0
    return len(people)


def store_of(number: int, stores: list[Store]) -> Store | None:
    """Every third member of the crowd belongs to the second store, when there is one, so the
    console shows a manager only their store's members."""
    if not stores:
        return None
    return stores[1] if number % 3 == 0 and len(stores) > 1 else stores[0]


async def _write(config: Config, vault: Vault, today: dt.date, people: list[DemoMember]) -> None:
    stores = await Store.all().order_by("id")
    home = {person.number: store_of(person.number, stores) for person in people}
    tz = config.shop.tz
    async with in_transaction():
        await CardSerial.bulk_create([CardSerial() for _ in people])
        serials = sorted(await CardSerial.all().order_by("-id").limit(len(people))
                         .values_list("id", flat=True))
        opted_out_at = local_midnight(today, tz)
        rows = []
        for person, serial in zip(people, serials, strict=True):
            year, month, day = person.birthday
            first_visit = local_midnight(person.purchases[0][0], tz)
            rows.append(Member(
                card_no=card_number(config.shop.card_prefix, serial),
                phone_hash=vault.lookup_hash(person.phone), phone_enc=vault.encrypt(person.phone),
                name=person.name, birth_year=year, birth_month=month, birth_day=day,
                store_id=home[person.number].id if home[person.number] else None,
                tier=tiers.tier_for(config.tiers, person.spend),
                points=sum(_points(fen) for _, fen in person.purchases),
                privacy_consent_at=first_visit, registered_at=first_visit,
                marketing_opt_out_at=opted_out_at if person.opted_out else None))
        await Member.bulk_create(rows)
        ids = dict(await Member.filter(phone_hash__in=[r.phone_hash for r in rows])
                   .values_list("phone_hash", "id"))
        member_ids = [ids[row.phone_hash] for row in rows]
        await Follower.bulk_create([
            Follower(openid=person.openid, member_id=member_id, following=person.following,
                     subscribed_at=local_midnight(person.purchases[0][0], tz),
                     unsubscribed_at=None if person.following else opted_out_at)
            for person, member_id in zip(people, member_ids, strict=True) if person.openid])
        await Purchase.bulk_create([
            Purchase(member_id=member_id, amount=fen,
                     store_id=home[person.number].id if home[person.number] else None,
                     points=_points(fen), note="演示数据",
                     idempotency_key=f"sandbox-crowd:{person.number}:{n}",
                     created_at=local_midnight(day, tz) + dt.timedelta(hours=11 + n % 8))
            for person, member_id in zip(people, member_ids, strict=True)
            for n, (day, fen) in enumerate(person.purchases)])
        bought = await Purchase.filter(member_id__in=member_ids).order_by("id")
        await PointsEntry.bulk_create(_entries(config, bought))


def _points(fen: int) -> int:
    return fen // 100  # a point a yuan: demo data, whatever the earning rule says


def _entries(config: Config, bought: list[Purchase]) -> list[PointsEntry]:
    """One earning lot per purchase, so each member's points are the sum of their ledger."""
    balances: dict[int, int] = {}
    entries = []
    for purchase in bought:
        if not purchase.points:
            continue
        balance = balances[purchase.member_id] = \
            balances.get(purchase.member_id, 0) + purchase.points
        earned_on = purchase.created_at.astimezone(config.shop.tz).date()
        entries.append(PointsEntry(
            member_id=purchase.member_id, delta=purchase.points, kind=PointsKind.EARN,
            reason="演示数据消费", idempotency_key=f"sandbox-crowd:purchase:{purchase.id}",
            balance_after=balance, remaining=purchase.points, purchase_id=purchase.id,
            created_at=purchase.created_at,
            expires_on=earning.expiry_for(earned_on, config.points.expiry,
                                          config.points.expiry_months)))
    return entries
