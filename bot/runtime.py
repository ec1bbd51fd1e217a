"""The bot's services in one place, built by the app factory and handed to every handler."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.chat.dedup import DatabaseDedup, Dedup, RedisDedup
from bot.chat.dialogs import DialogStore, RedisDialogStore
from bot.clock import local_today, utcnow
from bot.config import Config
from bot.infra.metrics import Metrics
from bot.infra.ratelimit import DatabaseLimiter, RedisLimiter
from bot.infra.redis import RedisLock
from bot.infra.templates import Templates
from bot.infra.vault import Vault
from bot.notifications.outbox import Outbox
from bot.notifications.sms import SmsSender
from bot.notifications.wechat_api import WeChatAPI

log = logging.getLogger("memberbot")


@dataclass
class Bot:
    config: Config
    vault: Vault
    templates: Templates
    wechat: WeChatAPI
    sms: SmsSender
    outbox: Outbox
    dialogs: DialogStore | RedisDialogStore
    dedup: Dedup
    limiter: DatabaseLimiter | RedisLimiter
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], dt.datetime] = utcnow
    _tasks: set[asyncio.Task] = field(default_factory=set)

    def now(self) -> dt.datetime:
        return self.clock()

    def today(self) -> dt.date:
        return local_today(self.now(), self.config.shop.tz)

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


@contextlib.asynccontextmanager
async def open_bot(config: Config, clock: Callable[[], dt.datetime] = utcnow,
                   *, scheduler: bool | None = None) -> AsyncIterator[Bot]:
    """Everything the bot needs, from database to HTTP session, and the scheduler when
    [scheduler] enabled (or `scheduler` says so); closed in reverse order."""
    from bot.infra.db import IntegrityError, close_database, open_database
    from bot.jobs.scheduler import Scheduler
    from bot.services import bookings, coupons

    await open_database(config.database.url)
    try:
        try:
            await _sync_stores(config)
            await coupons.sync_templates(config)
            await bookings.sync_setup(config)
        except IntegrityError:
            pass  # another worker starting at the same moment wrote the same rows
        timeout = aiohttp.ClientTimeout(total=10, connect=5)
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                _shared_state(config, clock) as shared:
            metrics = Metrics()
            wechat = WeChatAPI(session, config.wechat, clock, shared.get("lock"),
                               on_token_fetch=metrics.token_refreshes.inc)
            sms = SmsSender(config.sms)
            vault = Vault(config.security.data_key_bytes, config.security.previous_key_bytes)
            bot = Bot(
                config=config,
                vault=vault,
                templates=Templates({"shop": config.shop, "timedelta": dt.timedelta}),
                wechat=wechat,
                sms=sms,
                outbox=Outbox(wechat, sms, clock, config.notices, metrics, vault=vault,
                              sms_config=config.sms, tz=config.shop.tz),
                dialogs=shared.get("dialogs") or DialogStore(clock),
                dedup=shared.get("dedup") or DatabaseDedup(),
                limiter=shared.get("limiter") or DatabaseLimiter(),
                clock=clock,
                metrics=metrics,
            )
            jobs = Scheduler(bot) if (config.scheduler.enabled if scheduler is None
                                      else scheduler) else None
            if jobs:
                jobs.start()
            try:
                yield bot
            finally:
                if jobs:
                    await jobs.stop()
                await bot.drain()
                await sms.close()
    finally:
        await close_database()


async def _sync_stores(config: Config) -> None:
    """config.toml's stores into the database, writing only what differs: every command opens
    the bot, and a read-only one must not wait on (or fail at) a database another is writing."""
    from bot.models import Store

    stored = dict(await Store.filter(code__in=[s.code for s in config.stores]).values_list(
        "code", "name"))
    for store in config.stores:
        if stored.get(store.code) != store.name:
            await Store.update_or_create(defaults={"name": store.name}, code=store.code)


@contextlib.asynccontextmanager
async def _shared_state(config: Config, clock: Callable[[], dt.datetime]) -> AsyncIterator[dict]:
    """With [redis] url: dedup records, dialog state, rate limits and the token lock in Redis.
    Without: an empty dict, and the database versions are used."""
    if not config.redis.url:
        yield {}
        return
    from bot.config import ConfigError

    try:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.exceptions import RedisError
    except ImportError:
        raise ConfigError("redis.url: the redis client is not installed "
                          "(pip install 'memberbot[redis]')") from None

    # A bounded pool that makes a burst wait for a connection instead of failing.
    redis = Redis(connection_pool=BlockingConnectionPool.from_url(
        config.redis.url, max_connections=64, timeout=5))
    prefix = config.redis.prefix
    try:
        try:
            await redis.ping()
        except (RedisError, OSError) as exc:
            raise ConfigError(f"redis.url: cannot reach {config.redis.url} ({exc})") from None
        yield {
            "dedup": RedisDedup(redis, prefix),
            "dialogs": RedisDialogStore(redis, prefix, clock),
            "limiter": RedisLimiter(redis, prefix),
            "lock": RedisLock(redis, prefix),
        }
    finally:
        # The pool was handed in, so Redis would leave it (and its connections) open.
        await redis.aclose(close_connection_pool=True)
