"""Tier changes by hand and by the periodic evaluation.

A tier a manager sets by hand is a floor: the member keeps at least that tier (the evaluation
never goes below it) and still rises above it by spending. Setting the first tier removes the
floor. Every change is kept in TierChange.

A void of the purchase that lifted a member's tier takes the lift back at once (reason
"correction"): the purchase was a mistake, so the tier it bought was too; that is not a
downgrade and gets none of a downgrade's notice period.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from bot.models import AuditEntry, Member, TierChange
from bot.notifications import notices
from bot.rules import tiers
from bot.services import loyalty
from bot.services.staff import Actor, audit


@dataclass(frozen=True)
class TierSet:
    member: Member  # as they are now
    change: TierChange | None  # None: the tier was that already, or the key's earlier run
    repeated: bool = False  # the key was done before: nothing changed now


async def set_tier(bot, member: Member, tier: str, *, actor: Actor,
                   key: str | None = None) -> TierSet:
    """Set the member's tier (a floor, above the first tier), with its TierChange and audit
    entry, and tell the member after the commit. With a `key` (a console form's nonce) it is
    done once: a repeat of that key, or a copy running at the same time, changes nothing more."""
    names = [t.name for t in bot.config.tiers]
    if tier not in names:
        raise ValueError(tier)
    floor = None if tier == names[0] else tier
    change = None
    async with in_transaction():
        if key is not None:
            # Lock the member's row first (a copy of this request waits here on PostgreSQL;
            # SQLite writes one at a time), then look for the key's audit entry.
            await Member.filter(id=member.id).update(tier=F("tier"))
            if await AuditEntry.exists(member_id=member.id, action="set_tier", detail=key):
                return TierSet(await Member.get(id=member.id), None, repeated=True)
            member = await Member.get(id=member.id)  # what the tier is now, under the lock
        await Member.filter(id=member.id).update(tier=tier, tier_floor=floor)
        if tier != member.tier:
            change = await TierChange.create(member_id=member.id, from_tier=member.tier,
                                             to_tier=tier, reason="manual", staff=actor.staff)
        await audit(actor, "set_tier", member=member,
                    before={"tier": member.tier, "floor": member.tier_floor},
                    after={"tier": tier, "floor": floor}, detail=key or "")
    if change is not None:
        bot.spawn(notices.tier_set(bot, change, floor=floor is not None),
                  f"notice:tier-set:{change.id}")
    return TierSet(await Member.get(id=member.id), change)


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


async def take_back_upgrade(bot, member: Member, since: dt.datetime, *,
                            actor: Actor) -> str | None:
    """In a void's transaction, once the purchase recorded at `since` is voided: if a purchase
    upgrade at or after it no longer stands on the spend that is left, put the member back
    (never below the tier they had before that upgrade). Returns the corrected tier."""
    lift = await TierChange.filter(member_id=member.id, reason="purchase",
                                   created_at__gte=since).order_by("id").first()
    if lift is None:
        return None
    spend = await loyalty.rolling_spend(member.id, bot.now())
    target = tiers.corrected_tier(bot.config.tiers, member.tier, spend, member.tier_floor,
                                  lift.from_tier)
    if target is None:
        return None
    # Conditional on the tier we read, as the evaluation is.
    if not await Member.filter(id=member.id, tier=member.tier).update(tier=target):
        return None
    await TierChange.create(member_id=member.id, from_tier=member.tier, to_tier=target,
                            reason="correction", staff=actor.staff)
    return target
