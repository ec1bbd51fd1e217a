"""Staff commands in chat, over HTTP exactly as WeChat sends them: binding with invites, every
command's success and refusal paths (checked in the reply and in the database), member notices,
voids, tiers, retries and the audit log."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path

import pytest

from bot.infra import ratelimit
from bot.infra.ratelimit import Limit
from bot.models import (
    AppendOnlyError,
    AuditEntry,
    Delivery,
    Follower,
    Member,
    PointsEntry,
    PunchCard,
    PunchUse,
    Purchase,
    RateEvent,
    Staff,
    StaffInvite,
    Store,
    StoredValueEntry,
    TierChange,
)
from bot.rules.cards import card_number
from bot.sandbox import wechat_client as wire
from bot.services import staff as staff_service
from bot.services import tiering
from tests.support import REPO_CONFIG, STEADY_POINTS, Harness, add_staff

ROOT = Path(__file__).resolve().parents[2]
BASE = REPO_CONFIG

PHONE, MASKED = "13800138000", "138****8000"
OTHER_PHONE = "13900139000"  # valid format, nobody has it
NOT_UNDERSTOOD = "没看懂"
PURCHASE_NOTICE = {"purchase": {"template_id": "TPL1", "fields": {
    "amount": "amount1", "points": "number2", "balance": "number3", "time": "time4"}}}
# Why a notice reached nobody: no window, no template message, no SMS template.
NO_WAY = "wechat_cs:no_window; wechat_tpl:no_template; sms:no_template"


# --- helpers ---

@pytest.fixture
async def team(shop) -> dict[str, Staff]:
    return {
        "clerk": await add_staff("o_clerk", "clerk", name="小王"),
        "manager": await add_staff("o_manager", "manager", name="李店长"),
        "owner": await add_staff("o_owner", "owner", store="S002", name="老板"),
    }


@pytest.fixture
async def member(shop) -> Member:
    reply = await shop.register("o_member", PHONE, name="王小明")
    assert "注册成功" in reply
    return await Member.get(follower__openid="o_member")


async def fresh(member: Member) -> Member:
    return await Member.get(id=member.id)


async def at_bot_time(h: Harness, openid: str, text: str) -> str | None:
    """Send a message signed with the bot's (moved) clock, as WeChat would at that time."""
    ts = int(h.bot.now().timestamp())
    signed = h.simulator.sign(wire.text(openid, text, create_time=ts), timestamp=ts)
    status, body = await h.raw(signed.params, signed.body)
    assert status == 200, body
    reply = h.simulator.read_reply(body, signed.params)
    return reply.get("Content") if reply else None


async def close_windows(openid: str) -> None:
    """As if the member last wrote to us days ago: no customer-service window is open."""
    await Follower.filter(openid=openid).update(message_window_at=None, event_window_at=None)


async def audit_actions() -> list[str]:
    return await AuditEntry.all().order_by("id").values_list("action", flat=True)


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# --- binding ---

async def test_bind_takes_store_role_and_name_from_the_invite(shop):
    code = await staff_service.create_invite("S002", "manager", "李店长", shop.bot.now())
    assert re.fullmatch(r"[23456789A-HJ-NP-Z]{8}", code)
    reply = await shop.say("o_new_staff", f"绑定 {code.lower()}")  # case does not matter
    assert "绑定成功" in reply and "示例门店·二店" in reply and "店长" in reply
    assert "李店长" in reply
    staff = await Staff.get(openid="o_new_staff").select_related("store")
    assert (staff.store.code, staff.role, staff.name, staff.active) == (
        "S002", "manager", "李店长", True)
    invite = await StaffInvite.get()
    assert invite.used_at is not None and invite.staff_id == staff.id
    assert invite.code_hash != code and code not in invite.code_hash  # only a hash is kept
    entries = await AuditEntry.all().order_by("id")
    assert [e.action for e in entries] == ["staff_invite", "staff_bind"]
    bound = entries[1]
    assert bound.staff_id == staff.id and bound.store_code == "S002"
    assert bound.actor == f"staff:{staff.id} 李店长"
    assert bound.after == {"role": "manager", "store": "S002"}
    # The new manager can act at once.
    assert "员工命令" in await shop.say("o_new_staff", "员工帮助")


async def test_a_code_works_exactly_once(shop):
    code = await staff_service.create_invite("S001", "clerk", "小王", shop.bot.now())
    assert "绑定成功" in await shop.say("o_a", f"绑定 {code}")
    for openid in ("o_b", "o_a"):
        reply = await shop.say(openid, f"绑定 {code}")
        assert "邀请码无效、已使用或已过期" in reply
    assert await Staff.all().values_list("openid", flat=True) == ["o_a"]


async def test_two_accounts_sending_one_code_at_once_one_wins(any_db, shop):
    code = await staff_service.create_invite("S001", "clerk", "", shop.bot.now())
    replies = await asyncio.gather(*(shop.say(f"o_race_{i}", f"绑定 {code}") for i in range(4)))
    assert sum("绑定成功" in r for r in replies) == 1
    assert sum("邀请码无效" in r for r in replies) == 3
    [staff] = await Staff.all()
    invite = await StaffInvite.get()
    assert invite.staff_id == staff.id
    assert await audit_actions() == ["staff_invite", "staff_bind"]


async def test_expired_invite_is_refused(shop):
    now = shop.bot.now()
    code = await staff_service.create_invite("S001", "clerk", "", now)
    # The service: valid until 24 h after it was made.
    assert await staff_service.bind("o_x", code, now + dt.timedelta(hours=24)) is None
    assert await StaffInvite.filter(used_at=None).count() == 1
    # Over chat, 25 hours later (signed at that time, or the webhook would refuse it).
    shop.clock.advance(hours=25)
    reply = await at_bot_time(shop, "o_late", f"绑定 {code}")
    assert "邀请码无效、已使用或已过期" in reply and "24小时" in reply
    assert await Staff.all().count() == 0


