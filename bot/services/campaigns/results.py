"""What a campaign did: deliveries by state, the unknown outcomes a manager must look at, and
the result page (sent vs holdout: delivered, the campaign's coupons redeemed, members who bought
within 7 days of the start). Counted in SQL, never by loading the deliveries."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from bot.infra import sql
from bot.infra.vault import mask_card
from bot.models import Campaign, CampaignBatch, CampaignStatus, DeliveryState
from bot.services.campaigns import lifecycle

RESULT_DAYS = 7
UNKNOWN_LISTED = 50  # card numbers listed in status(); the count is always complete


@dataclass(frozen=True)
class Group:
    members: int = 0
    delivered: int = 0
    redeemed: int = 0  # the campaign's coupons redeemed
    purchased: int = 0  # members with a purchase within 7 days of the start


@dataclass(frozen=True)
class Results:
    sent: Group = field(default_factory=Group)  # the members the campaign was for
    holdout: Group = field(default_factory=Group)  # the comparison share, sent nothing


@dataclass(frozen=True)
class Status:
    campaign: Campaign
    counts: dict[str, int]  # state → deliveries (every state present, 0 included)
    total: int  # deliveries written so far (the whole segment once the audience is written)
    done: bool
    results: Results
    unknown: list[str]  # masked card numbers of deliveries whose outcome is unknown
    skipped: dict[str, int] = field(default_factory=dict)  # reason → count
    batches: int = 0
    batches_done: int = 0
    mass: dict[str, int] = field(default_factory=dict)  # MASSSENDJOBFINISH counts, summed


_COUNTS = ("SELECT state, reason, COUNT(*) AS n FROM campaign_delivery WHERE campaign_id = $1 "
           "GROUP BY state, reason")
_GROUPS = """
SELECT d.holdout AS holdout, COUNT(*) AS members,
       SUM(CASE WHEN d.state = 'sent' THEN 1 ELSE 0 END) AS delivered,
       SUM(CASE WHEN EXISTS (SELECT 1 FROM purchase p WHERE p.member_id = d.member_id
                             AND p.voided_at IS NULL AND p.created_at >= $1
                             AND p.created_at < $2) THEN 1 ELSE 0 END) AS purchased,
       SUM(CASE WHEN EXISTS (SELECT 1 FROM coupon c
                             WHERE c.issue_key = CAST($3 AS TEXT) || CAST(d.member_id AS TEXT)
                             AND c.status = 'redeemed') THEN 1 ELSE 0 END) AS redeemed
FROM campaign_delivery d WHERE d.campaign_id = $4 GROUP BY d.holdout
"""
_UNKNOWN = ("SELECT m.card_no AS card_no FROM campaign_delivery d JOIN member m "
            "ON m.id = d.member_id WHERE d.campaign_id = $1 AND d.state = 'unknown' "
            "ORDER BY d.member_id LIMIT $2")
_MASS = ("SELECT COALESCE(SUM(j.total_count), 0) AS total, "
         "COALESCE(SUM(j.filter_count), 0) AS filtered, COALESCE(SUM(j.sent_count), 0) AS sent, "
         "COALESCE(SUM(j.error_count), 0) AS errors, COUNT(*) AS calls "
         "FROM campaign_mass_job j JOIN campaign_batch b ON b.id = j.batch_id "
         "WHERE b.campaign_id = $1")


_BY_CHANNEL = ("SELECT channel, state, COUNT(*) AS n FROM campaign_delivery WHERE campaign_id = $1 "
               "AND channel IS NOT NULL GROUP BY channel, state")


def coupon_key_prefix(campaign_id: int) -> str:
    """Coupons a campaign issues are keyed campaign:<id>:<member id>."""
    return f"campaign:{campaign_id}:"


async def status(bot, campaign_id: int) -> Status:
    campaign = await lifecycle.get(campaign_id)
    counts = {state.value: 0 for state in DeliveryState}
    skipped: dict[str, int] = {}
    for row in await sql.fetch(_COUNTS, campaign.id):
        counts[row["state"]] += row["n"]
        if row["state"] == DeliveryState.SKIPPED:
            skipped[row["reason"] or ""] = skipped.get(row["reason"] or "", 0) + row["n"]
    start = campaign.started_at or campaign.created_at
    groups = {}
    for row in await sql.fetch(_GROUPS, start, start + dt.timedelta(days=RESULT_DAYS),
                               coupon_key_prefix(campaign.id), campaign.id):
        groups[bool(row["holdout"])] = Group(
            members=row["members"], delivered=int(row["delivered"] or 0),
            redeemed=int(row["redeemed"] or 0), purchased=int(row["purchased"] or 0))
    unknown = [mask_card(row["card_no"])
               for row in await sql.fetch(_UNKNOWN, campaign.id, UNKNOWN_LISTED)]
    batches = await CampaignBatch.filter(campaign_id=campaign.id).count()
    batches_done = await CampaignBatch.filter(campaign_id=campaign.id, state="done").count()
    mass = (await sql.fetch(_MASS, campaign.id))[0]
    return Status(
        campaign=campaign, counts=counts, total=sum(counts.values()),
        done=campaign.status in (CampaignStatus.DONE, CampaignStatus.CANCELLED),
        results=Results(sent=groups.get(False, Group()), holdout=groups.get(True, Group())),
        unknown=unknown, skipped=skipped, batches=batches, batches_done=batches_done,
        mass={key: int(mass[key]) for key in ("calls", "total", "filtered", "sent", "errors")})


async def by_channel(campaign_id: int) -> dict[str, dict[str, int]]:
    """channel (wechat, wechat_cs, sms) → state → deliveries that took that channel."""
    out: dict[str, dict[str, int]] = {}
    for row in await sql.fetch(_BY_CHANNEL, campaign_id):
        out.setdefault(row["channel"], {})[row["state"]] = int(row["n"])
    return out


async def progress(campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    """For a page of campaigns: campaign id → state → deliveries (states with none left out),
    in one grouped query."""
    if not campaign_ids:
        return {}
    rows = await sql.fetch(
        "SELECT campaign_id, state, COUNT(*) AS n FROM campaign_delivery WHERE campaign_id IN "
        f"({sql.placeholders(1, len(campaign_ids))}) GROUP BY campaign_id, state",
        *campaign_ids)
    out: dict[int, dict[str, int]] = {i: {} for i in campaign_ids}
    for row in rows:
        out[row["campaign_id"]][row["state"]] = int(row["n"])
    return out
