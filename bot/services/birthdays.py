"""Birthdays: each member celebrating on a day gets their tier's gift (points, a coupon) and a
greeting, exactly once per year.

The gift is one transaction guarded by BirthdayGift's unique (member, year): the row, the points
entry (key `birthday:<member>:<year>`) and the coupon (issue key
`birthday-coupon:<member>:<year>`) commit together or not at all, and a second run, a retry or
another worker finds the row instead of giving again. A coupon the rules refuse (out of stock,
the member's limit) does not hold up the rest: the refusal is recorded on the row. The greeting
goes out after the gift has committed, under its own key, so a run that died in between sends
it when the next one takes over, and never twice.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tortoise.queryset import QuerySet

from bot.clock import local_midnight
from bot.infra import idempotent
from bot.infra.paging import batches
from bot.models import BirthdayGift, Coupon, CouponTemplate, Member, PointsKind
from bot.notifications import notices
from bot.rules import birthdays as birthday_rules
from bot.rules import earning, tiers
from bot.services import coupons, loyalty

BATCH = 500


@dataclass
class Tally:
    """What one run did, for the job's result."""

    members: int = 0  # celebrating today
    given: int = 0  # gifts this run gave that held something (points or a coupon)
    greeting_only: int = 0  # members whose gift this run held nothing (tier or refusals)
    already_given: int = 0  # gifts an earlier run (or another worker) had given
    points: int = 0
    coupons: int = 0
    coupon_refused: Counter[str] = field(default_factory=Counter)  # reason → members
    greeted: int = 0
    not_greeted: Counter[str] = field(default_factory=Counter)  # outbox code → members

    def as_dict(self) -> dict[str, Any]:
        return {"members": self.members, "given": self.given,
                "greeting_only": self.greeting_only, "already_given": self.already_given,
                "points": self.points,
                "coupons": self.coupons, "coupon_refused": dict(self.coupon_refused),
                "greeted": self.greeted, "not_greeted": dict(self.not_greeted)}


def celebrating(day: dt.date, tz: dt.tzinfo) -> list[QuerySet[Member]]:
    """The members whose birthday is celebrated on `day`, never erased ones nor those who
    registered after that (shop-local) day, which a run for a past day must not greet: one
    query per birth date (28 and 29 February on 28 February in other years). Each is an
    equality on the (birth_month, birth_day) index; PostgreSQL answers `birth_day IN (28, 29)
    ORDER BY id LIMIT n` by walking the primary key instead, reading the whole table over the
    batches."""
    month, days = birthday_rules.birthdays_on(day)
    day_ends = local_midnight(day + dt.timedelta(days=1), tz)
    return [Member.filter(birth_month=month, birth_day=d, erased_at=None,
                          registered_at__lt=day_ends) for d in days]


async def _members(day: dt.date, tz: dt.tzinfo, batch: int) -> AsyncIterator[list[Member]]:
    for query in celebrating(day, tz):
        async for members in batches(query, size=batch):
            yield members


async def celebrate(bot, day: dt.date, *, batch: int = BATCH) -> dict[str, Any]:
    """Gifts and greetings for everyone celebrating on `day`, `batch` members at a time."""
    tally = Tally()
    async for members in _members(day, bot.config.shop.tz, batch):
        for member in members:
            tally.members += 1
            gift, new = await give(bot, member, day)
            if new:
                if gift.points or gift.coupon_id is not None:
                    tally.given += 1
                else:  # the tier gives nothing, or its coupon was refused: a greeting alone
                    tally.greeting_only += 1
                tally.points += gift.points
                tally.coupons += gift.coupon_id is not None
                if gift.coupon_refused:
                    tally.coupon_refused[gift.coupon_refused] += 1
            else:
                tally.already_given += 1
            coupon = (await Coupon.filter(id=gift.coupon_id).select_related("template").first()
                      if gift.coupon_id else None)
            outcome = await notices.birthday(bot, member, gift, coupon)
            if outcome.ok:
                tally.greeted += 1
            else:
                tally.not_greeted[outcome.code] += 1
    return tally.as_dict()


async def give(bot, member: Member, day: dt.date) -> tuple[BirthdayGift, bool]:
    """The member's gift for `day`'s year, and whether this call gave it (False: it had been
    given already, by an earlier run or a concurrent one)."""
    made: list[BirthdayGift] = []

    async def act() -> BirthdayGift:
        made.append(await _give(bot, member, day))
        return made[0]

    gift = await idempotent.once(
        lambda: BirthdayGift.get_or_none(member_id=member.id, year=day.year), act)
    return gift, bool(made) and gift is made[0]


async def _give(bot, member: Member, day: dt.date) -> BirthdayGift:
    tier = tiers.config_of(bot.config.tiers, member.tier)
    # First, so that a concurrent copy stops at the unique (member, year) before anything else.
    gift = await BirthdayGift.create(member_id=member.id, year=day.year, celebrated_on=day,
                                     tier=tier.name)
    if tier.birthday_points:
        points = bot.config.points
        await loyalty.append_points(
            member.id, tier.birthday_points, kind=PointsKind.EARN, reason="生日积分",
            key=f"birthday:{member.id}:{day.year}",
            expires_on=earning.expiry_for(bot.today(), points.expiry, points.expiry_months))
        gift.points = tier.birthday_points
    if tier.birthday_coupon:
        template = await CouponTemplate.get_or_none(code=tier.birthday_coupon)
        if template is None:  # removed from the database since config validation
            gift.coupon_refused = "unknown"
        else:
            try:
                coupon = await coupons.issue_in_transaction(
                    bot, member, template, source="birthday",
                    key=f"birthday-coupon:{member.id}:{day.year}")
                gift.coupon_id = coupon.id
            except coupons.CouponRefused as exc:
                # A refusal changes nothing before it raises: the rest of the gift stands.
                gift.coupon_refused = exc.reason.removeprefix("coupon_").removesuffix(".j2")
    await gift.save(update_fields=["points", "coupon_id", "coupon_refused"])
    return gift
