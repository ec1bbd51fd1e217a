"""Coupons end to end: issuing (welcome, limits under concurrency, 发券, the CLI), 兑换 for points,
the wallet, redemption by code and by scan (arithmetic, refusals, races, guessing), notices to
the member, undo and the expiry job. Checked in the replies and row by row in the database."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import re
from pathlib import Path

import pytest

from bot.cli import coupons as coupons_cli
from bot.cli.common import CliError
from bot.config import CouponTemplateConfig
from bot.models import (
    AuditEntry,
    Conversation,
    Coupon,
    CouponTemplate,
    Delivery,
    Follower,
    Member,
    PointsEntry,
    PointsUse,
    Purchase,
    Staff,
    Store,
)
from bot.rules import coupons as coupon_rules
from bot.runtime import open_bot
from bot.sandbox import wechat_client as wire
from bot.services import coupons, loyalty, members, redemption
from bot.services import staff as staff_service
from bot.services.coupons import CouponRefused
from tests.support import REPO_CONFIG, STEADY_POINTS, Harness, add_staff, fixture_xml, make_config

ROOT = Path(__file__).resolve().parents[2]
BASE = REPO_CONFIG
TZ = dt.timezone(dt.timedelta(hours=8))  # Asia/Shanghai, the shop's time zone

PHONE, OTHER_PHONE = "13800138000", "13900139000"
NOT_UNDERSTOOD = "没看懂"
BAD_CODE = "校验位不符"
SLOW_DOWN = "输错的券码太多了"
FIXTURE_STAFF = "oStaff0000000000000000000001"
LOOKUP_NOT_FOUND = "没有找到 {text} 对应的会员。可以请顾客关注公众号注册会员后再操作。"
# Why a notice reached nobody: no window, no template message, no SMS template.
NO_WAY = "wechat_cs:no_window; wechat_tpl:no_template; sms:no_template"


# --- helpers ---

@pytest.fixture
async def team(shop) -> dict[str, Staff]:
    return {
        "clerk": await add_staff("o_clerk", "clerk", name="小王"),
        "clerk2": await add_staff("o_clerk2", "clerk", name="小李"),
        "manager": await add_staff("o_manager", "manager", name="李店长"),
        "far_clerk": await add_staff("o_far", "clerk", store="S002", name="小赵"),
    }


@pytest.fixture
async def member(shop) -> Member:
    """Registered over chat (so the welcome coupon is in the wallet, and the member's
    customer-service window is open)."""
    reply = await shop.register("o_member", PHONE, name="王小明")
    assert "注册成功" in reply
    return await Member.get(follower__openid="o_member")


async def quick_member(bot, n: int, name: str = "") -> Member:
    """A member through the service, without the chat dialog (and so without a welcome
    coupon)."""
    registration = await members.register(bot, f"o_quick_{n}", f"137{n:08d}", name or f"会员{n}",
                                          None, bot.now())
    return registration.member


async def template(code: str) -> CouponTemplate:
    return await CouponTemplate.get(code=code)


async def give(bot, member: Member, code: str, key: str | None = None) -> Coupon:
    key = key or f"test:{code}:{member.id}:{await Coupon.all().count()}"
    coupon = await coupons.issue(bot, member, await template(code), source="manual", key=key)
    return await Coupon.get(id=coupon.id).select_related("template")


async def add_points(member: Member, points: int, key: str = "seed") -> None:
    await loyalty.post_points(member.id, points, kind="adjust", reason="测试", key=key)


async def fresh(row):
    return await type(row).get(id=row.id)


async def post_at_bot_time(h: Harness, xml_for_time) -> dict | None:
    """A callback signed with the bot's (moved) clock, as WeChat would send it at that time."""
    ts = int(h.bot.now().timestamp())
    signed = h.simulator.sign(xml_for_time(ts), timestamp=ts)
    status, body = await h.raw(signed.params, signed.body)
    assert status == 200, body
    return h.simulator.read_reply(body, signed.params)


async def say_at_bot_time(h: Harness, openid: str, text: str) -> str | None:
    reply = await post_at_bot_time(h, lambda ts: wire.text(openid, text, create_time=ts))
    return reply.get("Content") if reply else None


async def redeem_now(shop: Harness, openid: str, code: str, say=None) -> str:
    """核销 without an amount, answering 确认 when the coupon's rule asks for the amount (a
    threshold, a capped discount: issue 9)."""
    say = say or shop.say
    reply = await say(openid, f"核销 {code}")
    if "还没有核销" in reply:
        reply = await say(openid, "确认")
    return reply


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def valid_unknown_code(taken: set[str] = frozenset()) -> str:
    while True:
        code = coupon_rules.new_code()
        if code not in taken:
            return code


def typo(code: str) -> str:
    """The same code with one character changed: the check character catches it."""
    other = "A" if code[3] != "A" else "B"
    return code[:3] + other + code[4:]


async def audit_actions() -> list[str]:
    return await AuditEntry.all().order_by("id").values_list("action", flat=True)


async def close_windows(openid: str) -> None:
    await Follower.filter(openid=openid).update(message_window_at=None, event_window_at=None)


def local(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(TZ)


# --- issuing ---

async def test_welcome_coupon_on_registration(shop):
    reply = await shop.register("o_member", PHONE, name="王小明")
    assert "送您一张「新会员20元券」" in reply
    member = await Member.get(follower__openid="o_member")
    [coupon] = await Coupon.all().select_related("template")
    assert (coupon.template.code, coupon.member_id, coupon.source, coupon.status) == (
        "WELCOME20", member.id, "welcome", "issued")
    assert coupon.issue_key == f"welcome-coupon:{member.id}"
    assert coupon_rules.is_valid_code(coupon.code)
    # Valid to the end of the 30th local day after today.
    last_day = shop.bot.today() + dt.timedelta(days=30)
    assert coupon.expires_at == dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(),
                                                    TZ)
    assert (await template("WELCOME20")).issued == 1
    wallet = await shop.say("o_member", "优惠券")
    assert "1. 新会员20元券（满 ¥100 减 ¥20）" in wallet
    assert f"券码 {coupon.code}，{last_day:%Y-%m-%d} 前有效" in wallet
    # Registering again (a retried last step) gives no second welcome coupon.
    await coupons.issue_reward(shop.bot, member, "WELCOME20", source="welcome",
                               key=f"welcome-coupon:{member.id}")
    assert await Coupon.all().count() == 1


async def test_stock_holds_when_100_members_grab_the_last_10(any_db, db_url, harness_factory):
    shop = await harness_factory()
    bot = shop.bot
    care = await template("CARE")  # stock 100, per member 1
    await CouponTemplate.filter(id=care.id).update(issued=90)
    grabbers = [await quick_member(bot, n) for n in range(100)]

    async def grab(m: Member):
        try:
            return await coupons.issue(bot, m, care, source="manual", key=f"grab:{m.id}")
        except CouponRefused as refused:
            return refused.reason

    outcomes = await asyncio.gather(*(grab(m) for m in grabbers))
    won = [o for o in outcomes if isinstance(o, Coupon)]
    assert len(won) == 10
    assert [o for o in outcomes if not isinstance(o, Coupon)] == ["coupon_out_of_stock.j2"] * 90
    rows = await Coupon.filter(template_id=care.id)
    assert len(rows) == 10 and len({c.member_id for c in rows}) == 10
    assert {c.id for c in rows} == {c.id for c in won}
    assert (await fresh(care)).issued == 100
    loser = next(m for m, o in zip(grabbers, outcomes, strict=True) if not isinstance(o, Coupon))
    with pytest.raises(CouponRefused, match="out_of_stock"):
        await coupons.issue(bot, loser, care, source="manual", key="one-more")


