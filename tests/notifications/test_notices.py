"""The notices a member is owed for what staff did to their account, end to end: a staff command
signed and encrypted as WeChat sends it, the member's notice read back from the WeChat stand-in
(a customer-service message, or the template message when no window is open), once however the
command is repeated. Also the referrer's reward and `memberbot coupon issue`."""

from __future__ import annotations

import pytest

from bot.cli import coupons as coupons_cli
from bot.config import CouponRewardsConfig
from bot.models import Coupon, CouponTemplate, Delivery, Follower, Member
from bot.notifications import notices
from bot.runtime import open_bot
from bot.sandbox import wechat_client as wire
from bot.sandbox.runner import SANDBOX_NOTICES
from bot.services import coupons, members
from tests.support import STEADY_POINTS, Harness, add_staff, make_config

PHONE = "13800138000"
FRIEND_PHONE = "13900139000"
STORED_VALUE_NOTICE = {"stored_value": {"template_id": "TPL_SV", "fields": {
    "change": "thing1", "amount": "amount2", "balance": "amount3", "time": "time4"}}}
PURCHASE_NOTICE = {"purchase": {"template_id": "TPL_BUY", "fields": {
    "amount": "amount1", "points": "number2", "balance": "number3", "time": "time4"}}}


@pytest.fixture
async def team(shop) -> None:
    await add_staff("o_clerk", "clerk", name="小王")
    await add_staff("o_manager", "manager", name="李店长")


@pytest.fixture
async def member(shop) -> Member:
    assert "注册成功" in await shop.register("o_member", PHONE, name="王小明")
    return await Member.get(follower__openid="o_member")


async def told(shop: Harness, openid: str, staff: str, text: str) -> list[str]:
    """What `openid` was sent (customer-service messages) because `staff` said `text`."""
    await shop.settle()  # the notices of what was said before are not this one's
    before = len(shop.stand_ins.wechat.messages)
    await shop.say(staff, text)
    await shop.settle()
    return [m.content for m in shop.stand_ins.wechat.messages[before:] if m.openid == openid]


async def close_windows(openid: str) -> None:
    """As if the member last wrote to us days ago: no customer-service window is open."""
    await Follower.filter(openid=openid).update(message_window_at=None, event_window_at=None)


async def give(shop: Harness, member: Member, code: str) -> Coupon:
    template = await CouponTemplate.get(code=code)
    coupon = await coupons.issue(shop.bot, member, template, source="manual",
                                 key=f"test:{code}:{member.id}")
    return await Coupon.get(id=coupon.id).select_related("template")


# --- 调积分, 设等级 ---

async def test_a_managers_points_adjustment_is_told_once(shop, team, member):
    xml = wire.text("o_manager", f"调积分 {PHONE} +50 生日补偿", msg_id=7_100_000_001)
    before = len(shop.stand_ins.wechat.messages)
    await shop.post(xml)
    await shop.post(xml)  # WeChat's retry of the same message
    await shop.settle()
    notices = [m.content for m in shop.stand_ins.wechat.messages[before:]
               if m.openid == "o_member"]
    assert notices == ["【积分变动】门店为您调整积分 +50（生日补偿），当前积分 150。"
                       "如有疑问，请联系门店。"]
    [row] = await Delivery.filter(purpose="points_adjust")
    assert row.payload["values"] == {"points": "+50", "reason": "生日补偿", "balance": "150",
                                     "time": row.payload["values"]["time"]}
    taken = await told(shop, "o_member", "o_manager", f"调积分 {PHONE} -30 误加")
    assert taken == ["【积分变动】门店为您调整积分 -30（误加），当前积分 120。"
                     "如有疑问，请联系门店。"]


async def test_a_tier_set_by_hand_is_told_and_setting_it_again_is_not(shop, team, member):
    notices = await told(shop, "o_member", "o_manager", f"设等级 {PHONE} 金卡会员")
    assert notices == ["【会员等级】门店已将您的会员等级由普通会员调整为金卡会员，"
                       "定期评估不会低于此等级。回复「积分」查看会员卡。"]
    assert await told(shop, "o_member", "o_manager", f"设等级 {PHONE} 金卡会员") == []
    # Back to the lowest tier: no floor any more, and the text does not promise one.
    [back] = await told(shop, "o_member", "o_manager", f"设等级 {PHONE} 普通会员")
    assert "由金卡会员调整为普通会员。" in back and "不会低于" not in back


