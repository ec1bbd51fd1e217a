"""签到: daily points, once per member and local date. The unique (member, local_date) key is the
guard, not a check-then-insert; a streak bonus every N consecutive days."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bot.infra import idempotent
from bot.models import CheckIn, Member, PointsKind
from bot.rules import earning
from bot.services import loyalty


@dataclass(frozen=True)
class CheckInResult:
    done: bool  # False: already checked in today
    streak: int
    points: int
    bonus: int
    balance: int


async def check_in(bot, member: Member) -> CheckInResult:
    cfg = bot.config.points
    today = bot.today()
    yesterday = await CheckIn.get_or_none(member_id=member.id,
                                          local_date=today - dt.timedelta(days=1))
    streak = yesterday.streak + 1 if yesterday else 1
    bonus = cfg.checkin_streak_bonus if streak % cfg.checkin_streak_days == 0 else 0
    points = cfg.checkin_points + bonus
    expires_on = earning.expiry_for(today, cfg.expiry, cfg.expiry_months)
    key = f"checkin:{member.id}:{today.isoformat()}"

    async def act() -> CheckInResult:
        await CheckIn.create(member_id=member.id, local_date=today, streak=streak, points=points)
        if points:
            reason = f"签到（连续{streak}天）" + ("，连续奖励" if bonus else "")
            await loyalty.append_points(member.id, points, kind=PointsKind.EARN, reason=reason,
                                        key=key, expires_on=expires_on)
        return CheckInResult(True, streak, points, bonus, await loyalty.spendable(member.id))

    async def done_today() -> CheckInResult | None:
        row = await CheckIn.get_or_none(member_id=member.id, local_date=today)
        if row is None:
            return None
        return CheckInResult(False, row.streak, row.points, 0, await loyalty.spendable(member.id))

    # The unique (member, local date) row is the key; a repeat today fails on it.
    return await idempotent.once(done_today, act, look_first=False)