async def test_per_member_limit_holds_under_concurrency(any_db, db_url, harness_factory):
    shop = await harness_factory()
    bot = shop.bot
    m = await quick_member(bot, 1)
    welcome = await template("WELCOME20")  # per member 1, unlimited stock

    async def grab(i: int):
        try:
            return await coupons.issue(bot, m, welcome, source="manual", key=f"grab:{i}")
        except CouponRefused as refused:
            return refused.reason

    outcomes = await asyncio.gather(*(grab(i) for i in range(20)))
    assert sum(isinstance(o, Coupon) for o in outcomes) == 1
    assert [o for o in outcomes if not isinstance(o, Coupon)] == ["coupon_limit.j2"] * 19
    assert await Coupon.filter(member_id=m.id).count() == 1
    # The counter of a template without stock counts only what was really issued.
    assert (await fresh(welcome)).issued == 1

    # per_member 2: twenty grabs, two coupons.
    vip = await template("VIP88")
    outcomes = await asyncio.gather(*(
        coupons.issue(bot, m, vip, source="manual", key=f"vip:{i}") for i in range(20)),
        return_exceptions=True)
    assert sum(isinstance(o, Coupon) for o in outcomes) == 2
    assert all(isinstance(o, Coupon | CouponRefused) for o in outcomes)
    assert await Coupon.filter(member_id=m.id, template_id=vip.id).count() == 2


async def test_the_same_key_gives_the_same_coupon(shop):
    m = await quick_member(shop.bot, 1)
    cut = await template("CUT30")
    first = await coupons.issue(shop.bot, m, cut, source="manual", key="k1")
    again = await coupons.issue(shop.bot, m, cut, source="manual", key="k1")
    assert (again.id, again.code) == (first.id, first.code)
    together = await asyncio.gather(*(
        coupons.issue(shop.bot, m, cut, source="manual", key="k2") for _ in range(5)))
    assert len({c.id for c in together}) == 1
    assert await Coupon.all().count() == 2
    assert (await fresh(cut)).issued == 2  # a repeat takes no stock


async def test_inactive_or_ended_templates_issue_nothing(shop):
    m = await quick_member(shop.bot, 1)
    cut = await template("CUT30")
    await CouponTemplate.filter(id=cut.id).update(active=False)
    with pytest.raises(CouponRefused, match="inactive"):
        await coupons.issue(shop.bot, m, await fresh(cut), source="manual", key="k1")
    ended = await CouponTemplate.create(
        code="SUMMER", name="夏日券", kind="amount_off", amount_off=500,
        valid_from=dt.date(2020, 6, 1), valid_until=dt.date(2020, 8, 31))
    with pytest.raises(CouponRefused, match="template_over"):
        await coupons.issue(shop.bot, m, ended, source="manual", key="k2")
    assert await Coupon.all().count() == 0
    assert (await fresh(cut)).issued == 0 and (await fresh(ended)).issued == 0


async def test_manager_issues_a_coupon_in_chat(shop, team, member):
    reply = await shop.say("o_manager", f"发券 {PHONE} cut30")
    coupon = await Coupon.get(source="manual").select_related("template")
    assert reply == f"✅ 已给 王小明 发放「满200减30」，券码 {coupon.code}。"
    assert (coupon.member_id, coupon.template.code, coupon.status) == (member.id, "CUT30",
                                                                      "issued")
    entry = await AuditEntry.get(action="coupon_issue")
    assert (entry.staff_id, entry.member_id, entry.store_code) == (team["manager"].id, member.id,
                                                                   "S001")
    assert entry.after == {"coupon": coupon.code, "template": "CUT30"}
    await shop.bot.drain()
    notice = await Delivery.get(key=f"notice:coupon-issued:{coupon.id}")
    assert notice.status == "sent" and "您收到一张「满200减30」" in notice.payload["text"]
    # By the template's name too.
    assert "8.8折券" in await shop.say("o_manager", f"发券 {PHONE} 8.8折券")
    # Unknown template: the codes that exist.
    reply = await shop.say("o_manager", f"发券 {PHONE} NOPE")
    assert "没有「NOPE」这个券模板" in reply and "CUT30" in reply and "WELCOME20" in reply
    # A limit still holds: WELCOME20 is one per member and the welcome one is held.
    assert "每人最多领 1 张" in await shop.say("o_manager", f"发券 {PHONE} WELCOME20")
    # Clerks may not; members are not understood.
    assert await shop.say("o_clerk", f"发券 {PHONE} CUT30") == (
        "抱歉，店员没有权限执行「发券」，请联系店长或老板。")
    assert NOT_UNDERSTOOD in await shop.say("o_member", f"发券 {PHONE} CUT30")
    assert await Coupon.filter(source="manual").count() == 2


async def test_cli_issue_to_a_member_and_a_segment(db_url, stand_ins, capsys):
    config = make_config(db_url, stand_ins, points=STEADY_POINTS)
    async with open_bot(config) as bot:
        first = await quick_member(bot, 1, "甲")
        second = await quick_member(bot, 2, "乙")
    await coupons_cli.issue(config, "CUT30", "13700000001", None, "run1")
    out = capsys.readouterr().out
    async with open_bot(config):
        [coupon] = await Coupon.all()
        assert coupon.member_id == first.id and coupon.issue_key == f"run1:{first.id}"
        assert f"Issued {coupon.code} to {first.card_no}." in out
    # Re-running with the same key gives nobody a second; a segment run gives the rest one.
    await coupons_cli.issue(config, "CUT30", "13700000001", None, "run1")
    await coupons_cli.issue(config, "CUT30", None, "all", "run1")
    assert "Done: 2 issued, 0 refused." in capsys.readouterr().out
    async with open_bot(config):
        assert sorted(await Coupon.all().values_list("member_id", flat=True)) == [
            first.id, second.id]
        assert [e.actor for e in await AuditEntry.filter(action="coupon_issue")] == ["cli"] * 2
    # Limits hold from the shell too (WELCOME20: one each, whatever the key), and unknown
    # templates exit 2.
    await coupons_cli.issue(config, "WELCOME20", None, "all", "w1")
    assert "Done: 2 issued, 0 refused." in capsys.readouterr().out
    await coupons_cli.issue(config, "WELCOME20", None, "all", "w2")
    assert "Done: 0 issued, 2 refused." in capsys.readouterr().out
    with pytest.raises(CliError, match="no coupon template 'NOPE'") as refused:
        await coupons_cli.issue(config, "NOPE", None, "all", None)
    assert refused.value.status == 2


async def test_issuing_to_nobody_in_chat(shop, team):
    reply = await shop.say("o_manager", f"发券 {OTHER_PHONE} CUT30")
    assert reply == LOOKUP_NOT_FOUND.format(text=OTHER_PHONE)
    assert await Coupon.all().count() == 0


async def test_cli_template_add_list_disable(db_url, stand_ins, capsys):
    config = make_config(db_url, stand_ins)
    spring = CouponTemplateConfig(code="SPRING", name="春季券", kind="amount_off", amount=15,
                                  valid_days=10, stock=5, stores=["S002"], exclusive=False)
    await coupons_cli.template_add(config, spring)
    with pytest.raises(CliError, match="exists already") as refused:
        await coupons_cli.template_add(config, spring)
    assert refused.value.status == 1
    await coupons_cli.template_list(config)
    out = capsys.readouterr().out
    assert re.search(r"SPRING\s+春季券\s+amount_off\s+issued 0/5\s+-\s+active", out), out
    assert re.search(r"CUT30\s+满200减30\s+threshold\s+issued 0/∞\s+300 pts\s+active", out)
    async with open_bot(config) as bot:
        t = await template("SPRING")
        assert (t.amount_off, t.stock, t.stores, t.exclusive, t.valid_days) == (
            1500, 5, ["S002"], False, 10)
        m = await quick_member(bot, 1)
    await coupons_cli.template_disable(config, "CUT30")
    with pytest.raises(CliError, match="no coupon template 'NOPE'") as refused:
        await coupons_cli.template_disable(config, "NOPE")
    assert refused.value.status == 1
    # A restart syncs config.toml's templates but keeps them disabled, and their counters.
    async with open_bot(config) as bot:
        cut = await template("CUT30")
        assert not cut.active
        with pytest.raises(CouponRefused, match="inactive"):
            await coupons.issue(bot, m, cut, source="manual", key="k")
        await coupons.issue(bot, m, await template("SPRING"), source="manual", key="k2")
    async with open_bot(config):
        assert (await template("SPRING")).issued == 1
        assert not (await template("CUT30")).active


