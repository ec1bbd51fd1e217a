"""群发 in chat, through the signed and encrypted webhook as WeChat sends it: a manager's
preview, 确认 and 取消, who may do it, how the segment and the text are read, and a promotion to
金卡会员 that reaches each of them once by the right channel (the engine's tick run until the
campaign is done, against the WeChat and Aliyun stand-ins)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import tortoise.timezone

from bot.clock import local_midnight
from bot.config import SmsConfig
from bot.infra.vault import mask_card
from bot.models import AuditEntry, Campaign, CampaignDelivery, Member, MemberTag, Staff
from bot.sandbox import wechat_client as wire
from bot.services import campaigns, members
from tests.support import SMS_ID, SMS_SECRET, STEADY_POINTS, Harness, add_staff

GOLD = "金卡会员"
PROMOTION = "本周末会员日全场9折"
PROMO_SMS = "SMS_PROMO"
PHONES = {"o_gold_0": "13700001000", "o_gold_1": "13700001001", "o_gold_2": "13700001002",
          "sms": "13700001009", "out": "13700001008", "silver": "13700001007"}
ASKS_TO_CONFIRM = "回复「确认」开始群发"


@pytest.fixture
async def shop(harness_factory, stand_ins, monkeypatch) -> Harness:
    """The shop with a marketing SMS template, at 11:00 shop time (SMS go 08:00–21:00)."""
    sms = SmsConfig(access_key_id=SMS_ID, access_key_secret=SMS_SECRET, sign_name="示例门店",
                    endpoint=stand_ins.sms_url, template_verify="SMS_VERIFY",
                    template_welcome="SMS_WELCOME", template_marketing=PROMO_SMS)
    harness = await harness_factory(points=STEADY_POINTS, sms=sms)
    tz = harness.config.shop.tz
    now = harness.bot.now()
    eleven = local_midnight(now.astimezone(tz).date(), tz) + dt.timedelta(hours=11)
    harness.clock.advance(seconds=(eleven - now).total_seconds())
    monkeypatch.setattr(tortoise.timezone, "now", harness.clock)
    return harness


@pytest.fixture
async def gold(shop: Harness) -> dict[str, Member]:
    """Gold members: three who follow, one with only a phone, one who said 退订; and a silver
    member who must get nothing."""
    found = {}
    for who in ("o_gold_0", "o_gold_1", "o_gold_2", "out", "silver"):
        openid = who if who.startswith("o_") else f"o_{who}"
        registered = await members.register(shop.bot, openid, PHONES[who], who, None,
                                            shop.bot.now())
        found[who] = registered.member
    found["sms"] = await members.create_member(shop.bot.vault, shop.config.shop.card_prefix,
                                               PHONES["sms"], name="短信", tier=GOLD)
    await Member.filter(id__in=[m.id for k, m in found.items() if k != "silver"]).update(
        tier=GOLD)
    await Member.filter(id=found["silver"].id).update(tier="银卡会员")
    await Member.filter(id=found["out"].id).update(marketing_opt_out_at=shop.bot.now())
    return found


@pytest.fixture
async def manager(shop: Harness) -> Staff:
    return await add_staff("o_manager", "manager", name="李店长")


async def run_until_done(shop: Harness, campaign_id: int, ticks: int = 30) -> campaigns.Status:
    for _ in range(ticks):
        await campaigns.tick(shop.bot)
        status = await campaigns.status(shop.bot, campaign_id)
        if status.done:
            return status
        shop.clock.advance(seconds=30)  # past any retry's backoff
    raise AssertionError(f"campaign {campaign_id} not done after {ticks} ticks: {status}")


def mass_received(shop: Harness, openid: str) -> list[str]:
    return [m.content for m in shop.stand_ins.wechat.messages
            if m.openid == openid and m.via == "mass"]


def sms_received(shop: Harness, phone: str) -> list[dict]:
    return [m for m in shop.stand_ins.sms.messages
            if m["phone"] == phone and m["template_code"] == PROMO_SMS]


# --- the whole way ---

async def test_a_manager_sends_a_promotion_to_gold_members_each_once_by_the_right_channel(
        shop, gold, manager, any_db):
    preview = await shop.say("o_manager", f"群发 {GOLD} {PROMOTION}")
    assert ASKS_TO_CONFIRM in preview, preview
    # The segment holds the four gold members who may get marketing (not the one who said 退订).
    assert "共 4 人" in preview and "\n· 公众号群发：3 人\n· 短信：1 人\n" in preview
    assert "本月还能收群发消息的粉丝：3 人" in preview and PROMOTION in preview
    campaign = await Campaign.get()
    assert (campaign.status, campaign.segment, campaign.text) == ("draft", f"tier:{GOLD}",
                                                                  PROMOTION)
    assert campaign.staff_id == manager.id

    started = await shop.say("o_manager", "确认")
    assert f"第 {campaign.id} 号群发已开始" in started and "共 4 人" in started, started
    assert (await Campaign.get(id=campaign.id)).status == "running"

    status = await run_until_done(shop, campaign.id)
    assert status.counts["sent"] == 4 and status.total == 4
    for openid in ("o_gold_0", "o_gold_1", "o_gold_2"):
        assert mass_received(shop, openid) == [PROMOTION], openid
        assert not sms_received(shop, PHONES[openid])
    [sms] = sms_received(shop, PHONES["sms"])
    assert sms["params"] == {"text": PROMOTION}
    for nobody in ("out", "silver"):
        assert not sms_received(shop, PHONES[nobody])
        assert not mass_received(shop, f"o_{nobody}")
    channels = dict(await CampaignDelivery.filter(campaign_id=campaign.id)
                    .values_list("member_id", "channel"))
    assert channels == {gold[k].id: "wechat" for k in ("o_gold_0", "o_gold_1", "o_gold_2")} \
        | {gold["sms"].id: "sms"}

    progress = await shop.say("o_manager", f"群发进度 {campaign.id}")
    assert progress.startswith(f"📊 第 {campaign.id} 号群发：已发完"), progress
    assert "进度：4 / 4" in progress and "已送达：4 人" in progress

    # Nothing goes twice: another tick, and a second 确认 (no dialog left), send nothing more.
    await campaigns.tick(shop.bot)
    assert "已开始" not in await shop.say("o_manager", "确认")
    assert sum(len(mass_received(shop, o)) for o in ("o_gold_0", "o_gold_1", "o_gold_2")) == 3
    assert len(sms_received(shop, PHONES["sms"])) == 1

    audit = await AuditEntry.filter(action__startswith="campaign_").order_by("id")
    assert [(e.action, e.staff_id, e.store_code) for e in audit] == [
        ("campaign_create", manager.id, "S001"), ("campaign_start", manager.id, "S001")]
    assert audit[0].detail == f"campaign {campaign.id}"
    assert audit[0].after["segment"] == f"tier:{GOLD}"


async def test_a_repeated_confirm_from_wechat_starts_it_once(shop, gold, manager):
    """WeChat retries a message it got no answer to, with the same MsgId."""
    await shop.say("o_manager", f"群发 {GOLD} {PROMOTION}")
    confirm = wire.text("o_manager", "确认")
    first, again = await shop.post(confirm), await shop.post(confirm)
    assert first == again and "已开始" in first["Content"]
    assert await AuditEntry.filter(action="campaign_start").count() == 1


# --- 取消, refusals, and reading what was meant ---

async def test_cancel_drops_the_draft_and_nothing_is_sent(shop, gold, manager):
    assert ASKS_TO_CONFIRM in await shop.say("o_manager", f"群发 {GOLD} {PROMOTION}")
    reply = await shop.say("o_manager", "取消")
    assert reply == shop.bot.templates.render("broadcast_cancelled.j2")
    campaign = await Campaign.get()
    assert campaign.status == "cancelled"
    await campaigns.tick(shop.bot)
    assert not [m for m in shop.stand_ins.wechat.messages if m.via == "mass"]
    assert not [m for m in shop.stand_ins.sms.messages if m["template_code"] == PROMO_SMS]
    assert await AuditEntry.filter(action="campaign_cancel", staff_id=manager.id).count() == 1
    # The dialog is over: 确认 now is just a word.
    assert ASKS_TO_CONFIRM not in (await shop.say("o_manager", "确认") or "")
    assert (await Campaign.get(id=campaign.id)).status == "cancelled"


async def test_a_clerk_is_refused_and_a_member_is_not_understood(shop, gold):
    await add_staff("o_clerk", "clerk", name="小王")
    reply = await shop.say("o_clerk", f"群发 {GOLD} {PROMOTION}")
    assert "店员没有权限执行「群发」" in reply
    assert "群发" not in await shop.say("o_clerk", "员工帮助")
    member_reply = await shop.say("o_gold_0", f"群发 {GOLD} {PROMOTION}")
    assert ASKS_TO_CONFIRM not in member_reply
    assert await Campaign.all().count() == 0


async def test_staff_help_lists_broadcast_for_managers(shop, manager):
    assert "群发 <分群> <模板名或文字>" in await shop.say("o_manager", "员工帮助")


@pytest.mark.parametrize("text", ["群发", f"群发 {PROMOTION}", f"群发 tier:{GOLD}",
                                  "群发 VIP 本周末全场9折"])
async def test_without_both_a_segment_and_a_message_the_rule_and_examples(shop, manager, text):
    reply = await shop.say("o_manager", text)
    assert "例如" in reply and f"群发 {GOLD} 本周末会员日全场9折" in reply, reply
    assert await Campaign.all().count() == 0


async def test_a_bad_segment_or_template_says_which(shop, manager):
    bad = await shop.say("o_manager", "群发 colour=red 你好")
    assert bad.startswith("分群写法有误") and "colour=red" in bad, bad
    unknown = await shop.say("o_manager", f"群发 {GOLD} no_such_promo")
    assert "没有名为「no_such_promo」的群发模板" in unknown
    assert await Campaign.all().count() == 0


@pytest.mark.parametrize(("text", "said"), [
    ("群发 tier=黑卡 你好", "分群写法有误：没有「黑卡」这个会员等级（现有：普通会员、银卡会员、"
     "金卡会员、钻石会员）。\ntier=👉黑卡\n这里可以写：tier=普通会员\n"),
    ("群发 store=S009 你好", "没有「S009」这个门店（现有：S001"),
    ("群发 tag=瑜珈 你好", "没有会员带「瑜珈」这个标签（现在还没有会员有标签）。\ntag=👉瑜珈\n"),
    ("群发 colour=red 你好", "不认识「colour」这个条件，可用的有：tier（会员等级）、"),
    ("群发 tier>金卡会员 你好", "tier（会员等级）不能用「>」，只能用 = !=。\ntier👉>金卡会员\n"),
    ("群发 last_visit>30 你好", "last_visit（距上次到店）要写天数，如 30d，「30」不行。\n"
     "last_visit>👉30\n这里可以写：last_visit>30d"),
    ("群发 rfm=重要客户 你好", "rfm（RFM 分类）要写以下之一：重要价值、一般价值、"),
    ("群发 all tier=金卡会员 你好", "all（所有会员）不能和别的条件写在一起。\n👉all tier=金卡会员"),
])
async def test_a_bad_segment_is_explained_in_chinese_where_it_goes_wrong(shop, manager, text,
                                                                        said):
    reply = await shop.say("o_manager", text)
    assert reply.startswith("分群写法有误：") and said in reply, reply
    assert reply.endswith("例如：群发 tier=金卡会员 last_visit>30d 本周末全场9折")
    # None of the English message the CLI shows.
    assert not re.search(r"column|known|segment|e\.g\.|needs|takes|expected", reply), reply
    assert await Campaign.all().count() == 0


async def test_an_unknown_tag_names_tags_that_exist(shop, gold, manager):
    await MemberTag.create(member=gold["o_gold_0"], tag="瑜伽")
    reply = await shop.say("o_manager", "群发 tag=瑜珈 你好")
    assert ("没有会员带「瑜珈」这个标签（现有标签如：瑜伽）。\ntag=👉瑜珈\n"
            "这里可以写：tag=瑜伽") in reply


@pytest.mark.parametrize(("asked", "said"), [
    ({"coupon": "NOPE"}, "没有「NOPE」这种可用的优惠券。"),
    ({"channels": ("fax",)}, "发送渠道只能是公众号群发和（或）短信。"),
    ({"holdout": 90}, "对照组比例要在 0 到 50% 之间。"),
    ({"at": dt.datetime(2020, 1, 1, 9, 0)}, "2020-01-01 09:00 已经过去了，请换一个时间。"),
])
async def test_every_refusal_of_create_has_its_chinese_sentence(shop, asked, said):
    """The reasons chat cannot reach today (the CLI's options) still read in Chinese."""
    with pytest.raises(campaigns.CampaignError) as caught:
        await campaigns.create(shop.bot, segment="all", text="你好", **asked)
    exc = caught.value
    assert shop.bot.templates.render("broadcast_refused.j2", reason=exc.reason, states={},
                                     **exc.values) == said


async def test_a_template_by_name_and_a_bar_before_a_text_that_looks_like_a_condition(
        shop, gold, manager):
    reply = await shop.say("o_manager", f"群发 tier:{GOLD} winter_care")
    assert ASKS_TO_CONFIRM in reply and "冬季护理月" in reply and GOLD in reply
    assert (await Campaign.get()).template == "winter_care"
    await shop.say("o_manager", "取消")
    reply = await shop.say("o_manager", f"群发 tier:{GOLD} | a=b 满100减20")
    assert ASKS_TO_CONFIRM in reply and "a=b 满100减20" in reply
    latest = await Campaign.all().order_by("-id").first()
    assert (latest.segment, latest.text) == (f"tier:{GOLD}", "a=b 满100减20")


async def test_confirm_checks_the_employee_again(shop, gold, manager):
    """Access ended or the role changed between the preview and 确认: nothing starts."""
    await shop.say("o_manager", f"群发 {GOLD} {PROMOTION}")
    await Staff.filter(id=manager.id).update(role="clerk")
    assert "店员没有权限执行「群发」" in await shop.say("o_manager", "确认")
    await Staff.filter(id=manager.id).update(role="manager")
    await shop.say("o_manager", f"群发 {GOLD} {PROMOTION}")
    await Staff.filter(id=manager.id).update(active=False)
    assert "员工权限已停用" in await shop.say("o_manager", "确认")
    assert set(await Campaign.all().values_list("status", flat=True)) == {"draft"}
    assert not await AuditEntry.filter(action="campaign_start").exists()


async def test_a_global_command_answers_and_the_question_waits(shop, gold, manager):
    await shop.say("o_manager", f"群发 {GOLD} {PROMOTION}")
    campaign = await Campaign.get()
    helped = await shop.say("o_manager", "帮助")
    assert helped.endswith(f"继续群发：第 {campaign.id} 号群发（4 人）还没开始：回复「确认」开始"
                           "群发，或回复「取消」放弃。"), helped
    assert "已开始" in await shop.say("o_manager", "确认")


async def test_a_staff_command_answers_and_the_question_waits(shop, gold, manager, any_db):
    await shop.say("o_manager", f"群发 {GOLD} {PROMOTION}")
    campaign = await Campaign.get()
    looked_up = await shop.say("o_manager", f"查询 {PHONES['o_gold_0']}")
    asked = (f"继续群发：第 {campaign.id} 号群发（4 人）还没开始：回复「确认」开始群发，"
             "或回复「取消」放弃。")
    assert PHONES["o_gold_0"] not in looked_up and looked_up.endswith(asked), looked_up
    assert f"第 {campaign.id} 号群发：草稿" in await shop.say("o_manager",
                                                            f"群发进度 {campaign.id}")
    assert "已开始" in await shop.say("o_manager", "确认")
    assert (await Campaign.get(id=campaign.id)).status != "draft"


async def test_another_broadcast_replaces_the_question_and_says_so(shop, gold, manager):
    await shop.say("o_manager", f"群发 {GOLD} {PROMOTION}")
    second = await shop.say("o_manager", f"群发 {GOLD} 另一条消息")
    assert second.startswith("（上一个「群发」还没确认，已作废，以这次为准）\n"), second
    assert ASKS_TO_CONFIRM in second and "另一条消息" in second
    assert "已开始" in await shop.say("o_manager", "确认")
    # The first preview's draft is cancelled with its question: no draft is left lying around.
    assert await Campaign.all().order_by("id").values_list("text", "status") == [
        (PROMOTION, "cancelled"), ("另一条消息", "running")]


async def test_confirm_after_the_campaign_was_cancelled_elsewhere_says_so(shop, gold, manager):
    await shop.say("o_manager", f"群发 {GOLD} {PROMOTION}")
    campaign = await Campaign.get()
    await campaigns.cancel(shop.bot, campaign.id)  # from the shell, meanwhile
    assert await shop.say("o_manager", "确认") == "这次群发现在是「已取消」，不能再开始。"
    assert (await Campaign.get(id=campaign.id)).status == "cancelled"


async def test_progress_lists_skips_by_reason_and_unknown_outcomes_masked(shop, gold, manager):
    await shop.say("o_manager", f"群发 {GOLD} {PROMOTION}")
    campaign = await Campaign.get()
    await shop.say("o_manager", "确认")
    running = await shop.say("o_manager", f"群发进度 {campaign.id}")
    assert running.startswith(f"📊 第 {campaign.id} 号群发：发送中"), running
    await run_until_done(shop, campaign.id)
    # What the engine records in those cases (its own tests make them happen): one member
    # said 退订 before their turn, one send's answer was lost in a crash.
    await CampaignDelivery.filter(campaign_id=campaign.id, member_id=gold["o_gold_1"].id) \
        .update(state="skipped", reason="opted_out")
    await CampaignDelivery.filter(campaign_id=campaign.id, member_id=gold["sms"].id).update(
        state="unknown")
    shown = await shop.say("o_manager", f"群发进度 第{campaign.id}号")
    assert "进度：4 / 4\n· 已送达：2 人\n· 未发送：1 人（已退订 1）\n" in shown, shown
    masked = mask_card(gold["sms"].card_no)
    assert f"结果不明（可能已收到，不会重发，请人工确认）：1 人 {masked}" in shown
    assert gold["sms"].card_no not in shown
    assert await shop.say("o_manager", "群发进度 999") == "找不到这次群发，请核对编号。"
    assert "格式：群发进度 <编号>" in await shop.say("o_manager", "群发进度 最新")
    await add_staff("o_clerk", "clerk")
    assert "店员没有权限执行「群发进度」" in await shop.say("o_clerk", f"群发进度 {campaign.id}")


async def test_a_segment_with_nobody_in_it_asks_nothing(shop, gold, manager):
    reply = await shop.say("o_manager", "群发 钻石会员 新品到店")
    assert reply == "分群「tier:钻石会员」里现在没有可以接收群发的会员，没有发送。"
    assert await Campaign.filter(status="cancelled").count() == 1
    assert "没看懂" in await shop.say("o_manager", "确认")  # no question was left open


# --- a missed schedule, let go or dropped from chat ---

async def stale_campaign(shop: Harness) -> Campaign:
    """A campaign scheduled for ten minutes from now, the server down past stale_after."""
    campaign = await campaigns.create(shop.bot, segment=f"tier:{GOLD}", text=PROMOTION,
                                      at=shop.bot.now() + dt.timedelta(minutes=10))
    await campaigns.start(shop.bot, campaign.id)
    shop.clock.advance(minutes=10 + shop.config.broadcast.stale_after_minutes + 1)
    await campaigns.tick(shop.bot)
    assert (await Campaign.get(id=campaign.id)).status == "stale"
    return campaign


async def test_progress_of_a_stale_campaign_says_how_to_release_or_cancel_it(
        shop, gold, manager, any_db):
    campaign = await stale_campaign(shop)
    shown = await shop.say("o_manager", f"群发进度 {campaign.id}")
    assert shown.startswith(f"📊 第 {campaign.id} 号群发：错过了排期，等店长确认"), shown
    planned = campaign.scheduled_at.astimezone(shop.config.shop.tz)
    assert f"原定 {planned:%Y-%m-%d %H:%M} 发送" in shown
    assert (f"请回复「群发放行 {campaign.id}」" in shown
            and f"请回复「群发取消 {campaign.id}」" in shown), shown
    released = await shop.say("o_manager", f"群发放行 {campaign.id}")
    assert released.startswith(f"▶️ 第 {campaign.id} 号群发已放行"), released
    assert await AuditEntry.filter(action="campaign_confirm", staff_id=manager.id).count() == 1
    status = await run_until_done(shop, campaign.id)
    assert status.counts["sent"] == 4
    assert "群发放行" not in await shop.say("o_manager", f"群发进度 {campaign.id}")
    # Done: neither can move it now, and each says so in Chinese.
    assert await shop.say("o_manager", f"群发放行 第{campaign.id}号") == \
        "这次群发现在是「已发完」，不能再放行。"
    assert await shop.say("o_manager", f"群发取消 {campaign.id}") == \
        "这次群发现在是「已发完」，不能再取消。"


async def test_a_stale_campaign_cancelled_from_chat_sends_nothing(shop, gold, manager):
    campaign = await stale_campaign(shop)
    stopped = await shop.say("o_manager", f"群发取消 {campaign.id}")
    assert stopped == f"⏹ 第 {campaign.id} 号群发已取消，还没发出的不会再发。"
    assert (await Campaign.get(id=campaign.id)).status == "cancelled"
    await campaigns.tick(shop.bot)
    assert not [m for m in shop.stand_ins.wechat.messages if m.via == "mass"]
    assert not [m for m in shop.stand_ins.sms.messages if m["template_code"] == PROMO_SMS]
    assert await AuditEntry.filter(action="campaign_cancel", staff_id=manager.id).count() == 1
    assert await shop.say("o_manager", "群发放行 999") == "找不到这次群发，请核对编号。"
    assert "格式：群发取消 <编号>" in await shop.say("o_manager", "群发取消 最新")


async def test_only_managers_release_or_cancel_and_staff_help_lists_both(shop, gold, manager):
    campaign = await stale_campaign(shop)
    await add_staff("o_clerk", "clerk")
    for command in ("群发放行", "群发取消"):
        refused = await shop.say("o_clerk", f"{command} {campaign.id}")
        assert f"店员没有权限执行「{command}」" in refused, refused
        assert command not in await shop.say("o_clerk", "员工帮助")
    assert (await Campaign.get(id=campaign.id)).status == "stale"
    helped = await shop.say("o_manager", "员工帮助")
    assert "群发放行 <编号>" in helped and "群发取消 <编号>" in helped, helped