async def test_wrong_codes_are_rate_limited(shop):
    code = await staff_service.create_invite("S001", "clerk", "", shop.bot.now())
    for guess in ("AAAAAAAA", "BBBBBBBB", "CCCCCCCC", "DDDDDDDD", "EEEEEEEE"):
        assert "邀请码无效" in await shop.say("o_guesser", f"绑定 {guess}")
    # The 6th try within the hour is refused even with the right code, and does not use it up.
    reply = await shop.say("o_guesser", f"绑定 {code}")
    assert reply == "尝试次数太多，请一小时后再试。"
    assert await Staff.all().count() == 0
    assert (await StaffInvite.get()).used_at is None
    # Someone else is not slowed down by it.
    other = await staff_service.create_invite("S001", "clerk", "", shop.bot.now())
    assert "绑定成功" in await shop.say("o_other", f"绑定 {other}")
    # An hour later the guesser may try again.
    shop.clock.advance(minutes=61)
    assert "绑定成功" in await at_bot_time(shop, "o_guesser", f"绑定 {code}")


async def test_wrong_codes_sent_at_once_are_still_limited(any_db, shop):
    replies = await asyncio.gather(*(shop.say("o_guesser", f"绑定 ZZZZZZ{i}{i}")
                                     for i in range(2, 10)))
    assert sum("邀请码无效" in r for r in replies) == 5, replies
    assert sum("尝试次数太多" in r for r in replies) == 3, replies


async def test_bind_rate_limit_holds_under_concurrency(any_db, shop):
    """The limiter behind 绑定 (5 an hour per account), hit by many requests in the same instant:
    its row lock must hold on PostgreSQL too, where nothing else serialises them."""
    limits = {"bind:o_guesser": [Limit(5, 3600)]}
    now = shop.bot.now()
    results = await asyncio.gather(*(ratelimit.hit(limits, now) for _ in range(20)))
    assert sum(r is None for r in results) == 5
    assert await RateEvent.filter(key="bind:o_guesser").count() == 5


@pytest.mark.parametrize("text", ["绑定", "绑定 ABC DEF"])
async def test_bind_usage(shop, text):
    reply = await shop.say("o_x", text)
    assert reply.startswith("绑定员工请发送：绑定 <邀请码>")


async def test_rebinding_with_a_new_invite_changes_role_and_store(shop):
    first = await staff_service.create_invite("S001", "clerk", "小王", shop.bot.now())
    assert "店员" in await shop.say("o_wang", f"绑定 {first}")
    second = await staff_service.create_invite("S002", "manager", "王店长", shop.bot.now())
    reply = await shop.say("o_wang", f"绑定 {second}")
    assert "示例门店·二店" in reply and "店长" in reply
    [staff] = await Staff.all().select_related("store")
    assert (staff.role, staff.store.code, staff.name) == ("manager", "S002", "王店长")
    assert "撤销" in await shop.say("o_wang", "员工帮助")


async def test_revoked_staff_are_told_their_access_has_ended(shop, member):
    code = await staff_service.create_invite("S001", "manager", "李店长", shop.bot.now())
    await shop.say("o_mgr", f"绑定 {code}")
    staff = await Staff.get(openid="o_mgr")
    assert "已记录消费" in await shop.say("o_mgr", f"消费 {PHONE} 10")
    # What `memberbot staff revoke <id>` calls (the CLI itself is tested in test_staff_cli.py).
    assert await staff_service.revoke(staff.id) is True
    assert await staff_service.revoke(staff.id) is False
    for text in (f"消费 {PHONE} 10", f"查询 {PHONE}", "撤销 1", "员工帮助", f"充值 {PHONE} 10",
                 "核销 ABCD2345", "发券 13800138000 CUT30", "撤销券 ABCD2345"):
        reply = await shop.say("o_mgr", text)
        assert "员工权限已停用" in reply and f"「{text.split()[0]}」" in reply, text
        assert NOT_UNDERSTOOD not in reply
    scanned = await shop.post(wire.scancode("o_mgr", "STAFF_SCAN", "ABCD2345"))
    assert "员工权限已停用" in scanned["Content"]
    assert await Purchase.all().count() == 1
    assert (await fresh(member)).stored_value == 0
    revoked = await AuditEntry.get(action="staff_revoke")
    assert revoked.before == {"role": "manager"} and revoked.after == {"active": False}
    # A new invite gives the account its access back.
    again = await staff_service.create_invite("S001", "clerk", "", shop.bot.now())
    assert "绑定成功" in await shop.say("o_mgr", f"绑定 {again}")
    restored = await Staff.get(openid="o_mgr")
    assert restored.active and restored.role == "clerk" and restored.id == staff.id


# --- 消费 ---

async def test_purchase_records_points_and_confirms_with_masked_phone(shop, team, member):
    reply = await shop.say("o_clerk", f"消费 {PHONE} 128.50 洗剪吹")
    purchase = await Purchase.get()
    assert f"已记录消费 #{purchase.id}" in reply
    assert f"王小明 {MASKED}（{member.card_no}）" in reply
    assert "金额：¥128.50，积分 +128" in reply
    assert "当前积分：228，等级：普通会员" in reply
    assert f"撤销 {purchase.id}" in reply
    assert PHONE not in reply
    assert (purchase.member_id, purchase.amount, purchase.points, purchase.note) == (
        member.id, 12850, 128, "洗剪吹")
    assert purchase.store_id == (await Store.get(code="S001")).id
    assert purchase.staff_id == team["clerk"].id and purchase.voided_at is None
    [earn] = await PointsEntry.filter(purchase_id=purchase.id)
    assert (earn.kind, earn.delta, earn.remaining, earn.balance_after) == ("earn", 128, 128, 228)
    today = shop.bot.today()  # points expire 12 months later (28 Feb for a 29 Feb purchase)
    assert earn.expires_on == today.replace(year=today.year + 1,
                                            day=min(today.day, 28 if today.month == 2 else 31))
    assert (await fresh(member)).points == 228
    entry = await AuditEntry.get(action="purchase")
    assert entry.staff_id == team["clerk"].id and entry.actor == f"staff:{team['clerk'].id} 小王"
    assert entry.store_code == "S001" and entry.member_id == member.id
    assert entry.before == {"points": 100, "tier": "普通会员"}
    assert entry.after == {"points": 228, "tier": "普通会员", "amount": 12850,
                           "purchase": purchase.id}
    assert entry.detail == "洗剪吹"


async def test_purchase_by_card_number_and_full_width_amount(shop, team, member):
    reply = await shop.say("o_clerk", f"消费 {member.card_no} ￥８８")
    assert "金额：¥88.00，积分 +88" in reply
    assert (await Purchase.get()).amount == 8800