async def test_sync_templates_updates_config_templates_and_keeps_counters(shop):
    cut = await template("CUT30")
    await CouponTemplate.filter(id=cut.id).update(issued=7)
    await CouponTemplate.create(code="OWN", name="自建券", kind="gift", gift="小样",
                                valid_days=5)
    changed = [dataclasses.replace(c, name="满200减40", amount=40) if c.code == "CUT30" else c
               for c in shop.config.coupons]
    await coupons.sync_templates(shop.config.replace(coupons=changed))
    cut = await fresh(cut)
    assert (cut.name, cut.amount_off, cut.threshold, cut.issued) == ("满200减40", 4000, 20000, 7)
    assert (await template("OWN")).name == "自建券"
    assert await CouponTemplate.all().count() == len(shop.config.coupons) + 1  # and OWN


# --- exchange in chat ---

async def test_exchange_for_points_in_one_transaction(shop, member):
    await add_points(member, 900)  # 1000 with the welcome points
    menu = await shop.say("o_member", "兑换")
    assert "【积分兑换】您有 1000 积分" in menu
    assert "1. 满200减30（满 ¥200 减 ¥30）— 300 积分" in menu
    assert "2. 8.8折券（8.8 折，最多优惠 ¥100）— 500 积分" in menu
    assert "3. 免费头皮护理（赠送：头皮护理一次）— 800 积分" in menu
    assert "积分不足" not in menu
    confirm = await shop.say("o_member", "1")
    assert "确认用 300 积分兑换「满200减30」" in confirm and "兑换后剩余 700 积分" in confirm
    assert await loyalty.spendable(member.id) == 1000  # nothing yet
    done = await shop.say("o_member", "确认")
    coupon = await Coupon.get(source="exchange").select_related("template")
    assert f"「满200减30」已放入您的优惠券，券码 {coupon.code}" in done
    assert "剩余积分：700" in done
    assert (coupon.member_id, coupon.template.code) == (member.id, "CUT30")
    spend = await PointsEntry.get(kind="redeem")
    assert (spend.member_id, spend.delta, spend.balance_after) == (member.id, -300, 700)
    assert spend.reason == "兑换 满200减30"
    assert spend.idempotency_key == f"{coupon.issue_key}:points"
    assert sum(u.amount for u in await PointsUse.filter(entry_id=spend.id)) == 300
    assert (await fresh(member)).points == 700
    assert sum(await PointsEntry.filter(member_id=member.id).values_list("delta", flat=True)) \
        == 700
    assert (await template("CUT30")).issued == 1
    assert not await Conversation.exists(user="wechat:o_member")
    # The dialog is over: another 确认 buys nothing.
    assert NOT_UNDERSTOOD in await shop.say("o_member", "确认")
    assert await Coupon.filter(source="exchange").count() == 1


async def test_exchange_with_too_few_points_changes_nothing(shop, member):
    menu = await shop.say("o_member", "兑换")  # 100 welcome points
    assert "【积分兑换】您有 100 积分" in menu
    assert menu.count("（积分不足）") == 3
    reply = await shop.say("o_member", "1")
    assert reply.startswith("积分不够：「满200减30」需要 300 积分，您现在有 100 积分")
    assert "兑换后" not in reply
    # Still choosing: another number is answered the same way, 取消 leaves.
    assert "需要 800 积分" in await shop.say("o_member", "3")
    assert "已取消兑换" in await shop.say("o_member", "取消")
    assert await Coupon.filter(source="exchange").count() == 0
    assert await PointsEntry.filter(kind="redeem").count() == 0
    assert (await fresh(member)).points == 100


async def test_exchange_cancel_at_each_step_and_out_of_range_numbers(shop, member):
    await add_points(member, 900)
    await shop.say("o_member", "兑换")
    for wrong in ("9", "0", "4", "一", "-1"):
        assert await shop.say("o_member", wrong) == (
            "请回复 1 到 3 的序号选择要兑换的券，或回复「取消」。"), wrong
    assert await shop.say("o_member", "取消") == "好的，已取消兑换，积分没有变化。"
    assert not await Conversation.exists(user="wechat:o_member")
    await shop.say("o_member", "兑换")
    assert "确认用 500 积分" in await shop.say("o_member", "2")
    assert await shop.say("o_member", "嗯？") == "回复「确认」完成兑换，或回复「取消」放弃。"
    assert await shop.say("o_member", "算了") == "好的，已取消兑换，积分没有变化。"
    assert NOT_UNDERSTOOD in await shop.say("o_member", "确认")
    assert await Coupon.filter(source="exchange").count() == 0
    assert await PointsEntry.filter(kind="redeem").count() == 0
    assert (await fresh(member)).points == 1000


async def test_confirm_after_the_stock_ran_out_rolls_the_points_back(shop, member):
    await add_points(member, 900)
    await shop.say("o_member", "兑换")
    assert "确认用 800 积分兑换「免费头皮护理」" in await shop.say("o_member", "3")
    await CouponTemplate.filter(code="CARE").update(issued=100)  # the last one went meanwhile
    assert await shop.say("o_member", "确认") == "「免费头皮护理」已经发完了。"
    assert (await fresh(member)).points == 1000
    assert await PointsEntry.filter(kind="redeem").count() == 0
    assert await PointsUse.all().count() == 0
    assert await Coupon.filter(source="exchange").count() == 0
    assert (await template("CARE")).issued == 100


async def test_points_spent_between_choosing_and_confirming(shop, member):
    await add_points(member, 900)
    await shop.say("o_member", "兑换")
    await shop.say("o_member", "2")  # 500 points
    await loyalty.post_points(member.id, -700, kind="adjust", reason="测试", key="spent")
    reply = await shop.say("o_member", "确认")
    assert reply.startswith("积分不够：「8.8折券」需要 500 积分，您现在有 300 积分")
    assert (await fresh(member)).points == 300
    assert await PointsEntry.filter(kind="redeem").count() == 0
    assert await Coupon.filter(source="exchange").count() == 0
    assert (await template("VIP88")).issued == 0


async def test_exchange_refused_by_the_per_member_limit_keeps_the_points(shop, member):
    await add_points(member, 1900)  # 2000
    await give(shop.bot, member, "CARE")  # one per member, already held
    await shop.say("o_member", "兑换")
    await shop.say("o_member", "3")
    assert await shop.say("o_member", "确认") == "「免费头皮护理」每人最多领 1 张，已经领满啦。"
    assert (await fresh(member)).points == 2000
    assert await PointsEntry.filter(kind="redeem").count() == 0


