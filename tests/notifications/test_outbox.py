"""Outbox.notify: the channels a notice takes (customer-service message, template message, SMS),
their order per purpose, WeChat's refusals passing a notice on, the sending window for SMS with
its queue and the tick that empties it (claimed once across workers, never resent after a
crash), and marketing notices (no template messages, 退订 honoured).

The bot runs against the WeChat and Aliyun stand-ins on real ports; its clock is pinned to
local (Asia/Shanghai) times, and tortoise's auto_now timestamps follow it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator

import pytest
import tortoise.timezone

from bot.config import ConfigError, SmsConfig, validate_notices
from bot.jobs.scheduler import TICKS, Scheduler
from bot.models import Delivery, Follower, Member
from bot.notifications.outbox import SENDING_LEASE
from bot.runtime import Bot, open_bot
from bot.services import privacy, verification
from tests.support import SHANGHAI, Clock, at_local, make_config

DAY = dt.date(2031, 3, 12)
SEND = "/cgi-bin/message/custom/send"
TEMPLATE_SEND = "/cgi-bin/message/template/send"
PURCHASE_VALUES = {"amount": "¥128.50", "points": "128", "balance": "228",
                   "time": "2031-03-12 12:00"}
NOTICES = {
    "purchase": {"template_id": "TPL_PURCHASE",
                 "fields": {"amount": "amount1", "points": "number2", "balance": "number3",
                            "time": "time4"},
                 "sms_template": "SMS_PURCHASE",
                 "sms_params": {"amount": "amt", "balance": "bal"}},
    "plain": {"sms_template": "SMS_PLAIN", "sms_params": {}},
    "sms_first": {"channels": ["sms", "wechat_cs"], "sms_template": "SMS_FIRST",
                  "sms_params": {}},
    "template_only": {"channels": ["wechat_tpl"], "template_id": "TPL_ONLY",
                      "fields": {"amount": "amount1"}},
    "greeting": {"template_id": "TPL_GREETING", "fields": {"amount": "amount1"},
                 "sms_template": "SMS_GREETING_NOTICE"},
}
_serials = itertools.count(1)

QUEUED_SMS = next(tick for tick in TICKS if tick.name == "queued_sms")


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    at_local(clock, DAY, 12)
    monkeypatch.setattr(tortoise.timezone, "now", clock)
    return clock


def config_for(db_url, stand_ins, **overrides):
    config = make_config(db_url, stand_ins)
    sms = SmsConfig(**{**config.sms.__dict__, "template_marketing": "SMS_MARKETING"})
    return config.replace(notices=NOTICES, sms=sms, **overrides)


@pytest.fixture
async def bot(db_url, stand_ins, clock) -> AsyncIterator[Bot]:
    async with open_bot(config_for(db_url, stand_ins), clock, scheduler=False) as bot:
        yield bot


async def new_member(bot: Bot, *, openid: str | None = None, window: bool = True) -> Member:
    n = next(_serials)
    phone = f"137{n:08d}"
    member = await Member.create(card_no=f"88{n:08d}", phone_hash=bot.vault.lookup_hash(phone),
                                 phone_enc=bot.vault.encrypt(phone), name=f"会员{n}",
                                 tier="普通会员")
    if openid:
        await Follower.create(openid=openid, member=member,
                              message_window_at=bot.now() if window else None)
    return member


def phone_of(member: Member) -> str:
    return f"137{member.card_no[2:]}"


def sms_to(stand_ins, member: Member) -> list[dict]:
    return [m for m in stand_ins.sms.messages if m["phone"] == phone_of(member)]


async def tick_as_workers(bot: Bot, workers: int) -> None:
    """The queued-SMS tick on several workers at the same moment (each a Scheduler; they share
    the database, which is what keeps them apart)."""
    schedulers = [Scheduler(bot, jobs=(), worker=f"w{i}") for i in range(workers)]
    await asyncio.gather(*(s.tick(QUEUED_SMS) for s in schedulers))


# --- channels ---

async def test_a_member_who_does_not_follow_gets_the_notice_by_sms(bot, stand_ins):
    member = await new_member(bot)  # registered, then unfollowed: no follower row linked
    outcome = await bot.outbox.notify(member.id, "消费通知", purpose="purchase", key="n:1",
                                      values=PURCHASE_VALUES)
    assert outcome.ok
    [sms] = sms_to(stand_ins, member)
    # Our fields under the SMS template's variable names, nothing else.
    assert (sms["template_code"], sms["params"]) == ("SMS_PURCHASE",
                                                     {"amt": "¥128.50", "bal": "228"})
    row = await Delivery.get(key="n:1")
    assert (row.status, row.channel, row.error, row.member_id) == ("sent", "sms", None,
                                                                   member.id)
    assert row.phone_hash == member.phone_hash and sms["out_id"] == str(row.id)
    assert not stand_ins.wechat.messages and not stand_ins.wechat.templates


@pytest.mark.parametrize("errcode", [43004, 43101, 48002, 45015, 45047])
async def test_wechat_refusing_the_member_passes_the_notice_on(bot, stand_ins, errcode):
    member = await new_member(bot, openid="o_refuses")
    stand_ins.wechat.fail_next(SEND, errcode)
    stand_ins.wechat.fail_next(TEMPLATE_SEND, errcode)
    outcome = await bot.outbox.notify(member.id, "消费通知", purpose="purchase", key="n:refused",
                                      values=PURCHASE_VALUES)
    assert outcome.ok
    # Both WeChat channels were tried (and refused) before the SMS went out.
    assert stand_ins.wechat.calls[SEND] == 1 and stand_ins.wechat.calls[TEMPLATE_SEND] == 1
    assert len(sms_to(stand_ins, member)) == 1
    row = await Delivery.get(key="n:refused")
    assert (row.status, row.channel) == ("sent", "sms")


async def test_43004_from_the_stand_in_ends_in_an_sms(bot, stand_ins):
    member = await new_member(bot, openid="o_left")
    stand_ins.wechat.set_not_following("o_left")  # WeChat knows before our follower row does
    outcome = await bot.outbox.notify(member.id, "消费通知", purpose="purchase", key="n:43004",
                                      values=PURCHASE_VALUES)
    assert outcome.ok and len(sms_to(stand_ins, member)) == 1
    assert not stand_ins.wechat.messages and not stand_ins.wechat.templates


async def test_no_window_and_no_template_goes_by_sms(bot, stand_ins):
    member = await new_member(bot, openid="o_quiet", window=False)
    outcome = await bot.outbox.notify(member.id, "次卡使用 1 次", purpose="plain", key="n:plain")
    assert outcome.ok
    [sms] = sms_to(stand_ins, member)
    assert (sms["template_code"], sms["params"]) == ("SMS_PLAIN", {})
    assert stand_ins.wechat.calls[SEND] == 0  # no window: not even tried


async def test_nobody_reachable_is_recorded_channel_by_channel(bot, stand_ins):
    member = await new_member(bot, openid="o_quiet", window=False)
    outcome = await bot.outbox.notify(member.id, "到期提醒", purpose="coupon_expiring",
                                      key="n:none")
    assert not outcome.ok
    row = await Delivery.get(key="n:none")
    assert (row.status, row.channel) == ("failed", "sms")
    assert row.error == "wechat_cs:no_window; wechat_tpl:no_template; sms:no_template"
    assert not stand_ins.sms.messages and not stand_ins.wechat.templates


async def test_a_template_is_never_sent_with_an_empty_field(bot, stand_ins):
    member = await new_member(bot, openid="o_quiet", window=False)
    values = {**PURCHASE_VALUES, "points": ""}
    outcome = await bot.outbox.notify(member.id, "消费通知", purpose="purchase", key="n:hole",
                                      values=values)
    assert outcome.ok
    assert not stand_ins.wechat.templates  # passed over rather than "points：" left blank
    assert len(sms_to(stand_ins, member)) == 1


async def test_another_wechat_error_fails_the_notice_without_a_second_channel(bot, stand_ins):
    """45009 (quota) is not the member refusing: the message may be WeChat's problem, and an
    SMS on top could tell the member twice; the row keeps the code."""
    member = await new_member(bot, openid="o_user")
    stand_ins.wechat.fail_next(SEND, 45009)
    outcome = await bot.outbox.notify(member.id, "消费通知", purpose="purchase", key="n:45009",
                                      values=PURCHASE_VALUES)
    assert not outcome.ok and outcome.code == "45009"
    row = await Delivery.get(key="n:45009")
    assert (row.status, row.channel, row.error) == ("failed", "wechat_cs", "45009")
    assert not stand_ins.sms.messages and not stand_ins.wechat.templates


async def test_the_same_key_is_one_notice_whatever_the_channel(bot, stand_ins):
    member = await new_member(bot)
    outcomes = await asyncio.gather(*(
        bot.outbox.notify(member.id, "消费通知", purpose="purchase", key="n:once",
                          values=PURCHASE_VALUES) for _ in range(5)))
    assert sum(o.ok for o in outcomes) == 1 and sum(o.duplicate for o in outcomes) == 4
    assert len(sms_to(stand_ins, member)) == 1


# --- the order per purpose ---

async def test_a_purpose_can_put_sms_first(bot, stand_ins):
    member = await new_member(bot, openid="o_user")  # window open, yet SMS comes first
    assert (await bot.outbox.notify(member.id, "提醒", purpose="sms_first", key="n:first")).ok
    assert len(sms_to(stand_ins, member)) == 1 and not stand_ins.wechat.messages
    assert (await Delivery.get(key="n:first")).channel == "sms"


async def test_a_purpose_can_use_its_template_only(bot, stand_ins):
    member = await new_member(bot, openid="o_user")
    outcome = await bot.outbox.notify(member.id, "提醒", purpose="template_only", key="n:tpl",
                                      values={"amount": "¥10.00"})
    assert outcome.ok
    [template] = stand_ins.wechat.templates
    assert template.template_id == "TPL_ONLY" and template.data["amount1"]["value"] == "¥10.00"
    assert not stand_ins.wechat.messages and not stand_ins.sms.messages
    # Without its values it has no channel left: recorded, not sent.
    other = await new_member(bot, openid="o_other")
    assert not (await bot.outbox.notify(other.id, "提醒", purpose="template_only",
                                        key="n:tpl2")).ok
    assert (await Delivery.get(key="n:tpl2")).error == "wechat_tpl:no_template"


@pytest.mark.parametrize("channels", [["wechat"], [], ["sms", "sms"], "sms"])
def test_a_channel_list_that_names_nothing_known_is_refused(channels):
    with pytest.raises(ConfigError, match=r"notices\.purchase\.channels"):
        validate_notices({"purchase": {"channels": channels}})


def test_the_shipped_notices_are_valid():
    validate_notices(make_config("sqlite://:memory:").notices)


# --- quiet hours ---

async def test_an_sms_at_22_waits_for_08_and_goes_once(bot, clock, stand_ins):
    members = [await new_member(bot) for _ in range(8)]
    at_local(clock, DAY, 22)
    for member in members:
        outcome = await bot.outbox.notify(member.id, "消费通知", purpose="purchase",
                                          key=f"n:night:{member.id}", values=PURCHASE_VALUES)
        assert outcome.queued and not outcome.ok
    assert not stand_ins.sms.messages
    morning = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(8), SHANGHAI)
    rows = await Delivery.filter(key__startswith="n:night:")
    assert {(r.status, r.channel, r.not_before) for r in rows} == {("queued", "sms", morning)}
    for hour, minute in ((23, 0), (7, 59)):
        at_local(clock, DAY + dt.timedelta(days=1 if hour < 12 else 0), hour, minute)
        await tick_as_workers(bot, 2)
        assert not stand_ins.sms.messages
    at_local(clock, DAY + dt.timedelta(days=1), 8)
    await tick_as_workers(bot, 4)
    await tick_as_workers(bot, 4)
    for member in members:
        [sms] = sms_to(stand_ins, member)
        assert sms["params"] == {"amt": "¥128.50", "bal": "228"}
    rows = await Delivery.filter(key__startswith="n:night:")
    assert {r.status for r in rows} == {"sent"}


async def test_two_workers_ticking_together_send_each_queued_sms_once(any_db, db_url, stand_ins,
                                                                      clock):
    async with open_bot(config_for(db_url, stand_ins), clock, scheduler=False) as bot:
        members = [await new_member(bot) for _ in range(12)]
        at_local(clock, DAY, 21, 30)
        for member in members:
            await bot.outbox.notify(member.id, "提醒", purpose="plain", key=f"n:w:{member.id}")
        at_local(clock, DAY + dt.timedelta(days=1), 9)
        # Small batches so the workers really interleave over the rows.
        await asyncio.gather(*(bot.outbox.send_queued(limit=3) for _ in range(8)))
        await asyncio.gather(*(bot.outbox.send_queued() for _ in range(2)))
        assert sorted(m["phone"] for m in stand_ins.sms.messages) == sorted(
            phone_of(m) for m in members)
        assert await Delivery.filter(key__startswith="n:w:", status="sent").count() == 12


async def test_a_due_sms_still_waits_when_the_worker_comes_back_at_night(bot, clock, stand_ins):
    member = await new_member(bot)
    at_local(clock, DAY, 22)
    await bot.outbox.notify(member.id, "提醒", purpose="plain", key="n:late")
    at_local(clock, DAY + dt.timedelta(days=1), 23)  # down all day, back after 21:00
    assert await bot.outbox.send_queued() == 0 and not stand_ins.sms.messages
    at_local(clock, DAY + dt.timedelta(days=2), 8, 5)
    assert await bot.outbox.send_queued() == 1


async def test_a_worker_dying_mid_send_leaves_the_sms_unknown_never_resent(bot, clock,
                                                                          stand_ins):
    member = await new_member(bot)
    at_local(clock, DAY, 22)
    await bot.outbox.notify(member.id, "提醒", purpose="plain", key="n:crash")
    at_local(clock, DAY + dt.timedelta(days=1), 8)
    entered, never = asyncio.Event(), asyncio.Event()

    async def hangs(*args, **kwargs):
        entered.set()
        await never.wait()  # the request is out; the answer never gets recorded

    real_send = bot.sms.send
    bot.sms.send = hangs
    worker = asyncio.create_task(bot.outbox.send_queued())
    await entered.wait()
    worker.cancel()  # kill -9, as far as the database can tell
    with pytest.raises(asyncio.CancelledError):
        await worker
    bot.sms.send = real_send
    assert (await Delivery.get(key="n:crash")).status == "sending"
    await bot.outbox.send_queued()  # inside the lease: left alone
    assert (await Delivery.get(key="n:crash")).status == "sending"
    clock.advance(seconds=SENDING_LEASE.total_seconds() + 1)
    await tick_as_workers(bot, 2)
    row = await Delivery.get(key="n:crash")
    assert row.status == "unknown" and "worker stopped" in row.error
    await tick_as_workers(bot, 2)
    assert not stand_ins.sms.messages


async def test_a_verification_code_at_night_is_not_held_back(bot, clock, stand_ins):
    at_local(clock, DAY, 23, 30)
    result = await verification.send_code(bot, "13700000999", "wechat:o_new", "register")
    assert result.sent
    [sms] = [m for m in stand_ins.sms.messages if m["phone"] == "13700000999"]
    assert sms["template_code"] == "SMS_VERIFY" and len(sms["params"]["code"]) == 6


async def test_a_member_erased_while_their_sms_waited_gets_nothing(bot, clock, stand_ins):
    member = await new_member(bot)
    at_local(clock, DAY, 22)
    await bot.outbox.notify(member.id, "提醒", purpose="plain", key="n:erased")
    await Member.filter(id=member.id).update(phone_enc="", erased_at=bot.now())
    at_local(clock, DAY + dt.timedelta(days=1), 8)
    await bot.outbox.send_queued()
    row = await Delivery.get(key="n:erased")
    assert (row.status, row.error) == ("skipped", "erased") and not stand_ins.sms.messages


# --- marketing ---

async def test_marketing_never_takes_a_template_message(bot, stand_ins):
    member = await new_member(bot, openid="o_quiet", window=False)
    outcome = await bot.outbox.notify(member.id, "生日快乐！", purpose="greeting",
                                      key="n:mkt", values={"amount": "¥0.00"}, marketing=True)
    assert outcome.ok
    assert not stand_ins.wechat.templates and stand_ins.wechat.calls[TEMPLATE_SEND] == 0
    # The marketing template (it carries 回T退订), not the purpose's notice template.
    [sms] = sms_to(stand_ins, member)
    assert (sms["template_code"], sms["params"]) == ("SMS_MARKETING", {"text": "生日快乐！"})
    row = await Delivery.get(key="n:mkt")
    assert row.payload["marketing"] is True and row.channel == "sms"


async def test_marketing_with_a_window_is_a_customer_service_message(bot, stand_ins):
    member = await new_member(bot, openid="o_user")
    assert (await bot.outbox.notify(member.id, "生日快乐！", purpose="greeting", key="n:mkt2",
                                    marketing=True)).ok
    assert [m.content for m in stand_ins.wechat.messages] == ["生日快乐！"]


async def test_marketing_after_tui_ding_is_skipped(bot, stand_ins):
    member = await new_member(bot, openid="o_user")
    await privacy.opt_out(member, bot.now())
    outcome = await bot.outbox.notify(member.id, "生日快乐！", purpose="greeting", key="n:out",
                                      marketing=True)
    assert not outcome.ok and outcome.code == "opted_out"
    row = await Delivery.get(key="n:out")
    assert (row.status, row.error) == ("skipped", "opted_out")
    assert not stand_ins.wechat.messages and not stand_ins.sms.messages
    # A notice the member is owed still reaches them after 退订.
    assert (await bot.outbox.notify(member.id, "消费通知", purpose="purchase", key="n:owed",
                                    values=PURCHASE_VALUES)).ok


async def test_a_tui_ding_while_the_marketing_sms_waited_is_honoured(bot, clock, stand_ins):
    member = await new_member(bot)
    at_local(clock, DAY, 21, 10)
    outcome = await bot.outbox.notify(member.id, "新品上市", purpose="greeting", key="n:wait",
                                      marketing=True)
    assert outcome.queued
    await privacy.opt_out(member, bot.now())  # an SMS uplink "T" at night
    at_local(clock, DAY + dt.timedelta(days=1), 8)
    await bot.outbox.send_queued()
    row = await Delivery.get(key="n:wait")
    assert (row.status, row.error) == ("skipped", "opted_out") and not stand_ins.sms.messages


async def test_marketing_for_a_template_only_purpose_has_no_channel(bot, stand_ins):
    member = await new_member(bot, openid="o_user")
    outcome = await bot.outbox.notify(member.id, "新品上市", purpose="template_only",
                                      key="n:nochannel", values={"amount": "¥1.00"},
                                      marketing=True)
    assert not outcome.ok
    row = await Delivery.get(key="n:nochannel")
    assert (row.status, row.error) == ("failed", "no_channel")
    assert not stand_ins.wechat.templates and not stand_ins.wechat.messages


async def test_aliyun_flow_control_puts_the_sms_back_in_the_queue(bot, clock, stand_ins):
    """A refusal (nothing went out): the notice waits a minute, then goes once."""
    member = await new_member(bot)
    stand_ins.sms.fail_next(code="isv.BUSINESS_LIMIT_CONTROL")
    outcome = await bot.outbox.notify(member.id, "提醒", purpose="plain", key="n:flow")
    assert outcome.queued and outcome.code == "isv.BUSINESS_LIMIT_CONTROL"
    row = await Delivery.get(key="n:flow")
    assert (row.status, row.payload["sms"]["tries"]) == ("queued", 2)
    assert dt.timedelta(seconds=50) < row.not_before - bot.now() <= dt.timedelta(minutes=1)
    await tick_as_workers(bot, 2)
    assert not stand_ins.sms.messages  # not before its minute is up
    clock.advance(minutes=1, seconds=1)
    await tick_as_workers(bot, 2)
    await tick_as_workers(bot, 2)
    assert len(sms_to(stand_ins, member)) == 1
    assert (await Delivery.get(key="n:flow")).status == "sent"


async def test_flow_control_gives_up_after_its_tries(bot, clock, stand_ins):
    member = await new_member(bot)
    stand_ins.sms.fail_next(4, code="isv.BUSINESS_LIMIT_CONTROL")
    await bot.outbox.notify(member.id, "提醒", purpose="plain", key="n:flow4")
    for _ in range(4):
        clock.advance(minutes=5)
        await bot.outbox.send_queued()
    row = await Delivery.get(key="n:flow4")
    assert (row.status, row.error) == ("failed", "isv.BUSINESS_LIMIT_CONTROL")
    assert stand_ins.sms.requests_received == 4 and not stand_ins.sms.messages
