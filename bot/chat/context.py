"""What a handler gets: the message, who sent it, their dialog, and the bot's services."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.chat.dialogs import Dialog
from bot.chat.inbound import Inbound
from bot.chat.states import Dialogs, Registration, State
from bot.models import Follower, Member, Staff, Store
from bot.notifications.replies import Text
from bot.rules import faq
from bot.rules.parsing import normalize_text
from bot.services import staff as staff_service

if TYPE_CHECKING:
    from bot.chat.routing import Router
    from bot.runtime import Bot


@dataclass
class Context:
    inbound: Inbound
    bot: Bot
    dialog: Dialog
    follower: Follower | None = None
    member: Member | None = None
    router: Router | None = None  # the root router: questions, command words, help
    _staff: tuple[Staff, Store] | bool | None = False  # False: not looked up yet

    async def staff_account(self) -> tuple[Staff, Store] | None:
        """The sender's staff account (with its store), active or revoked, looked up only when a
        staff command needs it, so members' messages cost no extra query."""
        if self._staff is False:
            self._staff = (await staff_service.staff_account(self.inbound.user)
                           if self.inbound.channel == "wechat" else None)
        return self._staff

    async def staff(self) -> tuple[Staff, Store] | None:
        """The sender as active staff."""
        found = await self.staff_account()
        return found if found and found[0].active else None

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

    # --- dialogs ---

    def begin(self, group: type[Dialogs], /, **values) -> Text:
        """Start a dialog afresh at its first state, with its greeting."""
        self.dialog.clear()
        self.dialog.set(group.first())
        return self.reply(group.greeting or group.first().question, **values)

    def ask(self, state: State) -> Text:
        """A dialog state's question, as its declaration and its handler module render it."""
        return self.router.ask(self, state)

    def is_command(self, text: str) -> bool:
        """Whether a text is a command some route listens to, or alone one of the shop's
        questions ([[faq]]): either way it is no one's name, and no dialog's answer."""
        return (self.router is not None and self.router.is_command(text)) or \
            faq.asked(text, self.bot.config.faq) is not None

    def not_registered(self) -> Text:
        return self.reply("not_registered.j2",
                          registering=Registration.holds(self.dialog.state))