async def test_an_idle_exchange_dialog_is_forgotten(shop, member):
    await add_points(member, 900)
    await shop.say("o_member", "兑换")
    # Within 10 minutes, a stray word is answered inside the dialog.
    shop.clock.advance(minutes=9)
    assert "请回复 1 到 3" in await say_at_bot_time(shop, "o_member", "积分")
    shop.clock.advance(minutes=11)
    card = await say_at_bot_time(shop, "o_member", "积分")
    assert "会员卡】" in card and f"卡号：{member.card_no}" in card and "积分：1000" in card
    assert not await Conversation.exists(user="wechat:o_member")
    # A number typed after a long pause is not a choice either.
    await say_at_bot_time(shop, "o_member", "兑换")
    await say_at_bot_time(shop, "o_member", "1")  # now confirming
    shop.clock.advance(minutes=11)
    assert NOT_UNDERSTOOD in await say_at_bot_time(shop, "o_member", "确认")
    assert await Coupon.filter(source="exchange").count() == 0
    assert (await fresh(member)).points == 1000


async def test_concurrent_confirms_cannot_overspend(any_db, db_url, harness_factory):
    shop = await harness_factory(points=STEADY_POINTS)
    await shop.register("o_member", PHONE)
    member = await Member.get(follower__openid="o_member")
    await add_points(member, 900)  # 1000 points: at most three 300-point coupons
    await shop.say("o_member", "兑换")
    await shop.say("o_member", "1")
    replies = await asyncio.gather(*(shop.say("o_member", "确认") for _ in range(20)))
    bought = await Coupon.filter(source="exchange").count()
    assert 1 <= bought <= 3
    assert sum("兑换成功" in r for r in replies) == bought
    # The others were told there are too few points (or, once the dialog was over, that the
    # word means nothing now).
    assert all("兑换成功" in r or "积分不够" in r or NOT_UNDERSTOOD in r for r in replies)
    points = (await fresh(member)).points
    assert points == 1000 - 300 * bought >= 0
    assert await PointsEntry.filter(kind="redeem").count() == bought
    assert sum(await PointsEntry.filter(member_id=member.id).values_list("delta", flat=True)) \
        == points
    assert (await template("CUT30")).issued == bought


async def test_concurrent_exchanges_spend_exactly_what_there_is(any_db, db_url,
                                                               harness_factory):
    shop = await harness_factory()
    m = await quick_member(shop.bot, 1)
    await add_points(m, 900)  # 1000
    cut = await template("CUT30")
    outcomes = await asyncio.gather(*(
        coupons.exchange(shop.bot, m, cut, key=f"x:{i}") for i in range(20)),
        return_exceptions=True)
    assert sum(isinstance(o, Coupon) for o in outcomes) == 3
    refusals = [o for o in outcomes if not isinstance(o, Coupon)]
    assert all(isinstance(o, CouponRefused) and o.reason == "exchange_not_enough.j2"
               for o in refusals), refusals
    assert (await fresh(m)).points == 100
    assert await PointsEntry.filter(kind="redeem").count() == 3
    assert await Coupon.filter(source="exchange").count() == 3
    assert (await fresh(cut)).issued == 3
    # A repeated key is the same exchange: no second spend.
    won = next(o for o in outcomes if isinstance(o, Coupon))
    again = await coupons.exchange(shop.bot, m, cut, key=won.issue_key)
    assert again.id == won.id and (await fresh(m)).points == 100


# --- the wallet ---

async def test_wallet_lists_valid_coupons_with_rule_expiry_and_code(shop, member):
    bot = shop.bot
    welcome = await Coupon.get(member_id=member.id).select_related("template")
    cut = await give(bot, member, "CUT30")
    vip = await give(bot, member, "VIP88")
    care = await give(bot, member, "CARE")
    used = await give(bot, member, "VIP88")
    await Coupon.filter(id=used.id).update(status="redeemed", redeemed_at=bot.now())
    today = bot.today()
    reply = await shop.say("o_member", "优惠券")
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    assert lines[0] == "【我的优惠券】"
    expected = [  # soonest expiry first
        (welcome, "新会员20元券（满 ¥100 减 ¥20）", 30),
        (vip, "8.8折券（8.8 折，最多优惠 ¥100）", 30),
        (cut, "满200减30（满 ¥200 减 ¥30）", 60),
        (care, "免费头皮护理（赠送：头皮护理一次）", 90),
    ]
    for n, (coupon, words, days) in enumerate(expected):
        assert lines[1 + 2 * n] == f"{n + 1}. {words}"
        last = today + dt.timedelta(days=days)
        assert lines[2 + 2 * n] == f"券码 {coupon.code}，{last:%Y-%m-%d} 前有效"
    assert used.code not in reply
    assert "回复「券 序号」获取二维码" in reply
    # The menu button shows the same.
    click = await shop.post(wire.event("o_member", "CLICK", "MY_COUPONS"))
    assert click["Content"] == reply


async def test_wallet_when_empty_and_for_strangers(shop):
    await quick_member(shop.bot, 1)
    assert "您现在没有可用的优惠券" in await shop.say("o_quick_1", "优惠券")
    assert "还没有用过或过期的优惠券" in await shop.say("o_quick_1", "历史券")
    assert await shop.say("o_quick_1", "券 1") == "您现在没有可用的优惠券。"
    for text in ("优惠券", "历史券", "券 1", "兑换"):
        assert "注册" in await shop.say("o_stranger", text), text


async def test_coupon_qr_image_and_the_pick_message(shop, member, stand_ins):
    [coupon] = await Coupon.filter(member_id=member.id)
    reply = await shop.post(wire.text("o_member", "券 1"))
    assert reply["MsgType"] == "image"
    media_id = reply["Image"]["MediaId"]
    record = stand_ins.wechat.media[media_id]
    assert record.type == "image" and record.filename == f"coupon-{coupon.code}.png"
    assert record.data.startswith(b"\x89PNG")
    for text in ("券 9", "券 0", "券", "券 一"):
        assert await shop.say("o_member", text) == (
            "请回复「券 序号」，序号是 1 到 1，例如「券 1」。回复「优惠券」查看列表。"), text
    assert len(stand_ins.wechat.media) == 1


async def test_history_lists_used_and_expired_apart_from_the_wallet(shop, team, member):
    bot = shop.bot
    welcome = await Coupon.get(member_id=member.id)
    cut = await give(bot, member, "CUT30")
    vip = await give(bot, member, "VIP88")
    assert "核销成功" in await redeem_now(shop, "o_clerk", cut.code)
    await Coupon.filter(id=vip.id).update(expires_at=bot.now() - dt.timedelta(days=2))
    await coupons.expire_and_remind(bot, bot.now())
    assert (await fresh(vip)).status == "expired"
    cut = await fresh(cut)
    history = await shop.say("o_member", "历史券")
    assert history.startswith("【历史优惠券】")
    used_at = local(cut.redeemed_at)
    assert f"· 满200减30 {cut.code}：已于 {used_at:%Y-%m-%d %H:%M} 使用（示例门店·总店）" in history
    last = (local((await fresh(vip)).expires_at) - dt.timedelta(seconds=1)).date()
    assert f"· 8.8折券 {vip.code}：已于 {last:%Y-%m-%d} 过期" in history
    assert welcome.code not in history
    wallet = await shop.say("o_member", "优惠券")
    assert welcome.code in wallet and cut.code not in wallet and vip.code not in wallet


# --- redemption by code ---

