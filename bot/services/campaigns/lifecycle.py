"""Creating a campaign and moving it through its states. Every move is one conditional UPDATE
on the status it starts from, so two managers (or a manager and the scheduler) pressing at the
same moment cannot both move it: one wins, the other gets bad_state."""

from __future__ import annotations

import datetime as dt
import logging

from tortoise.transactions import in_transaction

from bot.infra.idempotent import once
from bot.models import (
    Campaign,
    CampaignDelivery,
    CampaignRequest,
    CampaignStatus,
    CouponTemplate,
    DeliveryState,
    Role,
    Staff,
)
from bot.notifications import campaigns as texts
from bot.rules import campaigns as rules
from bot.services import segments
from bot.services.campaigns.errors import CampaignError
from bot.services.staff import Actor, audit

log = logging.getLogger("memberbot.campaigns")

S = CampaignStatus
MAX_HOLDOUT = 50  # percent: a comparison group, not the audience
# Scheduling "now" from a terminal takes a moment: a time this recent is not "in the past".
PAST_SLACK = dt.timedelta(minutes=1)


async def create(bot, *, segment: str, template: str | None = None, text: str | None = None,
                 coupon: str | None = None, channels: tuple[str, ...] = ("wechat", "sms"),
                 at: dt.datetime | None = None, holdout: int = 0,
                 staff_id: int | None = None, key: str | None = None) -> Campaign:
    """A draft campaign, checked through: `start` sends it (or schedules it, with `at`).
    With a `key` (a form's nonce) the same request made again returns the campaign the first
    made instead of making another."""
    try:
        await segments.parse_checked(segment, bot.config)
    except segments.UnknownSegment as exc:
        # The segment's own error stays the cause: the CLI points at where the text goes wrong.
        raise CampaignError("bad_segment", f"bad segment {segment!r}: {exc}", segment=segment,
                            error=exc if isinstance(exc, segments.SegmentSyntaxError) else None
                            ) from exc
    if (template is None) == (text is None or not text.strip()):
        raise CampaignError("no_message", "give either a template name or a text")
    if template is not None and not texts.template_exists(bot, template):
        raise CampaignError("unknown_template", f"no template {texts.template_path(template)} "
                                                "in templates/messages/", template=template)
    if coupon is not None and not await CouponTemplate.exists(code=coupon, active=True):
        raise CampaignError("unknown_coupon", f"no active coupon template {coupon!r}",
                            coupon=coupon)
    chosen = rules.parse_channels(channels)
    if chosen is None:
        raise CampaignError("bad_channel", f"channels are wechat and/or sms, not {channels!r}")
    if not 0 <= holdout <= MAX_HOLDOUT:
        raise CampaignError("bad_holdout", f"holdout is a percentage from 0 to {MAX_HOLDOUT}",
                            most=MAX_HOLDOUT)
    now = bot.now()
    if at is not None:
        if at.tzinfo is None:  # a time typed at the shop is the shop's time
            at = at.replace(tzinfo=bot.config.shop.tz)
        at = at.astimezone(dt.UTC)
        if at < now - PAST_SLACK:
            local = at.astimezone(bot.config.shop.tz)
            raise CampaignError("past_time", f"{local:%Y-%m-%d %H:%M} has passed", at=local)
    actor = await _actor(staff_id)

    async def act() -> Campaign:
        campaign = await Campaign.create(
            segment=segment, template=template, text=text.strip() if text else None,
            coupon=coupon, channels=",".join(chosen), scheduled_at=at, holdout=holdout,
            staff_id=staff_id, created_at=now)
        if key is not None:
            await CampaignRequest.create(key=key, campaign=campaign)
        await audit(actor, "campaign_create", after={
            "segment": segment, "template": template, "coupon": coupon,
            "channels": campaign.channels, "holdout": holdout,
            "at": at.isoformat() if at else None}, detail=f"campaign {campaign.id}")
        log.info("campaign %s created for %s", campaign.id, segment)
        return campaign

    if key is None:
        async with in_transaction():
            return await act()

    async def made() -> Campaign | None:
        request = await CampaignRequest.get_or_none(key=key).select_related("campaign")
        return request.campaign if request else None

    return await once(made, act)


def _in_store(query, store_id: int | None):
    """A store's campaigns are those its staff made; None: every campaign (the owner's view).
    One made from the shell (no staff) or by an owner (who acts for the whole shop) belongs
    to no store."""
    if store_id is None:
        return query
    return query.filter(staff__store_id=store_id).exclude(staff__role=Role.OWNER)


