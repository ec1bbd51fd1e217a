"""人工: a member talks with the staff on duty (bot/handlers/support.py), over the signed webhook
as WeChat sends it. Relays both ways are customer-service messages, so they land in the WeChat
stand-in's messages; what WeChat (or the member's 48 h window) refuses is told to the staff
member who tried."""

from __future__ import annotations

import pytest
import tortoise.timezone

from bot.config import SupportConfig
from bot.jobs.scheduler import TICKS
from bot.models import AuditEntry, Member, SupportMessage, SupportThread, ThreadStatus
from bot.sandbox import wechat_client as wire
from bot.services import support
from tests.support import STEADY_POINTS, Harness, add_staff

SEND = "/cgi-bin/message/custom/send"
IDLE_TICK = next(tick for tick in TICKS if tick.name == "support_idle")
PHONE = "13800138000"


@pytest.fixture
async def h(harness_factory, monkeypatch) -> Harness:
    harness = await harness_factory(points=STEADY_POINTS)
    monkeypatch.setattr(tortoise.timezone, "now", harness.clock)
    assert "注册成功" in await harness.register("o_member", PHONE, name="王小明")
    return harness


@pytest.fixture
async def clerk(h):
    return await add_staff("o_clerk", "clerk", name="小王")


def sent_to(h: Harness, openid: str) -> list[str]:
    return [m.content for m in h.stand_ins.wechat.messages if m.openid == openid]


async def on_duty(h: Harness, openid: str = "o_clerk") -> str:
    reply = await h.say(openid, "上班")
    assert "已上班" in reply or "已经在上班" in reply, reply
    return reply


async def thread_number(member_openid: str = "o_member") -> int:
    member = await Member.get(follower__openid=member_openid)
    return (await SupportThread.get(member_id=member.id)).id


async def test_a_member_and_the_clerk_on_duty_talk_both_ways(h, clerk):
    await on_duty(h)
    assert "已为您转接店员" in await h.say("o_member", "人工")
    n = await thread_number()
    assert any(f"【会话 {n}】" in text and "请求人工" in text for text in sent_to(h, "o_clerk"))

    assert await h.say("o_member", "我的卡怎么没有积分") is None  # relayed, nothing to answer
    assert f"【会话 {n}】王小明" in sent_to(h, "o_clerk")[-1]
    assert "我的卡怎么没有积分" in sent_to(h, "o_clerk")[-1]

    assert f"已发送给会话 {n}" in await h.say("o_clerk", f"回复 {n} 您好，我来帮您查一下")
    assert sent_to(h, "o_member")[-1] == "【店员 小王】您好，我来帮您查一下"
    thread = await SupportThread.get(id=n)
    assert (thread.status, thread.staff_id) == (ThreadStatus.OPEN, clerk.id)
    assert await AuditEntry.filter(action="support_reply", staff=clerk).exists()

    await h.say("o_member", "好的谢谢")
    assert "好的谢谢" in sent_to(h, "o_clerk")[-1]


async def test_global_command_words_are_relayed_while_talking(h, clerk):
    await on_duty(h)
    await h.say("o_member", "人工")
    for words in ("积分", "帮助", "预约", "查询 13800138000"):
        assert await h.say("o_member", words) is None
        assert sent_to(h, "o_clerk")[-1].splitlines()[1] == words
    assert (await h.bot.dialogs.load("wechat:o_member")).state == "support.talking"
    texts = await SupportMessage.filter(from_member=True).values_list("text", flat=True)
    assert texts == ["积分", "帮助", "预约", "查询 13800138000"]


async def test_a_menu_tap_while_talking_is_answered_with_how_to_end(h, clerk):
    await h.say("o_member", "人工")
    reply = await h.post(wire.event("o_member", "CLICK", "MY_CARD"))
    assert "结束" in reply["Content"] and "菜单" in reply["Content"]
    assert (await h.bot.dialogs.load("wechat:o_member")).state == "support.talking"


async def test_cancel_ends_the_talk_and_the_clerk_is_told(h, clerk):
    await on_duty(h)
    await h.say("o_member", "人工")
    n = await thread_number()
    assert "已结束人工对话" in await h.say("o_member", "取消")
    thread = await SupportThread.get(id=n)
    assert (thread.status, thread.closed_by, thread.open_member) == ("closed", "member", None)
    assert "结束了对话" in sent_to(h, "o_clerk")[-1]
    # The bot answers again.
    assert "积分" in await h.say("o_member", "积分")


async def test_a_reply_after_the_members_window_closed_tells_the_clerk_why(h, clerk):
    await on_duty(h)
    await h.say("o_member", "人工")
    n = await thread_number()
    before = len(sent_to(h, "o_member"))
    h.clock.advance(hours=49)
    reply = await h.say("o_clerk", f"回复 {n} 还在吗")
    assert f"未能发送给会话 {n}" in reply and "48 小时" in reply
    assert len(sent_to(h, "o_member")) == before
    message = await SupportMessage.get(from_member=False)
    assert message.delivered_at is None
    assert (await SupportThread.get(id=n)).status == ThreadStatus.WAITING


@pytest.mark.parametrize("errcode", [45015, 45047])
async def test_wechat_refusing_the_reply_is_told_with_its_code(h, clerk, errcode):
    await on_duty(h)
    await h.say("o_member", "人工")
    n = await thread_number()
    h.stand_ins.wechat.fail_next(SEND, errcode)
    reply = await h.say("o_clerk", f"回复 {n} 您好")
    assert f"未能发送给会话 {n}" in reply and str(errcode) in reply


