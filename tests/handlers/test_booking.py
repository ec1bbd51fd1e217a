"""Bookings in chat, the member's side (bot/handlers/booking.py), over the signed webhook: the
预约 dialog step by step, one-line bookings, a taken time and the waitlist, 我的预约, 取消预约,
改约, and WeChat's retries.

The shop is config.toml's demo: 洗剪吹 (60 min, 小李 or 王老师), 烫发 (120 min, the same two),
瑜伽 (60 min, the 瑜伽教室 class of 12). DAY is a Wednesday; 小李 does not work on Thursdays.
The clock reads 08:30 there: with an hour's notice the first free start is 10:00.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
import tortoise.timezone

from bot.models import Booking, BookingStatus, Delivery, Member, Resource, Seat, WaitEntry
from bot.sandbox import wechat_client as wire
from bot.services import bookings
from tests.support import REPO_CONFIG, SHANGHAI, Harness, at_local

DAY = dt.date(2031, 3, 12)
assert DAY.isoweekday() == 3

_phones = itertools.count(1)
_msg_ids = itertools.count(8_100_000_000_001)

SERVICES = "1. 洗剪吹（1小时，68元）\n2. 烫发（2小时，388元）\n3. 瑜伽（1小时，80元）"
PICK_NUMBER = "没有这个选项，请回复下面列表里的序号。"


@pytest.fixture
async def h(harness_factory, monkeypatch) -> Harness:
    harness = await harness_factory()
    monkeypatch.setattr(tortoise.timezone, "now", harness.clock)
    at_local(harness.clock, DAY, 8, 30)
    return harness


async def member(h: Harness, openid: str) -> str:
    reply = await h.register(openid, f"138{next(_phones):08d}")
    assert "注册成功" in reply, reply
    return openid


async def say(h: Harness, openid: str, text: str) -> str:
    reply = await h.say(openid, text)
    assert reply is not None
    return reply


async def state(h: Harness, openid: str) -> str | None:
    return (await h.bot.dialogs.load(f"wechat:{openid}")).state


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), SHANGHAI)


async def bookings_of(openid: str) -> list[Booking]:
    found = await Member.get(follower__openid=openid)
    return await Booking.filter(member_id=found.id).order_by("id").prefetch_related("resource")


async def book_line(h: Harness, openid: str, text: str) -> Booking:
    """A one-line booking confirmed: the booking made."""
    assert "请核对预约信息" in await say(h, openid, text)
    done = await say(h, openid, "确认")
    assert "【预约成功】" in done, done
    booking = (await bookings_of(openid))[-1]
    assert f"预约号 {booking.id}" in done
    return booking


# --- the dialog, step by step ---

async def test_the_whole_dialog_books_the_chosen_time_with_the_chosen_stylist(h):
    a = await member(h, "o_bk_a")

    assert SERVICES in await say(h, a, "预约")
    days = await say(h, a, "1")
    assert "【预约·洗剪吹】请选择日期：\n1. 3月12日（周三）\n2. 3月13日（周四）" in days
    assert "15. 3月26日（周三）" in days and "16." not in days
    times = await say(h, a, "1")
    assert "3月12日（周三）可约时间：\n1. 10:00（余2）\n2. 10:30（余2）" in times
    assert "11. 15:00（余2）" in times and "19. 19:00（余2）" in times
    who = await say(h, a, "11")
    assert "3月12日（周三）15:00，请选择服务人员：\n1. 小李\n2. 王老师\n0. 任意" in who
    summary = await say(h, a, "1")
    assert "项目：洗剪吹（1小时，68元）\n时间：3月12日（周三）15:00\n服务人员：小李" in summary
    assert await state(h, a) == "book.confirm"
    done = await say(h, a, "确认")

    (booking,) = await bookings_of(a)
    assert booking.status == BookingStatus.ACTIVE
    assert booking.resource.code == "LI" and booking.starts_at == local(DAY, 15)
    assert f"【预约成功】3月12日（周三）15:00 洗剪吹·小李（示例门店·总店）\n预约号 {booking.id}" \
        in done
    assert await state(h, a) is None
    assert await Seat.filter(booking_id=booking.id).count() == 2  # two half-hour units


async def test_any_stylist_and_a_one_resource_service_skip_the_choice(h):
    a = await member(h, "o_bk_any")
    await say(h, a, "预约")
    await say(h, a, "1")
    await say(h, a, "1")
    await say(h, a, "1")
    assert "服务人员：任意（由门店安排）" in await say(h, a, "0")
    await say(h, a, "确认")
    (booking,) = await bookings_of(a)
    assert booking.resource.code == "LI"  # the first free, in the service's order

    # 瑜伽 has one room: the time goes straight to the summary, which names it.
    await say(h, a, "预约")
    await say(h, a, "3")
    times = await say(h, a, "1")  # Wednesday: the class is on Tue/Thu evenings and weekends
    assert "3月13日（周四）可约时间：\n1. 19:00（余12）" in times
    summary = await say(h, a, "1")
    assert "服务人员：瑜伽教室" in summary and await state(h, a) == "book.confirm"


@pytest.mark.parametrize("step, walk, again", [
    ("book.service", [], SERVICES),
    ("book.day", ["1"], "1. 3月12日（周三）"),
    ("book.time", ["1", "1"], "1. 10:00（余2）"),
    ("book.resource", ["1", "1", "11"], "1. 小李\n2. 王老师"),
])
async def test_an_answer_that_is_not_offered_gets_the_list_again(h, step, walk, again):
    a = await member(h, "o_bk_wrong")
    await say(h, a, "预约")
    for answer in walk:
        await say(h, a, answer)
    assert await state(h, a) == step
    for wrong in ("99", "0" if step != "book.resource" else "7", "哈哈哈", "明年吧"):
        reply = await say(h, a, wrong)
        assert reply.startswith(PICK_NUMBER) and again in reply, (wrong, reply)
        assert await state(h, a) == step
    assert not await bookings_of(a)


async def test_the_summary_wants_a_yes(h):
    a = await member(h, "o_bk_yes")
    await say(h, a, "预约 洗剪吹 今天 15:00 小李")
    for wrong in ("1", "哈哈哈"):
        reply = await say(h, a, wrong)
        assert reply.startswith("请回复「确认」完成预约。")
        assert "时间：3月12日（周三）15:00" in reply
    assert await state(h, a) == "book.confirm" and not await bookings_of(a)


async def test_back_goes_one_step_back_at_every_step(h):
    a = await member(h, "o_bk_back")
    assert "这已经是第一步了" in await say(h, a, "预约") + await say(h, a, "返回")
    await say(h, a, "1")
    assert SERVICES in await say(h, a, "返回") and await state(h, a) == "book.service"
    await say(h, a, "1")
    await say(h, a, "1")
    assert "请选择日期" in await say(h, a, "返回") and await state(h, a) == "book.day"
    await say(h, a, "1")
    await say(h, a, "11")
    assert "可约时间" in await say(h, a, "返回") and await state(h, a) == "book.time"
    await say(h, a, "11")
    await say(h, a, "2")
    assert "请选择服务人员" in await say(h, a, "返回") and await state(h, a) == "book.resource"
    assert "服务人员：王老师" in await say(h, a, "2")
    assert "请选择服务人员" in await say(h, a, "返回") and await state(h, a) == "book.resource"
    assert not await bookings_of(a)


async def test_back_from_the_summary_of_a_one_resource_service_goes_to_the_times(h):
    a = await member(h, "o_bk_back1")
    await say(h, a, "预约 瑜伽 周六 10:00")
    assert await state(h, a) == "book.confirm"
    assert "3月15日（周六）可约时间：\n1. 10:00（余12）" in await say(h, a, "返回")
    assert await state(h, a) == "book.time"


async def test_cancel_ends_the_dialog_at_any_step(h):
    a = await member(h, "o_bk_cancel")
    for walk in ([], ["1"], ["1", "1"], ["1", "1", "11"], ["1", "1", "11", "1"]):
        await say(h, a, "预约")
        for answer in walk:
            await say(h, a, answer)
        assert await say(h, a, "取消") == h.bot.templates.render("booking_cancelled.j2")
        assert await state(h, a) is None
    assert not await bookings_of(a)


# --- one line ---

@pytest.mark.parametrize("said, shown", [
    ("今天 15:00", "3月12日（周三）15:00"),
    ("明天 15:00", "3月13日（周四）15:00"),
    ("后天 15:00", "3月14日（周五）15:00"),
    ("周六 15:00", "3月15日（周六）15:00"),
    ("星期六 15点", "3月15日（周六）15:00"),
    ("下周一 下午3点", "3月17日（周一）15:00"),
    ("3月14日 15:00", "3月14日（周五）15:00"),
    ("03-14 15点", "3月14日（周五）15:00"),
    ("3/14 下午3点", "3月14日（周五）15:00"),
    ("明天下午3点", "3月13日（周四）15:00"),
])
async def test_one_line_with_a_day_and_a_time_goes_straight_to_the_summary(h, said, shown):
    a = await member(h, "o_bk_line")
    reply = await say(h, a, f"预约 洗剪吹 {said}")
    assert f"时间：{shown}" in reply and "项目：洗剪吹" in reply
    # 小李 is off on Thursdays: there the choice is 王老师 (or any).
    assert await state(h, a) in ("book.resource", "book.confirm")


async def test_one_line_forms(h):
    a = await member(h, "o_bk_forms")
    summary = await say(h, a, "预约 烫发 3月14日 10:30 小李")
    assert "项目：烫发（2小时，388元）\n时间：3月14日（周五）10:30\n服务人员：小李" in summary
    assert await state(h, a) == "book.confirm"

    times = await say(h, a, "预约 瑜伽 周六")
    assert "【预约·瑜伽】3月15日（周六）可约时间：\n1. 10:00（余12）" in times
    assert await state(h, a) == "book.time"

    assert "请选择日期" in await say(h, a, "预约 洗剪吹") and await state(h, a) == "book.day"
    assert "请选择日期" in await say(h, a, "预约 剪") and await state(h, a) == "book.day"

    unknown = await say(h, a, "预约 美甲 明天")
    assert unknown.startswith("没有找到这个项目") and SERVICES in unknown
    assert await state(h, a) == "book.service"

    assert "只能预约 14 天内" in await say(h, a, "预约 洗剪吹 12月3日 15:00")
    assert "至少提前1小时" in await say(h, a, "预约 洗剪吹 今天 09:30")
    assert await state(h, a) is None

    # A typed time at the time step works as well as its number.
    await say(h, a, "预约 洗剪吹 周五")
    assert "3月14日（周五）16:30，请选择服务人员" in await say(h, a, "16:30")


async def test_a_one_line_booking_by_someone_not_registered(h):
    for text in ("预约", "预约 洗剪吹 明天 15:00", "我的预约", "取消预约 1", "改约 1", "确认候补"):
        assert "您还不是示例门店的会员" in await say(h, "o_bk_guest", text)
    assert "您还不是示例门店的会员" in (await h.post(
        wire.event("o_bk_guest", "CLICK", "BOOK")))["Content"]


# --- a taken time and the waitlist ---

async def test_a_taken_time_offers_the_nearest_then_the_waitlist_gets_the_freed_place(h):
    a, b = await member(h, "o_bk_first"), await member(h, "o_bk_waiter")
    taken = await book_line(h, a, "预约 洗剪吹 周五 15:00 小李")

    full = await say(h, b, "预约 洗剪吹 周五 15:00 小李")
    assert "抱歉，3月14日（周五）15:00 已经约满了。\n最近的空闲时间：" in full
    assert ("1. 3月14日（周五）13:30（余1）\n2. 3月14日（周五）14:00（余1）\n"
            "3. 3月14日（周五）16:00（余1）") in full
    assert "回复「候补」" in full and await state(h, b) == "book.full"

    waiting = await say(h, b, "候补")
    assert "已为您候补：3月14日（周五）15:00 洗剪吹·小李" in waiting and "您是第一位" in waiting
    (entry,) = await WaitEntry.all()
    assert entry.status == "waiting" and await state(h, b) is None

    c = await member(h, "o_bk_second_waiter")
    await say(h, c, "预约 洗剪吹 周五 15:00 小李")
    assert "您前面还有 1 位" in await say(h, c, "候补")
    mine = await say(h, c, "我的预约")
    assert "【候补中】\n3月14日（周五）15:00 洗剪吹·小李\n" in mine and "取消候补" in mine

    assert "已取消预约号" in await say(h, a, f"取消预约 {taken.id}")
    await h.settle()
    (offer,) = await Booking.filter(status=BookingStatus.OFFERED)
    assert offer.member_id == (await Member.get(follower__openid=b)).id
    notice = await Delivery.get(key=f"notice:booking:{offer.id}:offer")
    assert notice.openid == b
    mine = await say(h, b, "我的预约")
    assert f"预约号 {offer.id}" in mine and "回复「确认候补」确认" in mine

    done = await say(h, b, "确认候补")
    assert f"【预约成功】3月14日（周五）15:00 洗剪吹·小李（示例门店·总店）\n预约号 {offer.id}" \
        in done
    assert (await Booking.get(id=offer.id)).status == BookingStatus.ACTIVE
    assert "没有待确认的候补名额" in await say(h, b, "确认候补")
    assert "没有待确认的候补名额" in await say(h, c, "确认候补")


async def test_leaving_the_waitlist_lets_the_next_in_line_have_the_place(h):
    a, b, c = [await member(h, f"o_bk_leave_{n}") for n in range(3)]
    taken = await book_line(h, a, "预约 洗剪吹 周五 15:00 小李")
    for waiter in (b, c):
        await say(h, waiter, "预约 洗剪吹 周五 15:00 小李")
        await say(h, waiter, "候补")
    assert "已取消您的 1 个候补" in await say(h, b, "取消候补")
    assert "您目前没有在候补" in await say(h, b, "取消候补")
    await say(h, a, f"取消预约 {taken.id}")
    await h.settle()
    (offer,) = await Booking.filter(status=BookingStatus.OFFERED)
    assert offer.member_id == (await Member.get(follower__openid=c)).id


async def test_a_stylist_named_then_any_stylist_and_a_day_off_is_not_full(h):
    a = await member(h, "o_bk_named")
    await Resource.filter(code="LI").update(hours={"3": "10:00-20:00"})  # 小李: Wednesdays only
    off = await say(h, a, "预约 烫发 周五 15:00 小李")
    assert "15:00 小李不接受预约（休息或不在营业时间）" in off and "已经约满了" not in off
    assert "「任意」不限服务人员" in off
    times = await say(h, a, "任意")
    assert "【预约·烫发】3月14日（周五）可约时间" in times and "小李" not in times
    days = await say(h, a, "返回")
    assert "【预约·烫发】请选择日期" in days and "3月14日（周五）" in days


async def test_a_booking_inside_the_cancel_deadline_says_it_cannot_be_changed_online(h):
    a = await member(h, "o_bk_soon")
    summary = await say(h, a, "预约 洗剪吹 今天 10:00")
    assert "请核对预约信息" in summary, summary
    done = await say(h, a, "确认")
    assert "不能在线取消或改约了" in done and "取消预约" not in done


async def test_a_time_the_member_already_holds_is_theirs_not_full_and_not_twice(h):
    a = await member(h, "o_bk_holder")
    held = await book_line(h, a, "预约 洗剪吹 周五 15:00 小李")
    # The same time again: their own booking, not a full time to wait for.
    again = await say(h, a, "预约 洗剪吹 周五 15:00 小李")
    assert "您在这个时间已经有预约了" in again and f"预约号 {held.id}" in again
    assert "候补" not in again and await state(h, a) is None
    # Another stylist at an overlapping time: nobody is in two places at once.
    overlapping = await say(h, a, "预约 洗剪吹 周五 15:30 王老师")
    assert f"预约号 {held.id}" in overlapping and "候补" not in overlapping
    assert [b.id for b in await bookings_of(a)] == [held.id]
    # The service says the same to whatever asks it (staff's 代约 too).
    wang = await Resource.get(code="WANG")
    with pytest.raises(bookings.BookingRefused) as refused:
        await bookings.book(h.bot, await Member.get(follower__openid=a), await held.service,
                            local(DAY + dt.timedelta(days=2), 15, 30), key="k:overlap",
                            resource=wang)
    assert refused.value.reason == "booking_twice.j2"


async def test_a_time_taken_between_the_list_and_the_yes_gets_the_nearest_times(h):
    a, b = await member(h, "o_bk_slow"), await member(h, "o_bk_fast")
    assert "服务人员：小李" in await say(h, a, "预约 洗剪吹 周五 15:00 小李")
    await book_line(h, b, "预约 洗剪吹 周五 15:00 小李")

    full = await say(h, a, "确认")
    assert "15:00 已经约满了" in full and "回复「候补」" in full
    assert await state(h, a) == "book.full" and not await bookings_of(a)
    # One of the nearest times, by its number: the summary again.
    assert "时间：3月14日（周五）14:00" in await say(h, a, "2")
    await say(h, a, "确认")
    (booking,) = await bookings_of(a)
    assert booking.starts_at == local(DAY + dt.timedelta(days=2), 14)


async def test_a_closed_time_offers_no_waitlist(h):
    a = await member(h, "o_bk_closed")
    full = await say(h, a, "预约 洗剪吹 周五 22:00")
    assert "22:00不接受预约（休息或不在营业时间）" in full and "已经约满了" not in full
    assert "候补" not in full
    assert (await say(h, a, "候补")).startswith(PICK_NUMBER)
    assert "可约时间" in await say(h, a, "返回") and await state(h, a) == "book.time"


# --- 我的预约, 取消预约, 改约 ---

async def test_my_bookings_lists_each_with_its_number(h):
    a = await member(h, "o_bk_mine")
    assert "您目前没有预约" in await say(h, a, "我的预约")
    first = await book_line(h, a, "预约 洗剪吹 周五 15:00 小李")
    second = await book_line(h, a, "预约 瑜伽 周六 10:00")
    mine = await say(h, a, "我的预约")
    assert (f"预约号 {first.id}：3月14日（周五）15:00 洗剪吹·小李（示例门店·总店）\n"
            f"预约号 {second.id}：3月15日（周六）10:00 瑜伽·瑜伽教室（示例门店·总店）") in mine
    click = await h.post(wire.event(a, "CLICK", "MY_BOOKINGS"))
    assert f"预约号 {first.id}" in click["Content"]


async def test_cancel_before_the_deadline_and_not_after(h):
    a = await member(h, "o_bk_deadline")
    early = await book_line(h, a, "预约 洗剪吹 今天 15:00 小李")
    late = await book_line(h, a, "预约 洗剪吹 今天 16:00 王老师")

    assert "已取消预约号" in await say(h, a, f"取消预约 {early.id}")
    assert (await Booking.get(id=early.id)).status == BookingStatus.CANCELLED
    assert not await Seat.filter(booking_id=early.id).exists()

    at_local(h.clock, DAY, 14, 30)  # 90 minutes before 16:00: inside the 2 hours
    refused = await say(h, a, f"取消预约 {late.id}")
    assert f"预约号 {late.id}（3月12日（周三）16:00）开始前2小时内不能在线取消了" in refused
    assert "联系门店" in refused
    assert (await Booking.get(id=late.id)).status == BookingStatus.ACTIVE

    assert "没有找到您的预约号" in await say(h, a, f"取消预约 {early.id}")  # already cancelled
    assert "请回复「取消预约 预约号」" in await say(h, a, "取消预约")


async def test_a_member_cannot_cancel_or_move_someone_elses_booking(h):
    a, b = await member(h, "o_bk_owner"), await member(h, "o_bk_other")
    booking = await book_line(h, a, "预约 洗剪吹 周五 15:00 小李")
    assert "没有找到您的预约号" in await say(h, b, f"取消预约 {booking.id}")
    assert "没有找到您的预约号" in await say(h, b, f"改约 {booking.id}")
    assert (await Booking.get(id=booking.id)).status == BookingStatus.ACTIVE
    assert await state(h, b) is None


async def test_move_frees_the_old_place_only_when_the_new_one_is_held(h):
    a, b = await member(h, "o_bk_mover"), await member(h, "o_bk_rival")
    old = await book_line(h, a, "预约 洗剪吹 今天 15:00 小李")

    days = await say(h, a, f"改约 {old.id}")
    assert "【改约·洗剪吹】请选择日期" in days and await state(h, a) == "book.day"
    assert "这已经是第一步了" in await say(h, a, "返回")
    times = await say(h, a, "1")
    assert "11. 15:00（余1）" in times  # 王老师 only: 小李's place is still ours
    await say(h, a, "13")  # 16:00
    summary = await say(h, a, "1")
    assert "请核对改约信息" in summary and f"原预约号 {old.id} 将改到这个时间" in summary

    # Someone takes 16:00 with 小李 before the 确认: the move fails, the old place stays.
    await book_line(h, b, "预约 洗剪吹 今天 16:00 小李")
    full = await say(h, a, "确认")
    assert "16:00 已经约满了" in full and "候补" not in full
    assert (await Booking.get(id=old.id)).status == BookingStatus.ACTIVE
    assert await Seat.filter(booking_id=old.id).count() == 2

    # 小李's nearest to 16:00: 14:00, 17:00, 17:30 (15:00 is the booking being moved).
    assert "时间：3月12日（周三）17:00" in await say(h, a, "2")
    done = await say(h, a, "确认")
    assert "【改约成功】" in done
    moved = await Booking.get(id=old.id)
    new = (await bookings_of(a))[-1]
    assert moved.status == BookingStatus.MOVED and not await Seat.filter(booking_id=old.id).exists()
    assert new.status == BookingStatus.ACTIVE and new.moved_from_id == old.id
    assert new.starts_at == local(DAY, 17) and new.resource.code == "LI"


async def test_move_after_the_deadline_is_refused(h):
    a = await member(h, "o_bk_move_late")
    booking = await book_line(h, a, "预约 洗剪吹 今天 15:00 小李")
    at_local(h.clock, DAY, 13, 30)
    assert "开始前2小时内不能在线改约了" in await say(h, a, f"改约 {booking.id}")
    assert await state(h, a) is None


# --- retries ---

async def test_a_retry_of_the_yes_books_once(h):
    a = await member(h, "o_bk_retry")
    await say(h, a, "预约 洗剪吹 今天 15:00 小李")
    xml = wire.text(a, "确认", msg_id=next(_msg_ids))
    first = await h.post(xml)
    again = await h.post(xml)
    assert first == again and "【预约成功】" in first["Content"]
    (booking,) = await bookings_of(a)
    assert booking.key.startswith("chat:")
    assert await Booking.filter(status=BookingStatus.ACTIVE).count() == 1


async def test_the_service_books_once_per_key(h):
    a = await member(h, "o_bk_key")
    found = await Member.get(follower__openid=a)
    service = (await bookings.services())[0]
    li = await Resource.get(code="LI")
    first = await bookings.book(h.bot, found, service, local(DAY, 15), key="k1", resource=li)
    again = await bookings.book(h.bot, found, service, local(DAY, 15), key="k1", resource=li)
    assert again.duplicate and again.booking.id == first.booking.id


# --- the engine: help, global commands inside the dialog ---

async def test_help_lists_the_booking_commands(h):
    a = await member(h, "o_bk_help")
    shown = await say(h, a, "帮助")
    for line in ("回复「预约」：预约服务", "回复「我的预约」：查看我的预约",
                 "回复「取消预约 预约号」", "回复「改约 预约号」", "回复「确认候补」"):
        assert line in shown, line


async def test_my_bookings_inside_the_dialog_answers_and_asks_again(h):
    a = await member(h, "o_bk_inside")
    await say(h, a, "预约")
    await say(h, a, "1")
    reply = await say(h, a, "我的预约")
    assert reply.startswith("您目前没有预约") and "继续预约：【预约·洗剪吹】请选择日期" in reply
    assert await state(h, a) == "book.day"
    assert "请选择项目" in await (say(h, a, "预约")) and await state(h, a) == "book.service"
    click = await h.post(wire.event(a, "CLICK", "BOOK"))
    assert SERVICES in click["Content"]


def test_the_menu_has_booking_buttons_within_wechats_limits():
    buttons = REPO_CONFIG.menu["button"]
    assert len(buttons) <= 3 and all(len(b.get("sub_button", [])) <= 5 for b in buttons)
    keys = {sub.get("key") for b in buttons for sub in b.get("sub_button", [b])}
    assert {"BOOK", "MY_BOOKINGS", "MY_COUPONS", "EXCHANGE"} <= keys