async def test_purchase_below_the_minimum_earns_nothing_but_is_recorded(shop, team, member):
    reply = await shop.say("o_clerk", f"消费 {PHONE} 0.99")
    assert "金额：¥0.99，积分 +0" in reply
    purchase = await Purchase.get()
    assert purchase.points == 0
    assert not await PointsEntry.filter(purchase_id=purchase.id).exists()
    assert (await fresh(member)).points == 100


@pytest.mark.parametrize("amount", ["abc", "-5", "0", "0.00", "1.234", "100000.01", "100001",
                                    "1e3", ".5", "5.", "12,5"])
async def test_purchase_with_a_bad_amount_is_refused(shop, team, member, amount):
    reply = await shop.say("o_clerk", f"消费 {PHONE} {amount}")
    assert reply == (f"金额「{amount}」不对：请写大于0的数字，最多两位小数，不超过 100000 元，"
                     "例如 128.50")
    assert await Purchase.all().count() == 0
    assert (await fresh(member)).points == 100
    assert "purchase" not in await audit_actions()


async def test_purchase_at_the_maximum_is_accepted(shop, team, member):
    assert "请核对金额" in await shop.say("o_clerk", f"消费 {PHONE} 100000")  # confirm_above
    reply = await shop.say("o_clerk", "确认")
    assert "金额：¥100000.00，积分 +100000" in reply
    assert "会员已升级为钻石会员" in reply


async def test_purchase_with_short_phone_and_bad_amount_names_the_phone(shop, team, member):
    reply = await shop.say("o_clerk", "消费 138 abc")
    assert reply == "「138」既不是手机号也不是卡号。请输入会员的11位手机号或会员卡号。"
    assert await Purchase.all().count() == 0


@pytest.mark.parametrize("text", ["消费", f"消费 {PHONE}", "消费 10"])
async def test_purchase_with_missing_arguments_shows_usage(shop, team, member, text):
    assert await shop.say("o_clerk", text) == "格式：消费 <手机号|卡号> <金额> [备注]"
    assert await Purchase.all().count() == 0


async def test_a_member_typing_a_staff_command_changes_nothing(shop, member):
    reply = await shop.say("o_member", f"消费 {PHONE} 10")
    assert NOT_UNDERSTOOD in reply and "帮助" in reply
    for text in (f"充值 {PHONE} 1000", f"调积分 {PHONE} +1000 送", f"设等级 {PHONE} 钻石会员",
                 f"查询 {PHONE}", "撤销 1", "员工帮助"):
        assert NOT_UNDERSTOOD in await shop.say("o_member", text)
    after = await fresh(member)
    assert (after.points, after.stored_value, after.tier) == (100, 0, "普通会员")
    assert await Purchase.all().count() == 0
    assert await StoredValueEntry.all().count() == 0
    assert await AuditEntry.all().count() == 0


# --- unknown members, for every command that takes one ---

MEMBER_COMMANDS = ["消费 {who} 10", "查询 {who}", "充值 {who} 10", "储值 {who} 10",
                   "退款 {who} 10", "开卡 {who} WASH10", "核次 {who}", "调积分 {who} +5 补偿",
                   "设等级 {who} 银卡会员"]


@pytest.mark.parametrize("command", MEMBER_COMMANDS)
async def test_unknown_member(shop, team, member, command):
    wrong_check = member.card_no[:-1] + str((int(member.card_no[-1]) + 1) % 10)
    unissued = card_number("88", 9999)  # a well-formed card number nobody has
    cases = {
        OTHER_PHONE: f"没有找到 {OTHER_PHONE} 对应的会员",
        unissued: f"没有找到 {unissued} 对应的会员",
        wrong_check: f"卡号 {wrong_check} 校验位不对",
        "张三": "「张三」既不是手机号也不是卡号",
        "12345": "「12345」既不是手机号也不是卡号",
    }
    for who, expected in cases.items():
        reply = await shop.say("o_owner", command.format(who=who))
        assert expected in reply, (who, reply)
    assert await Purchase.all().count() == 0
    assert await StoredValueEntry.all().count() == 0
    assert await PunchCard.all().count() == 0
    assert await TierChange.all().count() == 0
    assert await AuditEntry.all().count() == 0
    assert (await fresh(member)).points == 100


# --- roles ---

@pytest.mark.parametrize(("command", "word"), [
    ("撤销 1", "撤销"), (f"充值 {PHONE} 100", "充值"), (f"退款 {PHONE} 10", "退款"),
    (f"调积分 {PHONE} +50 补偿", "调积分"), (f"设等级 {PHONE} 金卡会员", "设等级"),
])
async def test_clerk_is_refused_manager_only_commands(shop, team, member, command, word):
    assert "已记录消费 #" in await shop.say("o_clerk", f"消费 {PHONE} 10")
    before = await audit_actions()
    reply = await shop.say("o_clerk", command)
    assert reply == f"抱歉，店员没有权限执行「{word}」，请联系店长或老板。"
    after = await fresh(member)
    assert (after.points, after.stored_value, after.tier) == (110, 0, "普通会员")
    assert (await Purchase.get()).voided_at is None
    assert await StoredValueEntry.all().count() == 0
    assert await audit_actions() == before


async def test_clerk_help_lists_only_what_a_clerk_may_do(shop, team):
    clerk = await shop.say("o_clerk", "员工帮助")
    assert "示例门店·总店 · 店员" in clerk
    assert "消费 <手机号|卡号>" in clerk and "核次" in clerk
    for word in ("撤销", "充值", "退款", "调积分", "设等级"):
        assert word not in clerk
    manager = await shop.say("o_manager", "员工帮助")
    for word in ("撤销", "充值", "退款", "调积分", "设等级"):
        assert word in manager
    assert "示例门店·二店 · 老板" in await shop.say("o_owner", "店员帮助")


