"""WeChat's retries, slow handlers and the customer-service quota (bot/chat/dispatcher.py,
bot/notifications/cs_quota.py).

WeChat retries a callback up to three times when no answer comes within 5 s. A retry (same MsgId;
for events the same FromUserName + CreateTime) never acts twice, even when the copies arrive at
the same moment or after a restart, and gets the same reply. A handler slower than reply_timeout
is answered "success" at once and its reply goes out as a customer-service message, within the
quota WeChat allows (5 sends in 48 h after a message, 3 in a minute after an event).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.app import DISPATCHER
from bot.infra.db import close_database, open_database
from bot.infra.vault import mask_phone
from bot.models import Conversation, Delivery, Follower, InboundMessage, SmsCode
from bot.notifications import cs_quota
from bot.notifications.cs_quota import (
    EVENT_QUOTA,
    EVENT_WINDOW,
    MESSAGE_QUOTA,
    MESSAGE_WINDOW,
    Windows,
)
from bot.sandbox import wechat_client as wire
from bot.sandbox.wechat_client import Signed
from bot.services import verification

SEND = "/cgi-bin/message/custom/send"
REPLY_FIELDS = ("ToUserName", "FromUserName", "MsgType", "Content")


# --- helpers ---


async def send(h, signed: Signed) -> dict | None:
    """Send one already-signed callback; the decrypted reply, or None for "success"."""
    status, body = await h.raw(signed.params, signed.body)
    assert status == 200, body
    return h.simulator.read_reply(body, signed.params)


def resigned(h, xml: str, copies: int = 3) -> list[Signed]:
    """The same message signed as separate deliveries (own timestamp and nonce each)."""
    now = int(time.time())
    return [h.simulator.sign(xml, timestamp=now - i, nonce=f"retry{i}x{now}") for i in
            range(copies)]


def copies_of(h, xml: str, signing: str) -> list[Signed]:
    if signing == "same_request":
        signed = h.simulator.sign(xml)
        return [signed, signed, signed]
    return resigned(h, xml)


def visible(reply: dict | None) -> tuple | None:
    """What the member sees of a passive reply (CreateTime and the encryption differ)."""
    return tuple(reply.get(name) for name in REPLY_FIELDS) if reply else None


def count_processing(h, monkeypatch) -> list[str]:
    """Record every dedup key the dispatcher actually processes (runs handlers for)."""
    dispatcher = h.server.app[DISPATCHER]
    original = dispatcher._process
    seen: list[str] = []

    async def counted(inbound):
        seen.append(inbound.dedup_key)
        return await original(inbound)

    monkeypatch.setattr(dispatcher, "_process", counted)
    return seen


def outcomes(h, kind: str, outcome: str) -> float:
    value = h.bot.metrics.registry.get_sample_value(
        "memberbot_inbound_total", {"channel": "wechat", "kind": kind, "outcome": outcome})
    return value or 0.0


def code_sent_text(h, phone: str) -> str:
    return h.bot.templates.render("reg_code_sent.j2", masked=mask_phone(phone),
                                  minutes=h.config.sms_limits.code_ttl_seconds // 60)


async def to_phone_step(h, openid: str) -> None:
    await h.post(wire.event(openid, "subscribe", "qrscene_store:S001"))
    assert "手机号" in (await h.say(openid, "同意") or "")
    assert (await Conversation.get(user=f"wechat:{openid}")).state == "reg.phone"


def slow_sms(h, monkeypatch, seconds: float = 1.0, before_send=None) -> None:
    """The SMS gateway answers after `seconds` (the stand-in has no delay hook)."""
    original = h.bot.sms.send

    async def slow(*args, **kwargs):
        await asyncio.sleep(seconds)
        if before_send:
            await before_send()
        return await original(*args, **kwargs)

    monkeypatch.setattr(h.bot.sms, "send", slow)


# --- concurrent copies ---


@pytest.mark.parametrize("signing", ["same_request", "resigned"])
async def test_concurrent_copies_of_the_phone_step_act_once(harness, any_db, monkeypatch,
                                                            signing):
    h, openid, phone, msg_id = harness, "o_dup_phone", "13800138021", 7_000_000_000_001
    await to_phone_step(h, openid)
    processed = count_processing(h, monkeypatch)
    xml = wire.text(openid, phone, msg_id=msg_id)

    replies = await asyncio.gather(*(send(h, s) for s in copies_of(h, xml, signing)))

    assert processed == [f"msg:{msg_id}"]
    assert len(h.sms_codes(phone)) == 1 and len(h.stand_ins.sms.messages) == 1
    assert {visible(r) for r in replies} == {(openid, wire.ACCOUNT, "text",
                                              code_sent_text(h, phone))}
    (row,) = await InboundMessage.filter(dedup_key=f"msg:{msg_id}")
    assert row.status == "replied" and row.reply["content"] == code_sent_text(h, phone)
    assert await SmsCode.filter(status="active").count() == 1
    assert await Delivery.filter(channel="sms").count() == 1
    assert outcomes(h, "text", "duplicate") == 2
    assert outcomes(h, "text", "replied") == 2  # 同意 and the phone number, once
    # The dialog moved one step, not three: the code from the one SMS carries on.
    assert "称呼" in (await h.say(openid, h.sms_codes(phone)[0]) or "")


@pytest.mark.parametrize("signing", ["same_request", "resigned"])
async def test_concurrent_copies_of_a_subscribe_act_once(harness, any_db, monkeypatch, signing):
    h, openid = harness, "o_dup_sub"
    processed = count_processing(h, monkeypatch)
    xml = wire.event(openid, "subscribe", "qrscene_store:S002", create_time=int(time.time()))

    replies = await asyncio.gather(*(send(h, s) for s in copies_of(h, xml, signing)))

    assert len(processed) == 1 and processed[0].startswith(f"evt:{openid}:")
    greeting = h.bot.templates.render("reg_greeting.j2", returning=False)
    assert {visible(r) for r in replies} == {(openid, wire.ACCOUNT, "text", greeting)}
    (follower,) = await Follower.filter(openid=openid)
    assert follower.scene == "store:S002" and follower.following
    assert (await Conversation.get(user=f"wechat:{openid}")).state == "reg.consent"
    assert await InboundMessage.filter(user=openid).count() == 1
    assert outcomes(h, "subscribe", "duplicate") == 2


# --- restarts ---


async def test_dedup_survives_a_restart(harness_factory, monkeypatch):
    openid, phone, msg_id = "o_restart", "13800138022", 7_000_000_000_002
    first = await harness_factory()
    subscribe = wire.event(openid, "subscribe", "qrscene_store:S001", create_time=int(time.time()))
    greeting = await first.post(subscribe)
    await first.say(openid, "同意")
    phone_xml = wire.text(openid, phone, msg_id=msg_id)
    before = await first.post(phone_xml)
    await first.server.close()

    # A new process on the same database (and, as in production, the same data key).
    second = await harness_factory(security=first.config.security)
    processed = count_processing(second, monkeypatch)
    after = await second.post(phone_xml)
    assert visible(after) == visible(before)
    assert visible(before)[3] == code_sent_text(second, phone)
    # A late retry of the subscribe does not restart registration either.
    assert visible(await second.post(subscribe)) == visible(greeting)
    assert processed == []
    assert len(second.sms_codes(phone)) == 1
    assert (await Conversation.get(user=f"wechat:{openid}")).state == "reg.code"
    assert "称呼" in (await second.say(openid, second.sms_codes(phone)[0]) or "")


# --- what counts as the same event ---


async def test_events_are_told_apart_by_user_and_create_time(harness, monkeypatch):
    h = harness
    processed = count_processing(h, monkeypatch)
    t = int(time.time())
    # Same CreateTime, different users: two events.
    for openid in ("o_evt_a", "o_evt_b"):
        assert await h.post(wire.event(openid, "subscribe", create_time=t))
    # Same user, different CreateTime: two events.
    first = await h.post(wire.event("o_evt_a", "CLICK", "MY_CARD", create_time=t + 1))
    second = await h.post(wire.event("o_evt_a", "CLICK", "MY_CARD", create_time=t + 2))
    assert first and second and visible(first) == visible(second)
    assert len(processed) == len(set(processed)) == 4
    assert await Follower.filter(openid__in=["o_evt_a", "o_evt_b"]).count() == 2
    # Same user, same CreateTime: a retry.
    again = await h.post(wire.event("o_evt_a", "CLICK", "MY_CARD", create_time=t + 2))
    assert visible(again) == visible(second) and len(processed) == 4
    assert await InboundMessage.all().count() == 4


async def test_two_different_menu_taps_in_one_second_are_two_events(harness, monkeypatch):
    """A retry is a byte-identical copy; a tap on another menu item in the same second is not
    one, even though FromUserName, CreateTime and Event are the same. (The same bug as
    tests/sandbox/test_chat.py::test_two_menu_taps_in_one_second_get_two_answers, shown here
    without depending on wall-clock timing.)"""
    h = harness
    processed = count_processing(h, monkeypatch)
    t = int(time.time())
    card = await h.post(wire.event("o_taps", "CLICK", "MY_CARD", create_time=t))
    help_ = await h.post(wire.event("o_taps", "CLICK", "HELP", create_time=t))
    assert len(processed) == 2
    assert visible(help_) != visible(card)


# --- slow handlers: "success" now, the reply later ---


async def test_slow_reply_goes_out_as_a_customer_service_message(harness_factory, monkeypatch):
    h = await harness_factory(reply_timeout=0.5)
    openid, phone, msg_id = "o_slow", "13800138023", 7_000_000_000_003
    await to_phone_step(h, openid)
    wechat = h.stand_ins.wechat
    wechat.enforce_windows = True
    wechat.note_user_message(openid)  # WeChat saw the member write, as our bot did
    slow_sms(h, monkeypatch)
    processed = count_processing(h, monkeypatch)
    xml = wire.text(openid, phone, msg_id=msg_id)

    started = time.perf_counter()
    replies = await asyncio.gather(*(send(h, s) for s in resigned(h, xml)))
    elapsed = time.perf_counter() - started
    assert replies == [None, None, None] and elapsed < 1.0
    assert (await InboundMessage.get(dedup_key=f"msg:{msg_id}")).status == "deferred"
    assert wechat.messages == []  # the handler is still waiting for the SMS gateway

    await h.bot.drain(5)
    assert [(m.openid, m.msgtype, m.content) for m in wechat.messages] == [
        (openid, "text", code_sent_text(h, phone))]
    delivery = await Delivery.get(key=f"reply:msg:{msg_id}")
    assert (delivery.status, delivery.error, delivery.channel, delivery.purpose,
            delivery.openid) == ("sent", None, "wechat_cs", "reply", openid)

    # WeChat's last retry, after the reply went out: "success", no second send, no second SMS.
    started = time.perf_counter()
    assert await send(h, h.simulator.sign(xml)) is None
    assert time.perf_counter() - started < 0.5
    await h.bot.drain(5)
    assert wechat.calls[SEND] == 1 and len(wechat.messages) == 1
    assert len(h.sms_codes(phone)) == 1
    assert processed == [f"msg:{msg_id}"]
    assert outcomes(h, "text", "deferred") == 1 and outcomes(h, "text", "duplicate") == 3


async def test_deferred_reply_without_quota_is_failed_not_dropped(harness_factory, monkeypatch):
    h = await harness_factory(reply_timeout=0.5)
    openid, phone, msg_id = "o_slow_quota", "13800138024", 7_000_000_000_004
    await to_phone_step(h, openid)
    h.stand_ins.wechat.enforce_windows = True

    async def spend_all_quota() -> None:  # e.g. other notices used the windows up meanwhile
        await Follower.filter(openid=openid).update(message_window_used=MESSAGE_QUOTA,
                                                     event_window_used=EVENT_QUOTA)

    slow_sms(h, monkeypatch, before_send=spend_all_quota)
    assert await h.post(wire.text(openid, phone, msg_id=msg_id)) is None
    await h.bot.drain(5)

    delivery = await Delivery.get(key=f"reply:msg:{msg_id}")
    assert (delivery.status, delivery.error) == ("failed", "no_quota")
    assert delivery.payload["content"] == code_sent_text(h, phone)
    assert h.stand_ins.wechat.calls[SEND] == 0 and h.stand_ins.wechat.messages == []


async def test_deferred_handler_failure_sends_the_apology(harness_factory, monkeypatch):
    h = await harness_factory(reply_timeout=0.5)
    openid, msg_id = "o_slow_boom", 7_000_000_000_005
    await to_phone_step(h, openid)

    async def slow_boom(*_args, **_kwargs):
        await asyncio.sleep(1)
        raise RuntimeError("database on fire")

    monkeypatch.setattr(verification, "send_code", slow_boom)
    assert await h.post(wire.text(openid, "13800138025", msg_id=msg_id)) is None
    await h.bot.drain(5)
    error = h.bot.templates.render("error.j2")
    assert [(m.openid, m.content) for m in h.stand_ins.wechat.messages] == [(openid, error)]
    assert (await Delivery.get(key=f"reply:msg:{msg_id}")).status == "sent"
    row = await InboundMessage.get(dedup_key=f"msg:{msg_id}")
    assert row.status == "failed"
    # A late retry: "success" (the apology already went out), nothing sent again.
    assert await h.post(wire.text(openid, "13800138025", msg_id=msg_id)) is None
    assert len(h.stand_ins.wechat.messages) == 1


# --- handler exceptions ---


async def test_handler_exception_gets_a_polite_reply_and_the_worker_keeps_serving(
    harness, monkeypatch
):
    h, openid, phone, msg_id = harness, "o_boom", "13800138026", 7_000_000_000_006
    await to_phone_step(h, openid)
    original = verification.send_code

    async def boom(*_args, **_kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(verification, "send_code", boom)
    xml = wire.text(openid, phone, msg_id=msg_id)
    error = h.bot.templates.render("error.j2")
    assert error.strip()
    assert visible(await h.post(xml)) == (openid, wire.ACCOUNT, "text", error)
    row = await InboundMessage.get(dedup_key=f"msg:{msg_id}")
    assert row.status == "failed" and row.reply == {"content": error, "kind": "text"}
    assert outcomes(h, "text", "failed") == 1

    # WeChat's retry gets the same apology without running the handler again.
    processed = count_processing(h, monkeypatch)
    assert visible(await h.post(xml)) == (openid, wire.ACCOUNT, "text", error)
    assert processed == []

    # The worker keeps serving: the member tries again and it works.
    monkeypatch.setattr(verification, "send_code", original)
    assert await h.say(openid, phone) == code_sent_text(h, phone)
    assert len(h.sms_codes(phone)) == 1
    assert await h.say("o_someone_else", "帮助")


# --- customer-service quota bookkeeping ---


T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def db(db_url: str):
    await open_database(db_url)
    try:
        yield db_url
    finally:
        await close_database()


async def new_follower(openid: str, *kinds: str, at: dt.datetime = T0) -> None:
    await Follower.create(openid=openid)
    for kind in kinds:
        await cs_quota.note_inbound(openid, kind, at)


async def takes(openid: str, now: dt.datetime, n: int) -> list[bool]:
    return [await cs_quota.take(openid, now) for _ in range(n)]


async def test_a_message_opens_five_sends_within_48_hours(db):
    await new_follower("o_q", "text")
    assert await takes("o_q", T0 + dt.timedelta(minutes=1), 3) == [True] * 3
    assert await takes("o_q", T0 + dt.timedelta(hours=47, minutes=59), 3) == [True, True, False]
    follower = await Follower.get(openid="o_q")
    assert (follower.message_window_used, follower.event_window_used) == (5, 0)
    await new_follower("o_late", "text")
    assert not await cs_quota.take("o_late", T0 + MESSAGE_WINDOW + dt.timedelta(seconds=1))
    # The next message from the member opens a fresh window.
    await cs_quota.note_inbound("o_q", "voice", T0 + dt.timedelta(hours=50))
    assert await takes("o_q", T0 + dt.timedelta(hours=50), 6) == [True] * 5 + [False]


@pytest.mark.parametrize("kind", ["subscribe", "scan", "click", "scancode"])
async def test_an_event_opens_three_sends_within_a_minute_only(db, kind):
    await new_follower("o_e", kind)
    assert await takes("o_e", T0 + dt.timedelta(seconds=30), 4) == [True] * 3 + [False]
    follower = await Follower.get(openid="o_e")
    assert follower.message_window_at is None and follower.event_window_used == 3
    await new_follower("o_e2", kind)
    assert not await cs_quota.take("o_e2", T0 + EVENT_WINDOW + dt.timedelta(seconds=1))
    # The event window does not grant the 48 h one.
    assert not await cs_quota.take("o_e2", T0 + dt.timedelta(hours=1))


@pytest.mark.parametrize("kind", ["view", "location_report", "unsubscribe", "template_finish",
                                  "other_event"])
async def test_other_events_open_nothing(db, kind):
    await new_follower("o_n", kind)
    assert not await cs_quota.take("o_n", T0 + dt.timedelta(seconds=5))


async def test_event_window_is_spent_before_the_message_window(db):
    await new_follower("o_b", "text")
    await cs_quota.note_inbound("o_b", "subscribe", T0 + dt.timedelta(seconds=10))
    now = T0 + dt.timedelta(seconds=20)
    assert await takes("o_b", now, 3) == [True] * 3
    follower = await Follower.get(openid="o_b")
    assert (follower.event_window_used, follower.message_window_used) == (3, 0)
    assert await takes("o_b", now, 6) == [True] * 5 + [False]


async def test_unfollowed_or_unknown_accounts_get_no_sends(db):
    await new_follower("o_gone", "text")
    await Follower.filter(openid="o_gone").update(following=False)
    assert not await cs_quota.take("o_gone", T0)
    assert not await cs_quota.take("o_never_seen", T0)


@pytest.mark.parametrize(("kind", "quota"), [("text", MESSAGE_QUOTA), ("subscribe", EVENT_QUOTA)])
async def test_concurrent_takes_never_overspend(db, any_db, kind, quota):
    await new_follower("o_c", kind)
    results = await asyncio.gather(*(cs_quota.take("o_c", T0 + dt.timedelta(seconds=5))
                                     for _ in range(20)))
    assert sum(results) == quota
    follower = await Follower.get(openid="o_c")
    assert follower.message_window_used + follower.event_window_used == quota


def test_pick_window_examples():
    ago = lambda **kw: T0 - dt.timedelta(**kw)  # noqa: E731
    assert cs_quota.pick_window(Windows(None, 0, None, 0), T0) is None
    assert cs_quota.pick_window(Windows(ago(hours=1), 0, ago(seconds=5), 0), T0) == "event"
    assert cs_quota.pick_window(Windows(ago(hours=1), 0, ago(seconds=5), 3), T0) == "message"
    assert cs_quota.pick_window(Windows(ago(hours=1), 0, ago(seconds=60), 0), T0) == "message"
    assert cs_quota.pick_window(Windows(None, 0, ago(seconds=59), 2), T0) == "event"
    assert cs_quota.pick_window(Windows(None, 0, ago(seconds=60), 0), T0) is None
    assert cs_quota.pick_window(Windows(ago(hours=47, minutes=59), 4, None, 0), T0) == "message"
    assert cs_quota.pick_window(Windows(ago(hours=48), 0, None, 0), T0) is None
    assert cs_quota.pick_window(Windows(ago(hours=1), 5, ago(seconds=1), 3), T0) is None


ages = st.one_of(st.none(), st.timedeltas(min_value=dt.timedelta(0),
                                          max_value=dt.timedelta(hours=100)))
used = st.integers(min_value=0, max_value=10)


@given(message_age=ages, message_used=used, event_age=ages, event_used=used)
def test_pick_window_never_picks_a_spent_or_lapsed_window(message_age, message_used, event_age,
                                                          event_used):
    w = Windows(None if message_age is None else T0 - message_age, message_used,
                None if event_age is None else T0 - event_age, event_used)
    event_ok = event_age is not None and event_age < EVENT_WINDOW and event_used < EVENT_QUOTA
    message_ok = (message_age is not None and message_age < MESSAGE_WINDOW
                  and message_used < MESSAGE_QUOTA)
    picked = cs_quota.pick_window(w, T0)
    if picked == "event":
        assert event_ok
    elif picked == "message":
        assert message_ok and not event_ok  # the short window goes first
    else:
        assert picked is None and not event_ok and not message_ok


async def test_a_handler_raising_timeout_error_is_a_failure_not_a_deferral(harness, monkeypatch):
    """A TimeoutError raised by the handler itself (asyncpg's command timeout, a pool wait)
    is a handler failure: the apology goes back in the passive reply at once. It must not be
    mistaken for the reply timeout, which would answer "success" and spend a customer-service
    send on the apology (or lose it when there is no quota)."""
    h, openid, msg_id = harness, "o_timeout", 7_000_000_000_007
    await to_phone_step(h, openid)

    async def db_timeout(*_args, **_kwargs):
        raise TimeoutError("statement timeout")

    monkeypatch.setattr(verification, "send_code", db_timeout)
    error = h.bot.templates.render("error.j2")
    reply = await h.post(wire.text(openid, "13800138027", msg_id=msg_id))
    await h.bot.drain(5)
    assert visible(reply) == (openid, wire.ACCOUNT, "text", error)
    assert (await InboundMessage.get(dedup_key=f"msg:{msg_id}")).status == "failed"
    assert h.stand_ins.wechat.messages == []
    assert outcomes(h, "text", "failed") == 1 and outcomes(h, "text", "deferred") == 0
