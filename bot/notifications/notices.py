"""The notices a member is owed, each told through the outbox: a function takes what a service
decided, renders it with its template and sends it under its purpose and key. Services and jobs
decide; they never render member-facing text.

The keys are part of the contract: a notice's key names it (this purchase, this coupon, this
member's expiry date), so the outbox never sends it twice, however often a job runs again and
whichever worker takes over a crashed run. Change a key and members are told twice."""

from __future__ import annotations

import datetime as dt

from bot.models import (
    BirthdayGift,
    Booking,
    Coupon,
    CouponTemplate,
    Member,
    PointsEntry,
    ProfileChange,
    Store,
    TierChange,
)
from bot.notifications.outbox import Outcome
from bot.rules import earning, tiers

# The fields each purpose fills (a template message's `fields` and an SMS's `sms_params` map
# these; docs/notices.md describes them). Purposes not named here carry text only.
FIELDS: dict[str, tuple[str, ...]] = {
    "purchase": ("amount", "points", "balance", "time"),
    "coupon_used": ("coupon", "store", "time"),
    "coupon_undone": ("coupon", "amount", "balance", "time"),
    "coupon_issued": ("coupon", "until"),
    "points_adjust": ("points", "reason", "balance", "time"),
    "tier_change": ("tier", "previous", "time"),
    "stored_value": ("change", "amount", "bonus", "balance", "time"),
    "punch_sold": ("card", "visits", "expires_on", "amount", "points", "balance", "time"),
    "referral_reward": ("friend", "points", "balance", "coupon"),
    "birthday": ("name", "points", "coupon", "date"),
    "booking": ("service", "time", "place", "change"),
    "profile": ("field", "after", "time"),
}


def _yuan(fen: int, sign: str = "") -> str:
    return f"{sign}¥{earning.fen_to_yuan(fen)}"


def _time(bot, at: dt.datetime) -> str:
    return at.astimezone(bot.config.shop.tz).strftime("%Y-%m-%d %H:%M")


def _purchase_values(bot, result, amount: int, at: dt.datetime) -> dict[str, str]:
    """The purchase template's fields ([notices.purchase] fields maps them)."""
    return {"amount": _yuan(amount), "points": str(result.points),
            "balance": str(result.member.points), "time": _time(bot, at)}


async def purchase(bot, result, amount: int, store: Store | None, at: dt.datetime) -> Outcome:
    """A recorded purchase (a services.purchases.PurchaseResult): what it earned and the
    balance; without a customer-service window, the purchase template's fields."""
    text = bot.templates.render("purchase_member.j2", result=result, amount=amount, store=store)
    return await bot.outbox.notify(
        result.member.id, text, purpose="purchase", key=f"notice:purchase:{result.purchase.id}",
        values=_purchase_values(bot, result, amount, at))


async def coupons_used(bot, redemption, store: Store | None, at: dt.datetime, *,
                       key: str) -> Outcome:
    """Coupons redeemed at the till (a services.redemption.Redemption), one notice for the
    redemption: with an amount it recorded a purchase, and that purchase is in the same notice
    (under the purchase purpose and its template fields), so the member is not told twice.
    `key` is the redemption's own idempotency key."""
    bought = redemption.purchase
    first = redemption.coupons[0]
    text = bot.templates.render("coupon_used_member.j2", coupons=redemption.coupons,
                                redemption=redemption, purchase=bought, store=store,
                                when=at.astimezone(bot.config.shop.tz))
    names = "、".join(c.template.name for c in redemption.coupons)
    values = {"coupon": names, "store": store.name if store else bot.config.shop.name,
              "time": _time(bot, at)}
    if bought is not None:
        values |= _purchase_values(bot, bought, bought.purchase.amount, at)
    return await bot.outbox.notify(first.member_id, text,
                                   purpose="purchase" if bought else "coupon_used",
                                   key=f"notice:coupon:{first.id}:{key}", values=values)


