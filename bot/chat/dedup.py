"""Dedup records for inbound messages: who claimed a message first, and what it answered.

The database keeps them in InboundMessage (a unique key); with [redis] url they live in Redis
(SET NX with an expiry). Either way a claim is atomic across every worker, and a record outlives
WeChat's retries (about 15 s) by far: at least a day and a half.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Protocol

from bot.chat.inbound import Inbound
from bot.infra import sql
from bot.infra.db import IntegrityError
from bot.models import InboundMessage


class Dedup(Protocol):
    async def claim(self, inbound: Inbound) -> bool:
        """True for the first copy of a message, False for every later one."""

    async def finish(self, key: str, status: str, reply: dict[str, Any] | None = None) -> None:
        """Record how the first copy ended: replied | deferred | failed, and its reply."""

    async def outcome(self, key: str) -> tuple[str, dict[str, Any] | None] | None:
        """(status, reply) of a claimed message, or None if nobody claimed it."""


class DatabaseDedup:
    async def claim(self, inbound: Inbound) -> bool:
        # Hand-written (bot/infra/sql.py), like finish: every message starts here. received_at is
        # the wall clock, as the model's auto_now_add would set it.
        try:
            await sql.execute(
                'INSERT INTO inbound_message (dedup_key, "user", kind, status, received_at) '
                "VALUES ($1, $2, $3, 'processing', $4)",
                inbound.dedup_key, inbound.user, inbound.kind, dt.datetime.now(dt.UTC))
        except IntegrityError:
            return False
        return True

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
