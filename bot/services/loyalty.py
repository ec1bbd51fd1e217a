"""Points and the card summary. Member.points is the cached sum of the member's ledger entries
and changes only in the transaction that appends one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tortoise.expressions import F
from tortoise.functions import Sum
from tortoise.transactions import in_transaction

from bot import tiers
from bot.db import IntegrityError
from bot.models import Member, PointsEntry, Purchase


class InsufficientPoints(Exception):
    pass


async def post_points(member_id: int, delta: int, *, kind: str, reason: str,
                      key: str) -> PointsEntry:
    """Append one ledger entry and move the cached balance, in one transaction. Repeating a key
    returns the first entry instead of acting again. A spend is a conditional update
    (points >= amount), so concurrent spends can never take the balance below zero."""
    existing = await PointsEntry.get_or_none(idempotency_key=key)
    if existing:
        return existing
    try:
        async with in_transaction():
            return await append_points(member_id, delta, kind=kind, reason=reason, key=key)
    except IntegrityError:
        # The same key committed concurrently; ours rolled back.
        return await PointsEntry.get(idempotency_key=key)


async def append_points(member_id: int, delta: int, *, kind: str, reason: str,
                        key: str) -> PointsEntry:
    """The body of post_points, for callers that already hold a transaction."""
    query = Member.filter(id=member_id)
    if delta < 0:
        query = query.filter(points__gte=-delta)
    if not await query.update(points=F("points") + delta):
        raise InsufficientPoints(member_id)
    balance = await Member.get(id=member_id).values_list("points", flat=True)
    return await PointsEntry.create(member_id=member_id, delta=delta, kind=kind, reason=reason,
                                    idempotency_key=key, balance_after=balance)


async def rolling_spend(member_id: int, now: dt.datetime) -> int:
    """Spend (fen) over the last 12 months, voided purchases excluded: the tier basis."""
    row = await (
        Purchase.filter(member_id=member_id, voided_at__isnull=True,
                        created_at__gte=now - dt.timedelta(days=365))
        .annotate(total=Sum("amount"))
        .first()
        .values("total")
    )
    return int((row or {}).get("total") or 0)


@dataclass(frozen=True)
class CardSummary:
    card_no: str
    name: str
    tier: str
    points: int
    stored_value_fen: int
    next_tier: str | None
    to_next_tier_fen: int


async def card_summary(bot, member: Member) -> CardSummary:
    spend = await rolling_spend(member.id, bot.now())
    step = tiers.progress(bot.config.tiers, member.tier, spend)
    return CardSummary(member.card_no, member.name, member.tier, member.points,
                       member.stored_value, step.next, step.remaining_fen)
