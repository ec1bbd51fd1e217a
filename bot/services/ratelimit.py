"""A sliding-window rate limiter in the database, so limits hold across workers and restarts.

Each limited key has a row that is locked while its recent events are counted and the new one
is written, so two simultaneous requests cannot both see room for one more.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from bot.db import IntegrityError
from bot.models import RateEvent, RateKey


@dataclass(frozen=True)
class Limit:
    count: int
    seconds: int


async def _ensure_keys(keys: list[str]) -> None:
    for key in keys:
        if not await RateKey.exists(key=key):
            with contextlib.suppress(IntegrityError):  # created by a concurrent request
                await RateKey.create(key=key)


async def hit(limits: dict[str, list[Limit]], now: dt.datetime) -> int | None:
    """Record one event under every key if no limit is exceeded; otherwise record nothing and
    return how many seconds until the tightest limit has room again."""
    keys = sorted(limits)
    await _ensure_keys(keys)
    async with in_transaction():
        # Locks in a fixed order (no deadlocks); SQLite serialises the transaction instead.
        await RateKey.filter(key__in=keys).select_for_update().order_by("key").only("id")
        retry_after = await blocked(limits, now)
        if retry_after:
            return retry_after
        await RateEvent.bulk_create([RateEvent(key=key, at=now) for key in keys])
    return None


async def blocked(limits: dict[str, list[Limit]], now: dt.datetime) -> int | None:
    """Seconds until there is room again under these limits, without recording anything."""
    retry_after = 0
    for key, rules in limits.items():
        longest = max(limit.seconds for limit in rules)
        times = await RateEvent.filter(
            key=key, at__gt=now - dt.timedelta(seconds=longest)
        ).order_by("-at").values_list("at", flat=True)
        for limit in rules:
            recent = [t for t in times if t > now - dt.timedelta(seconds=limit.seconds)]
            if len(recent) >= limit.count:
                wait = recent[limit.count - 1] + dt.timedelta(seconds=limit.seconds) - now
                retry_after = max(retry_after, int(wait.total_seconds()) + 1)
    return retry_after or None


async def release(limits: dict[str, list[Limit]], at: dt.datetime) -> None:
    """Take back the events one hit() recorded at `at` (the action did not happen after all)."""
    await RateEvent.filter(key__in=list(limits), at=at).delete()



class DatabaseLimiter:
    """The functions above as an object, interchangeable with redis_store.RedisLimiter."""

    async def hit(self, limits: dict[str, list[Limit]], now: dt.datetime) -> int | None:
        return await hit(limits, now)

    async def blocked(self, limits: dict[str, list[Limit]], now: dt.datetime) -> int | None:
        return await blocked(limits, now)

    async def release(self, limits: dict[str, list[Limit]], at: dt.datetime) -> None:
        await release(limits, at)
