"""At the till: where a clerk's slip costs the shop money or a member's trust (issue 9). Over
the signed webhook, as WeChat sends it: coupons that need the amount ask for it, big amounts ask
for a 确认, a void takes its upgrade back, punch cards are sales, and the points say why."""

from __future__ import annotations

import dataclasses

import pytest

from bot.models import (
    AuditEntry,
    Coupon,
    CouponTemplate,
    Member,
    PunchCard,
    Purchase,
    Staff,
    StoredValueEntry,
    TierChange,
)
from bot.sandbox import wechat_client as wire
from bot.services import coupons
from tests.support import STEADY_POINTS, Harness, add_staff

PHONE, MASKED = "13800138000", "138****8000"


@pytest.fixture
async def team(shop) -> dict[str, Staff]:
    return {
        "clerk": await add_staff("o_clerk", "clerk", name="小王"),
        "manager": await add_staff("o_manager", "manager", name="李店长"),
    }


@pytest.fixture
async def member(shop) -> Member:
    assert "注册成功" in await shop.register("o_member", PHONE, name="王小明")
    return await Member.get(follower__openid="o_member")


async def buy(h: Harness, amount: int, who: str = PHONE) -> str:
    """消费, confirming when the amount is above [points] confirm_above."""
    reply = await h.say("o_clerk", f"消费 {who} {amount}")
    if "请核对金额" in reply:
        reply = await h.say("o_clerk", "确认")
    return reply


async def member_messages(h: Harness) -> list[str]:
    await h.bot.drain()
    return [m.content for m in h.stand_ins.wechat.messages if m.openid == "o_member"]


# --- the points say why ---

async def test_member_day_points_are_explained_to_the_clerk_and_the_member(harness_factory):
    probe = await harness_factory(points=STEADY_POINTS)
    weekday = probe.bot.today().isoweekday()
    shop = await harness_factory(points=dataclasses.replace(
        STEADY_POINTS, member_day=weekday, member_day_multiplier=2.0))
    await add_staff("o_clerk", "clerk", name="小王")
    assert "注册成功" in await shop.register("o_member", PHONE)
    reply = await shop.say("o_clerk", f"消费 {PHONE} 100")
    assert "积分 +200（会员日 2 倍）" in reply
    [notice] = [m for m in await member_messages(shop) if "消费通知" in m]
    assert "获得 200 积分（会员日 2 倍）" in notice


async def test_plain_points_need_no_explanation(shop, team, member):
    reply = await shop.say("o_clerk", f"消费 {PHONE} 100")
    assert "积分 +100" in reply and "倍" not in reply


# --- a void takes its upgrade back ---

async def test_voiding_the_purchase_that_upgraded_takes_the_upgrade_back(shop, team, member):
    reply = await buy(shop, 20000)
    assert "会员已升级为钻石会员" in reply
    purchase = await Purchase.get()
    reply = await shop.say("o_manager", f"撤销 {purchase.id}")
    assert "会员等级更正为普通会员" in reply
    assert (await Member.get(id=member.id)).tier == "普通会员"
    changes = await TierChange.filter(member_id=member.id).order_by("id")
    assert [(c.from_tier, c.to_tier, c.reason) for c in changes] == [
        ("普通会员", "钻石会员", "purchase"), ("钻石会员", "普通会员", "correction")]
    assert changes[1].staff_id == team["manager"].id
    entry = await AuditEntry.get(action="void_purchase")
    assert (entry.before["tier"], entry.after["tier"]) == ("钻石会员", "普通会员")
    [notice] = [m for m in await member_messages(shop) if "已撤销" in m]
    assert "您的等级更正为普通会员" in notice
    card = await shop.say("o_member", "会员卡")
    assert "普通会员" in card and "最高等级" not in card


async def test_a_void_goes_back_to_the_tier_before_that_upgrade_not_lower(shop, team, member):
    await shop.say("o_clerk", f"消费 {PHONE} 1000")  # 银卡
    await buy(shop, 4000)  # 金卡
    second = await Purchase.all().order_by("-id").first()
    await shop.say("o_manager", f"撤销 {second.id}")
    assert (await Member.get(id=member.id)).tier == "银卡会员"


async def test_a_void_whose_upgrade_still_stands_changes_no_tier(shop, team, member):
    await shop.say("o_clerk", f"消费 {PHONE} 1000")  # 银卡
    await shop.say("o_clerk", f"消费 {PHONE} 300")
    second = await Purchase.all().order_by("-id").first()
    reply = await shop.say("o_manager", f"撤销 {second.id}")
    assert "更正" not in reply
    assert (await Member.get(id=member.id)).tier == "银卡会员"
    assert await TierChange.all().count() == 1