async def test_redeem_by_code_without_an_amount(shop, team, member):
    cut = await give(shop.bot, member, "CUT30")
    # A threshold coupon is not used before the clerk gives the amount or confirms (issue 9:
    # it used to be redeemed at once, whether or not the purchase reached ¥200).
    reply = await shop.say("o_clerk", f"核销 {cut.code}")
    assert "这张券要看消费金额，还没有核销" in reply and "满200减30" in reply
    assert (await fresh(cut)).status == "issued"
    reply = await shop.say("o_clerk", "确认")
    assert one_line(reply) == ("✅ 核销成功（会员 王小明） · 满200减30：满 ¥200 减 ¥30 "
                               "请按上面的规则减免（需消费满 ¥200.00）。")
    cut = await fresh(cut)
    assert (cut.status, cut.redeemed_by_id, cut.purchase_id) == ("redeemed", team["clerk"].id,
                                                                 None)
    assert cut.redeemed_store_id == (await Store.get(code="S001")).id
    assert abs(cut.redeemed_at - shop.bot.now()) < dt.timedelta(seconds=10)
    assert await Purchase.all().count() == 0
    entry = await AuditEntry.get(action="coupon_redeem")
    assert (entry.staff_id, entry.member_id, entry.store_code) == (team["clerk"].id, member.id,
                                                                   "S001")
    assert entry.after == {"coupons": [cut.code], "amount": None, "discount": 0}


async def test_a_big_amount_at_redemption_is_confirmed_before_anything_is_used(shop, team,
                                                                                member):
    # 核销 with an amount records a purchase: above [points] confirm_above it asks first, as 消费
    # does, whether the amount came in the command or as the answer to "how much?".
    limit = shop.bot.config.points.confirm_above
    cut = await give(shop.bot, member, "CUT30")
    reply = await shop.say("o_clerk", f"核销 {cut.code} {limit * 10}")
    assert "请核对金额" in reply and cut.code in reply
    assert (await fresh(cut)).status == "issued" and await Purchase.all().count() == 0
    assert "较大" in await shop.say("o_clerk", "嗯")  # asked again, still nothing used
    assert await shop.say("o_clerk", "取消") == shop.bot.templates.render("redeem_cancelled.j2")
    assert (await fresh(cut)).status == "issued" and await Purchase.all().count() == 0

    assert "还没有核销" in await shop.say("o_clerk", f"核销 {cut.code}")
    assert "请核对金额" in await shop.say("o_clerk", str(limit + 1))
    assert (await fresh(cut)).status == "issued"
    reply = await shop.say("o_clerk", "确认")
    (purchase,) = await Purchase.all()
    assert f"已记录消费 #{purchase.id}" in reply and purchase.amount == (limit + 1) * 100 - 3000
    assert (await fresh(cut)).status == "redeemed"
    # The same again: asked, and then refused as used; nothing recorded twice.
    assert "请核对金额" in await shop.say("o_clerk", f"核销 {cut.code} {limit + 1}")
    assert "不能重复使用" in await shop.say("o_clerk", "确认")
    assert await Purchase.all().count() == 1


async def test_redeem_with_an_amount_records_the_purchase_paid(shop, team, member):
    cut = await give(shop.bot, member, "CUT30")
    typed = f"{cut.code[:5].lower()}-{cut.code[5:].lower()}"  # case and dashes do not matter
    reply = await shop.say("o_clerk", f"核销 {typed} 250")
    purchase = await Purchase.get()
    assert "消费 ¥250.00，请减免 ¥30.00，实收 ¥220.00。" in reply
    assert f"已记录消费 #{purchase.id}，积分 +220。" in reply
    assert (purchase.member_id, purchase.amount, purchase.points) == (member.id, 22000, 220)
    assert (purchase.staff_id, purchase.note) == (team["clerk"].id, "用券 满200减30")
    assert purchase.store_id == (await Store.get(code="S001")).id
    cut = await fresh(cut)
    assert (cut.status, cut.purchase_id) == ("redeemed", purchase.id)
    earn = await PointsEntry.get(purchase_id=purchase.id)
    assert (earn.kind, earn.delta, earn.member_id) == ("earn", 220, member.id)
    assert (await fresh(member)).points == 100 + 220
    assert await audit_actions() == ["purchase", "coupon_redeem"]
    redeem = await AuditEntry.get(action="coupon_redeem")
    assert redeem.after == {"coupons": [cut.code], "amount": 25000, "discount": 3000}
    # A WeChat retry of a message (same MsgId) redeems and records nothing more.
    vip = await give(shop.bot, member, "VIP88")
    xml = wire.text("o_clerk", f"核销 {vip.code} 100", msg_id=987654321)
    first, retry = await shop.post(xml), await shop.post(xml)
    assert "实收 ¥88.00" in first["Content"] and retry["Content"] == first["Content"]
    assert await Purchase.all().count() == 2
    assert await AuditEntry.filter(action="coupon_redeem").count() == 2


async def test_below_the_threshold_is_refused_and_the_coupon_kept(shop, team, member):
    cut = await give(shop.bot, member, "CUT30")
    reply = await shop.say("o_clerk", f"核销 {cut.code} 199.99")
    assert reply == ("这张券（满 ¥200 减 ¥30）要消费满 ¥200.00，本次 ¥199.99 不够，未核销。")
    assert (await fresh(cut)).status == "issued"
    assert await Purchase.all().count() == 0 and await AuditEntry.filter(
        action="coupon_redeem").count() == 0
    assert "减免 ¥30.00，实收 ¥170.00" in await shop.say("o_clerk", f"核销 {cut.code} 200")


async def test_gift_coupon_tells_staff_what_to_give(shop, team, member):
    care = await give(shop.bot, member, "CARE")
    reply = await shop.say("o_clerk", f"核销 {care.code}")
    assert "· 免费头皮护理：赠送：头皮护理一次" in reply
    assert "请为顾客提供：头皮护理一次。" in reply and "请按上面的规则减免" not in reply
    assert await Purchase.all().count() == 0
    # With an amount: nothing off, the whole purchase recorded.
    other = await quick_member(shop.bot, 1)
    care2 = await give(shop.bot, other, "CARE")
    reply = await shop.say("o_clerk", f"核销 {care2.code} 88")
    assert "请减免 ¥0.00，实收 ¥88.00" in reply and "请为顾客提供：头皮护理一次。" in reply
    purchase = await Purchase.get()
    assert (purchase.amount, purchase.points, purchase.member_id) == (8800, 88, other.id)


@pytest.mark.parametrize(("amount", "off", "paid"), [
    ("250", "30.00", "220.00"),
    ("100.01", "12.01", "88.00"),  # 12% of ¥100.01 is ¥12.0012: rounded up for the customer
    ("1000", "100.00", "900.00"),  # 12% would be ¥120: capped at ¥100
])
async def test_eight_point_eight_with_its_cap(shop, team, member, amount, off, paid):
    vip = await give(shop.bot, member, "VIP88")
    reply = await shop.say("o_clerk", f"核销 {vip.code} {amount}")
    assert f"请减免 ¥{off}，实收 ¥{paid}。" in reply
    assert "8.8折券：8.8 折，最多优惠 ¥100" in reply
    purchase = await Purchase.get()
    assert purchase.amount == round(float(paid) * 100)
    assert (await fresh(vip)).purchase_id == purchase.id


async def test_a_discount_covering_everything_records_no_purchase(shop, team, member):
    await CouponTemplate.create(code="FREE20", name="立减20", kind="amount_off", amount_off=2000,
                                valid_days=7)
    coupon = await give(shop.bot, member, "FREE20")
    reply = await shop.say("o_clerk", f"核销 {coupon.code} 15")
    assert "消费 ¥15.00，请减免 ¥15.00，实收 ¥0.00。" in reply and "已记录消费" not in reply
    assert await Purchase.all().count() == 0
    assert (await fresh(coupon)).status == "redeemed"


# --- redemption races ---

USED_BY = re.compile(r"⚠ 这张券已于 (\d\d-\d\d \d\d:\d\d) 由 (\S+) 在 S001 核销，不能重复使用。")


