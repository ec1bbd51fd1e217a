"""A sliding-window rate limiter in the database, so limits hold across workers and restarts.

Each limited key has a row that is locked while its recent events are counted and the new one
is written, so two simultaneous requests cannot both see room for one more.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from tortoise.transactions import in_transaction

from bot.infra.db import IntegrityError
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
    """The functions above as an object, interchangeable with RedisLimiter below."""

    async def hit(self, limits: dict[str, list[Limit]], now: dt.datetime) -> int | None:
        return await hit(limits, now)

    async def blocked(self, limits: dict[str, list[Limit]], now: dt.datetime) -> int | None:
        return await blocked(limits, now)

    async def release(self, limits: dict[str, list[Limit]], at: dt.datetime) -> None:
        await release(limits, at)


# KEYS: the limited keys. ARGV: now (ms), record (1/0), member id, then per key: the number of
# limits, and (count, window ms) pairs. Returns the ms until room again, or 0 if allowed (and
# then, with record=1, the event is added under every key). One script, so it is atomic.
_LIMIT_SCRIPT = """
local now = tonumber(ARGV[1])
local record = ARGV[2] == '1'
local member = ARGV[3]
local i = 4
local wait = 0
local longest = {}
for k = 1, #KEYS do
  local n = tonumber(ARGV[i]); i = i + 1
  longest[k] = 0
  for _ = 1, n do
    local count = tonumber(ARGV[i]); local window = tonumber(ARGV[i + 1]); i = i + 2
    if window > longest[k] then longest[k] = window end
    local recent = redis.call('ZRANGEBYSCORE', KEYS[k], now - window + 1, '+inf',
                              'WITHSCORES')
    local seen = #recent / 2
    if seen >= count then
      -- the count-th newest event must leave the window first
      local at = tonumber(recent[(seen - count) * 2 + 2])
      local left = at + window - now
      if left > wait then wait = left end
    end
  end
end
if wait > 0 or not record then return wait end
for k = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now - longest[k])
  redis.call('ZADD', KEYS[k], now, member)
  redis.call('PEXPIRE', KEYS[k], longest[k])
end
return 0
"""


class RedisLimiter:
    """Same interface as DatabaseLimiter, over sorted sets."""

    def __init__(self, redis, prefix: str):
        self._redis = redis
        self._prefix = f"{prefix}:rate:"
        self._script = redis.register_script(_LIMIT_SCRIPT)

    async def _run(self, limits: dict[str, list[Limit]], now: dt.datetime, record: bool,
                   member: str = "") -> int | None:
        keys = sorted(limits)
        args: list[Any] = [int(now.timestamp() * 1000), "1" if record else "0", member]
        for key in keys:
            args.append(len(limits[key]))
            for limit in limits[key]:
                args += [limit.count, limit.seconds * 1000]
        wait_ms = int(await self._script(keys=[self._prefix + k for k in keys], args=args))
        return wait_ms // 1000 + 1 if wait_ms > 0 else None

    async def hit(self, limits: dict[str, list[Limit]], now: dt.datetime) -> int | None:
        stamp = int(now.timestamp() * 1000)
        return await self._run(limits, now, True, f"{stamp}:{secrets.token_hex(4)}")

    async def blocked(self, limits: dict[str, list[Limit]], now: dt.datetime) -> int | None:
        return await self._run(limits, now, False)

    async def release(self, limits: dict[str, list[Limit]], at: dt.datetime) -> None:
        stamp = int(at.timestamp() * 1000)
        for key in limits:
            await self._redis.zremrangebyscore(self._prefix + key, stamp, stamp)