async def test_owner_of_another_store_can_do_everything(shop, team, member):
    await shop.say("o_clerk", f"消费 {PHONE} 200")  # at S001
    purchase = await Purchase.get()
    owner = team["owner"]  # invited at S002
    assert f"已撤销消费 #{purchase.id}" in await shop.say("o_owner", f"撤销 {purchase.id}")
    assert "充值 ¥100.00" in await shop.say("o_owner", f"充值 {PHONE} 100")
    assert "储值消费 ¥30.00" in await shop.say("o_owner", f"储值 {PHONE} 30")
    assert "储值退款 ¥30.00" in await shop.say("o_owner", f"退款 {PHONE} 30")
    assert "调整积分 +20" in await shop.say("o_owner", f"调积分 {PHONE} +20 补偿")
    assert "设为银卡会员" in await shop.say("o_owner", f"设等级 {PHONE} 银卡会员")
    assert "已记录消费" in await shop.say("o_owner", f"消费 {PHONE} 10")
    entries = await AuditEntry.filter(staff_id=owner.id).order_by("id")
    assert [e.action for e in entries] == [
        "void_purchase", "stored_value_topup", "stored_value_pay", "stored_value_refund",
        "adjust_points", "set_tier", "purchase"]
    assert {e.store_code for e in entries} == {"S002"}
    # The owner's purchase is booked at the owner's store.
    latest = await Purchase.all().order_by("-id").first().select_related("store")
    assert latest.store.code == "S002" and latest.staff_id == owner.id


# --- retries ---

async def test_wechat_retry_of_a_purchase_records_one(any_db, shop, team, member):
    xml = wire.text("o_clerk", f"消费 {PHONE} 50", msg_id=7_000_000_001)
    replies = await asyncio.gather(*(shop.post(xml) for _ in range(3)))
    contents = [r["Content"] for r in replies if r]
    assert contents and all(c == contents[0] for c in contents)
    assert await Purchase.all().count() == 1
    assert await PointsEntry.filter(kind="earn", purchase_id__not_isnull=True).count() == 1
    assert (await fresh(member)).points == 150
    assert (await audit_actions()).count("purchase") == 1
    await shop.bot.drain()
    assert await Delivery.filter(purpose="purchase").count() == 1


async def test_wechat_retry_of_a_top_up_records_one(shop, team, member):
    xml = wire.text("o_manager", f"充值 {PHONE} 600", msg_id=7_000_000_002)
    await asyncio.gather(*(shop.post(xml) for _ in range(3)))
    kinds = await StoredValueEntry.all().order_by("id").values_list("kind", "delta")
    assert kinds == [("topup", 60000), ("bonus", 5000)]
    assert (await fresh(member)).stored_value == 65000
    assert (await audit_actions()).count("stored_value_topup") == 1


async def test_wechat_retry_of_a_punch_use_records_one(shop, team, member):
    await shop.say("o_clerk", f"开卡 {PHONE} WASH10")
    xml = wire.text("o_clerk", f"核次 {PHONE}", msg_id=7_000_000_003)
    await asyncio.gather(*(shop.post(xml) for _ in range(3)))
    assert await PunchUse.all().count() == 1
    assert (await PunchCard.get()).remaining == 9


async def test_two_staff_racing_for_the_same_balance_or_visit(any_db, shop, team, member):
    """Different messages (not retries) at the same moment: the guards still hold."""
    await shop.say("o_clerk", f"消费 {PHONE} 40")
    purchase = await Purchase.get()
    await shop.say("o_manager", f"充值 {PHONE} 100")
    await shop.say("o_clerk", f"开卡 {PHONE} CARE5")
    for _ in range(4):
        await shop.say("o_clerk", f"核次 {PHONE}")
    voids = await asyncio.gather(shop.say("o_manager", f"撤销 {purchase.id}"),
                                 shop.say("o_owner", f"撤销 {purchase.id}"))
    pays = await asyncio.gather(shop.say("o_clerk", f"储值 {PHONE} 60"),
                                shop.say("o_manager", f"储值 {PHONE} 60"))
    uses = await asyncio.gather(shop.say("o_clerk", f"核次 {PHONE}"),
                                shop.say("o_manager", f"核次 {PHONE}"))
    assert sum("已撤销消费" in r for r in voids) == 1
    assert sum("之前已撤销过" in r for r in voids) == 1
    assert await PointsEntry.filter(kind="reverse").count() == 1
    assert sorted("余额不足" in r for r in pays) == [False, True]
    assert sorted("剩余 0 次" in r for r in uses) == [False, True]
    after = await fresh(member)
    # 100 + 450 for the CARE5 card: a punch card sale is a purchase (issue 9).
    assert (after.points, after.stored_value) == (550, 4000)
    assert (await PunchCard.get()).remaining == 0
    assert await PunchUse.all().count() == 5


# --- member notices ---

async def test_purchase_notice_as_customer_service_message(shop, team, member):
    await shop.say("o_clerk", f"消费 {PHONE} 128.50")
    await shop.bot.drain()
    [message] = [m for m in shop.stand_ins.wechat.messages if m.openid == "o_member"]
    assert "消费 ¥128.50" in message.content and "获得 128 积分" in message.content
    assert "当前积分：228" in message.content and "示例门店·总店" in message.content
    assert "恭喜升级" not in message.content
    [delivery] = await Delivery.filter(purpose="purchase")
    assert (delivery.status, delivery.channel, delivery.openid) == ("sent", "wechat_cs",
                                                                    "o_member")
    assert not shop.stand_ins.wechat.templates


async def test_purchase_notice_as_template_message_without_a_window(harness_factory):
    shop = await harness_factory(points=STEADY_POINTS, notices=PURCHASE_NOTICE)
    await add_staff("o_clerk", "clerk", name="小王")
    await shop.register("o_member", PHONE, name="王小明")
    await close_windows("o_member")
    before = len(shop.stand_ins.wechat.messages)
    await shop.say("o_clerk", f"消费 {PHONE} 128.50")
    await shop.bot.drain()
    assert len(shop.stand_ins.wechat.messages) == before  # no custom message
    [template] = shop.stand_ins.wechat.templates
    assert template.openid == "o_member" and template.template_id == "TPL1"
    values = {key: value["value"] for key, value in template.data.items()}
    assert set(values) == {"amount1", "number2", "number3", "time4"}
    assert values["amount1"] == "¥128.50"
    assert values["number2"] == "128" and values["number3"] == "228"
    local = shop.bot.now().astimezone(shop.config.shop.tz)
    stamp = dt.datetime.strptime(values["time4"], "%Y-%m-%d %H:%M").replace(
        tzinfo=shop.config.shop.tz)
    assert abs((stamp - local).total_seconds()) < 120  # shop time, not UTC
    [delivery] = await Delivery.filter(purpose="purchase")
    assert (delivery.status, delivery.channel) == ("sent", "wechat_tpl")


