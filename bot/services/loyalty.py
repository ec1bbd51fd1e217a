"""The points ledger. Member.points is the cached sum of the member's entries and changes only in
the transaction that appends one.

Every positive entry is a lot with an expiry and a `remaining` count; a negative entry takes
points from lots, soonest-expiring first, and records what it took (PointsUse). So at all times
    member.points == sum(entry.delta) == sum(lot.remaining) >= 0.

Spending starts with a conditional update (`points >= amount`, row count checked): concurrent
spends can never take a balance below zero, and on PostgreSQL the row lock it takes serialises
the lot bookkeeping of one member.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tortoise.expressions import F

from bot.infra import idempotent, sql
from bot.infra.db import IntegrityError
from bot.models import Member, PointsEntry, PointsKind, PointsUse
from bot.rules import earning, tiers
from bot.services import move_balance
from bot.services.staff import audit


class InsufficientPoints(Exception):
    pass


async def post_points(member_id: int, delta: int, *, kind: PointsKind, reason: str, key: str,
                      expires_on: dt.date | None = None,
                      purchase_id: int | None = None) -> PointsEntry:
    """Append one entry in its own transaction. Repeating a key returns the first entry instead
    of acting again. Raises InsufficientPoints if a spend does not fit."""
    # InsufficientPoints too: a concurrent copy with this key may have spent the points.
    return await idempotent.once(
        lambda: PointsEntry.get_or_none(idempotency_key=key),
        lambda: append_points(member_id, delta, kind=kind, reason=reason, key=key,
                              expires_on=expires_on, purchase_id=purchase_id),
        conflicts=(IntegrityError, InsufficientPoints))


async def append_points(member_id: int, delta: int, *, kind: PointsKind, reason: str, key: str,
                        expires_on: dt.date | None = None, purchase_id: int | None = None,
                        from_lot: int | None = None) -> PointsEntry:
    """The body of post_points, for callers that already hold a transaction. A negative delta
    takes from `from_lot` first (expiry, reversal), then soonest-expiring first."""
    if delta == 0:
        raise ValueError("a ledger entry moves at least one point")
    balance = await move_balance(member_id, "points", delta)
    if balance is None:
        raise InsufficientPoints(member_id)
    entry = await PointsEntry.create(
        member_id=member_id, delta=delta, kind=kind, reason=reason, idempotency_key=key,
        balance_after=balance, remaining=max(delta, 0),
        expires_on=expires_on if delta > 0 else None, purchase_id=purchase_id,
    )
    if delta < 0:
        await _take_from_lots(entry, member_id, -delta, from_lot)
    return entry


def lot_order(lot: PointsEntry) -> tuple:
    """Soonest expiry first; lots that never expire last; older first among equals."""
    return (lot.expires_on is None, lot.expires_on or dt.date.max, lot.id)


async def _take_from_lots(entry: PointsEntry, member_id: int, amount: int,
                          first: int | None) -> None:
    lots = sorted(await PointsEntry.filter(member_id=member_id, remaining__gt=0), key=lot_order)
    lots.sort(key=lambda lot: lot.id != first)  # stable: the preferred lot moves to the front
    uses = []
    for lot in lots:
        if amount == 0:
            break
        take = min(lot.remaining, amount)
        await PointsEntry.filter(id=lot.id).update(remaining=F("remaining") - take)
        uses.append(PointsUse(entry_id=entry.id, lot_id=lot.id, amount=take))
        amount -= take
    if amount:
        # Only reachable if the invariant was broken outside this module; refuse to go on.
        raise RuntimeError(f"member {member_id}: lots hold fewer points than the balance")
    await PointsUse.bulk_create(uses)


async def adjust(bot, member: Member, delta: int, *, reason: str, actor, key: str) -> PointsEntry:
    """A manager's correction, audited. Added points expire like earned ones."""
    expires_on = earning.expiry_for(bot.today(), bot.config.points.expiry,
                                    bot.config.points.expiry_months)

    async def act() -> PointsEntry:
        entry = await append_points(member.id, delta, kind=PointsKind.ADJUST, reason=reason[:120],
                                    key=key, expires_on=expires_on)
        await audit(actor, "adjust_points", member=member, before={"points": member.points},
                    after={"points": entry.balance_after, "delta": delta}, detail=reason)
        return entry

    return await idempotent.once(lambda: PointsEntry.get_or_none(idempotency_key=key), act,
                                 conflicts=(IntegrityError, InsufficientPoints))


