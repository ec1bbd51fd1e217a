"""A campaign's audience: the segment streamed in batches of member ids and written down as one
delivery row per member (the holdout share marked and skipped), and the preview's counts.

The audience is written by one worker at a time (a lease on the campaign row); each batch of
rows, its CampaignBatch and the checkpoint (`audience_after`, the last member id written) are
one transaction, so a crash leaves whole batches only and the next worker carries on after the
checkpoint. Memory holds one batch of ids, whatever the segment's size."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field

from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from bot.infra.vault import mask_card
from bot.models import (
    Campaign,
    CampaignBatch,
    CampaignDelivery,
    CouponTemplate,
    DeliveryState,
    Follower,
    MassQuota,
    Member,
)
from bot.notifications import campaigns as texts
from bot.rules import campaigns as rules
from bot.services import segments
from bot.services.campaigns import lifecycle

log = logging.getLogger("memberbot.campaigns")

def batch_size(bot) -> int:
    """Members per batch: a batch's WeChat members go in one mass send, so never more than
    [broadcast] mass_batch (and WeChat's 10,000)."""
    config = bot.config.broadcast
    return max(1, min(config.batch_size, config.mass_batch, rules.MASS_MAX))


def _lease(bot) -> dt.timedelta:
    return dt.timedelta(seconds=bot.config.broadcast.lease_seconds)


async def _take_lease(bot, campaign_id: int, now: dt.datetime) -> bool:
    return bool(await Campaign.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now), id=campaign_id,
        audience_done=False).update(lease_until=now + _lease(bot)))


async def write_audience(bot, campaign: Campaign) -> bool:
    """Write the rest of the audience if no other worker is writing it; True once it is all
    written (by anyone)."""
    if campaign.audience_done:
        return True
    if not await _take_lease(bot, campaign.id, bot.now()):
        return False
    try:
        campaign = await Campaign.get(id=campaign.id)
        after = campaign.audience_after
        seq = await CampaignBatch.filter(campaign_id=campaign.id).count()
        segment = segments.parse(campaign.segment)
        async for ids in segments.id_batches(segment, today=bot.today(), size=batch_size(bot)):
            if after is not None:
                ids = [i for i in ids if i > after]
            if not ids:
                continue
            status = await Campaign.filter(id=campaign.id).first().values_list("status",
                                                                                flat=True)
            if status != "running":
                return False  # paused or cancelled meanwhile: the rest waits (or never comes)
            seq += 1
            await _write_batch(campaign, seq, ids, bot.now())
            after = ids[-1]
            await Campaign.filter(id=campaign.id).update(lease_until=bot.now() + _lease(bot))
        await Campaign.filter(id=campaign.id).update(audience_done=True)
        log.info("campaign %s: audience written, %s batches", campaign.id, seq)
        return True
    finally:
        await Campaign.filter(id=campaign.id).update(lease_until=None)


async def _write_batch(campaign: Campaign, seq: int, ids: list[int], now: dt.datetime) -> None:
    async with in_transaction():
        batch = await CampaignBatch.create(campaign_id=campaign.id, seq=seq, first_member=ids[0],
                                           last_member=ids[-1], size=len(ids))
        rows = []
        for member_id in ids:
            held = rules.is_holdout(campaign.id, member_id, campaign.holdout)
            rows.append(CampaignDelivery(
                campaign_id=campaign.id, member_id=member_id, batch_id=batch.id, holdout=held,
                state=DeliveryState.SKIPPED if held else DeliveryState.QUEUED,
                reason="holdout" if held else None, updated_at=now))
        await CampaignDelivery.bulk_create(rows)
        await Campaign.filter(id=campaign.id).update(
            audience_after=ids[-1], audience_total=F("audience_total") + len(ids))


# --- the preview ---

@dataclass(frozen=True)
class Preview:
    text: str  # rendered for the sample member
    sample_card_no: str  # masked; "" when the segment is empty
    total: int  # members in the segment, holdout included
    holdout: int
    by_channel: dict[str, int] = field(default_factory=dict)  # wechat, sms, none
    mass_left: int = 0  # can still receive a WeChat mass message this month


async def reach(bot, ids: list[int]) -> dict[int, tuple[bool, int, bool]]:
    """For these members: (following, mass messages this month, has a phone)."""
    month = rules.month_of(bot.now(), bot.config.shop.tz)
    following = set(await Follower.filter(member_id__in=ids, following=True)
                    .values_list("member_id", flat=True))
    used = dict(await MassQuota.filter(member_id__in=ids, month=month)
                .values_list("member_id", "count"))
    phones = dict(await Member.filter(id__in=ids).values_list("id", "phone_enc"))
    return {i: (i in following, used.get(i, 0), bool(phones.get(i))) for i in ids}


async def preview(bot, campaign_id: int) -> Preview:
    campaign = await lifecycle.get(campaign_id)
    cap = bot.config.broadcast.mass_monthly_cap
    total = held = mass_left = 0
    by_channel = {"wechat": 0, "sms": 0, "none": 0}
    sample: int | None = None
    segment = segments.parse(campaign.segment)
    async for ids in segments.id_batches(segment, today=bot.today(), size=batch_size(bot)):
        sample = ids[0] if sample is None else sample
        total += len(ids)
        for member_id, (following, used, phone) in (await reach(bot, ids)).items():
            if rules.is_holdout(campaign.id, member_id, campaign.holdout):
                held += 1
                continue
            mass_left += following and used < cap
            channel = rules.pick_channel(campaign.channel_list, following=following,
                                         mass_used=used, mass_cap=cap, has_phone=phone)
            by_channel[channel or "none"] += 1
        await asyncio.sleep(0)
    member = await Member.get_or_none(id=sample) if sample is not None else None
    coupon = await coupon_of(campaign)
    shown = member or Member(name="会员", tier=bot.config.tiers[0].name, card_no="", points=0)
    return Preview(text=texts.message_for(bot, campaign, shown, coupon),
                   sample_card_no=mask_card(member.card_no) if member else "", total=total,
                   holdout=held, by_channel=by_channel, mass_left=mass_left)


async def coupon_of(campaign: Campaign) -> CouponTemplate | None:
    if not campaign.coupon:
        return None
    return await CouponTemplate.get_or_none(code=campaign.coupon)
