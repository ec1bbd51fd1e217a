"""The Redis lock that lets one worker at a time refresh the WeChat access token. (Redis versions
of the dedup records, dialog state and rate limits live beside their database versions.)"""

from __future__ import annotations

import datetime as dt
import secrets

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