async def coupon_undone(bot, coupon: Coupon, void, at: dt.datetime, *, key: str) -> Outcome:
    """A manager took a redemption back (撤销券): the coupon is the member's again, and the
    purchase recorded with it (a purchases.VoidResult, or None) was voided. `key` is the
    manager's message."""
    text = bot.templates.render("coupon_undone_member.j2", coupon=coupon, void=void,
                                tz=bot.config.shop.tz)
    balance = void.member.points if void else (await Member.get(id=coupon.member_id)).points
    return await bot.outbox.notify(
        coupon.member_id, text, purpose="coupon_undone",
        key=f"notice:coupon-undone:{coupon.id}:{key}",
        values={"coupon": coupon.template.name, "balance": str(balance),
                "amount": _yuan(void.purchase.amount) if void else "¥0.00",
                "time": _time(bot, at)})


async def coupon_issued(bot, coupon: Coupon, template: CouponTemplate) -> Outcome:
    """A coupon given to the member (发券 in chat, `memberbot coupon issue`): once per coupon,
    so an issue run again with its --key tells nobody twice."""
    tz = bot.config.shop.tz
    text = bot.templates.render("coupon_received.j2", template=template, coupon=coupon, tz=tz)
    until = (coupon.expires_at.astimezone(tz) - dt.timedelta(seconds=1)).strftime("%Y-%m-%d")
    return await bot.outbox.notify(coupon.member_id, text, purpose="coupon_issued",
                                   key=f"notice:coupon-issued:{coupon.id}",
                                   values={"coupon": template.name, "until": until})


async def points_adjusted(bot, entry: PointsEntry, at: dt.datetime) -> Outcome:
    """A manager's 调积分: once per ledger entry (the adjustment is idempotent by its key)."""
    text = bot.templates.render("points_adjusted_member.j2", entry=entry)
    return await bot.outbox.notify(
        entry.member_id, text, purpose="points_adjust", key=f"notice:adjust:{entry.id}",
        values={"points": f"{entry.delta:+d}", "reason": entry.reason,
                "balance": str(entry.balance_after), "time": _time(bot, at)})


async def referral_reward(bot, referrer_id: int, friend: Member, points: int,
                          coupon: Coupon | None) -> Outcome:
    """The member who invited `friend` got the referral reward (friend's first purchase):
    once per referred member, as the reward itself."""
    referrer = await Member.get(id=referrer_id)
    name = friend.name or f"尾号 {friend.card_no[-4:]}"
    text = bot.templates.render("referral_reward_member.j2", friend=name, points=points,
                                coupon=coupon, balance=referrer.points)
    return await bot.outbox.notify(
        referrer_id, text, purpose="referral_reward", key=f"notice:referral:{friend.id}",
        values={"friend": name, "points": str(points), "balance": str(referrer.points),
                "coupon": coupon.template.name if coupon else "无"})


async def punch_sold(bot, sale, at: dt.datetime) -> Outcome:
    """A punch card sold (开卡, a services.wallet.PunchSale): the card, and the purchase it
    recorded (its points), in one notice; once per card."""
    card = sale.card
    text = bot.templates.render("punch_sold_member.j2", sale=sale)
    values = {"card": card.name, "visits": str(card.visits),
              "expires_on": card.expires_on.isoformat(), "amount": _yuan(sale.price),
              "time": _time(bot, at)}
    if sale.purchase is not None:
        values |= {"points": str(sale.purchase.points),
                   "balance": str(sale.purchase.member.points)}
    else:  # given away: no purchase, no points earned
        member = await Member.get(id=card.member_id)
        values |= {"points": "0", "balance": str(member.points)}
    return await bot.outbox.notify(card.member_id, text, purpose="punch_sold",
                                   key=f"notice:punch-sold:{card.id}", values=values)


# What each stored-value operation is called in the notice's `change` field.
STORED_VALUE_CHANGES = {"topup": ("充值", "+"), "pay": ("储值消费", "-"), "refund": ("退款", "+")}


async def stored_value(bot, result, change: str, at: dt.datetime, *, key: str) -> Outcome:
    """A stored-value change (a services.wallet.StoredValueResult; change is topup, pay or
    refund), under [notices.stored_value]: the template's fields say what happened (change,
    a signed amount) so a payment and a refund do not read alike."""
    what, sign = STORED_VALUE_CHANGES[change]
    text = bot.templates.render(f"stored_value_{change}_member.j2", result=result)
    return await bot.outbox.notify(
        result.member.id, text, purpose="stored_value", key=key,
        values={"change": what, "amount": _yuan(result.amount, sign),
                "bonus": _yuan(result.bonus), "balance": _yuan(result.balance),
                "time": _time(bot, at)})


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
                                   key=f"tier:{change.member_id}:{day.isoformat()}",
                                   values={"tier": change.to_tier, "previous": change.from_tier,
                                           "time": _time(bot, change.created_at)})


