"""Purchases: points earned, tier upgrades, referral rewards, and voiding.

Each function is one transaction with an idempotency key: a staff command that WeChat delivers
twice, or a CLI call repeated after a timeout, records one purchase.

Voiding (撤销) reverses every points lot the purchase created (its own points, and a referral
reward it triggered), taking from that lot first. If the member already spent some of those
points, the rest comes from their other points, soonest-expiring first; what still cannot be taken
back (the member has spent everything) is written off and recorded on the purchase as
`void_shortfall`, shown to the manager. Points of the purchase that already expired are not
taken again. The balance never goes below zero. An upgrade the voided purchase brought is taken
back at once (tiering.take_back_upgrade: a correction); any lower tier is the periodic
evaluation's call, with notice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from bot.infra import idempotent
from bot.models import Member, PointsEntry, PointsKind, Purchase, Role, TierChange
from bot.notifications import notices
from bot.rules import earning, tiers
from bot.rules.ratings import visit_key
from bot.services import Refused, coupons, loyalty, ratings, tiering
from bot.services.staff import Actor, audit


class PurchaseRefused(Refused):
    """A rule refused the action; `reason` names a template to explain it."""


def earning_rule(config) -> earning.EarningRule:
    points = config.points
    return earning.EarningRule(
        points_per_yuan=earning.Fraction(str(points.per_yuan)),
        rounding=earning.Rounding(points.rounding),
        min_amount_fen=round(points.min_amount * 100),
        member_day=points.member_day,
        member_day_multiplier=earning.Fraction(str(points.member_day_multiplier)),
    )


@dataclass(frozen=True)
class PurchaseResult:
    purchase: Purchase
    member: Member
    points: int
    new_tier: str | None  # set when this purchase lifted the member to a higher tier
    referral_points: int  # points the member got for being referred (first purchase)
    duplicate: bool = False
    why: earning.PointsWhy | None = None  # the multipliers behind `points` (not on a repeat)


async def record(bot, member: Member, amount_fen: int, *, actor: Actor, note: str,
                 key: str) -> PurchaseResult:
    result = await idempotent.once(
        lambda: replayed(key),
        lambda: record_in_transaction(bot, member, amount_fen, actor=actor, note=note, key=key))
    if not result.duplicate:
        await after_commit(bot, result)
    return result


async def after_commit(bot, result: PurchaseResult) -> None:
    """What follows a committed purchase, if it earned the referral reward: the referral
    coupons (their keys make a repeat a no-op), and the referrer told what they got (the
    referred member reads theirs in the purchase notice). And the member is asked to rate the
    visit (once: the question is keyed by the purchase)."""
    ratings.asked_after_visit(bot, visit_key("purchase", result.purchase.id))
    template = bot.config.coupon_rewards.referral
    member = result.member
    if not (result.referral_points and member.referrer_id):
        return
    gift = None
    if template:
        referrer = await Member.get(id=member.referrer_id)
        for who, side in ((member, "referee"), (referrer, "referrer")):
            coupon = await coupons.issue_reward(bot, who, template, source="referral",
                                                key=f"referral-coupon:{member.id}:{side}")
            gift = coupon if side == "referrer" else gift
    if gift is not None:
        await gift.fetch_related("template")
    bot.spawn(notices.referral_reward(bot, member.referrer_id, member, result.referral_points,
                                      gift), f"notice:referral:{member.id}")


def points_preview(bot, member: Member, amount_fen: int) -> int:
    """What a purchase of amount_fen would earn the member today (a confirmation shows it)."""
    return earning.points_for(amount_fen, earning_rule(bot.config),
                              tiers.multiplier(bot.config.tiers, member.tier),
                              bot.today().isoweekday())


async def replayed(key: str) -> PurchaseResult | None:
    """The purchase an earlier run with this key recorded, reported as a repeat."""
    purchase = await Purchase.get_or_none(idempotency_key=key)
    if purchase is None:
        return None
    return PurchaseResult(purchase, await Member.get(id=purchase.member_id), purchase.points,
                          None, 0, duplicate=True)


async def record_in_transaction(bot, member: Member, amount_fen: int, *, actor: Actor,
                                note: str, key: str) -> PurchaseResult:
    """The body of record(), for callers that hold a transaction (a coupon redemption)."""
    config = bot.config
    today = bot.today()
    # Lock the member's row first: their purchases run one at a time, so "is this the first
    # purchase?" (the referral reward) and the tier check see each other's effects.
    await Member.filter(id=member.id).update(points=F("points"))
    before = await Member.get(id=member.id)
    rule, multiplier = earning_rule(config), tiers.multiplier(config.tiers, before.tier)
    points = earning.points_for(amount_fen, rule, multiplier, today.isoweekday())
    why = earning.points_why(rule, before.tier, multiplier, today.isoweekday())
    expires_on = earning.expiry_for(today, config.points.expiry, config.points.expiry_months)
    purchase = await Purchase.create(
        member_id=member.id, store=actor.store, staff=actor.staff, amount=amount_fen,
        points=points, note=note[:64], idempotency_key=key,
    )
    if points:
        await loyalty.append_points(member.id, points, kind=PointsKind.EARN,
                                    reason=f"消费 ¥{earning.fen_to_yuan(amount_fen)}",
                                    key=f"purchase:{purchase.id}", expires_on=expires_on,
                                    purchase_id=purchase.id)
    referral = await _reward_referral(bot, before, purchase, expires_on)
    new_tier = await _upgrade(bot, before, actor)
    after = await Member.get(id=member.id)
    await audit(actor, "purchase", member=member,
                before={"points": before.points, "tier": before.tier},
                after={"points": after.points, "tier": after.tier,
                       "amount": amount_fen, "purchase": purchase.id},
                detail=note)
    return PurchaseResult(purchase, after, points, new_tier, referral, why=why)


async def _reward_referral(bot, member: Member, purchase: Purchase,
                           expires_on: dt.date | None) -> int:
    """Both sides get the referral reward on the referred member's first purchase, once: the
    keys are per referred member, so later purchases (or a retry) find them taken."""
    reward = bot.config.points.referral_points
    if not member.referrer_id or not reward:
        return 0
    if await PointsEntry.exists(idempotency_key=f"referral:{member.id}:referee"):
        return 0
    await loyalty.append_points(member.id, reward, kind=PointsKind.EARN, reason="好友推荐奖励",
                                key=f"referral:{member.id}:referee", expires_on=expires_on,
                                purchase_id=purchase.id)
    await loyalty.append_points(member.referrer_id, reward, kind=PointsKind.EARN,
                                reason=f"推荐好友 {member.name or member.card_no[-4:]} 首次消费",
                                key=f"referral:{member.id}:referrer", expires_on=expires_on,
                                purchase_id=purchase.id)
    return reward


async def _upgrade(bot, member: Member, actor: Actor | None) -> str | None:
    """Upgrades happen at once; downgrades only at the periodic evaluation."""
    spend = await loyalty.rolling_spend(member.id, bot.now())
    target = tiers.target_tier(bot.config.tiers, spend, member.tier_floor)
    if tiers.rank(bot.config.tiers, target) <= tiers.rank(bot.config.tiers, member.tier):
        return None
    await Member.filter(id=member.id).update(tier=target)
    await TierChange.create(member_id=member.id, from_tier=member.tier, to_tier=target,
                            reason="purchase", staff=actor.staff if actor else None)
    return target


@dataclass(frozen=True)
class VoidResult:
    purchase: Purchase
    member: Member
    reversed_points: int
    shortfall: int
    duplicate: bool = False
    corrected_tier: str | None = None  # the tier the member went back to, the upgrade undone


async def void(bot, purchase_id: int, *, actor: Actor) -> VoidResult:
    """Void a purchase once; the purchase itself is the idempotency key (a repeat reports the
    first void)."""
    purchase = await Purchase.get_or_none(id=purchase_id)
    if purchase is None:
        raise PurchaseRefused("void_unknown.j2", serial=purchase_id)
    if purchase.voided_at:
        return VoidResult(purchase, await Member.get(id=purchase.member_id), 0,
                          purchase.void_shortfall, duplicate=True)
    if (actor.staff and actor.staff.role != Role.OWNER and actor.store
            and purchase.store_id not in (None, actor.store.id)):
        # Managers act in their own store; owners in every store.
        raise PurchaseRefused("void_other_store.j2", serial=purchase_id)
    limit = dt.timedelta(days=bot.config.points.void_days)
    if bot.now() - purchase.created_at > limit:
        raise PurchaseRefused("void_too_late.j2", serial=purchase_id,
                              days=bot.config.points.void_days)
    now = bot.now()
    async with in_transaction():
        # The conditional update is the guard: two managers voiding at once void it once.
        if not await Purchase.filter(id=purchase.id, voided_at=None).update(voided_at=now):
            return VoidResult(purchase, await Member.get(id=purchase.member_id), 0,
                              purchase.void_shortfall, duplicate=True)
        before = await Member.get(id=purchase.member_id)
        reversed_points, shortfall = 0, 0
        lots = await PointsEntry.filter(purchase_id=purchase.id, delta__gt=0).order_by("id")
        for index, lot in enumerate(lots):
            # Lock the member row before reading the balance: a spend committing in between
            # would make the reversal below fail with InsufficientPoints (PostgreSQL).
            await Member.filter(id=lot.member_id).update(points=F("points"))
            balance = await loyalty.spendable(lot.member_id)
            # Points of the lot that already expired left the balance once; not again.
            owed = lot.delta - await loyalty.expired_from(lot.id)
            take = min(owed, balance)
            if take:
                await loyalty.append_points(
                    lot.member_id, -take, kind=PointsKind.REVERSE,
                    reason=f"撤销消费 #{purchase.id}", key=f"void:{purchase.id}:{index}",
                    from_lot=lot.id)
            if lot.member_id == purchase.member_id:
                reversed_points += take
                shortfall += owed - take
        await Purchase.filter(id=purchase.id).update(void_shortfall=shortfall)
        corrected = await tiering.take_back_upgrade(bot, before, purchase.created_at,
                                                    actor=actor)
        after = await Member.get(id=purchase.member_id)
        tier_before, tier_after = ({"tier": before.tier}, {"tier": after.tier}) if corrected \
            else ({}, {})
        await audit(actor, "void_purchase", member=after,
                    before={"points": before.points, "purchase": purchase.id,
                            "amount": purchase.amount, **tier_before},
                    after={"points": after.points, "reversed": reversed_points,
                           "shortfall": shortfall, **tier_after})
    purchase = await Purchase.get(id=purchase.id)
    return VoidResult(purchase, after, reversed_points, shortfall, corrected_tier=corrected)
