"""Campaigns: creating one (every refusal has its reason), the state moves, the preview's
counts, the stale schedule and the holdout share. The engine's sends are in
test_campaigns_delivery.py; a crash with a real worker process in test_campaigns_crash.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator

import pytest
import tortoise.timezone
from hypothesis import given
from hypothesis import strategies as st

from bot.config import BroadcastConfig
from bot.models import (
    AuditEntry,
    Campaign,
    CampaignDelivery,
    Follower,
    MassQuota,
    Member,
    Staff,
    Store,
)
from bot.rules import campaigns as rules
from bot.runtime import Bot, open_bot
from bot.services import campaigns
from bot.services.campaigns import CampaignError, audience
from tests.support import SHANGHAI, Clock, StandIns, at_local, make_config

_serials = itertools.count(1)


def campaign_config(db_url: str, stand_ins: StandIns, **broadcast):
    config = make_config(db_url, stand_ins)
    sms = config.sms.__class__(**{**config.sms.__dict__, "template_marketing": "SMS_PROMO"})
    return config.replace(sms=sms, broadcast=BroadcastConfig(**broadcast))


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    at_local(clock, dt.date(2031, 3, 12), 11)
    monkeypatch.setattr(tortoise.timezone, "now", clock)
    return clock


@pytest.fixture
async def bot(db_url, stand_ins, clock) -> AsyncIterator[Bot]:
    async with open_bot(campaign_config(db_url, stand_ins), clock, scheduler=False) as bot:
        yield bot


async def new_member(bot: Bot, *, tier: str = "普通会员", following: bool = True,
                     mass_used: int = 0) -> Member:
    n = next(_serials)
    phone = f"139{n:08d}"
    member = await Member.create(card_no=f"88{n:08d}", phone_hash=bot.vault.lookup_hash(phone),
                                 phone_enc=bot.vault.encrypt(phone), name=f"会员{n}", tier=tier)
    await Follower.create(openid=f"o_camp_{n}", member=member, following=following)
    if mass_used:
        await MassQuota.create(member=member, month=rules.month_of(bot.now(), SHANGHAI),
                               count=mass_used)
    return member


# --- creating ---

@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"segment": "everyone", "text": "hi"}, "bad_segment"),
    ({"segment": "all"}, "no_message"),
    ({"segment": "all", "text": "   "}, "no_message"),
    ({"segment": "all", "text": "hi", "template": "new_year"}, "no_message"),
    ({"segment": "all", "template": "no_such_promo"}, "unknown_template"),
    ({"segment": "all", "template": "../card"}, "unknown_template"),
    ({"segment": "all", "text": "hi", "coupon": "NOPE"}, "unknown_coupon"),
    ({"segment": "all", "text": "hi", "channels": ("fax",)}, "bad_channel"),
    ({"segment": "all", "text": "hi", "channels": ()}, "bad_channel"),
    ({"segment": "all", "text": "hi", "holdout": 90}, "bad_holdout"),
])
async def test_create_refuses_what_it_cannot_send_with_a_reason(bot, kwargs, reason):
    with pytest.raises(CampaignError) as refused:
        await campaigns.create(bot, **kwargs)
    assert refused.value.reason == reason
    assert str(refused.value) and "\n" not in str(refused.value)
    assert await Campaign.all().count() == 0


async def test_a_time_in_the_past_is_refused_and_a_local_time_is_the_shops(bot):
    with pytest.raises(CampaignError) as refused:
        await campaigns.create(bot, segment="all", text="hi",
                               at=bot.now() - dt.timedelta(hours=1))
    assert refused.value.reason == "past_time"
    campaign = await campaigns.create(bot, segment="all", text="hi",
                                      at=dt.datetime(2031, 3, 12, 15, 0))  # naive: shop time
    assert campaign.scheduled_at == dt.datetime(2031, 3, 12, 7, 0, tzinfo=dt.UTC)


async def test_the_states_move_only_from_where_they_may(bot):
    campaign = await campaigns.create(bot, segment="all", text="周末双倍积分")
    assert campaign.status == "draft"
    with pytest.raises(CampaignError) as refused:
        await campaigns.pause(bot, campaign.id)
    assert refused.value.reason == "bad_state"
    assert (await campaigns.start(bot, campaign.id)).status == "running"
    assert (await campaigns.pause(bot, campaign.id)).status == "paused"
    assert (await campaigns.resume(bot, campaign.id)).status == "running"
    assert (await campaigns.cancel(bot, campaign.id)).status == "cancelled"
    for move in (campaigns.start, campaigns.resume, campaigns.cancel, campaigns.confirm_stale):
        with pytest.raises(CampaignError):
            await move(bot, campaign.id)
    with pytest.raises(CampaignError) as missing:
        await campaigns.status(bot, 999)
    assert missing.value.reason == "not_found"
    # Each move is in the audit log, refused ones not.
    assert await AuditEntry.filter(detail=f"campaign {campaign.id}").order_by("id").values_list(
        "action", "actor") == [(f"campaign_{a}", "cli") for a in (
            "create", "start", "pause", "resume", "cancel")]


async def test_a_managers_move_is_audited_under_their_name(bot):
    manager = await Staff.create(openid="o_mgr", name="小王", role="manager",
                                 store=await Store.get(code="S001"))
    campaign = await campaigns.create(bot, segment="all", text="hi", staff_id=manager.id)
    await campaigns.start(bot, campaign.id, staff_id=manager.id)
    entries = await AuditEntry.filter(staff_id=manager.id).order_by("id")
    assert [(e.action, e.store_code) for e in entries] == [("campaign_create", "S001"),
                                                           ("campaign_start", "S001")]
    assert entries[1].before == {"status": "draft"} and entries[1].after == {"status": "running"}


async def test_two_managers_starting_at_once_start_it_once(any_db, bot):
    campaign = await campaigns.create(bot, segment="all", text="hi")
    outcomes = await asyncio.gather(*(campaigns.start(bot, campaign.id) for _ in range(5)),
                                    return_exceptions=True)
    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all(o.reason == "bad_state" for o in outcomes if isinstance(o, CampaignError))


async def test_list_shows_the_newest_first(bot):
    ids = [(await campaigns.create(bot, segment="all", text=f"t{n}")).id for n in range(3)]
    assert [c.id for c in await campaigns.list_campaigns(bot, limit=2)] == ids[:0:-1]


# --- the preview ---

async def test_the_preview_renders_for_a_sample_and_counts_channels(bot):
    gold = [await new_member(bot, tier="金卡会员") for _ in range(3)]
    capped = await new_member(bot, tier="金卡会员", mass_used=4)
    away = await new_member(bot, tier="金卡会员", following=False)
    await new_member(bot)  # another tier
    campaign = await campaigns.create(bot, segment="tier:金卡会员", template="winter_care",
                                      coupon="CUT30")
    preview = await campaigns.preview(bot, campaign.id)
    assert "满200减30" in preview.text and "金卡会员" in preview.text
    assert preview.sample_card_no.startswith("88") and "*" in preview.sample_card_no
    assert preview.sample_card_no[-4:] == gold[0].card_no[-4:]
    assert preview.total == 5 and preview.holdout == 0
    assert preview.by_channel == {"wechat": 3, "sms": 2, "none": 0}
    assert preview.mass_left == 3
    assert capped.id and away.id
    wechat_only = await campaigns.create(bot, segment="tier:金卡会员", text="hi",
                                         channels=("wechat",))
    assert (await campaigns.preview(bot, wechat_only.id)).by_channel == {
        "wechat": 3, "sms": 0, "none": 2}


async def test_an_empty_segment_previews_with_a_stand_in_member(bot):
    campaign = await campaigns.create(bot, segment="tier:钻石会员", template="new_year")
    preview = await campaigns.preview(bot, campaign.id)
    assert preview.total == 0 and preview.sample_card_no == ""
    assert "新年快乐" in preview.text


# --- scheduled campaigns ---

async def test_a_scheduled_campaign_starts_when_due(bot, clock):
    campaign = await campaigns.create(bot, segment="all", text="hi",
                                      at=bot.now() + dt.timedelta(hours=1))
    assert (await campaigns.start(bot, campaign.id)).status == "scheduled"
    await campaigns.tick(bot)
    assert (await campaigns.get(campaign.id)).status == "scheduled"
    clock.advance(minutes=61)
    await campaigns.tick(bot)
    campaign = await campaigns.get(campaign.id)
    assert campaign.status == "done"  # an empty audience is done at once
    assert campaign.started_at is not None


async def test_a_schedule_missed_by_more_than_stale_after_waits_for_a_manager(bot, clock):
    """listmonk#1801: a scheduled campaign went out hours late once the server came back."""
    member = await new_member(bot)
    late = await campaigns.create(bot, segment="all", text="hi",
                                  at=bot.now() + dt.timedelta(minutes=10))
    cancelled = await campaigns.create(bot, segment="all", text="hi",
                                       at=bot.now() + dt.timedelta(minutes=10))
    for campaign in (late, cancelled):
        await campaigns.start(bot, campaign.id)
    clock.advance(minutes=10 + 121)  # the server was down past the 2 h stale_after
    await campaigns.tick(bot)
    for campaign in (late, cancelled):
        assert (await campaigns.get(campaign.id)).status == "stale"
    assert await CampaignDelivery.all().count() == 0
    await campaigns.cancel(bot, cancelled.id)
    assert (await campaigns.confirm_stale(bot, late.id)).status == "running"
    await campaigns.tick(bot)
    assert await CampaignDelivery.filter(campaign_id=late.id).values_list(
        "member_id", "state") == [(member.id, "sent")]
    assert await CampaignDelivery.filter(campaign_id=cancelled.id).count() == 0