# --- 开卡 ---

async def test_a_punch_card_sale_is_one_notice_with_its_purchase(shop, team, member):
    notices = await told(shop, "o_member", "o_clerk", f"开卡 {PHONE} WASH10")
    [notice] = notices  # the card and its purchase together, not a second 消费通知
    assert notice.startswith("【次卡开通】您已开通「洗剪吹10次卡」，共 10 次，")
    assert "售价 ¥380.00，获得 380 积分，当前积分：480。" in notice
    assert "消费通知" not in notice
    assert await Delivery.filter(purpose="purchase").count() == 0
    [row] = await Delivery.filter(purpose="punch_sold")
    assert (row.status, row.channel) == ("sent", "wechat_cs")


async def test_a_punch_card_paid_from_stored_value_says_so(shop, team, member):
    await shop.say("o_manager", f"充值 {PHONE} 500")
    [notice] = await told(shop, "o_member", "o_clerk", f"开卡 {PHONE} CARE5 储值")
    assert "售价 ¥450.00，已从储值支付，储值余额 ¥" in notice


# --- 核销 with an amount, 撤销券 ---

async def test_a_redemption_with_an_amount_tells_the_coupon_and_the_purchase_once(
        shop, team, member):
    cut = await give(shop, member, "CUT30")
    [notice] = await told(shop, "o_member", "o_clerk", f"核销 {cut.code} 250")
    assert notice.startswith("【优惠券已使用】您的「满200减30」于 ")
    assert "本次消费 ¥250.00，优惠 ¥30.00，实付 ¥220.00，获得 220 积分。" in notice
    assert "当前积分：320" in notice and notice.endswith("如非本人使用，请立即联系门店。")
    [row] = await Delivery.filter(key__startswith=f"notice:coupon:{cut.id}:")
    assert row.purpose == "purchase"
    assert await Delivery.all().filter(purpose__in=["purchase", "coupon_used"]).count() == 1


async def test_a_redemption_purchase_without_a_window_uses_the_purchase_template(
        harness_factory):
    shop = await harness_factory(points=STEADY_POINTS, notices=PURCHASE_NOTICE)
    await add_staff("o_clerk", "clerk")
    await shop.register("o_member", PHONE)
    member = await Member.get(follower__openid="o_member")
    cut = await give(shop, member, "CUT30")
    await close_windows("o_member")
    await shop.say("o_clerk", f"核销 {cut.code} 250")
    await shop.settle()
    [template] = shop.stand_ins.wechat.templates
    values = {key: value["value"] for key, value in template.data.items()}
    assert (template.template_id, values["amount1"], values["number2"], values["number3"]) == (
        "TPL_BUY", "¥220.00", "220", "320")
    assert all(values.values())


async def test_an_undone_redemption_tells_the_member_their_coupon_is_back(shop, team, member):
    await add_staff("o_boss", "manager", name="店长二")
    cut = await give(shop, member, "CUT30")
    await shop.say("o_clerk", f"核销 {cut.code} 250")
    [notice] = await told(shop, "o_member", "o_boss", f"撤销券 {cut.code}")
    assert notice.startswith("【优惠券退回】您的「满200减30」的核销已撤销，券已退回您的账户，")
    assert "相关消费 ¥220.00 已撤销，扣回 220 积分，当前积分：100。" in notice
    # A second 撤销券 is refused (nothing to undo): no second notice.
    assert await told(shop, "o_member", "o_boss", f"撤销券 {cut.code}") == []
    assert await Delivery.filter(purpose="coupon_undone").count() == 1


# --- stored value ---

async def test_stored_value_template_fields_say_what_happened(harness_factory):
    shop = await harness_factory(points=STEADY_POINTS, notices=STORED_VALUE_NOTICE)
    await add_staff("o_manager", "manager")
    await shop.register("o_member", PHONE)
    await close_windows("o_member")
    for text in (f"充值 {PHONE} 100", f"储值 {PHONE} 30", f"退款 {PHONE} 30"):
        await shop.say("o_manager", text)
    await shop.settle()
    sent = [{key: value["value"] for key, value in t.data.items()}
            for t in shop.stand_ins.wechat.templates]
    assert [(v["thing1"], v["amount2"], v["amount3"]) for v in sent] == [
        ("充值", "+¥100.00", "¥100.00"), ("储值消费", "-¥30.00", "¥70.00"),
        ("退款", "+¥30.00", "¥100.00")]
    assert all(value for v in sent for value in v.values())  # no field left empty


