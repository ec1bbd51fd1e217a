"""Scheduled jobs (apscheduler), safe with several workers.

Each run of a job is claimed in the database: one JobRun row per job and period (a local date for
daily jobs), unique, so when several workers fire at the same moment exactly one runs it. A run
keeps a heartbeat; a run whose worker died (no heartbeat for STALE) is taken over by the next
worker that tries, and because every job is idempotent item by item (ledger keys, delivery keys)
the new run finishes the work without repeating what was done.

Ticks are the other kind: short rounds every few seconds on every worker (deliveries waiting
for the morning, campaigns to start or continue). They claim nothing as a whole; each claims
its own items (a delivery row, a campaign batch), so two workers ticking at once share the work.

A job's local time is fixed, or read from a [scheduler] key (`setting`) for the jobs a shop
may want to move, such as the birthday greetings (`birthday_at`).

Misfires: a worker that was down at the scheduled time runs the job when it starts, if today's
run is not done yet (catch-up). Each job covers everything that became due since its last run
(e.g. expiry takes every lot whose day has passed), so one late run makes up for missed days.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.clock import local_midnight
from bot.config import Config
from bot.infra.db import IntegrityError
from bot.infra.paging import batches
from bot.models import JobRun, Member, TierChange
from bot.notifications import notices
from bot.services import (
    birthdays,
    bookings,
    campaigns,
    console_cleanup,
    coupons,
    expiry,
    maintenance,
    rollups,
    support,
    tiering,
)

log = logging.getLogger("memberbot.scheduler")

STALE = dt.timedelta(minutes=5)
HEARTBEAT_SECONDS = 60


@dataclass(frozen=True)
class Job:
    name: str
    hour: int
    minute: int
    run: Callable[[Any, dt.date], Awaitable[dict[str, Any]]]
    # A [scheduler] key holding the local time ("09:00") that replaces hour:minute.
    setting: str = ""

    def time(self, config: Config) -> dt.time:
        """The local time the job runs at each day."""
        if self.setting:
            return dt.time.fromisoformat(getattr(config.scheduler, self.setting))
        return dt.time(self.hour, self.minute)


@dataclass(frozen=True)
class Tick:
    name: str
    seconds: float
    run: Callable[[Any], Awaitable[None]]


async def _points_expiry(bot, today: dt.date) -> dict[str, Any]:
    expired = await expiry.expire_due(today)
    sent = await expiry.notify_expiring(bot, today)
    return {"expired_points": expired, "notices": sent}


async def _tier_evaluation(bot, today: dt.date) -> dict[str, Any]:
    changed = 0
    async for batch in batches(Member.filter(erased_at=None), size=500):
        for member in batch:
            changed += await tiering.evaluate(bot, member) is not None
    # Notices from the tier history rather than from this run: a run that crashed after
    # changing tiers but before telling members is completed by the one that takes over.
    start = local_midnight(today, bot.config.shop.tz)
    sent = 0
    for change in await TierChange.filter(reason="evaluation", created_at__gte=start,
                                          created_at__lt=start + dt.timedelta(days=1)):
        outcome = await notices.tier_change(bot, change, today)
        sent += outcome.ok
    return {"changed": changed, "notices": sent}


async def _coupon_expiry(bot, today: dt.date) -> dict[str, Any]:
    return await coupons.expire_and_remind(bot, bot.now())


async def _purge(bot, today: dt.date) -> dict[str, Any]:
    return await maintenance.purge(bot.now())


async def _birthdays(bot, today: dt.date) -> dict[str, Any]:
    return await birthdays.celebrate(bot, today)


async def _daily_figures(bot, today: dt.date) -> dict[str, Any]:
    """The console's daily rollups: yesterday, the days still open to change, any missing."""
    return await rollups.nightly(bot, today)


async def _console_cleanup(bot, today: dt.date) -> dict[str, Any]:
    return await console_cleanup.clean(
        bot.now(), dt.timedelta(minutes=bot.config.console.idle_minutes))


JOBS = (
    Job("points_expiry", 0, 10, _points_expiry),
    Job("coupon_expiry", 0, 20, _coupon_expiry),
    Job("daily_figures", 0, 40, _daily_figures),  # after the expiries of the night
    Job("tier_evaluation", 3, 0, _tier_evaluation),
    Job("purge", 4, 30, _purge),
    Job("console_cleanup", 4, 40, _console_cleanup),
    Job("birthday", 9, 0, _birthdays, setting="birthday_at"),  # 09:00 is the key's default
)


