"""Redis-backed dedup records, dialog state, rate limits and the token refresh lock, used when
[redis] url is set. Each is atomic across workers: SET NX for claims and locks, one Lua script
per rate-limit decision. Keys live under [redis] prefix, so several shops can share a server.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Callable
from typing import Any

from bot.dialogs import Dialog
from bot.inbound import Inbound
from bot.services.ratelimit import Limit

DEDUP_TTL = dt.timedelta(hours=36)  # WeChat retries within ~15 s; keep it far longer
DIALOG_TTL = dt.timedelta(days=30)


class RedisDedup:
    def __init__(self, redis, prefix: str):
        self._redis = redis
        self._prefix = f"{prefix}:inbound:"

    async def claim(self, inbound: Inbound) -> bool:
        value = json.dumps({"status": "processing", "reply": None})
        return bool(await self._redis.set(self._prefix + inbound.dedup_key, value, nx=True,
                                          ex=DEDUP_TTL))

    async def finish(self, key: str, status: str, reply: dict[str, Any] | None = None) -> None:
        await self._redis.set(self._prefix + key, json.dumps({"status": status, "reply": reply}),
                              xx=True, keepttl=True)

    async def outcome(self, key: str) -> tuple[str, dict[str, Any] | None] | None:
        raw = await self._redis.get(self._prefix + key)
        if raw is None:
            return None
        record = json.loads(raw)
        return record["status"], record["reply"]


class RedisDialogStore:
    """Same interface as dialogs.DialogStore."""

    def __init__(self, redis, prefix: str, clock: Callable[[], dt.datetime]):
        self._redis = redis
        self._prefix = f"{prefix}:dialog:"
        self._clock = clock

    async def load(self, user: str) -> Dialog:
        raw = await self._redis.get(self._prefix + user)
        if raw is None:
            return Dialog(user, None, {}, None)
        record = json.loads(raw)
        return Dialog(user, record["state"], record["data"],
                      dt.datetime.fromisoformat(record["updated_at"]))

    async def save(self, dialog: Dialog) -> None:
        if not dialog.changed:
            return
        if dialog.state is None:
            await self._redis.delete(self._prefix + dialog.user)
        else:
            dialog.updated_at = self._clock()
            record = {"state": dialog.state, "data": dialog.data,
                      "updated_at": dialog.updated_at.isoformat()}
            await self._redis.set(self._prefix + dialog.user,
                                  json.dumps(record, ensure_ascii=False), ex=DIALOG_TTL)
        dialog.changed = False


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
    """Same interface as services.ratelimit.DatabaseLimiter, over sorted sets."""

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


_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLock:
    """The cross-worker lock for refreshing the access token (see wechat_api.SharedLock)."""

    def __init__(self, redis, prefix: str):
        self._redis = redis
        self._prefix = f"{prefix}:lock:"
        self._mine: dict[str, str] = {}
        self._release = redis.register_script(_RELEASE_SCRIPT)

    async def acquire(self, name: str, ttl: dt.timedelta) -> bool:
        token = secrets.token_hex(8)
        if await self._redis.set(self._prefix + name, token, nx=True,
                                 px=int(ttl.total_seconds() * 1000)):
            self._mine[name] = token
            return True
        return False

    async def release(self, name: str) -> None:
        # Only our own lock: if it expired and another worker holds it now, leave it be.
        token = self._mine.pop(name, None)
        if token:
            await self._release(keys=[self._prefix + name], args=[token])