# --- the referrer ---

async def test_the_referrer_hears_about_their_reward_once(harness_factory):
    shop = await harness_factory(points=STEADY_POINTS, coupon_rewards=CouponRewardsConfig(
        welcome="WELCOME20", referral="CUT30"))
    await add_staff("o_clerk", "clerk")
    await shop.register("o_ref_a", PHONE, name="推荐人")
    referrer = await Member.get(follower__openid="o_ref_a")
    await shop.register("o_ref_b", FRIEND_PHONE, name="小红", scene=f"ref:{referrer.card_no}")
    notices = await told(shop, "o_ref_a", "o_clerk", f"消费 {FRIEND_PHONE} 100")
    assert notices == ["🎉【推荐奖励】您推荐的好友小红完成了首次消费，"
                       "您获得 200 积分和一张「满200减30」。当前积分：300\n回复「优惠券」查看。"]
    # The friend's second purchase earns nobody a reward: nothing more for the referrer.
    assert await told(shop, "o_ref_a", "o_clerk", f"消费 {FRIEND_PHONE} 50") == []


# --- memberbot coupon issue ---

async def test_a_bulk_issue_tells_each_member_once(db_url, stand_ins, capsys):
    config = make_config(db_url, stand_ins, points=STEADY_POINTS)
    async with open_bot(config) as bot:
        for n in range(3):
            await members.register(bot, f"o_bulk_{n}", f"137{n:08d}", f"会员{n}", None,
                                   bot.now())
        # They wrote to us lately: customer-service windows are open.
        await Follower.all().update(message_window_at=bot.now())
    await coupons_cli.issue(config, "CUT30", None, "all", "spring")
    await coupons_cli.issue(config, "CUT30", None, "all", "spring")  # resumed: nobody twice
    assert "Done: 3 issued, 0 refused." in capsys.readouterr().out
    sent = sorted((m.openid, m.content) for m in stand_ins.wechat.messages)
    assert [openid for openid, _ in sent] == ["o_bulk_0", "o_bulk_1", "o_bulk_2"]
    assert all(content.startswith("🎁 您收到一张「满200减30」") for _, content in sent)
    async with open_bot(config):
        assert await Delivery.filter(purpose="coupon_issued", status="sent").count() == 3


# --- every purpose fills its fields ---

async def test_each_notice_fills_every_field_its_purpose_declares(shop, team, member):
    """notices.FIELDS is what the config documents and the sandbox maps: a field it names but a
    notice leaves out would make the outbox pass the template over (never sent empty)."""
    cut = await give(shop, member, "CUT30")
    for staff, text in (
            ("o_clerk", f"消费 {PHONE} 100"), ("o_manager", f"调积分 {PHONE} +5 补"),
            ("o_manager", f"设等级 {PHONE} 银卡会员"), ("o_manager", f"充值 {PHONE} 600"),
            ("o_clerk", f"开卡 {PHONE} WASH10"), ("o_clerk", f"核销 {cut.code} 250"),
            ("o_manager", f"撤销券 {cut.code}"), ("o_manager", f"发券 {PHONE} VIP88")):
        await shop.say(staff, text)
    await shop.settle()
    rows = await Delivery.filter(member_id=member.id, purpose__in=list(notices.FIELDS))
    assert {row.purpose for row in rows} >= {
        "purchase", "points_adjust", "tier_change", "stored_value", "punch_sold",
        "coupon_undone", "coupon_issued"}
    for row in rows:
        values = row.payload["values"]
        assert all(values.get(name) for name in notices.FIELDS[row.purpose]), (row.purpose,
                                                                             values)


def test_the_sandbox_maps_each_purpose_to_its_own_fields():
    stored_value = SANDBOX_NOTICES["stored_value"]
    assert "points" not in stored_value["fields"]  # `points：` once came out empty
    assert set(stored_value["fields"]) == set(notices.FIELDS["stored_value"])
    assert all(n["sms_template"] for n in SANDBOX_NOTICES.values())
