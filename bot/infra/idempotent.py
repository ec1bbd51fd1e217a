"""The idempotent transaction: a write that carries a key is done once, and repeating it returns
the first result instead of acting again.

The database is the guard, not a check-then-write: the key is a unique column, so of two copies
running at once one commits and the other's transaction fails on the unique key and rolls back;
that copy then returns what the first committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tortoise.transactions import in_transaction

from bot.infra.db import IntegrityError

T = TypeVar("T")


async def once(find: Callable[[], Awaitable[T | None]], act: Callable[[], Awaitable[T]], *,
               conflicts: tuple[type[Exception], ...] = (IntegrityError,),
               look_first: bool = True) -> T:
    """`find()` is what an earlier run with this key left (None: no run committed); `act()` does
    the work inside one transaction. A failure in `conflicts` means a concurrent copy may have
    committed first (a duplicate key; for some callers a balance that copy used up): if `find()`
    now finds its result, that is the answer, else the failure was real and is raised.
    `look_first=False` for callers that have already looked."""
    if look_first:
        first = await find()
        if first is not None:
            return first
    try:
        async with in_transaction():
            return await act()
    except conflicts:
        first = await find()
        if first is None:
            raise
        return first