# --- holdout ---

@given(st.integers(1, 10_000), st.integers(0, 50))
def test_holdout_is_deterministic_per_campaign_and_member(campaign_id, percent):
    chosen = [rules.is_holdout(campaign_id, m, percent) for m in range(200)]
    assert chosen == [rules.is_holdout(campaign_id, m, percent) for m in range(200)]
    if percent == 0:
        assert not any(chosen)


def test_holdout_takes_about_its_share():
    held = sum(rules.is_holdout(7, m, 10) for m in range(20_000))
    assert 1_800 < held < 2_200
    other = {m for m in range(20_000) if rules.is_holdout(8, m, 10)}
    assert other != {m for m in range(20_000) if rules.is_holdout(7, m, 10)}


async def test_the_holdout_share_gets_nothing_and_is_counted_apart(bot, stand_ins):
    for _ in range(40):
        await new_member(bot)
    campaign = await campaigns.create(bot, segment="all", text="周末双倍积分", holdout=25)
    preview = await campaigns.preview(bot, campaign.id)
    await campaigns.start(bot, campaign.id)
    await campaigns.tick(bot)
    report = await campaigns.status(bot, campaign.id)
    held = await CampaignDelivery.filter(campaign_id=campaign.id, holdout=True).values_list(
        "member_id", flat=True)
    assert len(held) == preview.holdout > 0
    assert report.skipped == {"holdout": len(held)}
    assert report.results.holdout.members == len(held)
    assert report.results.holdout.delivered == 0
    assert report.results.sent.members == 40 - len(held)
    assert report.results.sent.delivered == 40 - len(held)
    held_openids = set(await Follower.filter(member_id__in=held).values_list("openid",
                                                                             flat=True))
    received = {openid for job in stand_ins.wechat.mass for openid in job.openids}
    assert received and not received & held_openids


