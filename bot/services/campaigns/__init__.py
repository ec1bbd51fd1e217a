"""Campaigns: a promotion sent to a segment, each member reached once by the right channel.

    campaign = await campaigns.create(bot, segment="tier:金卡会员", template="winter_care")
    preview = await campaigns.preview(bot, campaign.id)
    await campaigns.start(bot, campaign.id)      # the engine (tick) sends it
    report = await campaigns.status(bot, campaign.id)

lifecycle: create and the state moves; audience: the segment written as delivery rows, the
preview; engine: the scheduler's tick, batch claims; sending: one batch by WeChat mass send and
SMS; results: status and the result page; mass_events: WeChat's MASSSENDJOBFINISH.
docs/campaigns.md has the whole story."""

from bot.services.campaigns.audience import Preview, preview
from bot.services.campaigns.engine import run_campaign, tick
from bot.services.campaigns.errors import CampaignError
from bot.services.campaigns.lifecycle import (
    cancel,
    confirm_stale,
    create,
    get,
    list_campaigns,
    pause,
    resume,
    start,
)
from bot.services.campaigns.mass_events import record_mass_job_finish
from bot.services.campaigns.results import Group, Results, Status, by_channel, progress, status

__all__ = [
    "CampaignError",
    "Group",
    "Preview",
    "Results",
    "Status",
    "by_channel",
    "cancel",
    "confirm_stale",
    "create",
    "get",
    "list_campaigns",
    "pause",
    "preview",
    "progress",
    "record_mass_job_finish",
    "resume",
    "run_campaign",
    "start",
    "status",
    "tick",
]