@pytest.mark.parametrize("clerks", [2, 10])
async def test_simultaneous_redemptions_succeed_once(any_db, db_url, harness_factory, clerks):
    shop = await harness_factory(points=STEADY_POINTS)
    staff = [await add_staff(f"o_clerk{i}", "clerk", name=f"店员{i}") for i in range(clerks)]
    await shop.register("o_member", PHONE)
    member = await Member.get(follower__openid="o_member")
    cut = await give(shop.bot, member, "CUT30")
    replies = await asyncio.gather(*(shop.say(s.openid, f"核销 {cut.code} 250") for s in staff))
    winners = [r for r in replies if r.startswith("✅ 核销成功")]
    assert len(winners) == 1, replies
    cut = await fresh(cut)
    winner = await Staff.get(id=cut.redeemed_by_id)
    when = local(cut.redeemed_at).strftime("%m-%d %H:%M")
    for reply in replies:
        if reply not in winners:
            assert USED_BY.fullmatch(reply).groups() == (when, winner.name), reply
    [purchase] = await Purchase.all()
    assert (purchase.amount, purchase.staff_id, cut.purchase_id) == (22000, winner.id,
                                                                     purchase.id)
    assert await PointsEntry.filter(kind="earn", purchase_id=purchase.id).count() == 1
    assert (await fresh(member)).points == 100 + 220
    assert await AuditEntry.filter(action="coupon_redeem").count() == 1
    # Later, the same answer for anyone trying again.
    again = await shop.say(staff[0].openid, f"核销 {cut.code}")
    assert USED_BY.fullmatch(again).groups() == (when, winner.name)


async def test_the_already_used_answer_names_staff_store_and_time(shop, team, member):
    cut = await give(shop.bot, member, "CUT30")
    await redeem_now(shop, "o_clerk", cut.code)
    cut = await fresh(cut)
    reply = await shop.say("o_far", f"核销 {cut.code}")
    assert reply == (f"⚠ 这张券已于 {local(cut.redeemed_at):%m-%d %H:%M} 由 小王 在 S001 核销，"
                     "不能重复使用。")


# --- refusals ---

async def test_a_store_only_coupon_elsewhere_is_refused(shop, team, member):
    care = await give(shop.bot, member, "CARE")  # S001 only
    reply = await shop.say("o_far", f"核销 {care.code}")
    assert reply == "这张券（免费头皮护理）只能在 S001 使用，本店不能核销。"
    assert (await fresh(care)).status == "issued"
    # A coupon for every store works in S002.
    cut = await give(shop.bot, member, "CUT30")
    assert "核销成功" in await redeem_now(shop, "o_far", cut.code)
    cut = await fresh(cut)
    assert cut.redeemed_store_id == (await Store.get(code="S002")).id
    assert "核销成功" in await shop.say("o_clerk", f"核销 {care.code}")


async def test_an_expired_coupon_is_refused(shop, team, member):
    cut = await give(shop.bot, member, "CUT30")  # 60 days
    shop.clock.advance(days=62)
    reply = await say_at_bot_time(shop, "o_clerk", f"核销 {cut.code} 250")
    assert reply == "这张券（满200减30）已过期或已作废，不能使用。"
    assert (await fresh(cut)).status == "issued"
    assert await Purchase.all().count() == 0
    # Marked expired by the job: the same answer.
    await Coupon.filter(id=cut.id).update(status="expired")
    assert "已过期" in await say_at_bot_time(shop, "o_clerk", f"核销 {cut.code}")


async def test_a_coupon_valid_from_a_later_date_is_refused_until_then(shop, team, member):
    start = shop.bot.today() + dt.timedelta(days=5)
    await CouponTemplate.create(code="LATER", name="下周券", kind="amount_off", amount_off=500,
                                valid_from=start, valid_until=start + dt.timedelta(days=10))
    later = await give(shop.bot, member, "LATER")
    reply = await shop.say("o_clerk", f"核销 {later.code}")
    assert reply == f"这张券（下周券）从 {start:%Y-%m-%d} 起才能使用。"
    assert (await fresh(later)).status == "issued"


async def test_unknown_and_mistyped_codes(shop, team, member, monkeypatch):
    cut = await give(shop.bot, member, "CUT30")
    unknown = valid_unknown_code({cut.code})
    assert await shop.say("o_clerk", f"核销 {unknown}") == (
        f"没有找到券码 {unknown}，请核对后重试。")
    looked_up: list[str] = []
    real_find = redemption.find

    async def spy(code):
        looked_up.append(code)
        return await real_find(code)

    monkeypatch.setattr(redemption, "find", spy)
    wrong = typo(cut.code)
    assert await shop.say("o_clerk", f"核销 {wrong} 250") == (
        f"券码 {wrong} 不对（校验位不符），可能看错或输错了一位，请再核对一下。")
    c = cut.code
    i = next(i for i in range(len(c) - 1) if c[i] != c[i + 1] and {c[i], c[i + 1]} != {"2", "Z"})
    assert BAD_CODE in await shop.say("o_clerk", f"核销 {c[:i]}{c[i + 1]}{c[i]}{c[i + 2:]}")
    assert BAD_CODE in await shop.say("o_clerk", f"核销 {cut.code.replace(cut.code[0], 'O')}")
    assert BAD_CODE in await shop.say("o_clerk", "核销 ABC")
    assert looked_up == []  # caught by the check character, before any lookup
    assert (await fresh(cut)).status == "issued"
    # One bad code among good ones refuses the lot.
    cut2 = await give(shop.bot, member, "CUT30")
    assert BAD_CODE in await shop.say("o_clerk", f"核销 {cut2.code} {wrong} 250")
    assert (await fresh(cut2)).status == "issued"


@pytest.mark.parametrize("amount", ["200000", "0", "12.345", "¥-5"])
async def test_a_bad_amount_is_called_an_amount_not_a_code(shop, team, member, amount):
    """核销 <code> <amount> with an amount the bot cannot take (over max_purchase, zero, three
    decimals) must say so, not blame a coupon code that is fine, and must not count as a guess
    towards the slow-down."""
    cut = await give(shop.bot, member, "CUT30")
    reply = await shop.say("o_clerk", f"核销 {cut.code} {amount}")
    assert reply.startswith(f"金额「{amount}」不对"), reply
    assert (await fresh(cut)).status == "issued"
    for _ in range(10):
        await shop.say("o_clerk", f"核销 {cut.code} {amount}")
    assert "核销成功" in await redeem_now(shop, "o_clerk", cut.code)


async def test_two_exclusive_coupons_on_one_purchase_are_refused(shop, team, member):
    cut = await give(shop.bot, member, "CUT30")
    vip = await give(shop.bot, member, "VIP88")
    reply = await shop.say("o_clerk", f"核销 {cut.code} {vip.code} 300")
    assert reply == "满200减30、8.8折券 都是独享券，一笔消费最多用一张，请分开核销。"
    assert [c.status for c in (await fresh(cut), await fresh(vip))] == ["issued", "issued"]
    assert await Purchase.all().count() == 0


async def test_stacking_rule_at_most_one_exclusive_coupon_per_purchase(shop, team, member):
    """redeem(): at most one exclusive coupon on a purchase; combinable ones may join it."""
    await CouponTemplate.create(code="TEN", name="立减10", kind="amount_off", amount_off=1000,
                                valid_days=30, exclusive=False)
    cut = await give(shop.bot, member, "CUT30")  # exclusive
    vip = await give(shop.bot, member, "VIP88")  # exclusive
    care = await give(shop.bot, member, "CARE")  # not exclusive
    ten = await give(shop.bot, member, "TEN")  # not exclusive
    reply = await shop.say("o_clerk", f"核销 {vip.code} {cut.code} 250")
    assert "都是独享券，一笔消费最多用一张" in reply
    assert (await fresh(cut)).status == (await fresh(vip)).status == "issued"
    reply = await shop.say("o_clerk", f"核销 {care.code} {ten.code} 250")
    assert "请减免 ¥10.00，实收 ¥240.00" in reply and "请为顾客提供：头皮护理一次。" in reply
    purchase = await Purchase.get()
    assert (purchase.amount, purchase.note) == (24000, "用券 免费头皮护理、立减10")
    assert [(c.status, c.purchase_id) for c in (await fresh(care), await fresh(ten))] == [
        ("redeemed", purchase.id), ("redeemed", purchase.id)]
    # One exclusive coupon with a combinable one is fine: ¥30 + ¥10 off.
    ten2 = await give(shop.bot, member, "TEN", key="ten-2")
    assert "实收 ¥210.00" in await shop.say("o_clerk", f"核销 {cut.code} {ten2.code} 250")


