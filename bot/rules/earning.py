"""How many points a purchase earns, when points expire, how stored-value top-ups are rewarded.
Pure functions of their inputs; the services load, call these, and save."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction


class Rounding(StrEnum):
    """How a fractional number of points is rounded (config: points.rounding)."""

    FLOOR = "floor"
    ROUND = "round"  # half up
    CEIL = "ceil"


@dataclass(frozen=True)
class EarningRule:
    points_per_yuan: Fraction
    rounding: Rounding
    min_amount_fen: int
    member_day: int  # ISO weekday 1..7, 0 = no member day
    member_day_multiplier: Fraction


def points_for(amount_fen: int, rule: EarningRule, tier_multiplier: Fraction,
               weekday: int) -> int:
    """Points for a purchase of amount_fen on a day with this ISO weekday. Exact arithmetic:
    1.1 × 3 is 3.3, never 3.3000000000000003."""
    if amount_fen < rule.min_amount_fen or amount_fen <= 0:
        return 0
    raw = Fraction(amount_fen, 100) * rule.points_per_yuan * tier_multiplier
    if rule.member_day and weekday == rule.member_day:
        raw *= rule.member_day_multiplier
    if rule.rounding == Rounding.CEIL:
        return math.ceil(raw)
    if rule.rounding == Rounding.ROUND:
        return int(raw + Fraction(1, 2))  # half up: 2.5 → 3, not banker's 2
    return math.floor(raw)


@dataclass(frozen=True)
class PointsWhy:
    """Why a purchase earned what it did, told to the clerk and the member: the tier's
    multiplier and, on the member day, the member day's."""

    tier: str
    tier_multiplier: Fraction
    member_day_multiplier: Fraction | None  # None: not the member day (or none is set)


def points_why(rule: EarningRule, tier: str, tier_multiplier: Fraction,
               weekday: int) -> PointsWhy:
    member_day = rule.member_day and weekday == rule.member_day
    return PointsWhy(tier, tier_multiplier, rule.member_day_multiplier if member_day else None)


def expiry_for(earned_on: dt.date, policy: str, months: int) -> dt.date | None:
    """The last day a lot earned on `earned_on` can be spent; None when points never expire.

    months: the same day `months` later (clamped to the month's end), minus nothing: the lot
    expires at the end of that day. year_end: 31 December of the year it was earned.
    """
    if policy == "never":
        return None
    if policy == "year_end":
        return dt.date(earned_on.year, 12, 31)
    month_index = earned_on.month - 1 + months
    year, month = earned_on.year + month_index // 12, month_index % 12 + 1
    last_day = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(year, month, min(earned_on.day, last_day))


@dataclass(frozen=True)
class TopUpBonus:
    min_fen: int
    bonus_fen: int


def topup_bonus(amount_fen: int, bonuses: list[TopUpBonus]) -> int:
    """The bonus of the biggest tier the top-up reaches (充500送50: 500 → 50, 999 → 50)."""
    reached = [b.bonus_fen for b in bonuses if amount_fen >= b.min_fen]
    return max(reached, default=0)


def parse_yuan(text: str, max_fen: int) -> int | None:
    """'128.5' → 12850 fen. None for negative, zero, more than two decimals, or above max_fen."""
    text = text.strip().removeprefix("¥").removeprefix("￥").removesuffix("元")
    whole, dot, frac = text.partition(".")
    if not whole.isascii() or not whole.isdigit() or len(whole) > 9:
        return None
    if dot and (not frac.isascii() or not frac.isdigit() or not 1 <= len(frac) <= 2):
        return None
    fen = int(whole) * 100 + (int(frac.ljust(2, "0")) if dot else 0)
    return fen if 0 < fen <= max_fen else None


def fen_to_yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"
