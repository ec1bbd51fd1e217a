"""Domain rules: each function that changes state runs in one transaction."""

from __future__ import annotations

from typing import Literal

from tortoise.expressions import F

from bot.models import Member


class Refused(Exception):
    """A rule said no. `reason` names the template (templates/messages/) that explains it to
    the person who asked; `values` fill it in."""

    def __init__(self, reason: str, **values):
        super().__init__(reason)
        self.reason = reason
        self.values = values


async def move_balance(member_id: int, column: Literal["points", "stored_value"],
                       delta: int) -> int | None:
    """Move one of the member's cached balances by `delta`; the new balance, or None when a
    decrease does not fit. The conditional update is the guard, whatever the concurrency: a
    balance never goes below zero (and on PostgreSQL the row stays locked to the end of the
    transaction, so the balance read back is this change's)."""
    query = Member.filter(id=member_id)
    if delta < 0:
        query = query.filter(**{f"{column}__gte": -delta})
    if not await query.update(**{column: F(column) + delta}):
        return None
    return await Member.get(id=member_id).values_list(column, flat=True)