async def test_coupons_of_two_members_together_are_refused(shop, team, member):
    other = await quick_member(shop.bot, 1)
    mine, theirs = await give(shop.bot, member, "CARE"), await give(shop.bot, other, "CARE")
    reply = await shop.say("o_clerk", f"核销 {mine.code} {theirs.code}")
    assert reply == "这几张券不属于同一位会员，请分开核销。"
    assert (await fresh(mine)).status == (await fresh(theirs)).status == "issued"


async def test_the_same_code_twice_in_one_redemption_is_one_coupon(shop, team, member):
    care = await give(shop.bot, member, "CARE")  # not exclusive: the stacking rule lets it by
    reply = await shop.say("o_clerk", f"核销 {care.code} {care.code.lower()} 100")
    assert reply.count("免费头皮护理") == 1 and reply.count("请为顾客提供") == 1, reply
    assert "请减免 ¥0.00，实收 ¥100.00" in reply
    [purchase] = await Purchase.all()
    care = await fresh(care)
    assert (care.status, care.purchase_id, purchase.amount) == ("redeemed", purchase.id, 10000)
    assert (await AuditEntry.get(action="coupon_redeem")).after["coupons"] == [care.code]
    # An exclusive one twice: also just the one coupon.
    cut = await give(shop.bot, member, "CUT30")
    assert "实收 ¥220.00" in await shop.say("o_clerk", f"核销 {cut.code} {cut.code} 250")
    assert await Purchase.all().count() == 2


# --- guessing codes slows a staff account down ---

async def test_ten_wrong_codes_in_ten_minutes_slow_that_account_down(shop, team, member):
    cut = await give(shop.bot, member, "CUT30")
    for n in range(10):
        code = valid_unknown_code({cut.code}) if n % 2 else typo(coupon_rules.new_code())
        reply = await shop.say("o_clerk", f"核销 {code}")
        assert BAD_CODE in reply or "没有找到券码" in reply, reply
    # The 11th attempt, even with a real code, waits.
    assert await shop.say("o_clerk", f"核销 {cut.code}") == (
        "输错的券码太多了，请稍后再试；如有疑问请联系店长。")
    scan = await shop.post(wire.scancode("o_clerk", "STAFF_SCAN", cut.code))
    assert SLOW_DOWN in scan["Content"]
    assert (await fresh(cut)).status == "issued"
    # Another staff account is unaffected.
    assert "核销成功" in await redeem_now(shop, "o_clerk2", cut.code)
    # After ten minutes the first account may try again.
    cut2 = await give(shop.bot, member, "CUT30")
    shop.clock.advance(seconds=601)
    assert "核销成功" in await redeem_now(shop, "o_clerk", cut2.code,
                                        say=functools.partial(say_at_bot_time, shop))


async def test_refusals_that_are_not_guesses_do_not_slow_down(shop, team, member):
    cut = await give(shop.bot, member, "CUT30")
    for _ in range(11):
        assert "不够" in await shop.say("o_clerk", f"核销 {cut.code} 100")
    assert "核销成功" in await shop.say("o_clerk", f"核销 {cut.code} 200")


# --- the scan button ---

async def test_a_clerk_scan_redeems(shop, team, member):
    cut = await give(shop.bot, member, "CUT30")
    asked = await shop.post(wire.scancode("o_clerk", "STAFF_SCAN", cut.code))
    assert "还没有核销" in asked["Content"]  # a threshold coupon: the amount, or 确认
    reply = await shop.post(wire.text("o_clerk", "确认"))
    assert reply["Content"].startswith("✅ 核销成功（会员 王小明）")
    cut = await fresh(cut)
    assert (cut.status, cut.redeemed_by_id) == ("redeemed", team["clerk"].id)
    # The QR of a coupon that is already used.
    again = await shop.post(wire.scancode("o_clerk2", "STAFF_SCAN", cut.code))
    assert USED_BY.fullmatch(again["Content"]).group(2) == "小王"


async def test_the_real_scan_event_from_the_shared_fixture(shop, member):
    code = await staff_service.create_invite("S001", "clerk", "小王", shop.bot.now())
    assert "绑定成功" in await shop.say(FIXTURE_STAFF, f"绑定 {code}")
    # A coupon used as printed (a threshold one would ask for the amount first).
    cut = await give(shop.bot, member, "CARE")
    xml = fixture_xml("event_scancode_waitmsg.xml")
    assert "CP7K2M9QX4" in xml
    reply = await shop.post(xml.replace("CP7K2M9QX4", cut.code))
    assert reply["Content"].startswith("✅ 核销成功（会员 王小明）")
    assert (reply["ToUserName"], reply["FromUserName"]) == (FIXTURE_STAFF, "gh_3f2b1c0a9e8d")
    cut = await fresh(cut)
    staff = await Staff.get(openid=FIXTURE_STAFF)
    assert (cut.status, cut.redeemed_by_id) == ("redeemed", staff.id)
    # The fixture's own ScanResult is no coupon of ours.
    reply = await shop.post(xml)
    valid = coupon_rules.is_valid_code("CP7K2M9QX4")
    assert (BAD_CODE if not valid else "没有找到券码") in reply["Content"]


async def test_a_scan_by_a_non_staff_member_is_explained(shop, member):
    cut = await give(shop.bot, member, "CUT30")
    # Typed, the staff command is just not understood.
    assert NOT_UNDERSTOOD in await shop.say("o_member", f"核销 {cut.code}")
    reply = await shop.post(wire.scancode("o_member", "STAFF_SCAN", cut.code))
    assert reply["Content"] == (
        "这个扫码按钮是给店员核销优惠券用的。想看自己的券，请回复「优惠券」。")
    assert (await fresh(cut)).status == "issued"


async def test_a_scan_of_something_else_gets_the_check_message(shop, team):
    reply = await shop.post(wire.scancode("o_clerk", "STAFF_SCAN",
                                          "https://weixin.qq.com/r/abc"))
    assert BAD_CODE in reply["Content"]
    reply = await shop.post(wire.scancode("o_clerk", "STAFF_SCAN", "6901234567892"))
    assert BAD_CODE in reply["Content"]


# --- the member hears about it ---

async def test_the_member_is_told_when_their_coupon_is_used(shop, team, member, stand_ins):
    cut = await give(shop.bot, member, "CUT30")
    await redeem_now(shop, "o_clerk", cut.code)
    await shop.bot.drain()
    cut = await fresh(cut)
    [notice] = await Delivery.filter(purpose="coupon_used")
    assert notice.key.startswith(f"notice:coupon:{cut.id}:chat:")
    assert (notice.status, notice.openid) == ("sent", "o_member")
    text = (f"【优惠券已使用】您的「满200减30」于 {local(cut.redeemed_at):%m-%d %H:%M} "
            "在示例门店·总店使用。如非本人使用，请立即联系门店。")
    assert notice.payload["text"] == text
    assert [m.content for m in stand_ins.wechat.messages if m.openid == "o_member"][-1] == text
    # Window closed: the notice is recorded, not sent.
    await close_windows("o_member")
    sent = len(stand_ins.wechat.messages)
    vip = await give(shop.bot, member, "VIP88")
    await redeem_now(shop, "o_clerk", vip.code)
    await shop.bot.drain()
    notice = await Delivery.get(key__startswith=f"notice:coupon:{vip.id}:")
    assert (notice.status, notice.error) == ("failed", NO_WAY)
    assert len(stand_ins.wechat.messages) == sent


