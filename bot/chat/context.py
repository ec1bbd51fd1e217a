"""What a handler gets: the message, who sent it, their dialog, and the bot's services."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.chat.dialogs import Dialog
from bot.chat.inbound import Inbound
from bot.models import Follower, Member, Staff, Store
from bot.notifications.replies import Text
from bot.rules.parsing import normalize_text

if TYPE_CHECKING:
    from bot.runtime import Bot


@dataclass
class Context:
    inbound: Inbound
    bot: Bot
    dialog: Dialog
    follower: Follower | None = None
    member: Member | None = None
    _staff: tuple[Staff, Store] | bool | None = False  # False: not looked up yet

    async def staff(self) -> tuple[Staff, Store] | None:
        """The sender as active staff (with their store), looked up only when a staff command
        needs it, so members' messages cost no extra query."""
        if self._staff is False:
            from bot.services.staff import active_staff

            self._staff = (await active_staff(self.inbound.user)
                           if self.inbound.channel == "wechat" else None)
        return self._staff

    @property
    def key(self) -> str:
        """The idempotency key of whatever this message does: a WeChat retry has the same."""
        return f"chat:{self.inbound.dedup_key}"

    @functools.cached_property
    def text(self) -> str:
        # Every route's filter reads it: normalise once.
        return normalize_text(self.inbound.text)

    @property
    def now(self) -> dt.datetime:
        return self.bot.now()

    def render(self, template: str, /, **values) -> str:
        return self.bot.templates.render(template, **values)

    def reply(self, template: str, /, **values) -> Text:
        return Text(self.render(template, **values))
