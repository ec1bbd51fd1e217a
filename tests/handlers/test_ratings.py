"""Rating a visit (issue 12), over the signed webhook as WeChat sends it: a purchase or an
arrival asks once, by customer-service message only and only inside the member's window; the
question takes a bare "5" when the member is in no other dialog; 评价 rates the last visit; a
visit is rated once whatever the retries or the concurrency; a low rating reaches the store's
managers and the owners, with a support thread they answer the member on."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets

import pytest

from bot.chat.states import Rating as RatingDialog
from bot.config import RatingsConfig, RedisConfig
from bot.models import Booking, Delivery, Member, Purchase, Rating, SupportThread
from bot.notifications import ratings as told
from bot.rules.ratings import parse_stars
from bot.sandbox import wechat_client as wire
from bot.services import ratings
from tests.support import REDIS_UP, REPO_CONFIG, STEADY_POINTS, Harness, add_staff, at_local

PHONE, MASKED = "13800138000", "138****8000"
ASKED = "满意吗"  # the question after a visit (rating_ask.j2)


@pytest.fixture
async def shop(harness_factory) -> Harness:
    """The repository's [ratings]: the question after a visit on (the harness turns it off)."""
    assert REPO_CONFIG.ratings.ask
    return await harness_factory(points=STEADY_POINTS, ratings=REPO_CONFIG.ratings)


@pytest.fixture
async def team(shop) -> dict:
    team = {
        "clerk": await add_staff("o_clerk", "clerk", name="小王"),
        "manager": await add_staff("o_manager", "manager", name="李店长"),
        "owner": await add_staff("o_owner", "owner", store="S002", name="老板"),
        "far_manager": await add_staff("o_far", "manager", store="S002", name="赵店长"),
    }
    for openid in ("o_manager", "o_owner", "o_far"):
        await shop.say(openid, "员工帮助")  # staff too are reached only within their window
    return team


@pytest.fixture
async def member(shop) -> Member:
    assert "注册成功" in await shop.register("o_member", PHONE, name="王小明")
    return await Member.get(follower__openid="o_member")


async def to(h: Harness, openid: str) -> list[str]:
    await h.settle()
    return [m.content for m in h.stand_ins.wechat.messages if m.openid == openid]


async def asks(h: Harness) -> list[str]:
    return [text for text in await to(h, "o_member") if ASKED in text]


async def state(h: Harness, openid: str = "o_member") -> str | None:
    return (await h.bot.dialogs.load(f"wechat:{openid}")).state


async def buy(h: Harness, amount: int = 100) -> Purchase:
    """消费 at the till, and the question after it sent (in the background)."""
    assert "消费" in await h.say("o_clerk", f"消费 {PHONE} {amount}")
    await h.settle()
    return await Purchase.all().order_by("-id").first()


def test_the_question_starts_the_declared_dialog():
    assert str(RatingDialog.stars) == told.STARS_STATE


# --- the question after a visit ---

async def test_a_purchase_asks_once_and_a_bare_number_answers(shop, team, member):
    message = wire.text("o_clerk", f"消费 {PHONE} 100")
    await shop.post(message)
    await shop.post(message)  # WeChat's retry of the same message
    purchase = await Purchase.get()
    [ask] = await asks(shop)
    assert "示例门店·总店的消费（100.00元）" in ask and "回复数字 1–5" in ask
    row = await Delivery.get(key=f"rating-ask:purchase:{purchase.id}")
    assert (row.channel, row.status, row.purpose) == ("wechat_cs", "sent", "rating_ask")
    assert await state(shop) == "rate.stars"
    assert "还有什么想对我们说的" in await shop.say("o_member", "5")
    assert "谢谢您的评价" in await shop.say("o_member", "跳过")
    rating = await Rating.get()
    assert (rating.visit, rating.stars, rating.comment, rating.member_id, rating.store_id,
            rating.staff_id) == (f"purchase:{purchase.id}", 5, "", member.id,
                                 purchase.store_id, team["clerk"].id)
    assert await state(shop) is None
    # Another purchase is another visit: asked again.
    await buy(shop)
    assert len(await asks(shop)) == 2


