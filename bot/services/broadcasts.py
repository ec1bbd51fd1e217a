"""Campaigns steered by a person: the campaigns service's operations, each written to the audit
log in the same transaction (who created, started, paused, resumed, cancelled or let go which
campaign). The chat's 群发 and the CLI's `memberbot broadcast` both come through here; what the
engine does on its own (a scheduled campaign starting, a missed one going stale) is nobody's
action and is not audited."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from bot.models import Campaign
from bot.services import campaigns
from bot.services.staff import Actor, audit

STEERING = {
    "start": campaigns.start,
    "pause": campaigns.pause,
    "resume": campaigns.resume,
    "cancel": campaigns.cancel,
    "confirm": campaigns.confirm_stale,
}


def _staff_id(actor: Actor) -> int | None:
    return actor.staff.id if actor.staff else None


async def create(bot, actor: Actor, **fields) -> Campaign:
    """campaigns.create with the actor as the campaign's author; raises CampaignError."""
    async with in_transaction():
        campaign = await campaigns.create(bot, staff_id=_staff_id(actor), **fields)
        message = f"template={campaign.template}" if campaign.template else "text"
        await audit(actor, "broadcast_create",
                    detail=f"campaign:{campaign.id} {message} segment={campaign.segment}")
    return campaign


async def steer(bot, actor: Actor, action: str, campaign_id: int) -> Campaign:
    """One of STEERING's moves; raises CampaignError (bad_state, not_found) and then writes
    nothing."""
    async with in_transaction():
        campaign = await STEERING[action](bot, campaign_id, staff_id=_staff_id(actor))
        await audit(actor, f"broadcast_{action}", after={"status": campaign.status},
                    detail=f"campaign:{campaign.id}")
    return campaign
