"""WeChat's customer-service message quota, tracked per follower so we never spend a send that
WeChat would refuse (45047) or send outside a window (45015).

- a message from the user opens 5 sends within 48 h;
- a subscribe, QR scan or menu click opens 3 sends within 1 minute (it does not open the 48 h
  window).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bot.infra import sql
from bot.models import Follower

MESSAGE_WINDOW = dt.timedelta(hours=48)
MESSAGE_QUOTA = 5
EVENT_WINDOW = dt.timedelta(minutes=1)
EVENT_QUOTA = 3

MESSAGE_KINDS = frozenset({"text", "voice", "image", "location", "media"})
# View clicks, location reports and unsubscribes open nothing.
EVENT_KINDS = frozenset({"subscribe", "scan", "click", "scancode"})


@dataclass(frozen=True)
class Windows:
    message_at: dt.datetime | None
    message_used: int
    event_at: dt.datetime | None
    event_used: int


def pick_window(w: Windows, now: dt.datetime) -> str | None:
    """Which window the next send should count against: the short event window first (it lapses
    soonest), then the 48 h one; None when WeChat would refuse the send."""
    if w.event_at and now - w.event_at < EVENT_WINDOW and w.event_used < EVENT_QUOTA:
        return "event"
    if w.message_at and now - w.message_at < MESSAGE_WINDOW and w.message_used < MESSAGE_QUOTA:
        return "message"
    return None


def windows_of(follower: Follower) -> Windows:
    return Windows(follower.message_window_at, follower.message_window_used,
                   follower.event_window_at, follower.event_window_used)


# A message window opened this recently and still unused is not rewritten on the next message:
# that saves a write per message and only makes us think the window closes a little early.
REOPEN_AFTER = dt.timedelta(minutes=10)


async def note_inbound(follower: Follower | str, kind: str, now: dt.datetime) -> None:
    """Open the window this inbound message grants (follower row, or an openid)."""
    if isinstance(follower, str):
        follower = await Follower.get_or_none(openid=follower)
        if follower is None:
            return
    if kind in MESSAGE_KINDS:
        fresh = follower.message_window_at and now - follower.message_window_at < REOPEN_AFTER
        if fresh and follower.message_window_used == 0:
            return
        # Hand-written (bot/infra/sql.py): this runs for most messages.
        await sql.execute("UPDATE follower SET message_window_at = $1, message_window_used = 0 "
                          "WHERE id = $2", now, follower.id)
    elif kind in EVENT_KINDS:
        await sql.execute("UPDATE follower SET event_window_at = $1, event_window_used = 0 "
                          "WHERE id = $2", now, follower.id)


async def take(openid: str, now: dt.datetime) -> bool:
    """Spend one send if a window allows it. A conditional update on the counter we read, so two
    workers can never both spend the last send."""
    for _ in range(5):
        follower = await Follower.get_or_none(openid=openid)
        if follower is None or not follower.following:
            return False
        window = pick_window(windows_of(follower), now)
        if window is None:
            return False
        used = getattr(follower, f"{window}_window_used")
        spent = await Follower.filter(
            id=follower.id, **{f"{window}_window_used": used}
        ).update(**{f"{window}_window_used": used + 1})
        if spent:
            return True
    return False
