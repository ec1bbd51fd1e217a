"""Dedup records for inbound messages: who claimed a message first, and what it answered.

The database keeps them in InboundMessage (a unique key); with [redis] url they live in Redis
(SET NX with an expiry). Either way a claim is atomic across every worker, and a record outlives
WeChat's retries (about 15 s) by far: at least a day and a half.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from bot import sql
from bot.db import IntegrityError
from bot.inbound import Inbound
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
        # Hand-written (bot/sql.py), like finish: every message starts here. received_at is
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
        # Hand-written (bot/sql.py): every message ends here.
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
