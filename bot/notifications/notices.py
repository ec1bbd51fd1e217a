"""The notices a member is owed, each told through the outbox: a function takes what a service
decided, renders it with its template and sends it under its purpose and key. Services and jobs
decide; they never render member-facing text.

The keys are part of the contract: a notice's key names it (this purchase, this coupon, this
member's expiry date), so the outbox never sends it twice, however often a job runs again and
whichever worker takes over a crashed run. Change a key and members are told twice."""

from __future__ import annotations

import datetime as dt

from bot.models import BirthdayGift, Coupon, Member, Store, TierChange
from bot.notifications.outbox import Outcome
from bot.rules import earning, tiers


async def purchase(bot, result, amount: int, store: Store | None, at: dt.datetime) -> Outcome:
    """A recorded purchase (a services.purchases.PurchaseResult): what it earned and the
    balance; without a customer-service window, the purchase template's fields."""
    text = bot.templates.render("purchase_member.j2", result=result, amount=amount, store=store)
    return await bot.outbox.notify(
        result.member.id, text, purpose="purchase", key=f"notice:purchase:{result.purchase.id}",
        values={"amount": f"¥{earning.fen_to_yuan(amount)}", "points": str(result.points),
                "balance": str(result.member.points),
                "time": at.astimezone(bot.config.shop.tz).strftime("%Y-%m-%d %H:%M")})


async def coupon_expiring(bot, coupon: Coupon) -> Outcome:
    """A coupon (template loaded) is about to expire: once per coupon."""
    text = bot.templates.render("coupon_expiring.j2", coupon=coupon, tz=bot.config.shop.tz)
    return await bot.outbox.notify(coupon.member_id, text, purpose="coupon_expiring",
                                   key=f"coupon-expiring:{coupon.id}")


async def points_expiring(bot, member_id: int, points: int, expires_on: dt.date) -> Outcome:
    """Points that expire on one day: once per member and expiry date."""
    text = bot.templates.render("points_expiring.j2", points=points, expires_on=expires_on)
    return await bot.outbox.notify(member_id, text, purpose="points_expiring",
                                   key=f"expiry-notice:{member_id}:{expires_on.isoformat()}")


async def tier_change(bot, change: TierChange, day: dt.date) -> Outcome:
    """A tier evaluation moved the member up or down: once per member and evaluation day."""
    up = tiers.rank(bot.config.tiers, change.to_tier) > tiers.rank(bot.config.tiers,
                                                                   change.from_tier)
    text = bot.templates.render("tier_up.j2" if up else "tier_down.j2",
                                tier=change.to_tier, previous=change.from_tier)
    return await bot.outbox.notify(change.member_id, text, purpose="tier_change",
                                   key=f"tier:{change.member_id}:{day.isoformat()}")


async def birthday(bot, member: Member, gift: BirthdayGift, coupon: Coupon | None) -> Outcome:
    """The year's birthday greeting in the gift's tier's template (coupon: template loaded):
    once per member and year. With points or a coupon it tells the member their gift has
    arrived, a notice they are owed; a greeting with no gift is marketing (not to members who
    said 退订, never by template message)."""
    template = tiers.config_of(bot.config.tiers, gift.tier).birthday_template
    text = bot.templates.render(template, member=member, tier=gift.tier, points=gift.points,
                                coupon=coupon, tz=bot.config.shop.tz)
    return await bot.outbox.notify(
        member.id, text, purpose="birthday", key=f"birthday-notice:{member.id}:{gift.year}",
        marketing=not (gift.points or gift.coupon_id),
        values={"name": member.name, "points": str(gift.points),
                "coupon": coupon.template.name if coupon else "",
                "date": gift.celebrated_on.isoformat()})
