"""The engine's sends, against the WeChat and Aliyun stand-ins with the bot on a real port (so
MASSSENDJOBFINISH comes back signed and encrypted): each member once, by the right channel;
the monthly cap, refusals, retries, 45065, the sending window, opt-outs mid-campaign, two
workers on one campaign, unknown outcomes, pause and cancel, coupons and results."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections import Counter

import pytest

from bot.config import BroadcastConfig, SmsConfig
from bot.jobs.scheduler import TICKS, Scheduler
from bot.models import (
    CampaignBatch,
    CampaignDelivery,
    Coupon,
    CouponTemplate,
    Follower,
    MassJob,
    MassQuota,
    Member,
    Purchase,
)
from bot.rules import campaigns as rules
from bot.runtime import Bot
from bot.services import campaigns
from bot.services.campaigns import audience, engine
from tests.channels.test_sms import push, uplink
from tests.support import SHANGHAI, SMS_ID, SMS_SECRET, Harness, at_local

DAY = dt.date(2031, 3, 12)
MASS = "/cgi-bin/message/mass/send"
_serials = itertools.count(1)


@pytest.fixture
async def make_shop(harness_factory, stand_ins):
    async def build(hour: int = 11, **broadcast) -> Harness:
        sms = SmsConfig(access_key_id=SMS_ID, access_key_secret=SMS_SECRET, sign_name="示例门店",
                        endpoint=stand_ins.sms_url, template_verify="SMS_VERIFY",
                        template_welcome="SMS_WELCOME", template_marketing="SMS_PROMO")
        h = await harness_factory(sms=sms, broadcast=BroadcastConfig(**broadcast))
        at_local(h.clock, DAY, hour)
        stand_ins.wechat.clock = lambda: h.clock().timestamp()
        stand_ins.wechat.set_webhook(h.url, h.config.wechat)
        return h
    return build


@pytest.fixture
async def shop(make_shop) -> Harness:
    return await make_shop()


async def new_member(bot: Bot, *, tier: str = "普通会员", following: bool = True) -> Member:
    n = next(_serials)
    phone = f"135{n:08d}"
    member = await Member.create(card_no=f"88{n:08d}", phone_hash=bot.vault.lookup_hash(phone),
                                 phone_enc=bot.vault.encrypt(phone), name=f"会员{n}", tier=tier)
    await Follower.create(openid=f"o_dlv_{n}", member=member, following=following)
    return member


def phone_of(bot: Bot, member: Member) -> str:
    return bot.vault.decrypt(member.phone_enc)


async def openid_of(member: Member) -> str:
    return (await Follower.get(member_id=member.id)).openid


def mass_received(h: Harness) -> Counter[str]:
    return Counter(m.openid for m in h.stand_ins.wechat.messages if m.via == "mass")


def sms_received(h: Harness) -> Counter[str]:
    return Counter(m["phone"] for m in h.stand_ins.sms.messages
                   if m["template_code"] == "SMS_PROMO")


async def states(campaign_id: int) -> dict[int, tuple[str, str | None, str | None]]:
    rows = await CampaignDelivery.filter(campaign_id=campaign_id).values_list(
        "member_id", "state", "channel", "reason")
    return {member_id: (state, channel, reason) for member_id, state, channel, reason in rows}


async def send(h: Harness, **create) -> int:
    campaign = await campaigns.create(h.bot, **{"segment": "all", "text": "周末双倍积分",
                                                **create})
    await campaigns.start(h.bot, campaign.id)
    await campaigns.tick(h.bot)
    await h.stand_ins.wechat.drain()
    await h.settle()
    return campaign.id


# --- channels ---

async def test_followers_get_one_mass_send_and_the_rest_an_sms(shop):
    h = shop
    followers = [await new_member(h.bot) for _ in range(4)]
    away = [await new_member(h.bot, following=False) for _ in range(2)]
    campaign_id = await send(h)
    got = await states(campaign_id)
    assert {got[m.id] for m in followers} == {("sent", "wechat", None)}
    assert {got[m.id] for m in away} == {("sent", "sms", None)}
    assert mass_received(h) == Counter({await openid_of(m): 1 for m in followers})
    assert sms_received(h) == Counter({phone_of(h.bot, m): 1 for m in away})
    sms = [m for m in h.stand_ins.sms.messages if m["template_code"] == "SMS_PROMO"]
    assert {m["params"]["text"] for m in sms} == {"周末双倍积分"}
    assert not h.stand_ins.wechat.templates  # never template messages for marketing
    report = await campaigns.status(h.bot, campaign_id)
    assert report.done and report.campaign.status == "done"
    assert report.counts["sent"] == 6 == report.total
    # MASSSENDJOBFINISH came back through the webhook and filled in WeChat's counts.
    job = await MassJob.get()
    assert (job.total_count, job.sent_count, job.filter_count) == (4, 4, 0)
    assert report.mass == {"calls": 1, "total": 4, "filtered": 0, "sent": 4, "errors": 0}


async def test_a_mass_send_carries_one_text_so_members_are_grouped_by_theirs(shop):
    h = shop
    gold = [await new_member(h.bot, tier="金卡会员") for _ in range(2)]
    plain = [await new_member(h.bot) for _ in range(2)]
    single = await new_member(h.bot, tier="银卡会员")
    campaign_id = await send(h, text=None, template="double_points")
    texts = {tuple(sorted(r.openids)): r.content for r in h.stand_ins.wechat.mass}
    assert len(h.stand_ins.wechat.mass) == 2
    assert "金卡会员专享" in texts[tuple(sorted([await openid_of(m) for m in gold]))]
    assert "普通会员专享" in texts[tuple(sorted([await openid_of(m) for m in plain]))]
    # A text for one member cannot be mass-sent (WeChat takes 2 to 10,000): SMS.
    assert (await states(campaign_id))[single.id] == ("sent", "sms", None)
    assert await MassQuota.filter(member_id=single.id, count__gt=0).count() == 0


async def test_the_fifth_promotion_of_a_month_goes_by_sms(shop):
    h = shop
    members = [await new_member(h.bot) for _ in range(2)]
    for n in range(5):
        campaign_id = await send(h, text=f"第{n + 1}次活动")
    for member in members:
        assert h.stand_ins.wechat.mass_received(await openid_of(member)) == 4
        assert (await states(campaign_id))[member.id] == ("sent", "sms", None)
        assert sms_received(h)[phone_of(h.bot, member)] == 1
        assert await MassQuota.get(member_id=member.id).values_list("count", flat=True) == 4
    assert len(h.stand_ins.wechat.mass) == 4
    wechat_only = await send(h, text="第6次", channels=("wechat",))
    assert {s for s in (await states(wechat_only)).values()} == {("skipped", None, "mass_cap")}


async def test_next_month_the_cap_starts_again(shop):
    h = shop
    members = [await new_member(h.bot) for _ in range(2)]
    for member in members:
        await MassQuota.create(member=member, month="2031-03", count=4)
    first = await send(h)
    assert {s[1] for s in (await states(first)).values()} == {"sms"}
    at_local(h.clock, dt.date(2031, 4, 1), 10)
    second = await send(h)
    assert {s[1] for s in (await states(second)).values()} == {"wechat"}


async def test_wechat_refusing_43004_sends_them_by_sms(shop):
    h = shop
    members = [await new_member(h.bot) for _ in range(2)]
    for member in members:  # they unfollowed and our records have not heard yet
        h.stand_ins.wechat.set_not_following(await openid_of(member))
    campaign_id = await send(h)
    assert {s for s in (await states(campaign_id)).values()} == {("sent", "sms", None)}
    assert sms_received(h) == Counter({phone_of(h.bot, m): 1 for m in members})
    assert not h.stand_ins.wechat.mass
    # The month's mass count they did not use is given back.
    assert set(await MassQuota.all().values_list("count", flat=True)) == {0}


async def test_campaign_on_wechat_only_skips_who_it_cannot_reach_with_a_reason(shop):
    h = shop
    reach = [await new_member(h.bot) for _ in range(2)]
    away = await new_member(h.bot, following=False)
    campaign_id = await send(h, channels=("wechat",))
    got = await states(campaign_id)
    assert got[away.id] == ("skipped", None, "not_following")
    assert {got[m.id] for m in reach} == {("sent", "wechat", None)}
    assert not h.stand_ins.sms.messages


# --- retries and duplicates ---

@pytest.mark.parametrize("errcode", [-1, 45009])
async def test_a_transient_error_is_retried_after_a_backoff_and_sends_once(shop, errcode):
    h = shop
    members = [await new_member(h.bot) for _ in range(3)]
    h.stand_ins.wechat.fail_next(MASS, errcode, times=2)
    campaign_id = await send(h)
    assert {s[0] for s in (await states(campaign_id)).values()} == {"sending"}
    assert (await campaigns.get(campaign_id)).status == "running"
    await campaigns.tick(h.bot)  # the backoff has not passed: nothing is tried
    assert h.stand_ins.wechat.calls[MASS] == 1
    for _ in range(2):
        h.clock.advance(seconds=60)
        await campaigns.tick(h.bot)
    await h.stand_ins.wechat.drain()
    assert h.stand_ins.wechat.calls[MASS] == 3
    assert mass_received(h) == Counter({await openid_of(m): 1 for m in members})
    assert {s for s in (await states(campaign_id)).values()} == {("sent", "wechat", None)}
    assert (await campaigns.get(campaign_id)).status == "done"


@pytest.mark.parametrize(("errcode", "state", "counted"), [(45009, "failed", 0),
                                                           (-1, "unknown", 1)])
async def test_transient_errors_stop_after_max_attempts_and_say_so(make_shop, errcode, state,
                                                                   counted):
    """45009 (the day's quota) means nothing went out; -1 every time means no answer ever came
    back, and any attempt may have gone out: unknown, its month's count kept."""
    h = await make_shop(max_attempts=2)
    members = [await new_member(h.bot) for _ in range(2)]
    h.stand_ins.wechat.fail_next(MASS, errcode, times=5)
    campaign_id = await send(h)
    h.clock.advance(seconds=60)
    await campaigns.tick(h.bot)
    got = await states(campaign_id)
    assert {got[m.id][0] for m in members} == {state}
    assert h.stand_ins.wechat.calls[MASS] == 2
    assert (await campaigns.get(campaign_id)).status == "done"
    assert set(await MassQuota.all().values_list("count", flat=True)) == {counted}
    assert len((await campaigns.status(h.bot, campaign_id)).unknown) == (2 if counted else 0)


async def test_a_repeated_batch_is_refused_with_45065_and_counts_as_sent(shop):
    """WxJava#2098: retrying a mass send on a timeout sent it twice. Here the first call went
    out but its answer was lost: the repeat carries the same clientmsgid and WeChat refuses it."""
    h = shop
    members = [await new_member(h.bot) for _ in range(2)]
    openids = sorted([await openid_of(m) for m in members])
    campaign = await campaigns.create(h.bot, segment="all", text="周末双倍积分")
    await campaigns.start(h.bot, campaign.id)
    first = await h.bot.wechat.mass_send(openids, "周末双倍积分",
                                         client_msg_id=rules.client_msg_id(campaign.id, 1,
                                                                           "周末双倍积分"))
    assert not first.duplicate
    await campaigns.tick(h.bot)
    await h.stand_ins.wechat.drain()
    assert len(h.stand_ins.wechat.mass) == 1
    assert mass_received(h) == Counter({o: 1 for o in openids})
    assert {s for s in (await states(campaign.id)).values()} == {("sent", "wechat", None)}
    job = await MassJob.get()
    assert job.msg_id == first.msg_id


async def test_a_mass_send_left_sending_by_a_crash_is_repeated_with_its_clientmsgid(shop):
    h = shop
    members = [await new_member(h.bot) for _ in range(2)]
    campaign = await campaigns.create(h.bot, segment="all", text="周末双倍积分")
    await campaigns.start(h.bot, campaign.id)
    # The crashed worker had claimed the batch, marked the deliveries and made the call.
    h.stand_ins.wechat.set_delay(MASS, 0.5)
    worker = engine.worker_name()
    await audience.write_audience(h.bot, campaign)
    batch = await engine.claim(h.bot, campaign.id, worker)
    crashed = asyncio.create_task(engine.run_batch(h.bot, campaign, batch, worker))
    await asyncio.sleep(0.3)
    crashed.cancel()
    await asyncio.gather(crashed, return_exceptions=True)
    await asyncio.sleep(0.3)  # WeChat finished the send the worker never heard about
    assert {s[0] for s in (await states(campaign.id)).values()} == {"sending"}
    h.stand_ins.wechat.set_delay(MASS, 0)
    h.clock.advance(seconds=h.config.broadcast.lease_seconds + 1)
    await campaigns.tick(h.bot)
    await h.stand_ins.wechat.drain()
    assert h.stand_ins.wechat.calls[MASS] == 2
    assert mass_received(h) == Counter({await openid_of(m): 1 for m in members})
    assert {s for s in (await states(campaign.id)).values()} == {("sent", "wechat", None)}


async def test_sms_flow_control_is_retried_and_a_lost_answer_is_unknown(shop):
    h = shop
    limited, lost = [await new_member(h.bot, following=False) for _ in range(2)]
    h.stand_ins.sms.fail_next(code="isv.BUSINESS_LIMIT_CONTROL", phone=phone_of(h.bot, limited))
    h.stand_ins.sms.fail_next(drop=True, phone=phone_of(h.bot, lost))
    campaign_id = await send(h)
    got = await states(campaign_id)
    assert got[limited.id][0] == "queued" and got[lost.id][0] == "unknown"
    report = await campaigns.status(h.bot, campaign_id)
    assert report.unknown == [f"88****{lost.card_no[-4:]}"]
    h.clock.advance(seconds=60)
    await campaigns.tick(h.bot)
    got = await states(campaign_id)
    assert got[limited.id] == ("sent", "sms", None)
    assert got[lost.id][0] == "unknown"  # never resent blindly
    assert sms_received(h) == Counter({phone_of(h.bot, limited): 1})
    assert (await campaigns.get(campaign_id)).status == "done"


# --- the sending window and opt-outs ---

async def test_sms_wait_for_the_morning_outside_the_sending_window(make_shop):
    h = await make_shop(hour=22)
    followers = [await new_member(h.bot) for _ in range(2)]
    away = await new_member(h.bot, following=False)
    campaign_id = await send(h)
    got = await states(campaign_id)
    assert {got[m.id][0] for m in followers} == {"sent"}  # a mass send is not an SMS
    assert got[away.id][0] == "queued"
    assert not h.stand_ins.sms.messages
    batch = await CampaignBatch.get()
    assert batch.not_before == dt.datetime.combine(DAY + dt.timedelta(days=1),
                                                   dt.time(8), SHANGHAI)
    at_local(h.clock, DAY + dt.timedelta(days=1), 7, 59)
    await campaigns.tick(h.bot)
    assert not h.stand_ins.sms.messages
    at_local(h.clock, DAY + dt.timedelta(days=1), 8, 0)
    await campaigns.tick(h.bot)
    assert sms_received(h) == Counter({phone_of(h.bot, away): 1})
    assert (await campaigns.get(campaign_id)).status == "done"


async def _run_first_batch(h: Harness, campaign_id: int) -> None:
    campaign = await campaigns.get(campaign_id)
    worker = engine.worker_name()
    await audience.write_audience(h.bot, campaign)
    batch = await engine.claim(h.bot, campaign_id, worker)
    await engine.run_batch(h.bot, campaign, batch, worker)


async def test_an_sms_td_mid_campaign_stops_the_next_send_at_once(make_shop):
    h = await make_shop(batch_size=2)
    members = [await new_member(h.bot, following=False) for _ in range(4)]
    campaign = await campaigns.create(h.bot, segment="all", text="周末双倍积分")
    await campaigns.start(h.bot, campaign.id)
    await _run_first_batch(h, campaign.id)
    # The third member replies TD to an earlier SMS before their batch goes.
    status, _ = await push(h, "/sms/uplink", [uplink(4242, phone_of(h.bot, members[2]),
                                                     content="TD")])
    assert status == 200
    await h.settle()
    await campaigns.tick(h.bot)
    got = await states(campaign.id)
    assert got[members[2].id] == ("skipped", None, "opted_out")
    assert [got[m.id][0] for m in (members[0], members[1], members[3])] == ["sent"] * 3
    assert phone_of(h.bot, members[2]) not in sms_received(h)


async def test_consent_withdrawn_in_chat_or_erased_mid_campaign_is_skipped(make_shop):
    h = await make_shop(batch_size=2)
    members = [await new_member(h.bot) for _ in range(6)]
    campaign = await campaigns.create(h.bot, segment="all", text="周末双倍积分")
    await campaigns.start(h.bot, campaign.id)
    await _run_first_batch(h, campaign.id)
    await h.say(await openid_of(members[2]), "退订")
    await Member.filter(id=members[4].id).update(erased_at=h.bot.now())
    await campaigns.tick(h.bot)
    await h.stand_ins.wechat.drain()
    got = await states(campaign.id)
    assert got[members[2].id] == ("skipped", None, "opted_out")
    assert got[members[4].id] == ("skipped", None, "erased")
    received = mass_received(h)
    assert await openid_of(members[2]) not in received
    assert await openid_of(members[4]) not in received
    # members[3] and [5] were left alone in their batches: one openid cannot be mass-sent.
    assert got[members[3].id] == ("sent", "sms", None)
    report = await campaigns.status(h.bot, campaign.id)
    assert report.skipped == {"opted_out": 1, "erased": 1}
    assert report.counts["sent"] == 4


# --- workers, pause, cancel ---

async def test_two_workers_on_one_campaign_reach_each_member_once(any_db, make_shop):
    h = await make_shop(batch_size=3)
    members = [await new_member(h.bot, following=n % 3 != 0) for n in range(30)]
    campaign = await campaigns.create(h.bot, segment="all", text="周末双倍积分")
    await campaigns.start(h.bot, campaign.id)
    await asyncio.gather(*(engine.run_campaign(h.bot, campaign, worker=f"w{n}")
                           for n in range(2)))
    await campaigns.tick(h.bot)
    await h.stand_ins.wechat.drain()
    got = await states(campaign.id)
    assert len(got) == 30 and {s[0] for s in got.values()} == {"sent"}
    assert set(mass_received(h).values()) == {1}
    assert set(sms_received(h).values()) == {1}
    assert sum(mass_received(h).values()) + sum(sms_received(h).values()) == len(members)
    workers = set(await CampaignBatch.all().values_list("claims", flat=True))
    assert workers == {1}  # no batch was claimed twice
    assert (await campaigns.get(campaign.id)).status == "done"


async def test_pause_stops_after_the_batch_and_resume_sends_the_rest_once(make_shop):
    h = await make_shop(batch_size=2)
    members = [await new_member(h.bot) for _ in range(6)]
    campaign = await campaigns.create(h.bot, segment="all", text="周末双倍积分")
    await campaigns.start(h.bot, campaign.id)
    await _run_first_batch(h, campaign.id)
    await campaigns.pause(h.bot, campaign.id)
    await campaigns.tick(h.bot)
    assert len(h.stand_ins.wechat.mass) == 1
    await campaigns.resume(h.bot, campaign.id)
    await campaigns.tick(h.bot)
    await h.stand_ins.wechat.drain()
    assert mass_received(h) == Counter({await openid_of(m): 1 for m in members})
    assert (await campaigns.get(campaign.id)).status == "done"


async def test_cancel_skips_who_was_still_waiting(make_shop):
    h = await make_shop(batch_size=2)
    [await new_member(h.bot) for _ in range(6)]
    campaign = await campaigns.create(h.bot, segment="all", text="周末双倍积分")
    await campaigns.start(h.bot, campaign.id)
    await _run_first_batch(h, campaign.id)
    await campaigns.cancel(h.bot, campaign.id)
    await campaigns.tick(h.bot)
    report = await campaigns.status(h.bot, campaign.id)
    assert report.counts["sent"] == 2 and report.skipped == {"cancelled": 4}
    assert report.done and len(h.stand_ins.wechat.mass) == 1


# --- coupons and results ---

async def test_the_coupon_is_issued_once_and_results_compare_with_the_holdout(make_shop):
    h = await make_shop()
    members = [await new_member(h.bot) for _ in range(30)]
    campaign_id = await send(h, text=None, template="winter_care", coupon="CUT30", holdout=20)
    await campaigns.tick(h.bot)  # running again changes nothing
    got = await states(campaign_id)
    sent = [m for m in members if got[m.id][0] == "sent"]
    held = [m for m in members if got[m.id][2] == "holdout"]
    assert sent and held and len(sent) + len(held) == 30
    coupons = await Coupon.filter(issue_key__startswith=f"campaign:{campaign_id}:")
    assert sorted(c.member_id for c in coupons) == sorted(m.id for m in sent)
    await Coupon.filter(id=coupons[0].id).update(status="redeemed")
    for member in (sent[0], sent[1], held[0]):
        row = await Purchase.create(member=member, amount=10_000,
                                    idempotency_key=f"test:{member.id}")
        await Purchase.filter(id=row.id).update(created_at=h.bot.now() + dt.timedelta(days=2))
    late = await Purchase.create(member=sent[2], amount=10_000, idempotency_key="test:late")
    await Purchase.filter(id=late.id).update(created_at=h.bot.now() + dt.timedelta(days=8))
    results = (await campaigns.status(h.bot, campaign_id)).results
    assert results.sent.members == len(sent) and results.sent.delivered == len(sent)
    assert results.sent.redeemed == 1 and results.sent.purchased == 2
    assert results.holdout.members == len(held) and results.holdout.delivered == 0
    assert results.holdout.purchased == 1 and results.holdout.redeemed == 0


async def test_two_schedulers_ticking_at_once_send_the_campaign_once(any_db, make_shop):
    h = await make_shop(batch_size=2)
    members = [await new_member(h.bot, following=n % 2 == 0) for n in range(12)]
    campaign = await campaigns.create(h.bot, segment="all", text="周末双倍积分")
    await campaigns.start(h.bot, campaign.id)
    [tick] = [t for t in TICKS if t.name == "campaigns"]
    workers = [Scheduler(h.bot, jobs=(), worker=f"worker-{n}") for n in range(2)]
    await asyncio.gather(*(w.tick(tick) for w in workers))
    await h.stand_ins.wechat.drain()
    assert sum(mass_received(h).values()) + sum(sms_received(h).values()) == len(members)
    assert set(mass_received(h).values()) | set(sms_received(h).values()) == {1}
    assert (await campaigns.get(campaign.id)).status == "done"


async def test_a_coupon_that_runs_out_skips_the_rest_rather_than_promise_nothing(shop):
    h = shop
    await CouponTemplate.create(code="LAST1", name="最后一张", kind="gift", gift="护理一次",
                                valid_days=30, stock=1)
    members = [await new_member(h.bot) for _ in range(3)]
    campaign_id = await send(h, text=None, template="winter_care", coupon="LAST1")
    got = await states(campaign_id)
    assert sorted(s for s in got.values()) == [("sent", "sms", None), ("skipped", None,
                                                                         "no_coupon"),
                                               ("skipped", None, "no_coupon")]
    [coupon] = await Coupon.filter(issue_key__startswith=f"campaign:{campaign_id}:")
    assert got[coupon.member_id][0] == "sent" and len(members) == 3


async def test_without_sms_a_lone_member_or_a_missing_template_is_a_reason(make_shop):
    h = await make_shop()
    await new_member(h.bot, tier="金卡会员")
    await new_member(h.bot)
    await new_member(h.bot)
    wechat_only = await send(h, text=None, template="double_points", channels=("wechat",))
    reasons = Counter(s[2] for s in (await states(wechat_only)).values())
    assert reasons == Counter({"single_openid": 1, None: 2})
    h.bot.config.sms.template_marketing = ""
    away = await new_member(h.bot, following=False)
    no_template = await send(h, text="hi")
    assert (await states(no_template))[away.id] == ("skipped", None, "no_sms_template")
