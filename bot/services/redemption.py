"""Coupons at the till: redemption by code, with the purchase it pays for, and undo.

Redemption is a conditional update (status = 'issued'), so a coupon is redeemed at most once
whatever the concurrency; a redemption with an amount records the purchase (and its points) in
the same transaction. Apart from coupons.py so that purchases (which issue referral coupons) and
redemption (which records purchases) do not import each other.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from tortoise.transactions import in_transaction

from bot.models import Coupon, CouponStatus, Staff, Store
from bot.rules import coupons as coupon_rules
from bot.services import purchases
from bot.services.coupons import CouponRefused, rule_of
from bot.services.staff import Actor, audit


@dataclass(frozen=True)
class Redemption:
    coupons: list[Coupon]
    amount: int | None  # what the customer's purchase came to, if staff said
    discount: int  # fen to take off
    gifts: list[str] = field(default_factory=list)
    purchase: purchases.PurchaseResult | None = None

    @property
    def to_pay(self) -> int | None:
        return None if self.amount is None else self.amount - self.discount


class AmountNeeded(CouponRefused):
    """Some of the coupons need the purchase amount (a threshold, a capped discount): nothing
    was redeemed; ask for the amount, or for a 确认 to use them without one."""


async def find(code: str) -> Coupon | None:
    return await Coupon.get_or_none(code=code).select_related("template", "member")


async def _refusal_for(coupon: Coupon, store: Store | None, amount: int | None,
                       now: dt.datetime) -> CouponRefused | None:
    template = coupon.template
    if coupon.status == "redeemed":
        staff = await Staff.get_or_none(id=coupon.redeemed_by_id) if coupon.redeemed_by_id else None
        where = await Store.get_or_none(id=coupon.redeemed_store_id)
        return CouponRefused("coupon_already_used.j2", coupon=coupon, staff=staff, store=where)
    if coupon.status != "issued" or coupon.expires_at <= now:
        return CouponRefused("coupon_expired.j2", coupon=coupon)
    if coupon.valid_from > now:
        return CouponRefused("coupon_not_yet.j2", coupon=coupon)
    if template.stores and (store is None or store.code not in template.stores):
        return CouponRefused("coupon_wrong_store.j2", coupon=coupon, stores=template.stores)
    if amount is not None and not coupon_rules.applies(rule_of(template), amount):
        return CouponRefused("coupon_below_threshold.j2", coupon=coupon, amount=amount)
    return None


async def redeem(bot, codes: list[str], amount: int | None, *, actor: Actor,
                 key: str, confirmed: bool = False) -> Redemption:
    """Redeem one or more coupons (one purchase). Raises CouponRefused with what staff must
    know; the codes have passed the check character already. Without an amount, a coupon whose
    rule needs one is not used unless the clerk `confirmed` (AmountNeeded): otherwise a 满200减30
    is gone whether or not the purchase reached 200."""
    now = bot.now()
    codes = list(dict.fromkeys(codes))  # the same code twice is one coupon, used once
    found = [await find(code) for code in codes]
    if None in found:
        raise CouponRefused("coupon_unknown.j2", code=codes[found.index(None)])
    coupons: list[Coupon] = found  # type: ignore[assignment]
    if len({c.member_id for c in coupons}) > 1:
        raise CouponRefused("coupon_mixed_members.j2")
    # The stacking rule: at most one exclusive coupon on a purchase; combinable ones may join it.
    if sum(c.template.exclusive for c in coupons) > 1:
        raise CouponRefused("coupon_not_combinable.j2",
                            names=[c.template.name for c in coupons if c.template.exclusive])
    for coupon in coupons:
        refusal = await _refusal_for(coupon, actor.store, amount, now)
        if refusal:
            raise refusal
    rules = [rule_of(c.template) for c in coupons]
    if amount is None and not confirmed and any(coupon_rules.needs_amount(r) for r in rules):
        raise AmountNeeded("redeem_ask_amount.j2", coupons=coupons)
    off = coupon_rules.combined_discount(rules, amount) if amount is not None else 0
    gifts = [c.template.gift for c in coupons if c.template.kind == "gift"]
    member = coupons[0].member
    purchase = None
    async with in_transaction():
        for coupon in coupons:
            # The guard: of two clerks scanning the same code at once, one updates a row.
            if not await Coupon.filter(id=coupon.id, status="issued").update(
                    status=CouponStatus.REDEEMED, redeemed_at=now,
                    redeemed_by_id=actor.staff.id if actor.staff else None,
                    redeemed_store_id=actor.store.id if actor.store else None):
                raise _RaceLost(coupon.id)
        if amount is not None and amount - off > 0:
            purchase = await purchases.record_in_transaction(
                bot, member, amount - off, actor=actor,
                note=f"用券 {'、'.join(c.template.name for c in coupons)}"[:64],
                key=f"{key}:purchase")
            await Coupon.filter(id__in=[c.id for c in coupons]).update(
                purchase_id=purchase.purchase.id)
        await audit(actor, "coupon_redeem", member=member,
                    after={"coupons": [c.code for c in coupons], "amount": amount,
                           "discount": off})
    if purchase:
        await purchases.after_commit(bot, purchase)
    return Redemption(coupons, amount, off, gifts, purchase)


class _RaceLost(Exception):
    """Another redemption took this coupon between our checks and our update."""

    def __init__(self, coupon_id: int):
        super().__init__(coupon_id)
        self.coupon_id = coupon_id


async def redeem_or_explain(bot, codes: list[str], amount: int | None, *, actor: Actor,
                            key: str, confirmed: bool = False) -> Redemption:
    """redeem(), turning a lost race into the same answer as "already used"."""
    try:
        return await redeem(bot, codes, amount, actor=actor, key=key, confirmed=confirmed)
    except _RaceLost as lost:
        coupon = await Coupon.get(id=lost.coupon_id).select_related("template")
        refusal = await _refusal_for(coupon, actor.store, None, bot.now())
        raise refusal or CouponRefused("coupon_unknown.j2", code=coupon.code) from None


async def undo(bot, code: str, *, actor: Actor) -> tuple[Coupon, purchases.VoidResult | None]:
    """A manager takes a redemption back on the same (local) day; the purchase recorded with it
    is voided. Returns the coupon and that void (None when the redemption recorded none)."""
    coupon = await find(code)
    if coupon is None:
        raise CouponRefused("coupon_unknown.j2", code=code)
    if coupon.status != "redeemed":
        raise CouponRefused("coupon_not_redeemed.j2", coupon=coupon)
    tz = bot.config.shop.tz
    if coupon.redeemed_at.astimezone(tz).date() != bot.today():
        raise CouponRefused("coupon_undo_too_late.j2", coupon=coupon)
    async with in_transaction():
        if not await Coupon.filter(id=coupon.id, status="redeemed").update(
                status=CouponStatus.ISSUED, redeemed_at=None, redeemed_by_id=None,
                redeemed_store_id=None, purchase_id=None):
            raise CouponRefused("coupon_not_redeemed.j2", coupon=coupon)
        await audit(actor, "coupon_undo", member=coupon.member_id,
                    before={"coupon": coupon.code, "status": "redeemed"},
                    after={"status": "issued"})
    void = await purchases.void(bot, coupon.purchase_id, actor=actor) \
        if coupon.purchase_id else None
    return await Coupon.get(id=coupon.id).select_related("template"), void