# --- a big amount asks first ---

async def test_an_amount_above_confirm_above_asks_before_anything_is_recorded(shop, team, member):
    assert shop.config.points.confirm_above == 3000  # the repository's default
    reply = await shop.say("o_clerk", f"消费 {PHONE} 100000")
    assert "消费 ¥100000.00 超过 ¥3000，请核对金额" in reply
    assert f"王小明 {MASKED}" in reply and "积分约 +100000" in reply
    assert await Purchase.all().count() == 0
    assert (await Member.get(id=member.id)).tier == "普通会员"
    assert "这笔消费没有记录" in await shop.say("o_clerk", "取消")
    assert await Purchase.all().count() == 0 and await member_messages(shop) == []
    # At the limit itself nothing is asked.
    assert "已记录消费" in await shop.say("o_clerk", f"消费 {PHONE} 3000")


async def test_confirming_records_once_whatever_is_repeated(shop, team, member):
    await shop.say("o_clerk", f"消费 {PHONE} 5000 烫染")
    # Not an answer: the question again, nothing recorded.
    assert "回复「确认」记录" in await shop.say("o_clerk", "嗯")
    assert await Purchase.all().count() == 0
    confirm = wire.text("o_clerk", "确认")
    reply = (await shop.post(confirm))["Content"]
    assert "已记录消费" in reply and "积分 +5000" in reply
    again = await shop.post(confirm)  # WeChat retries the very same 确认
    assert "已记录消费" in again["Content"]
    [purchase] = await Purchase.all()
    assert (purchase.amount, purchase.note, purchase.staff_id) == (
        500000, "烫染", team["clerk"].id)
    # The key is the 消费 message's, stored with the question: stable across every retry.
    assert purchase.idempotency_key.startswith("chat:")
    await shop.say("o_clerk", "确认")  # the dialog is over: a stray 确认 records nothing
    assert await Purchase.all().count() == 1
    notices = [m for m in await member_messages(shop) if "消费通知" in m]
    assert len(notices) == 1


async def test_a_staff_command_while_the_question_waits_answers_and_asks_again(
        shop, team, member, any_db):
    await shop.say("o_clerk", f"消费 {PHONE} 5000")
    looked_up = await shop.say("o_clerk", f"查询 {PHONE}")
    assert MASKED in looked_up and looked_up.endswith(
        "继续记录消费：消费 ¥5000.00（138****8000）金额较大：回复「确认」记录，或回复「取消」。"), \
        looked_up
    # A small 消费 asks nothing: recorded, and the big one still waits.
    small = await shop.say("o_clerk", f"消费 {PHONE} 20")
    assert "已记录消费" in small and small.endswith("回复「确认」记录，或回复「取消」。")
    assert "积分 +5000" in await shop.say("o_clerk", "确认")
    assert sorted(await Purchase.all().values_list("amount", flat=True)) == [2000, 500000]


async def test_another_big_purchase_replaces_the_question_and_says_so(shop, team, member):
    await shop.say("o_clerk", f"消费 {PHONE} 5000")
    second = await shop.say("o_clerk", f"消费 {PHONE} 6000")
    assert second.startswith("（上一个「记录消费」还没确认，已作废，以这次为准）\n"), second
    assert "消费 ¥6000.00 超过 ¥3000，请核对金额" in second
    assert "积分 +6000" in await shop.say("o_clerk", "确认")
    assert await Purchase.all().values_list("amount", flat=True) == [600000]


async def test_a_clerk_whose_access_ended_cannot_confirm(shop, team, member):
    await shop.say("o_clerk", f"消费 {PHONE} 5000")
    await Staff.filter(id=team["clerk"].id).update(active=False)
    assert "员工权限已停用" in await shop.say("o_clerk", "确认")
    assert await Purchase.all().count() == 0


# --- a coupon whose rule needs the amount asks for it ---

async def give(h: Harness, member: Member, code: str) -> Coupon:
    template = await CouponTemplate.get(code=code)
    return await coupons.issue(h.bot, member, template, source="manual", key=f"t:{code}")