async def _queued_sms(bot) -> None:
    """SMS notices that waited for the sending window (the outbox claims each row)."""
    await bot.outbox.send_queued()


async def _bookings(bot) -> None:
    """Booking reminders that fell due, and waitlist offers nobody confirmed in time."""
    await bookings.lapse_offers(bot)
    await bookings.send_reminders(bot)


async def _support_idle(bot) -> None:
    """人工 conversations idle for [service] idle_minutes close (each closes once)."""
    await support.close_idle(bot)


# Each tick runs on every worker and claims its own items.
TICKS: tuple[Tick, ...] = (
    Tick("queued_sms", 15, _queued_sms),
    Tick("campaigns", 5, campaigns.tick),
    Tick("bookings", 30, _bookings),
    Tick("support_idle", 60, _support_idle),
)


class Scheduler:
    def __init__(self, bot, jobs: tuple[Job, ...] = JOBS, worker: str | None = None,
                 ticks: tuple[Tick, ...] = TICKS):
        self.bot = bot
        self.jobs = jobs
        self.ticks = ticks
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._aps = AsyncIOScheduler(timezone=bot.config.shop.tz)

    def start(self) -> None:
        for job in self.jobs:
            at = job.time(self.bot.config)
            self._aps.add_job(self.run, CronTrigger(hour=at.hour, minute=at.minute,
                                                    timezone=self.bot.config.shop.tz),
                              args=[job], id=job.name, coalesce=True, max_instances=1,
                              misfire_grace_time=6 * 3600)
        for tick in self.ticks:
            self._aps.add_job(self.tick, IntervalTrigger(seconds=tick.seconds), args=[tick],
                              id=f"tick:{tick.name}", coalesce=True, max_instances=1)
        self._aps.start()
        self.bot.spawn(self.catch_up(), "scheduler catch-up")

    async def stop(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)

    async def catch_up(self) -> None:
        """Run today's jobs whose time has passed but whose run is not done (worker was down)."""
        now = self.bot.now().astimezone(self.bot.config.shop.tz)
        for job in self.jobs:
            if now.time().replace(tzinfo=None) >= job.time(self.bot.config):
                await self.run(job)

    async def run(self, job: Job, today: dt.date | None = None, *, again: bool = False) -> bool:
        """Run the job for its period if this worker can claim it; True if it ran. again=True
        (`memberbot jobs run`) also runs a period that is done: every job is idempotent item by
        item, so a second run gives nobody anything twice."""
        today = today or self.bot.today()
        period = today.isoformat()
        run = await self._claim(job.name, period, again)
        if run is None:
            return False
        beat = asyncio.create_task(self._heartbeat(run.id))
        try:
            result = await job.run(self.bot, today)
        except Exception:
            log.exception("job %s for %s failed; the next worker will take it over",
                          job.name, period)
            return False
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        await JobRun.filter(id=run.id).update(status="done", finished_at=self.bot.now(),
                                              result=result)
        log.info("job %s for %s done: %s", job.name, period, result)
        return True

    async def tick(self, tick: Tick) -> None:
        try:
            await tick.run(self.bot)
        except Exception:
            log.exception("tick %s failed; the next one tries again", tick.name)

    async def _claim(self, name: str, period: str, again: bool = False) -> JobRun | None:
        now = self.bot.now()
        try:
            return await JobRun.create(job=name, period=period, worker=self.worker,
                                       started_at=now, heartbeat_at=now)
        except IntegrityError:
            pass
        run = await JobRun.get(job=name, period=period)
        if run.status == "done" and again:
            taken = await JobRun.filter(id=run.id, status="done").update(
                status="running", worker=self.worker, started_at=now, heartbeat_at=now,
                finished_at=None)
            return await JobRun.get(id=run.id) if taken else None
        if run.status == "done" or now - run.heartbeat_at < STALE:
            return None
        # Its worker stopped beating: take it over, if nobody else just did.
        taken = await JobRun.filter(id=run.id, status="running",
                                    heartbeat_at=run.heartbeat_at).update(
            worker=self.worker, heartbeat_at=now)
        if not taken:
            return None
        log.warning("taking over job %s for %s from %s", name, period, run.worker)
        return await JobRun.get(id=run.id)

    async def _heartbeat(self, run_id: int) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await JobRun.filter(id=run_id).update(heartbeat_at=self.bot.now())