async def test_no_question_outside_the_window_and_never_by_template_or_sms(shop, team, member):
    shop.clock.advance(hours=49)  # the member's 48 h window has closed
    sms_before = len(shop.stand_ins.sms.messages)
    purchase = await buy(shop)
    assert not await asks(shop)
    row = await Delivery.get(key=f"rating-ask:purchase:{purchase.id}")
    assert (row.channel, row.status, row.error) == ("wechat_cs", "failed", "no_quota")
    assert await state(shop) is None  # no dialog left waiting for an answer never asked
    assert not any(ASKED in str(t.data) for t in shop.stand_ins.wechat.templates)
    assert not any(ASKED in str(m["params"]) for m in shop.stand_ins.sms.messages[sms_before:])
    assert not await Delivery.filter(purpose="rating_ask").exclude(channel="wechat_cs").exists()


async def test_a_member_in_another_dialog_is_asked_to_send_评价(shop, team, member):
    await shop.say("o_member", "预约")
    assert await state(shop) == "book.service"
    await buy(shop)
    [ask] = await asks(shop)
    assert "回复「评价」" in ask and "回复数字" not in ask
    assert await state(shop) == "book.service"  # never interrupted
    await shop.say("o_member", "取消")
    assert await state(shop) is None
    assert "请为" in await shop.say("o_member", "评价")
    assert "收到" in await shop.say("o_member", "4")
    assert "谢谢" in await shop.say("o_member", "洗得很干净")
    assert (await Rating.get()).comment == "洗得很干净"


async def test_a_booking_marked_arrived_asks_too(shop, team):
    day = dt.date(2031, 3, 12)
    at_local(shop.clock, day - dt.timedelta(days=1), 18)
    assert "注册成功" in await shop.register("o_member", PHONE, name="王小明")
    assert "已代约" in await shop.say("o_clerk", f"代约 {PHONE} 洗剪吹 2031-03-12 10:00 小李")
    booking = await Booking.get()
    at_local(shop.clock, day, 10, 5)
    message = wire.text("o_clerk", f"到店 {booking.id}")
    await shop.post(message)
    await shop.post(message)
    assert "已经登记过到店" in await shop.say("o_clerk", f"到店 {booking.id}")
    [ask] = await asks(shop)
    assert "3月12日在示例门店·总店的洗剪吹" in ask
    await shop.say("o_member", "五星")
    await shop.say("o_member", "没有")
    rating = await Rating.get()
    assert (rating.visit, rating.stars) == (f"booking:{booking.id}", 5)


# --- 评价 ---

async def test_评价_rates_the_last_visit_and_only_once(harness_factory):
    shop = await harness_factory(points=STEADY_POINTS, ratings=RatingsConfig(ask=False))
    await add_staff("o_clerk", "clerk")
    assert "注册成功" in await shop.register("o_member", PHONE)
    assert "没有需要评价" in await shop.say("o_member", "评价")
    await buy(shop, 50)
    last = await buy(shop, 80)
    assert not await asks(shop)  # [ratings] ask = false
    assert "80.00元" in await shop.say("o_member", "评价")
    assert "请为" in await shop.say("o_member", "很好")  # not a number: asked again
    await shop.say("o_member", "5星")
    await shop.say("o_member", "跳过")
    assert (await Rating.get()).visit == f"purchase:{last.id}"
    assert "50.00元" in await shop.say("o_member", "评价")  # the earlier one, not rated yet
    assert "好的，这次先不评价" in await shop.say("o_member", "取消")


async def test_a_wechat_retry_of_the_answer_rates_once(shop, team, member):
    await buy(shop)
    await shop.say("o_member", "4")
    message = wire.text("o_member", "环境不错")
    first = await shop.post(message)
    again = await shop.post(message)
    assert "谢谢您的评价" in first["Content"] and again == first
    assert await Rating.all().count() == 1


async def test_the_same_visit_rated_twice_at_once_is_rated_once(any_db, shop, team, member):
    purchase = await buy(shop)
    visit = await ratings.find_visit(shop.bot, f"purchase:{purchase.id}")
    first, second = await asyncio.gather(
        ratings.rate(shop.bot, member, visit, 5, "", key="t:a"),
        ratings.rate(shop.bot, member, visit, 2, "慢", key="t:b"))
    assert sorted([first.created, second.created]) == [False, True]
    assert first.rating.id == second.rating.id
    assert await Rating.all().count() == 1
    again = await ratings.rate(shop.bot, member, visit, 3, "", key="t:a")
    assert again.repeat == (again.rating.key == "t:a") and not again.created
    await shop.settle()


async def test_a_rating_given_elsewhere_meanwhile_is_not_given_twice(shop, team, member):
    purchase = await buy(shop)
    await shop.say("o_member", "3")
    visit = await ratings.find_visit(shop.bot, f"purchase:{purchase.id}")
    await ratings.rate(shop.bot, member, visit, 4, "", key="other")
    assert "已经评价过了" in await shop.say("o_member", "跳过")
    assert (await Rating.get()).stars == 4


