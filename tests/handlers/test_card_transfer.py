"""换绑: moving a card to a member's new WeChat account takes the phone's SMS code, proved from the
new account, AND a manager's 换绑; neither alone moves it. Through the signed webhook."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bot.models import AuditEntry, CardTransfer, Follower, Member, Staff, Store
from bot.sandbox import wechat_client as wire
from bot.services import members
from bot.services.staff import Actor
from tests.support import Harness, add_staff

PHONE = "13800138050"
BOUND_ELSEWHERE = "已绑定了另一个微信账号"
DONE = "已换绑"
NO_REQUEST = "还不能换绑"

_times = itertools.count(1_960_000_000)


async def proves_phone(h: Harness, openid: str, phone: str) -> str:
    """A new account registers with the phone and answers its code: the reply to the code."""
    await h.post(wire.event(openid, "subscribe", "qrscene_store:S001", create_time=next(_times)))
    await h.say(openid, "同意")
    h.clock.advance(seconds=61)  # one code a minute per phone
    assert "验证码已发送到" in await h.say(openid, phone)
    return await h.say(openid, h.sms_codes(phone)[-1])


def told(h: Harness, openid: str) -> list[str]:
    return [m.content for m in h.stand_ins.wechat.messages if m.openid == openid]


@pytest.fixture
async def shop(harness: Harness) -> Harness:
    assert "注册成功" in await harness.register("o_old", PHONE)
    await add_staff("o_manager", "manager", name="李店长")
    await add_staff("o_clerk", "clerk", name="小王")
    return harness


async def test_code_from_the_new_account_then_a_managers_transfer_moves_the_card(shop):
    h = shop
    member = await Member.get(follower__openid="o_old")
    assert BOUND_ELSEWHERE in await proves_phone(h, "o_new", PHONE)
    assert (await Follower.get(openid="o_new")).member_id is None  # the code alone moves nothing

    reply = await h.say("o_manager", f"换绑 {PHONE}")
    assert DONE in reply and member.card_no in reply and "138****8050" in reply
    assert PHONE not in reply
    assert (await Follower.get(openid="o_new")).member_id == member.id
    assert (await Follower.get(openid="o_old")).member_id is None

    request = await CardTransfer.get(member_id=member.id)
    manager = (await Staff.get(openid="o_manager")).id
    assert (request.status, request.openid, request.from_openid, request.staff_id) == (
        "done", "o_new", "o_old", manager)
    entry = await AuditEntry.get(action="card_transfer")
    assert (entry.member_id, entry.staff_id) == (member.id, manager)
    # The audit log tells the accounts apart without spelling the openids out.
    assert (entry.before, entry.after) == ({"wechat": "…o_old"}, {"wechat": "…o_new"})

    await h.settle()
    assert any("不再绑定会员卡" in text for text in told(h, "o_old"))
    assert any("换绑成功" in text and member.card_no in text for text in told(h, "o_new"))
    assert member.card_no in await h.say("o_new", "积分")
    assert "还不是" in await h.say("o_old", "积分")

    # Done once: the request is used up, a second 换绑 has nothing to carry out.
    assert NO_REQUEST in await h.say("o_manager", f"换绑 {member.card_no}")
    assert await AuditEntry.filter(action="card_transfer").count() == 1


async def test_a_manager_alone_cannot_move_a_card(shop):
    h = shop
    member = await Member.get(follower__openid="o_old")
    # Someone at the till claims the card: without the phone's code there is nothing to move.
    await h.post(wire.event("o_claimant", "subscribe", "qrscene_store:S001",
                            create_time=next(_times)))
    assert NO_REQUEST in await h.say("o_manager", f"换绑 {PHONE}")
    # A wrong code does not count as proof either.
    await h.say("o_claimant", "注册")
    await h.say("o_claimant", "同意")
    h.clock.advance(seconds=61)
    await h.say("o_claimant", PHONE)
    code = h.sms_codes(PHONE)[-1]
    assert "验证码不对" in await h.say("o_claimant", f"{(int(code) + 1) % 10**6:06d}")
    assert NO_REQUEST in await h.say("o_manager", f"换绑 {PHONE}")
    assert (await Follower.get(openid="o_old")).member_id == member.id
    assert not await AuditEntry.filter(action="card_transfer").exists()


async def test_a_clerk_may_not_transfer(shop):
    h = shop
    await proves_phone(h, "o_new", PHONE)
    assert "没有权限" in await h.say("o_clerk", f"换绑 {PHONE}")
    assert (await Follower.get(openid="o_new")).member_id is None


async def test_a_proof_waits_a_day_at_most(shop):
    h = shop
    await proves_phone(h, "o_new", PHONE)
    h.clock.advance(hours=members.TRANSFER_TTL.total_seconds() / 3600, seconds=1)
    assert NO_REQUEST in await h.say("o_manager", f"换绑 {PHONE}")
    assert (await Follower.get(openid="o_new")).member_id is None


async def test_an_account_that_has_a_card_of_its_own_gets_no_second_one(shop):
    h = shop
    await proves_phone(h, "o_new", PHONE)
    h.clock.advance(seconds=61)
    assert "注册成功" in await h.register("o_new", "13800138051")
    assert "一个微信只能绑定一张会员卡" in await h.say("o_manager", f"换绑 {PHONE}")
    assert (await Follower.get(openid="o_old")).member_id is not None


async def test_repeating_the_key_transfers_once_and_two_managers_at_once_transfer_once(
        any_db, harness_factory):
    h = await harness_factory()
    assert "注册成功" in await h.register("o_old", PHONE)
    member = await Member.get(follower__openid="o_old")
    actor = Actor.cli(await Store.get(code="S001"))
    await proves_phone(h, "o_new", PHONE)

    first = await members.transfer_card(h.bot, member, actor, key="k1")
    again = await members.transfer_card(h.bot, member, actor, key="k1")
    assert (first.repeated, again.repeated) == (False, True)
    assert again.request.id == first.request.id and again.old_openid == "o_old"
    assert await AuditEntry.filter(action="card_transfer").count() == 1

    # Back to the first account, by the same two proofs; two managers press at once.
    await proves_phone(h, "o_old", PHONE)
    results = await asyncio.gather(
        members.transfer_card(h.bot, member, actor, key="k2"),
        members.transfer_card(h.bot, member, actor, key="k3"), return_exceptions=True)
    assert sum(isinstance(r, members.Transfer) for r in results) == 1, results
    assert sum(isinstance(r, members.TransferRefused) for r in results) == 1, results
    assert (await Follower.get(openid="o_old")).member_id == member.id
    assert (await Follower.get(openid="o_new")).member_id is None
    assert await AuditEntry.filter(action="card_transfer").count() == 2
