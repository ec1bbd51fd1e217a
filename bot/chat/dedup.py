"""Dedup records for inbound messages: who claimed a message first, and what it answered.

The database keeps them in InboundMessage (a unique key); with [redis] url they live in Redis
(SET NX with an expiry). Either way a claim is atomic across every worker, and a record outlives
WeChat's retries (about 15 s) by far: at least a day and a half.

A claim is held on a lease: the worker acting on it renews the lease while its handler runs
(Dispatcher), and a copy that finds a claim still processing after its lease ran out takes it
over, atomically, and acts itself: a lease runs out when its worker died (SIGKILL, power loss)
between claim and outcome, and without the takeover every retry would be answered as a duplicate
and the message lost. Acting twice is safe: what a handler does is keyed by the message
(Context.key), so a second run finds the first run's result.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import socket
from typing import Any, Protocol

from bot.chat.inbound import Inbound
from bot.infra import sql
from bot.infra.db import IntegrityError
from bot.models import InboundMessage

log = logging.getLogger("memberbot.inbound")

# Seconds. WeChat retries about 5 s after a copy it got no answer for: a dead worker's claim has
# lapsed by then, while a live one renews every LEASE / 3 and has slack for a slow renewal.
LEASE = 3.0


def _owner() -> str:
    """This worker, as claims record it: one per Dedup, so a restarted process is another."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


class Dedup(Protocol):
    lease: float  # seconds a claim holds without renewal

    async def claim(self, inbound: Inbound) -> bool:
        """True for the copy that is to act: the first, or one that finds the first copy's
        lease run out (take_over). False for every other copy."""

    async def take_over(self, key: str) -> bool:
        """Take a claim that is still processing and whose lease ran out; True if taken."""

    async def renew(self, key: str) -> bool:
        """Extend this worker's lease on a claim it holds; False if it holds it no more."""

    async def finish(self, key: str, status: str, reply: dict[str, Any] | None = None) -> None:
        """Record how the first copy ended: replied | deferred | failed, and its reply."""

    async def outcome(self, key: str) -> tuple[str, dict[str, Any] | None] | None:
        """(status, reply) of a claimed message, or None if nobody claimed it."""


def _taken(key: str, taken: bool) -> bool:
    if taken:
        log.warning("took over the claim on %s: the worker holding it let its lease run out", key)
    return taken


def _now() -> dt.datetime:
    # The wall clock, as received_at. Workers on several machines compare each other's leases
    # by it: clocks kept by NTP agree far more closely than the lease's slack.
    return dt.datetime.now(dt.UTC)


class DatabaseDedup:
    def __init__(self, lease: float = LEASE):
        self.lease = lease
        self.owner = _owner()

    def _until(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=self.lease)

    async def claim(self, inbound: Inbound) -> bool:
        # Hand-written (bot/infra/sql.py), like finish: every message starts here. received_at is
        # the wall clock, as the model's auto_now_add would set it.
        now = _now()
        try:
            await sql.execute(
                'INSERT INTO inbound_message (dedup_key, "user", kind, status, received_at, '
                "owner, lease_until) VALUES ($1, $2, $3, 'processing', $4, $5, $6)",
                inbound.dedup_key, inbound.user, inbound.kind, now, self.owner, self._until(now))
        except IntegrityError:
            return await self.take_over(inbound.dedup_key)
        return True

    async def take_over(self, key: str) -> bool:
        # One conditional UPDATE: of two copies that find the same lapsed claim, one takes it
        # (PostgreSQL re-checks the WHERE after the row lock; SQLite writes one at a time).
        now = _now()
        taken = await sql.fetch(
            "UPDATE inbound_message SET owner = $1, lease_until = $2 WHERE dedup_key = $3 "
            "AND status = 'processing' AND (lease_until IS NULL OR lease_until < $4) "
            "RETURNING id",
            self.owner, self._until(now), key, now)
        return _taken(key, bool(taken))

    async def renew(self, key: str) -> bool:
        renewed = await sql.fetch(
            "UPDATE inbound_message SET lease_until = $1 WHERE dedup_key = $2 AND owner = $3 "
            "AND status = 'processing' RETURNING id",
            self._until(_now()), key, self.owner)
        return bool(renewed)

    async def finish(self, key: str, status: str, reply: dict[str, Any] | None = None) -> None:
        # Hand-written (bot/infra/sql.py): every message ends here.
        if reply is None:
            await sql.execute("UPDATE inbound_message SET status = $1 WHERE dedup_key = $2",
                            status, key)
            return
        stored = InboundMessage._meta.fields_map["reply"].to_db_value(reply, InboundMessage)
        await sql.execute("UPDATE inbound_message SET status = $1, reply = $2 WHERE dedup_key = $3",
                        status, stored, key)

    async def outcome(self, key: str) -> tuple[str, dict[str, Any] | None] | None:
        row = await InboundMessage.get_or_none(dedup_key=key)
        return (row.status, row.reply) if row else None


DEDUP_TTL = dt.timedelta(hours=36)  # WeChat retries within ~15 s; keep it far longer

# The lease is a key of its own that expires by Redis's clock: a claim whose lease key is gone
# while its record still says processing has lapsed.
# KEYS: record, lease. ARGV: record value, record TTL (s), owner, lease (ms).
_CLAIM_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
  return 1
end
return 0
"""
# KEYS: record, lease. ARGV: owner, lease (ms).
_TAKE_OVER_SCRIPT = """
local record = redis.call('GET', KEYS[1])
if not record or cjson.decode(record)['status'] ~= 'processing' then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
# KEYS: record, lease. ARGV: owner, lease (ms).
_RENEW_SCRIPT = """
local record = redis.call('GET', KEYS[1])
if not record or cjson.decode(record)['status'] ~= 'processing' then return 0 end
if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 0
"""


class RedisDedup:
    def __init__(self, redis, prefix: str, lease: float = LEASE):
        self._redis = redis
        self._prefix = f"{prefix}:inbound:"
        self._lease_prefix = f"{prefix}:inbound-lease:"
        self.lease = lease
        self.owner = _owner()
        self._claim = redis.register_script(_CLAIM_SCRIPT)
        self._take_over = redis.register_script(_TAKE_OVER_SCRIPT)
        self._renew = redis.register_script(_RENEW_SCRIPT)

    def _keys(self, key: str) -> list[str]:
        return [self._prefix + key, self._lease_prefix + key]

    async def claim(self, inbound: Inbound) -> bool:
        value = json.dumps({"status": "processing", "reply": None})
        if await self._claim(keys=self._keys(inbound.dedup_key),
                             args=[value, int(DEDUP_TTL.total_seconds()), self.owner,
                                   int(self.lease * 1000)]):
            return True
        return await self.take_over(inbound.dedup_key)

    async def take_over(self, key: str) -> bool:
        return _taken(key, bool(await self._take_over(keys=self._keys(key),
                                                      args=[self.owner, int(self.lease * 1000)])))

    async def renew(self, key: str) -> bool:
        return bool(await self._renew(keys=self._keys(key),
                                      args=[self.owner, int(self.lease * 1000)]))

    async def finish(self, key: str, status: str, reply: dict[str, Any] | None = None) -> None:
        await self._redis.set(self._prefix + key, json.dumps({"status": status, "reply": reply}),
                              xx=True, keepttl=True)

    async def outcome(self, key: str) -> tuple[str, dict[str, Any] | None] | None:
        raw = await self._redis.get(self._prefix + key)
        if raw is None:
            return None
        record = json.loads(raw)
        return record["status"], record["reply"]
