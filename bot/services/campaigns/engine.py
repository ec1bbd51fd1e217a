"""The campaign engine, run by the scheduler's tick on every worker: start what is due, write
the audience of running campaigns, then claim batches and send them until none is left.

Workers share a campaign without overlap: a batch is claimed by one conditional UPDATE
(`FOR UPDATE SKIP LOCKED` on PostgreSQL, so a second worker skips a row the first is locking
instead of waiting for it); the claim is a lease the worker renews while it sends. A batch is
closed (`done`) only when every delivery in it has a final state; until then its lease runs out
after a crash and another worker takes it over, finding what the crashed one left `sending`
(sending.recover)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket

from tortoise.expressions import Q

from bot.infra import sql
from bot.models import (
    Campaign,
    CampaignBatch,
    CampaignDelivery,
    CampaignStatus,
    DeliveryState,
    MassJob,
)
from bot.rules import campaigns as rules
from bot.services.campaigns import audience, lifecycle
from bot.services.campaigns.sending import Run, send_batch

log = logging.getLogger("memberbot.campaigns")


_CLAIM = """
UPDATE campaign_batch SET worker = $1, lease_until = $2, claims = claims + 1
WHERE id = (SELECT id FROM campaign_batch WHERE campaign_id = $3 AND state = 'open'
            AND (lease_until IS NULL OR lease_until < $4)
            AND (not_before IS NULL OR not_before <= $5)
            ORDER BY seq LIMIT 1{lock})
AND state = 'open' AND (lease_until IS NULL OR lease_until < $6)
RETURNING id
"""


def worker_name() -> str:
    """This engine run's name on its claims: host, process and a token, so two bots in one
    process (the tests' two workers) are two claimants too."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


async def tick(bot) -> None:
    """One round: scheduled campaigns that are due start (or go stale), and every running one
    is worked on until this worker finds nothing left to claim."""
    await lifecycle.promote_due(bot)
    for campaign in await Campaign.filter(status=CampaignStatus.RUNNING).order_by("id"):
        await run_campaign(bot, campaign)


async def run_campaign(bot, campaign: Campaign, worker: str | None = None) -> None:
    worker = worker or worker_name()
    await audience.write_audience(bot, campaign)
    seen: set[int] = set()
    while True:
        status = await Campaign.filter(id=campaign.id).first().values_list("status", flat=True)
        if status != CampaignStatus.RUNNING:
            return
        batch = await claim(bot, campaign.id, worker)
        if batch is None:
            break
        if batch.id in seen:
            # Back already (members still due, e.g. a retry): the next tick takes it.
            await close_batch(bot, batch, worker)
            break
        seen.add(batch.id)
        await run_batch(bot, campaign, batch, worker)
    await finish_if_done(bot, campaign.id)


def lease(bot) -> dt.timedelta:
    return dt.timedelta(seconds=bot.config.broadcast.lease_seconds)


async def claim(bot, campaign_id: int, worker: str) -> CampaignBatch | None:
    now = bot.now()
    lock = " FOR UPDATE SKIP LOCKED" if sql.dialect() == "postgres" else ""
    rows = await sql.fetch(_CLAIM.format(lock=lock), worker, now + lease(bot), campaign_id, now,
                           now, now)
    return await CampaignBatch.get(id=rows[0]["id"]) if rows else None


async def _renew(bot, batch_id: int, worker: str) -> None:
    while True:
        await asyncio.sleep(bot.config.broadcast.lease_seconds / 4)
        await CampaignBatch.filter(id=batch_id, worker=worker).update(
            lease_until=bot.now() + lease(bot))


async def run_batch(bot, campaign: Campaign, batch: CampaignBatch, worker: str) -> None:
    coupon = await audience.coupon_of(campaign)
    run = Run(bot, campaign, batch, coupon, rules.month_of(bot.now(), bot.config.shop.tz))
    renewal = asyncio.create_task(_renew(bot, batch.id, worker))
    try:
        await send_batch(run)
    finally:
        renewal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewal
    await close_batch(bot, batch, worker)


async def close_batch(bot, batch: CampaignBatch, worker: str) -> None:
    """Done when every delivery has a final state; otherwise let go of it until the earliest
    moment one of its waiting deliveries may go (the SMS window, a retry's backoff)."""
    waiting = await CampaignDelivery.filter(
        batch_id=batch.id, state__in=[DeliveryState.QUEUED, DeliveryState.SENDING]).count()
    now = bot.now()
    if not waiting:
        await CampaignBatch.filter(id=batch.id, worker=worker).update(
            state="done", done_at=now, lease_until=None)
        return
    times = [t for t in (
        await CampaignDelivery.filter(batch_id=batch.id, state=DeliveryState.QUEUED)
        .order_by("not_before").first().values_list("not_before", flat=True),
        await MassJob.filter(batch_id=batch.id, state="sending", retry_at__not_isnull=True)
        .order_by("retry_at").first().values_list("retry_at", flat=True),
    ) if t is not None]
    queued_now = await CampaignDelivery.filter(
        Q(not_before__isnull=True) | Q(not_before__lte=now), batch_id=batch.id,
        state=DeliveryState.QUEUED).exists()
    not_before = None if queued_now else (min(times) if times else None)
    await CampaignBatch.filter(id=batch.id, worker=worker).update(
        worker=None, lease_until=None, not_before=not_before)


async def finish_if_done(bot, campaign_id: int) -> bool:
    """Done once the whole audience is written and every batch closed."""
    campaign = await Campaign.get(id=campaign_id)
    if not campaign.audience_done:
        return False
    if await CampaignBatch.filter(campaign_id=campaign_id, state="open").exists():
        return False
    finished = await Campaign.filter(id=campaign_id, status=CampaignStatus.RUNNING).update(
        status=CampaignStatus.DONE, finished_at=bot.now())
    if finished:
        log.info("campaign %s done", campaign_id)
    return bool(finished)
