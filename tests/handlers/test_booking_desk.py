"""The booking desk in staff chat (bot/handlers/booking_desk.py), over the signed webhook as
WeChat sends it: the day's list, arrivals (a punch card covers the service once), no-shows up to
the limit, and booking, moving and cancelling for a member past the member deadlines. The demo
shop of config.toml: 小李 and 王老师 cut hair (洗剪吹, covered by 洗剪吹10次卡) at S001 on
Wednesdays 10:00-20:00."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.models import (
    AuditEntry,
    Booking,
    BookingStatus,
    Delivery,
    Member,
    PunchCard,
    Service,
    Staff,
)
from bot.sandbox import wechat_client as wire
from bot.services import bookings, wallet
from bot.services.bookings import BookingRefused
from bot.services.staff import Actor
from tests.support import SHANGHAI, Harness, add_staff, at_local

PHONE, MASKED = "13800138000", "138****8000"
OTHER_PHONE, OTHER_MASKED = "13900139000", "139****9000"
DAY = dt.date(2031, 3, 12)  # a Wednesday


@pytest.fixture
async def team(shop):
    return {
        "clerk": await add_staff("o_clerk", "clerk", name="小王"),
        "far_clerk": await add_staff("o_far", "clerk", store="S002", name="小赵"),
        "owner": await add_staff("o_owner", "owner", store="S002", name="老板"),
    }


@pytest.fixture
async def member(shop) -> Member:
    assert "注册成功" in await shop.register("o_member", PHONE, name="王小明")
    return await Member.get(follower__openid="o_member")


def utc(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), SHANGHAI).astimezone(dt.UTC)


async def book_for(h: Harness, when: str, *, who: str = PHONE, service: str = "洗剪吹",
                   by: str = "o_clerk") -> Booking:
    reply = await h.say(by, f"代约 {who} {service} {when}")
    assert "已代约" in reply, reply
    return await Booking.all().order_by("-id").first()


async def test_the_day_list_shows_each_resource_with_masked_phones(shop, team, member):
    assert "注册成功" in await shop.register("o_other", OTHER_PHONE, name="李四")
    at_local(shop.clock, DAY - dt.timedelta(days=1), 18)
    first = await book_for(shop, "2031-03-12 10:00 小李")
    second = await book_for(shop, "2031-03-12 14:00 王老师", who=OTHER_PHONE)
    third = await book_for(shop, "2031-03-12 16:00 小李", who=OTHER_PHONE)
    at_local(shop.clock, DAY, 10, 5)
    await shop.say("o_clerk", f"到店 {first.id}")
    reply = await shop.say("o_clerk", "今日预约")
    assert "【今日预约】2031-03-12（周三）示例门店·总店" in reply
    assert "共 3 个预约" in reply
    li, wang = reply.index("▍小李"), reply.index("▍王老师")
    lines = reply.splitlines()
    assert f"10:00 #{first.id} 洗剪吹 王小明 {MASKED} 【到店】" in lines
    assert f"16:00 #{third.id} 洗剪吹 李四 {OTHER_MASKED}" in lines
    assert f"14:00 #{second.id} 洗剪吹 李四 {OTHER_MASKED}" in lines
    assert li < reply.index(f"#{third.id}") < wang < reply.index(f"#{second.id}")
    assert PHONE not in reply and OTHER_PHONE not in reply
    # Another day; a day with nothing on it says so.
    assert f"#{first.id}" in await shop.say("o_clerk", "今日预约 2031-03-12")
    tomorrow = await shop.say("o_clerk", "今日预约 明天")
    assert "【预约表】2031-03-13（周四）" in tomorrow and "这一天没有预约" in tomorrow
    assert "【预约表】2031-03-11（周二）" in await shop.say("o_clerk", "今日预约 昨天")
    assert "没看懂日期" in await shop.say("o_clerk", "今日预约 哪天")
    # A clerk of S002 sees S002's (none); the owner sees every store's, each resource's store.
    assert "这一天没有预约" in await shop.say("o_far", "今日预约")
    owner = await shop.say("o_owner", "今日预约")
    assert "全部门店" in owner and "▍小李（示例门店·总店）" in owner


async def test_arrival_with_a_punch_card_uses_one_visit_once(shop, team, member):
    at_local(shop.clock, DAY - dt.timedelta(days=1), 18)
    await shop.say("o_clerk", f"开卡 {PHONE} WASH10")
    [card] = await PunchCard.filter(member_id=member.id)
    assert card.remaining == 10
    booking = await book_for(shop, "2031-03-12 15:00")
    at_local(shop.clock, DAY, 14, 50)
    message = wire.text("o_clerk", f"到店 {booking.id}")
    first = (await shop.post(message))["Content"]
    assert f"已登记到店：#{booking.id}" in first and MASKED in first
    assert "已用洗剪吹10次卡 1 次，剩余 9 次" in first
    # WeChat retries the same message: the same answer, nothing done again.
    retry = await shop.post(message)
    assert retry is None or retry["Content"] == first
    # A second 到店 for the same booking: recorded already, no second visit.
    again = await shop.say("o_clerk", f"到店 {booking.id}")
    assert "已经登记过到店" in again and "收银台" not in again
    assert "已用洗剪吹10次卡 1 次（此前已扣，未重复扣次），剩余 9 次" in again
    await card.refresh_from_db()
    assert card.remaining == 9
    assert (await Booking.get(id=booking.id)).status == BookingStatus.ARRIVED
    assert await AuditEntry.filter(action="booking_arrived", member_id=member.id).count() == 1
    assert await AuditEntry.filter(action="punch_use", member_id=member.id).count() == 1
    await shop.settle()
    assert await Delivery.exists(key=f"notice:punch:booking:{booking.id}:arrived")


async def test_a_copy_that_died_after_taking_the_visit_is_finished_without_another(
        shop, team, member):
    """The visit is taken before the booking is marked: a copy of 到店 that stopped between the
    two (a worker killed) leaves the visit taken under the booking's key; the next 到店 marks
    the arrival and finds that visit instead of taking a second."""
    at_local(shop.clock, DAY - dt.timedelta(days=1), 18)
    await shop.say("o_clerk", f"开卡 {PHONE} WASH10")
    booking = await book_for(shop, "2031-03-12 15:00")
    at_local(shop.clock, DAY, 15)
    product = next(p for p in shop.config.punch_cards if p.code == "WASH10")
    clerk = await Staff.get(openid="o_clerk").select_related("store")
    await wallet.use_punch_card(shop.bot, member, product, actor=Actor.of(clerk, clerk.store),
                                key=f"booking:{booking.id}:arrived")
    reply = await shop.say("o_clerk", f"到店 {booking.id}")
    assert f"已登记到店：#{booking.id}" in reply
    assert "（此前已扣，未重复扣次），剩余 9 次" in reply
    assert (await PunchCard.get(member_id=member.id)).remaining == 9


async def test_arrival_without_a_card_is_paid_at_the_till(shop, team, member):
    at_local(shop.clock, DAY - dt.timedelta(days=1), 18)
    cut = await book_for(shop, "2031-03-12 10:00")
    perm = await book_for(shop, "2031-03-12 15:00", service="烫发")
    at_local(shop.clock, DAY, 9, 55)
    reply = await shop.say("o_clerk", f"到店 {cut.id}")
    assert "已登记到店" in reply
    assert "会员没有可用的洗剪吹10次卡，本次服务请到收银台付款" in reply
    reply = await shop.say("o_clerk", f"到店 {perm.id}")
    assert "已登记到店" in reply and "本次服务请到收银台付款" in reply and "次卡" not in reply
    assert not await PunchCard.exists(member_id=member.id)


async def test_arrival_is_not_recorded_before_the_day(shop, team, member):
    at_local(shop.clock, DAY - dt.timedelta(days=1), 18)
    booking = await book_for(shop, "2031-03-12 10:00")
    assert "还没到当天" in await shop.say("o_clerk", f"到店 {booking.id}")
    assert "还没开始" in await shop.say("o_clerk", f"爽约 {booking.id}")
    assert (await Booking.get(id=booking.id)).status == BookingStatus.ACTIVE


async def test_no_shows_up_to_the_limit_then_the_member_books_only_through_staff(
        shop, team, member):
    at_local(shop.clock, DAY - dt.timedelta(days=1), 18)
    made = [await book_for(shop, f"2031-03-12 {hour}:00") for hour in (10, 12, 14)]
    at_local(shop.clock, DAY, 19)
    for n, booking in enumerate(made, start=1):
        reply = await shop.say("o_clerk", f"爽约 {booking.id}")
        assert f"已登记爽约：#{booking.id}" in reply and MASKED in reply
        assert f"近 90 天爽约 {n} 次（上限 3 次）" in reply
        assert ("只能由门店员工代约" in reply) == (n == 3)
    again = await shop.say("o_clerk", f"爽约 {made[0].id}")
    assert "已经登记过爽约" in again and "爽约 3 次" in again
    assert "已登记爽约" in await shop.say("o_clerk", f"到店 {made[0].id}")
    cut = await Service.get(code="CUT")
    with pytest.raises(BookingRefused) as refused:
        await bookings.book(shop.bot, member, cut, utc(DAY + dt.timedelta(days=1), 15),
                            key="test:own")
    assert refused.value.reason == "booking_via_staff.j2"
    # Staff still can.
    await book_for(shop, "明天 15:00")


async def test_booking_for_a_member_past_the_deadline_is_audited_and_told(shop, team, member):
    at_local(shop.clock, DAY, 14, 40)  # 20 minutes ahead: members need an hour's notice
    cut = await Service.get(code="CUT")
    with pytest.raises(BookingRefused) as refused:
        await bookings.book(shop.bot, member, cut, utc(DAY, 15), key="test:own")
    assert refused.value.reason == "booking_too_soon.j2"
    reply = await shop.say("o_clerk", f"代约 {PHONE} 洗剪吹 今天下午3点")
    booking = await Booking.all().order_by("-id").first()
    assert f"已代约：#{booking.id} 3月12日（周三）15:00 洗剪吹·" in reply and MASKED in reply
    assert booking.starts_at == utc(DAY, 15) and booking.by_staff_id == team["clerk"].id
    [entry] = await AuditEntry.filter(action="booking", member_id=member.id)
    assert entry.staff_id == team["clerk"].id and entry.after["booking"] == booking.id
    await shop.settle()
    assert await Delivery.exists(key=f"notice:booking:{booking.id}:booked", member_id=member.id)
    # Moved, then cancelled, inside the members' 2-hour limit: audited, and told each time.
    reply = await shop.say("o_clerk", f"代改 {booking.id} 今天 16:00")
    moved = await Booking.all().order_by("-id").first()
    assert f"#{booking.id} → #{moved.id}" in reply and "16:00" in reply
    assert moved.resource_id == booking.resource_id
    assert await AuditEntry.exists(action="booking_move", member_id=member.id)
    reply = await shop.say("o_clerk", f"代取消 {moved.id}")
    assert f"已取消预约 #{moved.id}" in reply
    assert "已经取消过了" in await shop.say("o_clerk", f"代取消 {moved.id}")
    assert "已改约" in await shop.say("o_clerk", f"代取消 {booking.id}")
    assert await AuditEntry.exists(action="booking_cancel", member_id=member.id)
    await shop.settle()
    for key in (f"notice:booking:{moved.id}:moved", f"notice:booking:{moved.id}:cancelled"):
        assert await Delivery.exists(key=key), key


async def test_a_full_time_offers_the_nearest_free_ones(shop, team, member):
    assert "注册成功" in await shop.register("o_other", OTHER_PHONE, name="李四")
    at_local(shop.clock, DAY - dt.timedelta(days=1), 18)
    await book_for(shop, "2031-03-12 15:00 小李")
    reply = await shop.say("o_clerk", f"代约 {OTHER_PHONE} 洗剪吹 2031-03-12 15:00 小李")
    assert "没有空位" in reply and "最近的空闲时间" in reply
    assert "请核对" not in reply
    # Without a name, the other stylist takes it.
    second = await book_for(shop, "2031-03-12 15:00", who=OTHER_PHONE)
    assert (await second.resource).code == "WANG"
    assert "不能做洗剪吹" in await shop.say("o_clerk", f"代约 {PHONE} 洗剪吹 明天 15:00 瑜伽教室")
    assert "没有「剪指甲」" in await shop.say("o_clerk", f"代约 {PHONE} 剪指甲 明天 15:00")


async def test_a_clerk_of_another_store_cannot_touch_the_booking(shop, team, member):
    at_local(shop.clock, DAY - dt.timedelta(days=1), 18)
    booking = await book_for(shop, "2031-03-12 10:00")
    at_local(shop.clock, DAY, 10)
    for text in (f"到店 {booking.id}", f"爽约 {booking.id}", f"代取消 {booking.id}",
                 f"代改 {booking.id} 今天 15:00"):
        assert "只能由该店员工或老板处理" in await shop.say("o_far", text), text
    assert (await Booking.get(id=booking.id)).status == BookingStatus.ACTIVE
    assert "本店没有能做洗剪吹" in await shop.say("o_far", f"代约 {PHONE} 洗剪吹 明天 15:00")
    assert "没有找到预约号为 999" in await shop.say("o_clerk", "到店 999")
    # The owner acts in every store.
    assert "已登记到店" in await shop.say("o_owner", f"到店 {booking.id}")


async def test_staff_help_lists_the_booking_desk(shop, team):
    reply = await shop.say("o_clerk", "员工帮助")
    for usage in ("今日预约 [日期]", "到店 <预约号>", "爽约 <预约号>",
                  "代约 <手机号|卡号> <服务> <日期> <时间> [人]",
                  "代改 <预约号> <日期> <时间> [人]", "代取消 <预约号>"):
        assert usage in reply
    # Members typing the words are not staff: the words are not theirs.
    assert "员工" not in (await shop.say("o_nobody", "今日预约") or "")