async def test_purchase_notice_with_no_window_and_no_template_is_recorded_as_failed(
        shop, team, member):
    await close_windows("o_member")
    before = len(shop.stand_ins.wechat.messages)
    await shop.say("o_clerk", f"消费 {PHONE} 30")
    await shop.bot.drain()
    assert len(shop.stand_ins.wechat.messages) == before
    assert not shop.stand_ins.wechat.templates
    [delivery] = await Delivery.filter(purpose="purchase")
    assert (delivery.status, delivery.error) == ("failed", NO_WAY)
    assert "消费 ¥30.00" in delivery.payload["text"]
    assert delivery.payload["values"]["balance"] == "130"


# --- 撤销 ---

async def test_manager_voids_a_purchase(shop, team, member):
    await shop.say("o_clerk", f"消费 {PHONE} 128.50")
    purchase = await Purchase.get()
    reply = await shop.say("o_manager", f"撤销 #{purchase.id}")
    assert f"已撤销消费 #{purchase.id}（¥128.50）" in reply
    assert f"王小明 {MASKED}" in reply and PHONE not in reply
    assert "扣回积分 128。" in reply and "当前积分：100" in reply
    voided = await Purchase.get(id=purchase.id)
    assert voided.voided_at is not None and voided.void_shortfall == 0
    [reverse] = await PointsEntry.filter(kind="reverse")
    assert (reverse.delta, reverse.balance_after) == (-128, 100)
    member_now = await fresh(member)
    assert member_now.points == 100
    entry = await AuditEntry.get(action="void_purchase")
    assert entry.staff_id == team["manager"].id and entry.store_code == "S001"
    assert entry.before == {"points": 228, "purchase": purchase.id, "amount": 12850}
    assert entry.after == {"points": 100, "reversed": 128, "shortfall": 0}
    await shop.bot.drain()
    notices = [m.content for m in shop.stand_ins.wechat.messages if "已撤销" in (m.content or "")]
    assert len(notices) == 1 and "¥128.50" in notices[0] and "扣回 128 积分" in notices[0]
    # Twice: reported, not done again.
    again = await shop.say("o_manager", f"撤销 {purchase.id}")
    assert f"消费 #{purchase.id} 之前已撤销过，未重复处理。" in again
    assert await PointsEntry.filter(kind="reverse").count() == 1
    assert (await audit_actions()).count("void_purchase") == 1
    assert (await fresh(member)).points == 100


async def test_void_after_points_were_spent_reports_the_shortfall(shop, team, member):
    await shop.say("o_clerk", f"消费 {PHONE} 50")  # 100 + 50
    purchase = await Purchase.get()
    assert "当前积分 10" in await shop.say("o_manager", f"调积分 {PHONE} -140 兑换礼品")
    reply = await shop.say("o_manager", f"撤销 {purchase.id}")
    assert "扣回积分 10，另有 40 积分已被使用、无法扣回（已记录）" in reply
    assert "当前积分：0" in reply
    assert (await fresh(member)).points == 0
    assert (await Purchase.get(id=purchase.id)).void_shortfall == 40
    entries = await PointsEntry.filter(member_id=member.id).values_list("delta", "remaining")
    assert sum(d for d, _ in entries) == 0 == sum(r for _, r in entries)


async def test_void_after_void_days_is_refused(shop, team, member):
    await shop.say("o_clerk", f"消费 {PHONE} 20")
    await shop.say("o_clerk", f"消费 {PHONE} 30")
    first, second = await Purchase.all().order_by("id")
    shop.clock.advance(days=6, hours=23)
    assert "已撤销消费" in await at_bot_time(shop, "o_manager", f"撤销 {first.id}")
    shop.clock.advance(hours=2)  # 7 days and 1 hour after the purchase
    reply = await at_bot_time(shop, "o_manager", f"撤销 {second.id}")
    assert reply == f"消费 #{second.id} 已超过 7 天，不能再撤销。如需处理请联系老板。"
    assert (await Purchase.get(id=second.id)).voided_at is None
    assert (await fresh(member)).points == 130


@pytest.mark.parametrize(("text", "expected"), [
    ("撤销 999999", "没有找到流水号为 999999 的消费"),
    ("撤销 abc", "格式：撤销 <流水号>（消费确认里的 # 号码）"),
    ("撤销 -1", "格式：撤销 <流水号>"),
    ("撤销", "格式：撤销 <流水号>"),
    ("撤销 1 2", "格式：撤销 <流水号>"),
])
async def test_void_of_unknown_or_malformed_serials(shop, team, text, expected):
    assert expected in await shop.say("o_manager", text)


# --- tiers ---

async def test_purchase_that_qualifies_upgrades_at_once(shop, team, member):
    reply = await shop.say("o_clerk", f"消费 {PHONE} 1000")
    assert "积分 +1000" in reply  # earned at the tier the member had when paying
    assert "当前积分：1100，等级：银卡会员（享 98 折）" in reply
    assert "会员已升级为银卡会员" in reply
    after = await fresh(member)
    assert after.tier == "银卡会员" and after.tier_floor is None
    [change] = await TierChange.all()
    assert (change.from_tier, change.to_tier, change.reason, change.staff_id) == (
        "普通会员", "银卡会员", "purchase", team["clerk"].id)
    await shop.bot.drain()
    [notice] = [m.content for m in shop.stand_ins.wechat.messages if m.openid == "o_member"]
    assert "恭喜升级为银卡会员" in notice
    # The next purchase earns at the new tier's 1.2×.
    assert "积分 +120" in await shop.say("o_clerk", f"消费 {PHONE} 100")
    # Voiding the purchase that brought the upgrade takes it back at once: a correction, not
    # a downgrade (tests/handlers/test_till.py has the rest).
    first = await Purchase.all().order_by("id").first()
    await shop.say("o_manager", f"撤销 {first.id}")
    assert (await fresh(member)).tier == "普通会员"
    assert await TierChange.all().order_by("id").values_list("reason", flat=True) == [
        "purchase", "correction"]


