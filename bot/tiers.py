"""Which tier a spend reaches, and how far the next one is. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import TierConfig


@dataclass(frozen=True)
class TierProgress:
    current: str
    next: str | None
    remaining_fen: int  # spend still needed for the next tier; 0 at the top


def tier_for(tiers: list[TierConfig], spend_fen: int) -> str:
    reached = [t for t in tiers if spend_fen >= t.min_spend * 100]
    return reached[-1].name if reached else tiers[0].name


def progress(tiers: list[TierConfig], current: str, spend_fen: int) -> TierProgress:
    names = [t.name for t in tiers]
    index = names.index(current) if current in names else 0
    if index + 1 >= len(tiers):
        return TierProgress(current, None, 0)
    following = tiers[index + 1]
    return TierProgress(current, following.name, max(0, following.min_spend * 100 - spend_fen))