async def test_a_threshold_coupon_without_an_amount_is_not_used_until_the_amount(
        shop, team, member):
    cut = await give(shop, member, "CUT30")  # 满200减30
    reply = await shop.say("o_clerk", f"核销 {cut.code}")
    assert "这张券要看消费金额，还没有核销" in reply and "请回复本次消费金额" in reply
    assert (await Coupon.get(id=cut.id)).status == "issued"
    # Not an amount: the question again (with the threshold), still nothing used.
    assert "请回复本次消费金额（需满 ¥200）" in await shop.say("o_clerk", "嗯")
    # Below the threshold: refused, and the coupon is kept.
    assert "不够，未核销" in await shop.say("o_clerk", "150")
    assert (await Coupon.get(id=cut.id)).status == "issued"
    assert await Purchase.all().count() == 0
    # Asked again, answered with a qualifying amount: used, the purchase recorded once.
    await shop.say("o_clerk", f"核销 {cut.code}")
    answer = wire.text("o_clerk", "250")
    reply = (await shop.post(answer))["Content"]
    assert "消费 ¥250.00，请减免 ¥30.00，实收 ¥220.00" in reply
    await shop.post(answer)  # WeChat retries the answer
    [purchase] = await Purchase.all()
    assert purchase.amount == 22000 and purchase.idempotency_key.endswith(":purchase")
    used = await Coupon.get(id=cut.id)
    assert (used.status, used.purchase_id) == ("redeemed", purchase.id)


async def test_a_capped_discount_asks_and_cancel_keeps_the_coupon(shop, team, member):
    vip = await give(shop, member, "VIP88")  # 8.8折，最多优惠 ¥100
    assert "还没有核销" in await shop.say("o_clerk", f"核销 {vip.code}")
    assert "券没有核销，仍可使用" in await shop.say("o_clerk", "取消")
    assert (await Coupon.get(id=vip.id)).status == "issued"
    # 确认 uses it without an amount: the clerk has checked the rule.
    await shop.say("o_clerk", f"核销 {vip.code}")
    assert "核销成功" in await shop.say("o_clerk", "确认")
    assert (await Coupon.get(id=vip.id)).status == "redeemed"


async def test_the_amount_in_one_line_works_as_before_and_a_gift_needs_none(shop, team, member):
    cut = await give(shop, member, "CUT30")
    assert "实收 ¥220.00" in await shop.say("o_clerk", f"核销 {cut.code} 250")
    care = await give(shop, member, "CARE")
    assert "核销成功" in await shop.say("o_clerk", f"核销 {care.code}")


# --- punch cards are sales ---

async def test_a_punch_card_sale_has_a_price_paid_in_cash_or_stored_value(shop, team, member):
    reply = await shop.say("o_clerk", f"开卡 {PHONE} WASH10")
    assert "售价 ¥380.00，现金收款" in reply
    sale = await Purchase.get()
    assert (sale.amount, sale.points, sale.note) == (38000, 380, "开卡 洗剪吹10次卡")
    history = await shop.say("o_clerk", f"查询 {PHONE}")
    assert "¥380.00 +380分 开卡 洗剪吹10次卡" in history
    # From stored value: the balance pays, and the sale is still a purchase.
    await shop.say("o_manager", f"充值 {PHONE} 500")
    reply = await shop.say("o_clerk", f"开卡 {PHONE} CARE5 储值")
    assert "储值支付，储值余额 ¥100.00" in reply
    paid = await Purchase.all().order_by("-id").first()
    assert (paid.amount, paid.note) == (45000, "开卡 护理5次卡（储值支付）")
    [entry] = await StoredValueEntry.filter(kind="pay")
    assert (entry.delta, entry.reason) == (-45000, "开卡 护理5次卡")
    assert (await Member.get(id=member.id)).stored_value == 10000
    # Not enough stored value: nothing sold, nothing recorded.
    assert "已有护理5次卡" in await shop.say("o_clerk", f"开卡 {PHONE} CARE5 储值")
    assert "余额不足" in await shop.say("o_clerk", "确认")
    assert await PunchCard.filter(product="CARE5").count() == 1
    assert await Purchase.all().count() == 2
    assert "格式：开卡" in await shop.say("o_clerk", f"开卡 {PHONE} WASH10 刷卡")


async def test_selling_the_same_card_again_asks_and_shows_the_visits_left(shop, team, member):
    await shop.say("o_clerk", f"开卡 {PHONE} WASH10")
    await shop.say("o_clerk", f"核次 {PHONE}")
    reply = await shop.say("o_clerk", f"开卡 {PHONE} 洗剪吹10次卡")
    assert "已有洗剪吹10次卡，还剩 9 次" in reply and "还没有再开卡" in reply
    assert await PunchCard.all().count() == 1
    assert "没有再开卡，也没有收费" in await shop.say("o_clerk", "取消")
    assert await PunchCard.all().count() == 1 and await Purchase.all().count() == 1
    await shop.say("o_clerk", f"开卡 {PHONE} WASH10")
    confirm = wire.text("o_clerk", "确认")
    assert "开通洗剪吹10次卡" in (await shop.post(confirm))["Content"]
    await shop.post(confirm)  # a WeChat retry sells nothing more
    assert await PunchCard.all().count() == 2 and await Purchase.all().count() == 2