async def test_just_below_the_threshold_does_not_upgrade(shop, team, member):
    reply = await shop.say("o_clerk", f"消费 {PHONE} 999.99")
    assert "升级" not in reply
    assert (await fresh(member)).tier == "普通会员"
    assert "会员已升级为银卡会员" in await shop.say("o_clerk", f"消费 {PHONE} 0.01")


async def test_set_tier_is_a_floor(shop, team, member):
    reply = await shop.say("o_manager", f"设等级 {PHONE} 金卡会员")
    assert f"已将 王小明 {MASKED} 设为金卡会员（保底等级" in reply
    after = await fresh(member)
    assert (after.tier, after.tier_floor) == ("金卡会员", "金卡会员")
    [change] = await TierChange.all()
    assert (change.from_tier, change.to_tier, change.reason, change.staff_id) == (
        "普通会员", "金卡会员", "manual", team["manager"].id)
    entry = await AuditEntry.get(action="set_tier")
    assert entry.staff_id == team["manager"].id and entry.member_id == member.id
    assert entry.before == {"tier": "普通会员", "floor": None}
    assert entry.after == {"tier": "金卡会员", "floor": "金卡会员"}
    # Spending that earns only 银卡 keeps the floor; points use the 金卡 multiplier (1.5×).
    reply = await shop.say("o_clerk", f"消费 {PHONE} 1000")
    assert "积分 +1500" in reply and "等级：金卡会员" in reply and "升级" not in reply
    assert (await fresh(member)).tier == "金卡会员"
    assert await tiering.evaluate(shop.bot, await fresh(member)) is None
    # Spending past the floor still lifts the member above it.
    assert "请核对金额" in await shop.say("o_clerk", f"消费 {PHONE} 19000")  # confirm_above
    reply = await shop.say("o_clerk", "确认")
    assert "会员已升级为钻石会员" in reply
    # Setting the first tier removes the floor.
    assert "（保底" not in await shop.say("o_manager", f"设等级 {PHONE} 普通会员")
    assert (await fresh(member)).tier_floor is None
    assert await TierChange.all().values_list("reason", flat=True) == [
        "manual", "purchase", "manual"]


async def test_set_tier_to_an_unknown_tier(shop, team, member):
    reply = await shop.say("o_manager", f"设等级 {PHONE} 白金会员")
    names = "、".join(t.name for t in BASE.tiers)
    assert reply == f"没有「白金会员」这个等级。可选：{names}"
    assert (await fresh(member)).tier == "普通会员"
    assert await AuditEntry.all().count() == 0


# --- stored value ---

async def test_top_up_pay_and_refund(shop, team, member):
    reply = await shop.say("o_manager", f"充值 {PHONE} 500")
    assert "✅ 充值 ¥500.00，赠送 ¥50.00" in reply and "储值余额：¥550.00" in reply
    assert f"王小明 {MASKED}" in reply and PHONE not in reply
    reply = await shop.say("o_clerk", f"储值 {PHONE} 120.50")
    assert "✅ 储值消费 ¥120.50" in reply and "储值余额：¥429.50" in reply
    reply = await shop.say("o_clerk", f"储值 {PHONE} 1000")
    assert reply == "储值余额不足，未扣款。请先查询余额或改用其他方式付款。"
    reply = await shop.say("o_manager", f"退款 {PHONE} 20.50")
    assert "✅ 储值退款 ¥20.50" in reply and "储值余额：¥450.00" in reply
    reply = await shop.say("o_manager", f"退款 {PHONE} 100.01")
    assert reply == "退款金额超过了可退的储值消费（最多可退 ¥100.00），未处理。"
    entries = await StoredValueEntry.all().order_by("id").values_list(
        "kind", "delta", "balance_after")
    assert entries == [("topup", 50000, 50000), ("bonus", 5000, 55000),
                       ("pay", -12050, 42950), ("refund", 2050, 45000)]
    assert (await fresh(member)).stored_value == 45000
    audits = await AuditEntry.filter(action__startswith="stored_value").order_by("id")
    assert [(a.action, a.before, a.after) for a in audits] == [
        ("stored_value_topup", {"stored_value": 0},
         {"stored_value": 55000, "amount": 50000, "bonus": 5000}),
        ("stored_value_pay", {"stored_value": 55000},
         {"stored_value": 42950, "amount": 12050, "bonus": 0}),
        ("stored_value_refund", {"stored_value": 42950},
         {"stored_value": 45000, "amount": 2050, "bonus": 0}),
    ]
    assert [a.staff_id for a in audits] == [team["manager"].id, team["clerk"].id,
                                            team["manager"].id]
    await shop.bot.drain()
    texts = [m.content for m in shop.stand_ins.wechat.messages if m.openid == "o_member"]
    assert any("【储值到账】充值 ¥500.00，赠送 ¥50.00，当前储值余额 ¥550.00" in t for t in texts)


@pytest.mark.parametrize(("command", "limit"), [
    ("充值 {p} 50000.01", 50000), ("充值 {p} 0", 50000), ("储值 {p} -1", 50000),
    ("退款 {p} 1.001", 50000),
])
async def test_stored_value_bad_amounts(shop, team, member, command, limit):
    reply = await shop.say("o_manager", command.format(p=PHONE))
    assert "不对：请写大于0的数字，最多两位小数" in reply and f"不超过 {limit} 元" in reply
    assert await StoredValueEntry.all().count() == 0


async def test_top_up_at_the_maximum_gets_the_biggest_bonus(shop, team, member):
    reply = await shop.say("o_manager", f"充值 {PHONE} 50000")
    assert "充值 ¥50000.00，赠送 ¥120.00" in reply
    assert (await fresh(member)).stored_value == 5_012_000


async def test_refunds_at_once_cannot_refund_more_than_was_paid(any_db, shop, team, member):
    await shop.say("o_manager", f"充值 {PHONE} 100")
    await shop.say("o_clerk", f"储值 {PHONE} 100")  # 100 paid, so at most 100 refundable
    replies = await asyncio.gather(*(shop.say(who, f"退款 {PHONE} 50")
                                     for who in ("o_manager", "o_owner") * 2))
    assert sum("✅ 储值退款 ¥50.00" in r for r in replies) == 2, replies
    assert sum("最多可退 ¥0.00" in r for r in replies) == 2, replies
    refunds = await StoredValueEntry.filter(kind="refund").values_list("delta", flat=True)
    assert refunds == [5000, 5000]
    assert (await fresh(member)).stored_value == 10000


