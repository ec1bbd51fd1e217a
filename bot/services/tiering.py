"""Tier changes by hand and by the periodic evaluation.

A tier a manager sets by hand is a floor: the member keeps at least that tier (the evaluation
never goes below it) and still rises above it by spending. Setting the first tier removes the
floor. Every change is kept in TierChange.
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.transactions import in_transaction

from bot.models import Member, TierChange
from bot.rules import tiers
from bot.services import loyalty
from bot.services.staff import Actor, audit


async def set_tier(bot, member: Member, tier: str, *, actor: Actor) -> Member:
    names = [t.name for t in bot.config.tiers]
    if tier not in names:
        raise ValueError(tier)
    floor = None if tier == names[0] else tier
    async with in_transaction():
        await Member.filter(id=member.id).update(tier=tier, tier_floor=floor)
        if tier != member.tier:
            await TierChange.create(member_id=member.id, from_tier=member.tier, to_tier=tier,
                                    reason="manual", staff=actor.staff)
        await audit(actor, "set_tier", member=member,
                    before={"tier": member.tier, "floor": member.tier_floor},
                    after={"tier": tier, "floor": floor})
    return await Member.get(id=member.id)


@dataclass(frozen=True)
class Evaluation:
    member_id: int
    from_tier: str
    to_tier: str
    upgrade: bool


async def evaluate(bot, member: Member) -> Evaluation | None:
    """Move the member to the tier their rolling spend (and floor) earns; None if unchanged."""
    spend = await loyalty.rolling_spend(member.id, bot.now())
    target = tiers.target_tier(bot.config.tiers, spend, member.tier_floor)
    if target == member.tier:
        return None
    async with in_transaction():
        # Conditional on the tier we read: a purchase upgrading them meanwhile wins.
        if not await Member.filter(id=member.id, tier=member.tier).update(tier=target):
            return None
        await TierChange.create(member_id=member.id, from_tier=member.tier, to_tier=target,
                                reason="evaluation")
    up = tiers.rank(bot.config.tiers, target) > tiers.rank(bot.config.tiers, member.tier)
    return Evaluation(member.id, member.tier, target, upgrade=up)