# --- undo ---

async def test_manager_undoes_a_redemption_the_same_day(shop, team, member):
    cut = await give(shop.bot, member, "CUT30")
    await shop.say("o_clerk", f"核销 {cut.code} 250")
    purchase = await Purchase.get()
    assert (await fresh(member)).points == 320
    assert await shop.say("o_clerk", f"撤销券 {cut.code}") == (
        "抱歉，店员没有权限执行「撤销券」，请联系店长或老板。")
    assert (await fresh(cut)).status == "redeemed"
    reply = await shop.say("o_manager", f"撤销券 {cut.code.lower()}")
    assert reply == (f"✅ 已撤销券 {cut.code}（满200减30）的核销，券已退回会员，"
                     f"相关消费 #{purchase.id} 已撤销。")
    cut = await fresh(cut)
    assert (cut.status, cut.redeemed_at, cut.redeemed_by_id, cut.redeemed_store_id,
            cut.purchase_id) == ("issued", None, None, None, None)
    purchase = await fresh(purchase)
    assert purchase.voided_at is not None and purchase.void_shortfall == 0
    reverse = await PointsEntry.get(kind="reverse")
    assert (reverse.delta, reverse.member_id) == (-220, member.id)
    assert (await fresh(member)).points == 100
    assert cut.code in await shop.say("o_member", "优惠券")
    assert await audit_actions() == ["purchase", "coupon_redeem", "coupon_undo",
                                     "void_purchase"]
    undo = await AuditEntry.get(action="coupon_undo")
    assert (undo.staff_id, undo.member_id) == (team["manager"].id, member.id)
    assert undo.before == {"coupon": cut.code, "status": "redeemed"}
    # Undone twice: nothing to undo. And the coupon can be used again.
    assert await shop.say("o_manager", f"撤销券 {cut.code}") == (
        f"券 {cut.code} 没有被核销，无需撤销。")
    assert "实收 ¥220.00" in await shop.say("o_clerk", f"核销 {cut.code} 250")


async def test_undo_without_a_purchase(shop, team, member):
    care = await give(shop.bot, member, "CARE")
    await shop.say("o_clerk", f"核销 {care.code}")
    assert await shop.say("o_manager", f"撤销券 {care.code}") == (
        f"✅ 已撤销券 {care.code}（免费头皮护理）的核销，券已退回会员。")
    assert (await fresh(care)).status == "issued"
    unknown = valid_unknown_code({care.code})
    assert await shop.say("o_manager", f"撤销券 {unknown}") == (
        f"没有找到券码 {unknown}，请核对后重试。")


async def test_undo_the_next_day_is_refused(shop, team, member):
    cut = await give(shop.bot, member, "CUT30")
    await shop.say("o_clerk", f"核销 {cut.code} 250")
    redeemed_at = (await fresh(cut)).redeemed_at
    shop.clock.advance(days=1)
    reply = await say_at_bot_time(shop, "o_manager", f"撤销券 {cut.code}")
    assert reply == f"只能撤销当天的核销；券 {cut.code} 是 {local(redeemed_at):%m-%d} 核销的。"
    cut = await fresh(cut)
    assert cut.status == "redeemed" and cut.purchase_id is not None
    assert (await Purchase.get()).voided_at is None
    assert await AuditEntry.filter(action="coupon_undo").count() == 0


# --- the expiry job ---

async def test_expiry_job_expires_and_reminds_once(shop, member):
    bot = shop.bot
    now = bot.now()
    welcome = await Coupon.get(member_id=member.id)  # 30 days
    soon = await give(bot, member, "CUT30")
    lapsed = await give(bot, member, "VIP88")
    used = await give(bot, member, "VIP88", key="used")
    await Coupon.filter(id=soon.id).update(expires_at=now + dt.timedelta(days=2))
    await Coupon.filter(id=lapsed.id).update(expires_at=now - dt.timedelta(minutes=1))
    await Coupon.filter(id=used.id).update(status="redeemed", expires_at=now - dt.timedelta(
        days=1))
    outcomes = [await coupons.expire_and_remind(bot, now) for _ in range(3)]
    assert outcomes[0] == {"expired": 1, "reminded": 1}
    assert outcomes[1:] == [{"expired": 0, "reminded": 0}] * 2
    assert [(await fresh(c)).status for c in (welcome, soon, lapsed, used)] == [
        "issued", "issued", "expired", "redeemed"]
    [delivery] = await Delivery.filter(purpose="coupon_expiring")
    assert delivery.key == f"coupon-expiring:{soon.id}" and delivery.status == "sent"
    last = (local(now + dt.timedelta(days=2)) - dt.timedelta(seconds=1)).date()
    assert delivery.payload["text"] == (
        f"提醒：您的「满200减30」今天起 3 天内到期（{last:%Y-%m-%d} 为最后一天），别忘了使用。"
        "回复「优惠券」查看。")
    assert (await fresh(soon)).reminded_at is not None
    assert (await fresh(welcome)).reminded_at is None
    # Two days before the welcome coupon lapses, its turn: one more reminder, still once.
    later = welcome.expires_at - dt.timedelta(days=2)
    for _ in range(3):
        await coupons.expire_and_remind(bot, later)
    assert sorted(await Delivery.filter(purpose="coupon_expiring").values_list(
        "key", flat=True)) == sorted([f"coupon-expiring:{soon.id}",
                                      f"coupon-expiring:{welcome.id}"])
    assert (await fresh(soon)).status == "expired"


async def test_a_reminder_without_a_window_is_still_recorded_once(shop, member, stand_ins):
    bot = shop.bot
    await close_windows("o_member")
    soon = await give(bot, member, "CUT30")
    await Coupon.filter(id=soon.id).update(expires_at=bot.now() + dt.timedelta(days=1))
    for _ in range(3):
        assert (await coupons.expire_and_remind(bot, bot.now()))["reminded"] == 0
    [delivery] = await Delivery.filter(purpose="coupon_expiring")
    assert (delivery.key, delivery.status, delivery.error) == (
        f"coupon-expiring:{soon.id}", "failed", NO_WAY)


async def test_coupons_lapse_at_local_midnight(any_db, db_url, harness_factory):
    """A coupon is valid to the end of its last local day (Asia/Shanghai). The job, the wallet
    and the history must agree on the instant it lapses, on either database."""
    shop = await harness_factory()
    bot = shop.bot
    m = await quick_member(bot, 1)
    cut = await give(bot, m, "CUT30")
    expires = cut.expires_at
    assert local(expires).time() == dt.time(0, 0)
    # An hour after local midnight (17:00 UTC the day before)
    after = expires + dt.timedelta(hours=1)
    assert await coupons.wallet(m.id, after) == []
    assert [c.id for c in await coupons.history(m.id, after)] == [cut.id]
    # Three days before, plus an hour: the reminder is due.
    outcome = await coupons.expire_and_remind(bot, expires - dt.timedelta(days=3, hours=-1))
    assert outcome["expired"] == 0 and (await fresh(cut)).reminded_at is not None
    outcome = await coupons.expire_and_remind(bot, after)
    assert outcome["expired"] == 1 and (await fresh(cut)).status == "expired"