# --- the audience ---

async def test_the_audience_is_written_once_in_batches_whoever_writes_it(any_db, db_url,
                                                                           stand_ins, clock):
    config = campaign_config(db_url, stand_ins, batch_size=3)
    async with open_bot(config, clock, scheduler=False) as bot:
        members = [await new_member(bot) for _ in range(10)]
        campaign = await campaigns.create(bot, segment="all", text="hi")
        await campaigns.start(bot, campaign.id)
        done = await asyncio.gather(*(audience.write_audience(bot, campaign) for _ in range(3)))
        assert done.count(True) >= 1
        rows = await CampaignDelivery.filter(campaign_id=campaign.id).order_by(
            "member_id").values_list("member_id", "batch__seq")
        assert [m for m, _ in rows] == [m.id for m in members]
        assert [seq for _, seq in rows] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
        campaign = await campaigns.get(campaign.id)
        assert campaign.audience_done and campaign.audience_total == 10


async def test_a_crash_while_writing_the_audience_resumes_after_the_checkpoint(
        db_url, stand_ins, clock, monkeypatch):
    config = campaign_config(db_url, stand_ins, batch_size=3, lease_seconds=30)
    async with open_bot(config, clock, scheduler=False) as bot:
        members = [await new_member(bot) for _ in range(10)]
        campaign = await campaigns.create(bot, segment="all", text="hi")
        await campaigns.start(bot, campaign.id)
        real = audience._write_batch
        written = []

        async def dies_on_the_third(campaign, seq, ids, now):
            if seq == 3:
                raise ConnectionError("the worker died")
            written.append(seq)
            await real(campaign, seq, ids, now)

        monkeypatch.setattr(audience, "_write_batch", dies_on_the_third)
        with pytest.raises(ConnectionError):
            await audience.write_audience(bot, campaign)
        monkeypatch.setattr(audience, "_write_batch", real)
        campaign = await campaigns.get(campaign.id)
        assert campaign.audience_after == members[5].id and not campaign.audience_done
        assert await audience.write_audience(bot, campaign)
        ids = await CampaignDelivery.filter(campaign_id=campaign.id).order_by(
            "member_id").values_list("member_id", flat=True)
        assert ids == [m.id for m in members]