# --- a low rating reaches the managers ---

async def test_a_one_star_rating_alerts_the_stores_managers_and_the_owners(shop, team, member):
    await buy(shop)
    await shop.say("o_member", "1")
    reply = await shop.say("o_member", "等了四十分钟")
    assert "店长已经收到您的反馈" in reply
    await shop.settle()
    rating = await Rating.get()
    thread = await SupportThread.get(key=f"rating:{rating.id}")
    assert rating.thread_id == thread.id
    assert (thread.member_id, thread.reason) == (member.id, "low_rating")
    for openid in ("o_manager", "o_owner"):
        [alert] = [m for m in await to(shop, openid) if "差评提醒" in m]
        assert MASKED in alert and "王小明" in alert and "等了四十分钟" in alert
        assert "示例门店·总店的消费（100.00元）" in alert
        assert f"回复 {thread.id} <文字> 可直接回复会员" in alert
        assert PHONE not in alert
    for openid in ("o_far", "o_clerk"):  # another store's manager; a clerk
        assert not [m for m in await to(shop, openid) if "差评提醒" in m]
    # What the member says next reaches the managers the alert reached, not the bot.
    await shop.say("o_member", "我要退款")
    await shop.settle()
    for openid in ("o_manager", "o_owner"):
        relayed = [m for m in await to(shop, openid) if f"【会话 {thread.id}】" in m]
        assert any("我要退款" in m for m in relayed)
    await shop.say("o_member", "结束")
    assert "卡号" in await shop.say("o_member", "积分")  # the bot again


async def test_a_five_star_rating_alerts_nobody(shop, team, member):
    await buy(shop)
    await shop.say("o_member", "5")
    await shop.say("o_member", "非常好")
    await shop.settle()
    assert not await Delivery.filter(purpose="rating_alert").exists()
    assert not await SupportThread.exists()
    assert (await Rating.get()).thread_id is None


# --- the question never interrupts a dialog (both dialog stores) ---

@pytest.fixture(params=["database", "redis"])
async def store_shop(request, harness_factory) -> Harness:
    overrides = {}
    if request.param == "redis":
        if not REDIS_UP:
            pytest.skip("Redis is not running on 127.0.0.1:6379 (CI runs these)")
        overrides["redis"] = RedisConfig(url="redis://127.0.0.1:6379/0",
                                         prefix=f"memberbot-ratings-{secrets.token_hex(4)}")
    return await harness_factory(**overrides)


async def test_a_dialog_begins_from_outside_only_when_none_is_in_progress(store_shop):
    dialogs = store_shop.bot.dialogs
    started = await dialogs.begin_unless_busy("wechat:o_a", told.STARS_STATE, visit="v:1")
    assert started is not None and (await dialogs.load("wechat:o_a")).data["visit"] == "v:1"
    assert await dialogs.begin_unless_busy("wechat:o_a", told.STARS_STATE, visit="v:2") is None
    await dialogs.withdraw(started)
    assert (await dialogs.load("wechat:o_a")).state is None
    # A dialog in progress stays; one left idle past its limit is over and is replaced.
    busy = await dialogs.load("wechat:o_b")
    busy.set("exchange.choose", options=[1])
    await dialogs.save(busy)
    assert await dialogs.begin_unless_busy("wechat:o_b", told.STARS_STATE, visit="v:3") is None
    store_shop.clock.advance(minutes=11)
    started = await dialogs.begin_unless_busy("wechat:o_b", told.STARS_STATE, visit="v:3")
    assert started is not None
    assert (await dialogs.load("wechat:o_b")).state == "rate.stars"
    # A withdrawal after the user moved the dialog on leaves it.
    moved = await dialogs.load("wechat:o_b")
    moved.set("rate.comment", stars=4)
    await dialogs.save(moved)
    await dialogs.withdraw(started)
    assert (await dialogs.load("wechat:o_b")).state == "rate.comment"


# --- what counts as stars ---

@pytest.mark.parametrize(("text", "stars"), [
    ("5", 5), ("１", 1), (" 3 ", 3), ("4星", 4), ("2分", 2), ("五星", 5), ("两颗星", 2),
    ("★★★", 3), ("0", None), ("6", None), ("10", None), ("很好", None), ("", None),
    ("★★★★★★", None), ("5星好评", None)])
def test_stars_are_read_from_what_members_type(text, stars):
    assert parse_stars(text) == stars
