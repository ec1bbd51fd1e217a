"""The journey from the issue: scan, register, see the card; members and strangers asking."""

from __future__ import annotations

from bot.models import Follower, Member, PointsEntry
from bot.sandbox import wechat_client as wire
from tests.support import fixture_xml


async def test_scan_register_and_see_card(harness):
    final = await harness.register("o_new_1", "13800138001", name="王小明", birthday="1990-05-01")
    assert "注册成功" in final
    member = await Member.get(name="王小明")
    assert member.card_no in final and "100" in final
    assert member.birth_year == 1990 and (member.birth_month, member.birth_day) == (5, 1)
    assert (await member.store).code == "S001"
    card = await harness.say("o_new_1", "积分")
    assert member.card_no in card and "普通会员" in card and "积分：100" in card
    assert "银卡会员" in card  # the way to the next tier
    await harness.settle()
    welcome = [m for m in harness.stand_ins.sms.messages if m["template_code"] == "SMS_WELCOME"]
    assert [m["params"]["card_no"] for m in welcome] == [member.card_no]


async def test_points_balance_equals_ledger_after_registration(harness):
    await harness.register("o_new_2", "13800138002")
    member = await Member.get(follower__openid="o_new_2")
    entries = await PointsEntry.filter(member=member).values_list("delta", flat=True)
    assert member.points == sum(entries) == harness.config.shop.welcome_points


async def test_unregistered_follower_is_invited(harness):
    await harness.post(wire.event("o_stranger", "subscribe", ""))
    await harness.say("o_stranger", "取消")
    reply = await harness.say("o_stranger", "积分")
    assert "还不是" in reply and "注册" in reply


async def test_menu_click_and_voice_show_the_card(harness):
    await harness.register("o_new_3", "13800138003")
    member = await Member.get(follower__openid="o_new_3")
    click = await harness.post(wire.event("o_new_3", "CLICK", "MY_CARD"))
    assert member.card_no in click["Content"]
    spoken = await harness.post(wire.voice("o_new_3", "我的积分还有多少"))
    assert member.card_no in spoken["Content"]


async def test_nonsense_gets_help_never_silence(harness):
    await harness.register("o_new_4", "13800138004")
    for text in ("asdfgh", "🙂🙂", "x" * 2000, "   ", "。。。"):
        reply = await harness.say("o_new_4", text)
        assert reply and "帮助" in reply


async def test_unfollow_keeps_data_and_refollow_greets_back(harness):
    await harness.register("o_new_5", "13800138005", name="李雷")
    assert await harness.post(wire.event("o_new_5", "unsubscribe", "")) is None
    follower = await Follower.get(openid="o_new_5")
    assert not follower.following and follower.member_id
    back = await harness.post(wire.event("o_new_5", "subscribe", ""))
    assert "李雷" in back["Content"] and "欢迎回来" in back["Content"]
    assert (await Follower.get(openid="o_new_5")).following


async def test_shared_fixtures_parse_and_get_sensible_answers(harness):
    # The sample messages in tests/fixtures, signed and encrypted as WeChat sends them.
    text = await harness.post(fixture_xml("text.xml"))
    assert "还不是" in text["Content"]
    assert await harness.post(fixture_xml("event_location.xml")) is None
    assert await harness.post(fixture_xml("event_view.xml")) is None
    assert await harness.post(fixture_xml("event_templatesendjobfinish.xml")) is None
    image = await harness.post(fixture_xml("image.xml"))
    assert "帮助" in image["Content"]
