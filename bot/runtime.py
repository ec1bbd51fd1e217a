"""The bot's services in one place, built by the app factory and handed to every handler."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bot.config import Config
from bot.dialogs import DialogStore
from bot.metrics import Metrics
from bot.notifications.outbox import Outbox
from bot.notifications.sms import SmsSender
from bot.notifications.wechat_api import WeChatAPI
from bot.security import Vault
from bot.templates import Templates

log = logging.getLogger("memberbot")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Bot:
    config: Config
    vault: Vault
    templates: Templates
    wechat: WeChatAPI
    sms: SmsSender
    outbox: Outbox
    dialogs: DialogStore
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], dt.datetime] = utcnow
    _tasks: set[asyncio.Task] = field(default_factory=set)

    def now(self) -> dt.datetime:
        return self.clock()

    def today(self) -> dt.date:
        return self.now().astimezone(self.config.shop.tz).date()

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task:
        """Run work after the reply has gone (a welcome SMS, a deferred reply). Tracked, so
        shutdown waits for it and a failure is logged rather than lost."""
        task = asyncio.create_task(coro, name=what)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception():
                log.error("background task %s failed", what, exc_info=t.exception())

        task.add_done_callback(done)
        return task

    async def drain(self, seconds: float = 10) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=seconds)