async def get(campaign_id: int, store_id: int | None = None) -> Campaign:
    """The campaign, or not_found; with `store_id`, also not_found when it is another store's."""
    campaign = await _in_store(Campaign.filter(id=campaign_id), store_id).first()
    if campaign is None:
        raise CampaignError("not_found", f"no campaign {campaign_id}", campaign_id=campaign_id)
    return campaign


async def _actor(staff_id: int | None) -> Actor:
    """Who moves a campaign, for the audit log: a staff member (chat), else the owner's shell."""
    staff = await Staff.get_or_none(id=staff_id).select_related("store") if staff_id else None
    return Actor.of(staff, staff.store) if staff else Actor.cli()


async def _move(campaign_id: int, from_: tuple[S, ...], to: S, action: str,
                staff_id: int | None = None, **changes) -> Campaign:
    actor = await _actor(staff_id)
    async with in_transaction():
        before = await Campaign.filter(id=campaign_id).first().values_list("status", flat=True)
        moved = await Campaign.filter(id=campaign_id, status__in=list(from_)).update(
            status=to, **changes)
        if moved:
            await audit(actor, f"campaign_{action}", before={"status": before},
                        after={"status": to}, detail=f"campaign {campaign_id}")
    campaign = await get(campaign_id)
    if not moved:
        raise CampaignError("bad_state", f"campaign {campaign_id} is {campaign.status}; "
                                         f"cannot {action} it", status=str(campaign.status),
                            action=action)
    log.info("campaign %s: %s → %s", campaign_id, before, to)
    return campaign


async def start(bot, campaign_id: int, staff_id: int | None = None) -> Campaign:
    """A draft goes out now, or waits for its time if it has one in the future."""
    campaign = await get(campaign_id)
    now = bot.now()
    if campaign.scheduled_at is not None and campaign.scheduled_at > now:
        return await _move(campaign_id, (S.DRAFT,), S.SCHEDULED, "start", staff_id)
    return await _move(campaign_id, (S.DRAFT,), S.RUNNING, "start", staff_id, started_at=now)


async def pause(bot, campaign_id: int, staff_id: int | None = None) -> Campaign:
    """Stops at the next member: what was sent stays sent, the rest waits for resume."""
    return await _move(campaign_id, (S.RUNNING,), S.PAUSED, "pause", staff_id)


async def resume(bot, campaign_id: int, staff_id: int | None = None) -> Campaign:
    return await _move(campaign_id, (S.PAUSED,), S.RUNNING, "resume", staff_id)


async def confirm_stale(bot, campaign_id: int, staff_id: int | None = None) -> Campaign:
    """A manager lets a missed scheduled campaign go out after all."""
    return await _move(campaign_id, (S.STALE,), S.RUNNING, "confirm", staff_id,
                       started_at=bot.now())


async def cancel(bot, campaign_id: int, staff_id: int | None = None) -> Campaign:
    """Nothing more goes out; members still waiting are skipped with reason `cancelled`."""
    campaign = await _move(campaign_id, (S.DRAFT, S.SCHEDULED, S.RUNNING, S.PAUSED, S.STALE),
                           S.CANCELLED, "cancel", staff_id, finished_at=bot.now())
    await CampaignDelivery.filter(campaign_id=campaign_id, state=DeliveryState.QUEUED).update(
        state=DeliveryState.SKIPPED, reason="cancelled", updated_at=bot.now())
    return campaign


async def list_campaigns(bot, limit: int = 20, *, store_id: int | None = None,
                         before: int | None = None) -> list[Campaign]:
    """The newest first; with `store_id` only that store's (see get), with `before` only
    those older than that campaign id (the next page)."""
    query = _in_store(Campaign.all(), store_id)
    if before is not None:
        query = query.filter(id__lt=before)
    return await query.order_by("-id").limit(limit)


async def promote_due(bot) -> list[int]:
    """Scheduled campaigns whose time has come start; one missed by more than
    [broadcast] stale_after_minutes (the server was down) goes to `stale` and waits for a
    manager instead of going out hours late. The ids that started."""
    now = bot.now()
    stale_after = dt.timedelta(minutes=bot.config.broadcast.stale_after_minutes)
    started = []
    for campaign in await Campaign.filter(status=S.SCHEDULED, scheduled_at__lte=now):
        if now - campaign.scheduled_at > stale_after:
            if await Campaign.filter(id=campaign.id, status=S.SCHEDULED).update(status=S.STALE):
                log.warning("campaign %s missed its time %s by more than %s: waiting for a "
                            "manager (confirm or cancel)", campaign.id, campaign.scheduled_at,
                            stale_after)
        elif await Campaign.filter(id=campaign.id, status=S.SCHEDULED).update(
                status=S.RUNNING, started_at=now):
            started.append(campaign.id)
    return started
