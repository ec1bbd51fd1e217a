"""Which tier a spend reaches, and how far the next one is. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from bot.config import TierConfig


@dataclass(frozen=True)
class TierProgress:
    current: str
    next: str | None
    remaining_fen: int  # spend still needed for the next tier; 0 at the top


def rank(tiers: list[TierConfig], name: str | None) -> int:
    """Position of a tier (unknown names, e.g. a tier removed from config, rank lowest)."""
    names = [t.name for t in tiers]
    return names.index(name) if name in names else 0


def tier_for(tiers: list[TierConfig], spend_fen: int) -> str:
    reached = [t for t in tiers if spend_fen >= t.min_spend * 100]
    return reached[-1].name if reached else tiers[0].name


def target_tier(tiers: list[TierConfig], spend_fen: int, floor: str | None) -> str:
    """What the spend earns, but never below a tier a manager set by hand (a floor)."""
    earned = tier_for(tiers, spend_fen)
    return floor if floor and rank(tiers, floor) > rank(tiers, earned) else earned


def corrected_tier(tiers: list[TierConfig], current: str, spend_fen: int, floor: str | None,
                   before_upgrade: str) -> str | None:
    """After a void, the tier a member goes back to when the voided purchase's upgrade no longer
    stands (None: the tier stands). What the remaining spend earns, but never below the tier
    they had before that upgrade: going lower is a downgrade, the periodic evaluation's call."""
    target = target_tier(tiers, spend_fen, floor)
    if rank(tiers, target) < rank(tiers, before_upgrade):
        target = before_upgrade
    return target if rank(tiers, target) < rank(tiers, current) else None


def config_of(tiers: list[TierConfig], name: str) -> TierConfig:
    return tiers[rank(tiers, name)]


def multiplier(tiers: list[TierConfig], name: str) -> Fraction:
    return Fraction(str(config_of(tiers, name).multiplier))


def progress(tiers: list[TierConfig], current: str, spend_fen: int) -> TierProgress:
    index = rank(tiers, current)
    if index + 1 >= len(tiers):
        return TierProgress(current, None, 0)
    following = tiers[index + 1]
    return TierProgress(current, following.name, max(0, following.min_spend * 100 - spend_fen))