async def expired_from(lot_id: int) -> int:
    """How many of a lot's points expired (rather than being spent)."""
    rows = await PointsUse.filter(lot_id=lot_id, entry__kind="expire").values_list("amount",
                                                                                  flat=True)
    return sum(rows)


async def spendable(member_id: int) -> int:
    return await Member.get(id=member_id).values_list("points", flat=True)


async def recent_entries(member_id: int, limit: int = 10) -> list[PointsEntry]:
    return await PointsEntry.filter(member_id=member_id).order_by("-id").limit(limit)


# The tier basis: spend (fen) over the last 12 months, voided purchases excluded.
_ROLLING_SPEND_SQL = ("SELECT COALESCE(SUM(amount), 0) FROM purchase "
                     "WHERE member_id = $1 AND voided_at IS NULL AND created_at >= $2")
YEAR = dt.timedelta(days=365)


async def rolling_spend(member_id: int, now: dt.datetime) -> int:
    rows = await sql.fetch(f"SELECT ({_ROLLING_SPEND_SQL}) AS spend", member_id, now - YEAR)
    return int(rows[0]["spend"])


@dataclass(frozen=True)
class PunchLine:
    name: str
    remaining: int
    expires_on: dt.date


@dataclass(frozen=True)
class CardSummary:
    card_no: str
    name: str
    tier: str
    points: int
    stored_value_fen: int
    next_tier: str | None
    to_next_tier_fen: int
    punch_cards: tuple[PunchLine, ...] = ()
    # (date, points) of lots expiring within EXPIRING_WITHIN, soonest first.
    expiring: tuple[tuple[dt.date, int], ...] = ()


EXPIRING_WITHIN = dt.timedelta(days=30)

# Everything the card shows beyond the member row, in one statement: every member asks for
# the card, and each statement costs a round trip (on SQLite, a hand-off to its thread).
_CARD_SQL = f"""
SELECT 'spend' AS part, ({_ROLLING_SPEND_SQL}) AS n, NULL AS day, NULL AS name, NULL AS id
UNION ALL
SELECT 'punch', remaining, expires_on, name, id FROM punch_card
 WHERE member_id = $3 AND remaining > 0 AND expires_on >= $4
UNION ALL
SELECT 'expiring', SUM(remaining), expires_on, NULL, NULL FROM points_entry
 WHERE member_id = $5 AND remaining > 0 AND expires_on <= $6 GROUP BY expires_on
ORDER BY part, day, id"""


async def card_summary(bot, member: Member) -> CardSummary:
    """The card: balances from the member row, tier progress, live punch cards (soonest to
    expire first) and points about to expire."""
    today = bot.today()
    rows = await sql.fetch(_CARD_SQL, member.id, bot.now() - YEAR, member.id, today,
                           member.id, today + EXPIRING_WITHIN)
    spend = next(int(row["n"]) for row in rows if row["part"] == "spend")
    punch = tuple(PunchLine(row["name"], int(row["n"]), sql.as_date(row["day"]))
                  for row in rows if row["part"] == "punch")
    soon = tuple((sql.as_date(row["day"]), int(row["n"]))
                 for row in rows if row["part"] == "expiring")
    step = tiers.progress(bot.config.tiers, member.tier, spend)
    return CardSummary(member.card_no, member.name, member.tier, member.points,
                       member.stored_value, step.next, step.remaining_fen, punch, soon)


async def check_invariant(member_id: int) -> tuple[int, int, int]:
    """(cached balance, sum of entries, sum of lots' remaining): all three must be equal."""
    member = await Member.get(id=member_id)
    entries = await PointsEntry.filter(member_id=member_id).values_list("delta", "remaining")
    return member.points, sum(d for d, _ in entries), sum(r for _, r in entries)