# --- punch cards ---

async def test_sell_and_use_punch_cards(shop, team, member):
    reply = await shop.say("o_clerk", f"开卡 {PHONE} wash10")
    expires = shop.bot.today() + dt.timedelta(days=365)
    sale = await Purchase.get()
    assert reply == (f"✅ 已为 王小明 {MASKED} 开通洗剪吹10次卡：10 次，"
                     f"{expires:%Y-%m-%d} 到期。\n售价 ¥380.00，现金收款。\n"
                     f"已记录消费 #{sale.id}，积分 +380。撤销请店长发送：撤销 {sale.id}")
    card = await PunchCard.get()
    assert (card.product, card.visits, card.remaining, card.expires_on) == (
        "WASH10", 10, 10, expires)
    assert card.staff_id == team["clerk"].id
    reply = await shop.say("o_clerk", f"核次 {PHONE}")
    assert "已核销洗剪吹10次卡 1 次，剩余 9 次" in reply and MASKED in reply
    [use] = await PunchUse.all()
    assert (use.card_id, use.remaining_after, use.staff_id) == (card.id, 9, team["clerk"].id)
    # A second kind: the clerk must say which.
    await shop.say("o_clerk", f"开卡 {PHONE} 护理5次卡")
    reply = await shop.say("o_clerk", f"核次 {PHONE}")
    assert reply.startswith("会员有多种次卡（")
    assert "护理5次卡" in reply and "洗剪吹10次卡" in reply
    assert await PunchUse.all().count() == 1
    assert "已核销护理5次卡 1 次，剩余 4 次" in await shop.say("o_clerk", f"核次 {PHONE} CARE5")
    actions = [a for a in await audit_actions() if a.startswith("punch")]
    assert actions == ["punch_sell", "punch_use", "punch_sell", "punch_use"]
    use_audit = await AuditEntry.filter(action="punch_use").order_by("id").first()
    assert use_audit.before == {"card": card.id, "remaining": 10}
    assert use_audit.after == {"card": card.id, "remaining": 9}
    await shop.bot.drain()
    texts = [m.content for m in shop.stand_ins.wechat.messages if m.openid == "o_member"]
    assert any("【次卡使用】洗剪吹10次卡 本次使用 1 次，剩余 9 次" in t for t in texts)


async def test_punch_card_refusals(shop, team, member):
    assert await shop.say("o_clerk", f"核次 {PHONE}") == (
        "会员没有可用的次卡（次数已用完或已过期）。")
    reply = await shop.say("o_clerk", f"开卡 {PHONE} 年卡")
    assert reply == "没有「年卡」这种次卡。可选：洗剪吹10次卡（WASH10）、护理5次卡（CARE5）"
    assert await shop.say("o_clerk", f"开卡 {PHONE}") == (
        "格式：开卡 <手机号|卡号> <次卡> [现金|储值]")
    await shop.say("o_clerk", f"开卡 {PHONE} CARE5")
    for _ in range(5):
        await shop.say("o_clerk", f"核次 {PHONE}")
    assert await shop.say("o_clerk", f"核次 {PHONE} CARE5") == (
        "会员没有可用的护理5次卡（次数已用完或已过期）。")
    assert (await PunchCard.get()).remaining == 0
    assert await PunchUse.all().count() == 5


# --- 调积分 ---

async def test_adjust_points(shop, team, member):
    reply = await shop.say("o_manager", f"调积分 {PHONE} +50 生日补偿")
    assert reply == f"✅ 已为 王小明 {MASKED} 调整积分 +50（生日补偿），当前积分 150。"
    [entry] = await PointsEntry.filter(kind="adjust")
    assert (entry.delta, entry.balance_after, entry.reason) == (50, 150, "生日补偿")
    assert entry.expires_on is not None
    reply = await shop.say("o_manager", f"调积分 {PHONE} -30 录错")
    assert "调整积分 -30（录错），当前积分 120" in reply
    reply = await shop.say("o_manager", f"调积分 {PHONE} -500 兑换")
    assert reply == "会员当前只有 120 积分，不能扣 500 分。"
    assert (await fresh(member)).points == 120
    audits = await AuditEntry.filter(action="adjust_points").order_by("id")
    assert [(a.before, a.after, a.detail) for a in audits] == [
        ({"points": 100}, {"points": 150, "delta": 50}, "生日补偿"),
        ({"points": 150}, {"points": 120, "delta": -30}, "录错"),
    ]


@pytest.mark.parametrize("delta", ["0", "abc", "+", "1000001", "5.5", "+-50", "--50"])
async def test_adjust_points_with_a_malformed_delta(shop, team, member, delta):
    reply = await shop.say("o_manager", f"调积分 {PHONE} {delta} 原因")
    assert reply == "格式：调积分 <手机号|卡号> <+/-积分> <原因>"
    assert (await fresh(member)).points == 100
    assert await AuditEntry.all().count() == 0


async def test_adjust_points_needs_a_reason(shop, team, member):
    assert await shop.say("o_manager", f"调积分 {PHONE} +50") == (
        "格式：调积分 <手机号|卡号> <+/-积分> <原因>")


# --- 查询 ---

