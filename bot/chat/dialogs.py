"""Dialog state (which step of a multi-step conversation a user is on, and what they answered so
far), stored outside the process so any worker can take the next message."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from typing import Any

from bot.chat.states import State
from bot.infra import sql
from bot.models import Conversation, Follower, Member
from bot.services import members


class Dialog:
    def __init__(self, user: str, state: str | None, data: dict[str, Any],
                 updated_at: dt.datetime | None):
        self.user = user
        self.state = state
        self.data = dict(data)
        self.updated_at = updated_at
        self.changed = False

    def set(self, state: State | str | None, **data: Any) -> None:
        """Move to a state, adding answers to what is kept. The state is stored by its name."""
        self.state = None if state is None else str(state)
        self.data.update(data)
        self.changed = True

    def update(self, **data: Any) -> None:
        self.data.update(data)
        self.changed = True

    def clear(self) -> None:
        self.state = None
        self.data = {}
        self.changed = True

    def idle(self, now: dt.datetime) -> dt.timedelta:
        return now - self.updated_at if self.updated_at else dt.timedelta(0)


@functools.cache
def _load_sql() -> str:
    return f'SELECT {sql.columns(Conversation, "c")} FROM conversation c WHERE c."user" = $1'


def _dialog(user: str, row: Conversation | None) -> Dialog:
    if row is None:
        return Dialog(user, None, {}, None)
    return Dialog(user, row.state, row.data or {}, row.updated_at)


class DialogStore:
    """Database-backed storage; a Redis-backed one can take its place."""

    def __init__(self, clock: Callable[[], dt.datetime]):
        self._clock = clock

    async def load(self, user: str) -> Dialog:
        # Hand-written (bot/infra/sql.py): every message loads its dialog.
        rows = await sql.fetch(_load_sql(), user)
        return _dialog(user, sql.model_from(Conversation, rows[0], "c") if rows else None)

    async def load_with_member(self, user: str, openid: str
                               ) -> tuple[Follower, Member | None, Dialog]:
        """A WeChat user's follower, member and dialog: one statement for the three."""
        follower, member, row = await members.member_with_conversation(openid, user)
        return follower, member, _dialog(user, row)

    async def save(self, dialog: Dialog) -> None:
        if not dialog.changed:
            return
        if dialog.state is None:
            await Conversation.filter(user=dialog.user).delete()
            return
        dialog.updated_at = self._clock()
        await Conversation.update_or_create(
            defaults={"state": dialog.state, "data": dialog.data,
                      "updated_at": dialog.updated_at},
            user=dialog.user,
        )
        dialog.changed = False


DIALOG_TTL = dt.timedelta(days=30)


class RedisDialogStore:
    """The same, in Redis (with [redis] url)."""

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

    async def load_with_member(self, user: str, openid: str
                               ) -> tuple[Follower, Member | None, Dialog]:
        """The same three as DialogStore's; the dialog from Redis, the rest from the database."""
        follower, member = await members.member_of(openid)
        return follower, member, await self.load(user)

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
