"""Dialog state (which step of a multi-step conversation a user is on, and what they answered so
far), stored outside the process so any worker can take the next message."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from typing import Any

from bot.chat.states import State, find
from bot.infra import sql
from bot.infra.db import IntegrityError
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


def in_progress(dialog: Dialog, now: dt.datetime) -> bool:
    """Whether a stored dialog still holds the user's next message: not one left idle past its
    group's limit (the engine forgets those), nor one under a state no longer declared."""
    state = find(dialog.state)
    if state is None:
        return False
    idle = state.group.idle
    return idle is None or dialog.idle(now) <= idle


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

    async def begin_unless_busy(self, user: str, state: State | str, **data: Any
                                ) -> Dialog | None:
        """Start a dialog for a user who is in none, from outside a conversation (the question
        after a visit): the dialog started, or None when one is in progress, which is never
        interrupted. Conditional writes, so a dialog the user begins meanwhile wins."""
        now = self._clock()
        current = await self.load(user)
        if current.state is not None and in_progress(current, now):
            return None
        started = Dialog(user, str(state), data, now)
        if current.state is None:
            try:
                await Conversation.create(user=user, state=started.state, data=data,
                                          updated_at=now)
            except IntegrityError:
                return None
            return started
        if not await Conversation.filter(user=user, state=current.state,
                                         updated_at=current.updated_at).update(
                state=started.state, data=data, updated_at=now):
            return None
        return started

    async def withdraw(self, dialog: Dialog) -> None:
        """Take back a dialog begin_unless_busy started, if the user has not moved it on."""
        await Conversation.filter(user=dialog.user, state=dialog.state,
                                  updated_at=dialog.updated_at).delete()


DIALOG_TTL = dt.timedelta(days=30)


# Replace (or delete, with no new value) a key only while it holds what was read.
_SWAP_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


class RedisDialogStore:
    """The same, in Redis (with [redis] url)."""

    def __init__(self, redis, prefix: str, clock: Callable[[], dt.datetime]):
        self._redis = redis
        self._prefix = f"{prefix}:dialog:"
        self._clock = clock
        self._swap = redis.register_script(_SWAP_SCRIPT)

    @staticmethod
    def _record(dialog: Dialog) -> str:
        return json.dumps({"state": dialog.state, "data": dialog.data,
                           "updated_at": dialog.updated_at.isoformat()}, ensure_ascii=False)

    async def load(self, user: str) -> Dialog:
        raw = await self._redis.get(self._prefix + user)
        if raw is None:
            return Dialog(user, None, {}, None)
        record = json.loads(raw)
        return Dialog(user, record["state"], record["data"],
                      dt.datetime.fromisoformat(record["updated_at"]))

    async def begin_unless_busy(self, user: str, state: State | str, **data: Any
                                ) -> Dialog | None:
        """As DialogStore.begin_unless_busy: SET NX, or a swap of a dialog that is over."""
        now = self._clock()
        started = Dialog(user, str(state), data, now)
        key, ttl = self._prefix + user, int(DIALOG_TTL.total_seconds())
        if await self._redis.set(key, self._record(started), nx=True, ex=ttl):
            return started
        raw = await self._redis.get(key)
        if raw is None:
            return None  # it ended this instant: let it be, the user is talking
        record = json.loads(raw)
        current = Dialog(user, record["state"], record["data"],
                         dt.datetime.fromisoformat(record["updated_at"]))
        if in_progress(current, now):
            return None
        swapped = await self._swap(keys=[key], args=[raw, self._record(started), ttl])
        return started if swapped else None

    async def withdraw(self, dialog: Dialog) -> None:
        await self._swap(keys=[self._prefix + dialog.user], args=[self._record(dialog), "", 0])

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
            await self._redis.set(self._prefix + dialog.user, self._record(dialog),
                                  ex=DIALOG_TTL)
        dialog.changed = False