async def tier_set(bot, change: TierChange, floor: bool) -> Outcome:
    """A manager's 设等级 moved the member: once per tier change (a 设等级 that changes nothing
    has no change row and tells nothing)."""
    text = bot.templates.render("tier_set_member.j2", change=change, floor=floor)
    return await bot.outbox.notify(change.member_id, text, purpose="tier_change",
                                   key=f"notice:tier-set:{change.id}",
                                   values={"tier": change.to_tier, "previous": change.from_tier,
                                           "time": _time(bot, change.created_at)})


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
        values={"name": member.name or member.card_no, "points": str(gift.points),
                "coupon": coupon.template.name if coupon else "无",
                "date": gift.celebrated_on.isoformat()})


# --- bookings ---

# What each booking notice is called in its `change` field.
BOOKING_CHANGES = {"booked": "已预约", "cancelled": "已取消", "moved": "已改约",
                   "evening": "明日预约提醒", "soon": "预约即将开始", "offer": "候补到位",
                   "lapsed": "候补已过期"}


async def _booking_notice(bot, booking: Booking, change: str, key: str, **extra) -> Outcome:
    booking = await Booking.get(id=booking.id).select_related("service", "resource", "store")
    text = bot.templates.render(f"booking_notice_{change}.j2", booking=booking,
                                config=bot.config.booking, **extra)
    local = booking.starts_at.astimezone(bot.config.shop.tz)
    return await bot.outbox.notify(
        booking.member_id, text, purpose="booking", key=key,
        values={"service": booking.service.name, "time": local.strftime("%Y-%m-%d %H:%M"),
                "place": f"{booking.store.name} {booking.resource.name}",
                "change": BOOKING_CHANGES[change]})


async def booking_changed(bot, booking: Booking, change: str, *,
                          previous: Booking | None = None) -> Outcome:
    """Staff booked, cancelled or moved a member's booking: once per booking and change."""
    return await _booking_notice(bot, booking, change, f"notice:booking:{booking.id}:{change}",
                                 previous=previous)


async def booking_reminder(bot, booking: Booking, which: str) -> Outcome:
    """The evening before, or shortly before the start: once each (the key names both). A
    cancelled or moved booking's queued reminder is skipped (services.bookings)."""
    return await _booking_notice(bot, booking, which,
                                 f"notice:booking:{booking.id}:remind:{which}")


async def booking_visit_paid(bot, booking: Booking, visit) -> Outcome:
    """到店 took a visit from the member's punch card (a services.wallet.PunchResult): once per
    booking, whether the desk in chat or the console marked it."""
    return await bot.outbox.notify(
        booking.member_id, bot.templates.render("punch_used_member.j2", result=visit),
        purpose="punch_use", key=f"notice:punch:booking:{booking.id}:arrived")


async def waitlist_offer(bot, booking: Booking) -> Outcome:
    """A freed place is held for the member (确认候补 takes it until offer_expires_at)."""
    return await _booking_notice(bot, booking, "offer", f"notice:booking:{booking.id}:offer")


async def waitlist_lapsed(bot, booking: Booking) -> Outcome:
    return await _booking_notice(bot, booking, "lapsed", f"notice:booking:{booking.id}:lapsed")


# --- the member's details ---

PROFILE_FIELDS = {"name": "称呼", "phone": "手机号", "birthday": "生日"}


async def profile_changed(bot, change: ProfileChange) -> Outcome:
    """Staff changed the member's name, phone (shown masked) or birthday: once per change. A
    new phone's SMS goes to the new number, which the member gave at the desk."""
    text = bot.templates.render("profile_changed_member.j2", change=change,
                                field=PROFILE_FIELDS[change.field])
    return await bot.outbox.notify(
        change.member_id, text, purpose="profile", key=f"notice:profile:{change.id}",
        values={"field": PROFILE_FIELDS[change.field], "after": change.after,
                "time": _time(bot, change.created_at)})