async def test_the_clerk_ends_a_thread_and_the_member_talks_to_the_bot_again(h, clerk):
    await on_duty(h)
    await h.say("o_member", "人工")
    n = await thread_number()
    assert f"会话 {n} 已结束" in await h.say("o_clerk", f"结束 {n}")
    assert "店员已结束本次对话" in sent_to(h, "o_member")[-1]
    assert (await SupportThread.get(id=n)).closed_by == "staff"
    assert "积分" in await h.say("o_member", "积分")  # not relayed: the thread is closed
    assert await SupportMessage.filter(text="积分").count() == 0
    assert "没有进行中的会话" in await h.say("o_clerk", f"结束 {n}")


async def test_a_thread_idle_for_30_minutes_closes_itself(h, clerk):
    await on_duty(h)
    await h.say("o_member", "人工")
    n = await thread_number()
    await h.say("o_clerk", f"回复 {n} 您好")
    h.clock.advance(minutes=29)
    await IDLE_TICK.run(h.bot)
    assert (await SupportThread.get(id=n)).status == ThreadStatus.OPEN
    h.clock.advance(minutes=2)
    await IDLE_TICK.run(h.bot)
    thread = await SupportThread.get(id=n)
    assert (thread.status, thread.closed_by) == (ThreadStatus.CLOSED, "idle")
    assert "自动结束" in sent_to(h, "o_member")[-1]
    assert "自动结束" in sent_to(h, "o_clerk")[-1]
    await IDLE_TICK.run(h.bot)  # closes once
    assert sum("自动结束" in text for text in sent_to(h, "o_member")) == 1


async def test_with_nobody_on_duty_the_member_hears_the_hours_and_the_message_waits(h, clerk):
    reply = await h.say("o_member", "人工")
    assert "没有店员在线" in reply and "每天 10:00-21:00" in reply
    assert "已为您留言" in await h.say("o_member", "我想改一下预约")
    assert await h.say("o_member", "明天下午可以吗") is None  # told once
    assert sent_to(h, "o_clerk") == []
    h.clock.advance(hours=2)
    await IDLE_TICK.run(h.bot)  # a thread holding kept messages does not idle away
    n = await thread_number()
    assert (await SupportThread.get(id=n)).status == ThreadStatus.WAITING

    reply = await on_duty(h)
    assert f"【会话 {n}】王小明" in reply
    assert "我想改一下预约" in reply and "明天下午可以吗" in reply
    assert await SupportMessage.filter(delivered_at=None).count() == 0
    assert "我想改一下预约" not in await h.say("o_clerk", "会话")  # handed over once


async def test_a_clerk_of_another_store_neither_gets_nor_answers_the_thread(h, clerk):
    await add_staff("o_far", "clerk", store="S002")
    await on_duty(h, "o_far")
    await h.say("o_member", "人工")  # the member joined at S001
    n = await thread_number()
    await h.say("o_member", "有人吗")
    assert sent_to(h, "o_far") == []
    assert "没有进行中的会话" in await h.say("o_far", f"回复 {n} 您好")


async def test_a_retry_of_the_members_message_is_relayed_once(h, clerk):
    await on_duty(h)
    await h.say("o_member", "人工")
    xml = wire.text("o_member", "在吗在吗")
    await h.post(xml)
    await h.post(xml)
    assert sum("在吗在吗" in text for text in sent_to(h, "o_clerk")) == 1
    # And the service itself, should the same message come twice past the dedup.
    member = await Member.get(follower__openid="o_member")
    thread = await support.thread_of(member.id)
    first = await support.relay_from_member(h.bot, member, thread, "x", key="k:1")
    again = await support.relay_from_member(h.bot, member, thread, "x", key="k:1")
    assert first.delivered and again.duplicate
    assert await SupportMessage.filter(key="k:1").count() == 1


async def test_a_low_rating_thread_is_answered_with_reply_and_the_member_answers_back(h):
    manager = await add_staff("o_manager", "manager", name="店长")
    member = await Member.get(follower__openid="o_member")
    thread, _ = await support.open_thread(h.bot, member.id, store_id=member.store_id,
                                          reason="low_rating", key="rating:1")
    h.clock.advance(hours=3)
    await IDLE_TICK.run(h.bot)  # nobody answered it yet: it waits for a manager
    assert (await SupportThread.get(id=thread.id)).status == ThreadStatus.WAITING
    assert "差评" in await h.say("o_manager", "会话")
    # The member writes now and then, so their window is open.
    await h.say("o_member", "积分")
    assert f"已发送给会话 {thread.id}" in await h.say("o_manager", f"回复 {thread.id} 很抱歉")
    assert sent_to(h, "o_member")[-1] == "【店员 店长】很抱歉"
    assert await h.say("o_member", "下次注意") is None
    assert "下次注意" in sent_to(h, "o_manager")[-1]
    assert manager.on_duty_since is None  # answering needs no 上班


async def test_off_duty_staff_get_nothing(h, clerk):
    await on_duty(h)
    assert "已下班" in await h.say("o_clerk", "下班")
    await h.say("o_member", "人工")
    assert "已为您留言" in await h.say("o_member", "在吗")
    assert not any("在吗" in text for text in sent_to(h, "o_clerk"))


async def test_in_wechat_mode_a_person_is_wechats_workbench(harness_factory):
    h = await harness_factory(service=SupportConfig(mode="wechat"))
    xml = wire.text("o_anyone", "转人工")
    reply = await h.post(xml)
    assert reply["MsgType"] == "transfer_customer_service"
    assert set(reply) == {"MsgType", "FromUserName", "ToUserName", "CreateTime"}
    assert (await h.post(xml))["MsgType"] == "transfer_customer_service"  # a retry, the same
    assert await SupportThread.all().count() == 0
