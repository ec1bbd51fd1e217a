"""At the till: where a clerk's slip costs the shop money or a member's trust (issue 9). Over
the signed webhook, as WeChat sends it: coupons that need the amount ask for it, big amounts ask
for a 确认, a void takes its upgrade back, punch cards are sales, and the points say why."""

from __future__ import annotations

import dataclasses

import pytest

from bot.models import AuditEntry, Member, Purchase, Staff, TierChange
from tests.support import STEADY_POINTS, Harness, add_staff

PHONE, MASKED = "13800138000", "138****8000"


@pytest.fixture
async def shop(harness_factory) -> Harness:
    return await harness_factory(points=STEADY_POINTS)


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
    reply = await shop.say("o_clerk", f"消费 {PHONE} 20000")
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
    await shop.say("o_clerk", f"消费 {PHONE} 4000")  # 金卡
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