async def test_lookup_shows_the_member_and_the_last_five_purchases(shop, team, member):
    for amount in (11, 12, 13, 14, 15, 16):
        await shop.say("o_clerk", f"消费 {PHONE} {amount} 单{amount}")
    purchases = await Purchase.all().order_by("id")
    await shop.say("o_manager", f"撤销 {purchases[-1].id}")
    await shop.say("o_manager", f"充值 {PHONE} 88.8")
    await shop.say("o_clerk", f"开卡 {PHONE} WASH10")  # a sale of ¥380: a purchase too
    await shop.say("o_clerk", f"核次 {PHONE}")
    purchases = await Purchase.all().order_by("id")
    reply = await shop.say("o_clerk", f"查询 {member.card_no}")
    assert f"王小明 {MASKED}" in reply and PHONE not in reply
    assert f"卡号：{member.card_no}" in reply and "等级：普通会员" in reply
    assert "积分：545" in reply  # 100 + 11 + 12 + 13 + 14 + 15 (16 voided) + 380 (the card)
    assert "储值：¥88.80" in reply
    expires = shop.bot.today() + dt.timedelta(days=365)
    assert f"洗剪吹10次卡：剩 9 次，{expires:%Y-%m-%d} 到期" in reply
    shown = [int(n) for n in re.findall(r"#(\d+) ", reply)]
    assert shown == [p.id for p in reversed(purchases[2:])]
    assert re.search(rf"#{purchases[-1].id} \d\d-\d\d ¥380\.00 \+380分 开卡 洗剪吹10次卡", reply)
    assert re.search(rf"#{purchases[-2].id} \d\d-\d\d ¥16\.00 \+16分（已撤销） 单16", reply)
    assert f"#{purchases[2].id} " in reply and "¥13.00 +13分 单13" in reply
    assert "¥12.00" not in reply
    # Nothing recorded for a member without purchases.
    await shop.register("o_member2", "13700137000", name="李雷")
    reply = await shop.say("o_clerk", "查询 13700137000")
    assert "李雷 137****7000" in reply and "暂无消费记录" in reply


async def test_lookup_dates_are_in_the_shops_time_zone(shop, team, member):
    # 00:30 in Shanghai is 16:30 UTC the day before: the receipt says the local date.
    local = dt.datetime(2026, 11, 20, 0, 30, tzinfo=shop.config.shop.tz)
    await Purchase.create(member_id=member.id, amount=1000, points=10, idempotency_key="k1",
                          created_at=local.astimezone(dt.UTC))
    reply = await shop.say("o_clerk", f"查询 {PHONE}")
    assert "11-20 ¥10.00" in reply, reply


async def test_void_notice_date_is_in_the_shops_time_zone(shop, team, member):
    local = shop.bot.now().astimezone(shop.config.shop.tz).replace(hour=0, minute=30)
    if local > shop.bot.now():
        local -= dt.timedelta(days=1)
    purchase = await Purchase.create(member_id=member.id, amount=1000, points=0,
                                     idempotency_key="k1", created_at=local.astimezone(dt.UTC))
    assert "已撤销消费" in await shop.say("o_manager", f"撤销 {purchase.id}")
    await shop.bot.drain()
    [notice] = [m.content for m in shop.stand_ins.wechat.messages if "已撤销" in m.content]
    assert notice.startswith(f"您在 {local:%m-%d} 的消费 ¥10.00 已撤销"), notice


async def test_lookup_without_a_member_shows_usage(shop, team, member):
    assert await shop.say("o_clerk", "查询") == "格式：查询 <手机号|卡号>"


# --- the audit log ---

async def test_every_staff_action_writes_one_audit_entry(shop, team, member):
    steps = [
        ("o_clerk", f"消费 {PHONE} 100", "purchase"),
        ("o_manager", "撤销 {serial}", "void_purchase"),
        ("o_manager", f"充值 {PHONE} 500", "stored_value_topup"),
        ("o_clerk", f"储值 {PHONE} 50", "stored_value_pay"),
        ("o_manager", f"退款 {PHONE} 50", "stored_value_refund"),
        # A punch card sale is also a purchase (its price), audited as one.
        ("o_clerk", f"开卡 {PHONE} WASH10", ("purchase", "punch_sell")),
        ("o_clerk", f"核次 {PHONE}", "punch_use"),
        ("o_manager", f"调积分 {PHONE} +10 补偿", "adjust_points"),
        ("o_manager", f"设等级 {PHONE} 银卡会员", "set_tier"),
    ]
    for openid, text, action in steps:
        before = await AuditEntry.all().count()
        latest = await Purchase.all().order_by("-id").first()
        reply = await shop.say(openid, text.format(serial=latest.id if latest else None))
        assert "✅" in reply, reply
        entries = await AuditEntry.all().order_by("id").offset(before)
        assert [e.action for e in entries] == list(action if isinstance(action, tuple)
                                                   else (action,))
        entry = entries[-1]
        staff = await Staff.get(openid=openid)
        assert entry.staff_id == staff.id
        assert entry.actor == f"staff:{staff.id} {staff.name}"
        assert entry.store_code == "S001" and entry.member_id == member.id
        assert entry.after, action
        assert entry.created_at is not None


async def test_audit_entries_cannot_be_changed_or_deleted(shop, team, member):
    await shop.say("o_clerk", f"消费 {PHONE} 10")
    entry = await AuditEntry.get(action="purchase")
    entry.detail = "改过了"
    with pytest.raises(AppendOnlyError):
        await entry.save()
    with pytest.raises(AppendOnlyError):
        await entry.delete()
    kept = await AuditEntry.get(id=entry.id)
    assert kept.detail == "" and kept.action == "purchase"
    # Appending is still allowed.
    new = AuditEntry(actor="cli", action="note")
    await new.save()
    assert await AuditEntry.filter(action="note").count() == 1
    with pytest.raises(AppendOnlyError):
        await new.save()


async def test_staff_replies_never_contain_the_full_phone(shop, team, member):
    for openid, text in [
        ("o_clerk", f"消费 {PHONE} 10"), ("o_clerk", f"查询 {PHONE}"),
        ("o_manager", f"充值 {PHONE} 10"), ("o_clerk", f"储值 {PHONE} 5"),
        ("o_manager", f"退款 {PHONE} 5"), ("o_clerk", f"开卡 {PHONE} CARE5"),
        ("o_clerk", f"核次 {PHONE}"), ("o_manager", f"调积分 {PHONE} +1 补偿"),
        ("o_manager", f"设等级 {PHONE} 银卡会员"), ("o_manager", "撤销 1"),
    ]:
        reply = await shop.say(openid, text)
        assert MASKED in reply and PHONE not in reply, (text, reply)


def test_required_roles_cover_every_staff_command():
    # Roles are ordered: a manager may do all a clerk may, an owner all a manager may.
    for action, role in staff_service.REQUIRED_ROLE.items():
        assert staff_service.allowed("owner", action)
        assert staff_service.allowed("manager", action) == (role in ("clerk", "manager"))
        assert staff_service.allowed("clerk", action) == (role == "clerk")
