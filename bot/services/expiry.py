"""Points expiry and its advance notice, run daily by the scheduler. Both are safe to run again:
expiring a lot takes exactly what is left in it (key expire:<lot>), and a notice is one delivery
per member and expiry date."""

from __future__ import annotations

import datetime as dt

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from bot.infra.paging import value_batches
from bot.models import Member, PointsEntry, PointsKind
from bot.notifications import notices
from bot.services import loyalty

BATCH = 500


async def expire_lot(lot_id: int) -> int:
    """Expire what is left of one lot; returns the points expired."""
    async with in_transaction():
        lot = await PointsEntry.get(id=lot_id)
        # Lock the member row first (a no-op update), then read what the lot still holds: a
        # spend running at the same moment has either finished or waits for us.
        await Member.filter(id=lot.member_id).update(points=F("points"))
        remaining = await PointsEntry.get(id=lot_id).values_list("remaining", flat=True)
        if remaining <= 0:
            return 0
        await loyalty.append_points(lot.member_id, -remaining, kind=PointsKind.EXPIRE,
                                    reason=f"积分到期（{lot.expires_on:%Y-%m-%d}）",
                                    key=f"expire:{lot_id}", from_lot=lot_id)
    return remaining


async def expire_due(today: dt.date) -> int:
    """Expire every lot whose last day is before today, in batches; returns points expired."""
    total = 0
    async for ids in value_batches(PointsEntry.filter(expires_on__lt=today, remaining__gt=0),
                                   "id", size=BATCH, flat=True):
        for lot_id in ids:
            total += await expire_lot(lot_id)
    return total


async def notify_expiring(bot, today: dt.date) -> int:
    """Tell members how many points expire within the notice window, once per expiry date.
    Pages by member (a page of member ids, then those members' lots whole), so a member with
    many lots is never split across pages."""
    until = today + dt.timedelta(days=bot.config.points.expiry_notice_days)
    due = PointsEntry.filter(expires_on__gte=today, expires_on__lte=until, remaining__gt=0)
    sent = 0
    async for member_ids in value_batches(due.distinct(), "member_id", size=BATCH, flat=True):
        rows = await due.filter(member_id__in=member_ids).values_list(
            "member_id", "expires_on", "remaining")
        totals: dict[tuple[int, dt.date], int] = {}
        for member_id, expires_on, remaining in rows:
            totals[member_id, expires_on] = totals.get((member_id, expires_on), 0) + remaining
        for (member_id, expires_on), points in sorted(totals.items()):
            outcome = await notices.points_expiring(bot, member_id, points, expires_on)
            sent += outcome.ok
    return sent
