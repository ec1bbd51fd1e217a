"""The console's Bookings page (bot/console/bookings.py), over HTTP as a browser uses it: the
day calendar (a column per resource, a row per slot in shop time) and the week calendar of
bookings made here, each role's reach (an owner any store, a manager theirs, a clerk today's),
another store's booking answering 404, and the panel's 到店, 爽约, 取消 and 改约 acting once
under a double submit, audited and told to the member, through the chat's services.

The demo shop of config.toml: 小李 (LI) and 王老师 (WANG) cut hair (洗剪吹, 60 minutes,
covered by 洗剪吹10次卡) at S001, 10:00-20:00 on Wednesdays; slots of 30 minutes."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import re

import pytest

from bot.models import (
    AuditEntry,
    Booking,
    BookingStatus,
    Closure,
    Delivery,
    Member,
    PunchCard,
    PunchUse,
    Resource,
    Seat,
    Service,
    Store,
)
from bot.services import bookings, members
from bot.services.staff import Actor
from tests.console.support import Browser
from tests.console.support import log_in_as as log_in
from tests.support import REPO_CONFIG, SHANGHAI, at_local

DAY = dt.date(2031, 3, 12)  # a Wednesday
PHONE, MASKED = "13800138000", "138****8000"
OTHER_PHONE, OTHER_MASKED = "13900139000", "139****9000"
_keys = itertools.count(1)


def utc(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), SHANGHAI).astimezone(dt.UTC)


async def new_member(h, phone: str, name: str, store: str = "S001") -> Member:
    return await members.create_member(h.bot.vault, "88", phone, name=name, tier="普通会员",
                                       store_id=(await Store.get(code=store)).id)


async def book(h, member: Member, hour: int, minute: int = 0, *, resource: str = "LI",
               service: str = "CUT", day: dt.date = DAY) -> Booking:
    """A booking made by the service, as staff make it in chat (seats held)."""
    store = await Store.get(code="S001")
    booked = await bookings.book(
        h.bot, member, await Service.get(code=service), utc(day, hour, minute),
        key=f"t:{next(_keys)}", resource=await Resource.get(code=resource),
        actor=Actor.cli(store))
    return booked.booking


async def raw_booking(member: Member, resource: Resource, start: dt.datetime,
                      minutes: int = 60) -> Booking:
    """A booking row as it stands in the database, wherever and whenever (no seats)."""
    return await Booking.create(
        key=f"t:{next(_keys)}", member=member, service=await Service.get(code="CUT"),
        resource=resource, store_id=resource.store_id, starts_at=start,
        ends_at=start + dt.timedelta(minutes=minutes))


@pytest.fixture
async def shop(harness_factory):
    """The bot with console sessions that outlast the clock's jumps from day to day here (a
    session idle too long ends; tests/console/test_auth.py has that)."""
    return await harness_factory(
        console=dataclasses.replace(REPO_CONFIG.console, idle_minutes=60 * 24 * 30))


@pytest.fixture
async def shop_day(shop):
    """Two S001 members with bookings on DAY, one S002 member with a booking at S002's own
    stylist; the clock the evening before."""
    h = shop
    at_local(h.clock, DAY - dt.timedelta(days=1), 18)
    a = await new_member(h, PHONE, "王小明")
    b = await new_member(h, OTHER_PHONE, "李四")
    c = await new_member(h, "13700137000", "赵五", store="S002")
    far = await Resource.create(code="ZHAO", name="小赵", store=await Store.get(code="S002"),
                                hours={"3": "09:00-18:00"})
    rows = {
        "a10": await book(h, a, 10),  # 小李 10:00-11:00
        "b14": await book(h, b, 14, resource="WANG"),  # 王老师 14:00-15:00
        "b16": await book(h, b, 16, 30),  # 小李 16:30-17:30
        "far": await raw_booking(c, far, utc(DAY, 11)),  # S002
    }
    h.rows, h.members, h.far = rows, {"a": a, "b": b, "c": c}, far
    return h


@pytest.fixture
async def browser(shop):
    opened = Browser(shop)
    yield opened
    await opened.close()


def cell(page: str, time: str, resource: Resource) -> str:
    """The day view's cell at a row (HH:MM, shop time) and a resource's column."""
    row = re.search(rf'<tr data-time="{time}">(.*?)</tr>', page, re.S)
    assert row, f"no row {time}"
    found = re.search(rf'<td data-resource="{resource.id}" class="([^"]*)">(.*?)</td>', row[1],
                      re.S)
    assert found, row[1]
    return found[1] + "|" + found[2]


def week_cell(page: str, resource: Resource, day: dt.date) -> str:
    row = re.search(rf'<tr data-resource="{resource.id}">(.*?)</tr>', page, re.S)
    assert row, f"no row for {resource.name}"
    found = re.search(rf'<td data-day="{day.isoformat()}"[^>]*>(.*?)</td>', row[1], re.S)
    assert found, row[1]
    return found[1]


def shown_ids(page: str) -> set[int]:
    return {int(n) for n in re.findall(r'<a class="bk [^"]*" id="bk-(\d+)"', page)}


async def resource(code: str) -> Resource:
    return await Resource.get(code=code)


# --- the calendars ---

async def test_a_managers_day_has_a_column_per_resource_and_a_row_per_slot(shop_day, browser):
    h = shop_day
    await log_in(h, browser, "manager")
    at_local(h.clock, DAY, 9)
    li, wang = await resource("LI"), await resource("WANG")
    await Closure.create(resource=li, day=DAY, opens=dt.time(12), closes=dt.time(14))
    page = (await browser.get("/console/bookings")).text  # today, by default
    a10, b14, b16 = h.rows["a10"], h.rows["b14"], h.rows["b16"]
    # Each booking in its resource's column, in the row of its start in shop time.
    ten = cell(page, "10:00", li)
    assert f'data-booking="{a10.id}"' in ten
    assert "10:00–11:00" in ten and "洗剪吹" in ten and "王小明" in ten and MASKED in ten
    assert "已预约" in ten
    assert 'data-booking' not in cell(page, "10:00", wang)
    assert cell(page, "10:30", li).startswith("open busy|")  # the hour's second half
    assert f'data-booking="{b14.id}"' in cell(page, "14:00", wang)
    assert f'data-booking="{b16.id}"' in cell(page, "16:30", li)
    # The calendar reloads itself after an action (hx-select picks it from the page); its
    # blocks must not inherit that, or a click would swap the panel away (seen in Chromium).
    wrapper = re.search(r'<div id="calendar"[^>]*>', page)[0]
    assert 'hx-select="#calendar"' in wrapper and 'hx-disinherit="*"' in wrapper
    assert OTHER_MASKED in page
    # The rows run from the earliest opening to the latest closing; the yoga room opens at
    # none of them on a Wednesday (its cells are shut).
    times = re.findall(r'<tr data-time="([^"]+)">', page)
    assert times[0] == "10:00" and times[-1] == "19:30" and len(times) == 20
    assert cell(page, "12:00", await resource("YOGA")).startswith("shut|")
    # 小李's leave from 12:00 to 14:00 shows in the column's hours and its cells.
    assert "10:00-12:00，14:00-20:00" in page
    assert cell(page, "12:30", li).startswith("shut|") and cell(page, "12:30", wang) \
        .startswith("open|")
    assert cell(page, "14:00", li).startswith("open|")
    # Nothing of S002's, and no full phone; asking for S002 by the URL changes nothing.
    assert h.rows["far"].id not in shown_ids(page) and "小赵" not in page
    assert PHONE not in page and OTHER_PHONE not in page
    assert shown_ids(page) == {a10.id, b14.id, b16.id}
    other = (await browser.get(f"/console/bookings?date={DAY}&store=S002")).text
    assert shown_ids(other) == {a10.id, b14.id, b16.id} and "小赵" not in other
    # Another day has none of them; prev/next/today move by a day.
    assert shown_ids((await browser.get(f"/console/bookings?date={DAY + dt.timedelta(1)}"))
                     .text) == set()
    assert f'href="/console/bookings?date={DAY - dt.timedelta(1)}&amp;view=day"' in page
    assert f'href="/console/bookings?date={DAY + dt.timedelta(1)}&amp;view=day"' in page


async def test_bookings_near_midnight_utc_fall_on_their_shop_day(shop_day, browser):
    """00:30 in Shanghai is 16:30 UTC the day before, and 23:30 is 15:30 UTC the same day:
    both are on 03-11 in UTC, on different days in the shop."""
    h = shop_day
    await log_in(h, browser, "manager")
    li = await resource("LI")
    early = await raw_booking(h.members["a"], li, utc(DAY, 0, 30))
    late = await raw_booking(h.members["b"], li, utc(DAY - dt.timedelta(days=1), 23, 30),
                             minutes=30)
    assert early.starts_at.astimezone(dt.UTC).date() == late.starts_at.astimezone(dt.UTC).date()
    page = (await browser.get(f"/console/bookings?date={DAY}")).text
    assert early.id in shown_ids(page) and late.id not in shown_ids(page)
    assert f'data-booking="{early.id}"' in cell(page, "00:30", li)
    assert "00:30–01:30" in cell(page, "00:30", li)
    assert re.findall(r'<tr data-time="([^"]+)">', page)[0] == "00:30"
    before = (await browser.get(f"/console/bookings?date={DAY - dt.timedelta(days=1)}")).text
    assert late.id in shown_ids(before) and early.id not in shown_ids(before)
    assert f'data-booking="{late.id}"' in cell(before, "23:30", li)
    assert re.findall(r'<tr data-time="([^"]+)">', before)[-1] == "23:30"
    # The week: each in its own day's column.
    week = (await browser.get(f"/console/bookings?date={DAY}&view=week")).text
    assert f'data-booking="{early.id}"' in week_cell(week, li, DAY)
    assert f'data-booking="{late.id}"' in week_cell(week, li, DAY - dt.timedelta(days=1))
    assert f'data-booking="{late.id}"' not in week_cell(week, li, DAY)


async def test_the_week_shows_each_resources_bookings_per_day(shop_day, browser):
    h = shop_day
    await log_in(h, browser, "manager")
    friday = DAY + dt.timedelta(days=2)
    fri = await book(h, h.members["a"], 11, resource="WANG", day=friday)
    next_week = await book(h, h.members["a"], 11, day=DAY + dt.timedelta(days=7))
    page = (await browser.get(f"/console/bookings?date={DAY}&view=week")).text
    li, wang = await resource("LI"), await resource("WANG")
    days = re.findall(r'<th data-day="([^"]+)"', page)
    assert days == [(dt.date(2031, 3, 10) + dt.timedelta(days=n)).isoformat() for n in range(7)]
    wed_li = week_cell(page, li, DAY)
    assert f'data-booking="{h.rows["a10"].id}"' in wed_li and "10:00–11:00" in wed_li
    assert f'data-booking="{h.rows["b16"].id}"' in wed_li
    assert wed_li.index("10:00–11:00") < wed_li.index("16:30–17:30")
    assert f'data-booking="{h.rows["b14"].id}"' in week_cell(page, wang, DAY)
    assert f'data-booking="{fri.id}"' in week_cell(page, wang, friday)
    assert "休" in week_cell(page, wang, dt.date(2031, 3, 10))  # 王老师 works no Mondays
    assert "休" not in week_cell(page, wang, DAY + dt.timedelta(days=1))
    await Closure.create(resource=wang, day=DAY + dt.timedelta(days=1))  # a day's leave
    page = (await browser.get(f"/console/bookings?date={DAY}&view=week")).text
    assert "休" in week_cell(page, wang, DAY + dt.timedelta(days=1))
    assert next_week.id not in shown_ids(page)
    assert shown_ids(page) == {h.rows["a10"].id, h.rows["b14"].id, h.rows["b16"].id, fri.id}
    nxt = (await browser.get(f"/console/bookings?date={DAY + dt.timedelta(days=7)}&view=week"))
    assert shown_ids(nxt.text) == {next_week.id}
    assert f'href="/console/bookings?date={DAY + dt.timedelta(days=7)}&amp;view=week"' in page


async def test_an_owner_chooses_any_store(shop_day, browser):
    h = shop_day
    await log_in(h, browser, "owner", store="S001")
    page = (await browser.get(f"/console/bookings?date={DAY}")).text
    assert '<option value="S001" selected>' in page and '<option value="S002">' in page
    assert shown_ids(page) == {h.rows["a10"].id, h.rows["b14"].id, h.rows["b16"].id}
    far = (await browser.get(f"/console/bookings?date={DAY}&store=S002")).text
    assert '<option value="S002" selected>' in far
    assert shown_ids(far) == {h.rows["far"].id}
    assert f'data-booking="{h.rows["far"].id}"' in cell(far, "11:00", h.far)
    assert "赵五" in far and "137****7000" in far
    # The owner opens and acts on any store's booking.
    assert (await browser.get(f"/console/bookings/{h.rows['far'].id}")).status == 200


async def test_a_clerk_sees_their_stores_bookings_of_today_only(shop_day, browser):
    h = shop_day
    token = await log_in(h, browser, "clerk")
    tomorrow = await book(h, h.members["a"], 12, resource="WANG",
                    day=DAY + dt.timedelta(days=1))
    at_local(h.clock, DAY, 9)
    home = (await browser.get("/console/")).text
    assert 'href="/console/bookings"' in home and ">预约<" in home
    page = (await browser.get("/console/bookings")).text
    assert shown_ids(page) == {h.rows["a10"].id, h.rows["b14"].id, h.rows["b16"].id}
    assert "今日预约" in page and 'name="store"' not in page and "下一周" not in page
    # Another day or the week by the URL: still today's day.
    for query in (f"?date={DAY + dt.timedelta(days=1)}", "?view=week",
                  f"?date={DAY + dt.timedelta(days=1)}&view=week&store=S002"):
        again = (await browser.get("/console/bookings" + query)).text
        assert shown_ids(again) == {h.rows["a10"].id, h.rows["b14"].id, h.rows["b16"].id}
        assert tomorrow.id not in shown_ids(again) and 'class="bk-week"' not in again
    # As in chat (到店, 爽约, 代改, 代取消 are all the clerk's), the panel's buttons are too.
    panel = (await browser.get(f"/console/bookings/{h.rows['a10'].id}",
                               headers={"HX-Request": "true"})).text
    for action in ("arrive", "cancel", "move"):
        assert f'data-action="{action}"' in panel
    at_local(h.clock, DAY, 10, 5)
    done = await browser.post(f"/console/bookings/{h.rows['a10'].id}/arrive", token=token)
    assert done.status == 200 and "已登记到店" in done.text
    assert (await Booking.get(id=h.rows["a10"].id)).status == BookingStatus.ARRIVED


async def test_the_page_needs_a_session(shop_day, browser):
    page = await browser.get("/console/bookings")
    assert page.status == 302 and page.headers["Location"] == "/console/"
    page = await browser.get(f"/console/bookings/{shop_day.rows['a10'].id}",
                             headers={"HX-Request": "true"})
    assert page.status == 401


# --- another store's booking ---

@pytest.mark.parametrize("role", ["manager", "clerk"])
async def test_another_stores_booking_is_not_found(shop_day, browser, role):
    h = shop_day
    token = await log_in(h, browser, role, store="S001")
    at_local(h.clock, DAY, 12)
    far = h.rows["far"]
    assert (await browser.get(f"/console/bookings/{far.id}")).status == 404
    assert (await browser.get(f"/console/bookings/{far.id}/move")).status == 404
    assert (await browser.get("/console/bookings/99999")).status == 404
    for action in ("arrive", "no-show", "cancel"):
        answer = await browser.post(f"/console/bookings/{far.id}/{action}", token=token)
        assert answer.status == 404, action
    answer = await browser.post(f"/console/bookings/{far.id}/move", token=token, data={
        "nonce": "abcdefghijkl", "start": utc(DAY, 15).isoformat(),
        "resource": str(h.far.id)})
    assert answer.status == 404
    assert (await Booking.get(id=far.id)).status == BookingStatus.ACTIVE
    assert not await AuditEntry.filter(member_id=h.members["c"].id).exists()
    # The other store's clerk sees it.
    other = Browser(h)
    try:
        await log_in(h, other, role, store="S002")
        assert (await other.get(f"/console/bookings/{far.id}")).status == 200
    finally:
        await other.close()


# --- CSRF ---

async def test_a_post_without_the_token_or_from_elsewhere_changes_nothing(shop_day, browser):
    h = shop_day
    token = await log_in(h, browser, "manager")
    at_local(h.clock, DAY, 10, 5)
    a10 = h.rows["a10"]
    for action in ("arrive", "no-show", "cancel"):
        path = f"/console/bookings/{a10.id}/{action}"
        assert (await browser.post(path)).status == 403
        assert (await browser.post(path, token="wrong")).status == 403
        assert (await browser.post(path, token=token, origin="https://evil.example")).status \
            == 403
        assert (await browser.post(path, token=token, origin=None)).status == 403
    answer = await browser.post(f"/console/bookings/{a10.id}/move", data={
        "nonce": "abcdefghijkl", "start": utc(DAY, 15).isoformat(),
        "resource": str((await resource("LI")).id)})
    assert answer.status == 403
    assert (await Booking.get(id=a10.id)).status == BookingStatus.ACTIVE
    assert await Booking.all().count() == 4
    assert not await AuditEntry.filter(action__startswith="booking_").exists()
    # The form's own field works as the header does.
    answer = await browser.post(f"/console/bookings/{a10.id}/arrive", data={"csrf_token": token})
    assert answer.status == 200 and "已登记到店" in answer.text


# --- 到店 ---

async def test_arrival_takes_one_punch_card_visit_under_a_double_submit(shop_day, browser):
    h = shop_day
    token = await log_in(h, browser, "manager")
    a = h.members["a"]
    card = await PunchCard.create(member=a, product="WASH10", name="洗剪吹10次卡", visits=10,
                                  remaining=10, expires_on=DAY + dt.timedelta(days=300),
                                  idempotency_key="t:card")
    a10 = h.rows["a10"]
    at_local(h.clock, DAY, 9, 55)
    path = f"/console/bookings/{a10.id}/arrive"
    hx = {"HX-Request": "true"}
    first, second = await asyncio.gather(browser.post(path, token=token, headers=hx),
                                         browser.post(path, token=token, headers=hx))
    third = await browser.post(path, token=token, headers=hx)
    texts = [first.text, second.text, third.text]
    assert all(p.status == 200 for p in (first, second, third))
    assert sum("已登记到店。" in t for t in texts) == 1
    assert sum("已经登记过到店了" in t for t in texts) == 2
    assert all("剩余 9 次" in t for t in texts)
    assert sum("（此前已扣，未重复扣次）" in t for t in texts) == 2
    marked = next(p for p in (first, second, third) if "已登记到店。" in p.text)
    assert marked.headers.get("HX-Trigger") == "bookings-changed"
    assert "HX-Trigger" not in third.headers
    await card.refresh_from_db()
    assert card.remaining == 9
    assert await PunchUse.filter(card_id=card.id).count() == 1
    assert (await Booking.get(id=a10.id)).status == BookingStatus.ARRIVED
    assert await AuditEntry.filter(action="booking_arrived", member_id=a.id).count() == 1
    assert await AuditEntry.filter(action="punch_use", member_id=a.id).count() == 1
    staff_label = (await AuditEntry.get(action="booking_arrived")).actor
    assert staff_label.startswith("staff:") and staff_label.endswith("manager")
    await h.settle()
    told = await Delivery.filter(key=f"notice:punch:booking:{a10.id}:arrived")
    assert len(told) == 1 and told[0].member_id == a.id and told[0].purpose == "punch_use"
    # The panel no longer offers 到店, and the calendar shows the arrival.
    panel = (await browser.get(f"/console/bookings/{a10.id}", headers=hx)).text
    assert 'data-action="arrive"' not in panel and "已到店" in panel
    page = (await browser.get("/console/bookings")).text
    assert "已到店" in cell(page, "10:00", await resource("LI"))


async def test_arrival_without_a_card_is_paid_at_the_till_and_not_before_the_day(
        shop_day, browser):
    h = shop_day
    token = await log_in(h, browser, "manager")
    at_local(h.clock, DAY - dt.timedelta(days=1), 19)
    a10 = h.rows["a10"]
    panel = (await browser.get(f"/console/bookings/{a10.id}")).text
    assert 'data-action="arrive"' not in panel and "到店要在预约当天登记" in panel
    early = await browser.post(f"/console/bookings/{a10.id}/arrive", token=token)
    assert "还没到预约当天" in early.text
    assert (await Booking.get(id=a10.id)).status == BookingStatus.ACTIVE
    at_local(h.clock, DAY, 10)
    done = await browser.post(f"/console/bookings/{a10.id}/arrive", token=token)
    assert "已登记到店" in done.text and "会员没有可用的洗剪吹10次卡" in done.text
    assert not await PunchUse.exists()
    await h.settle()
    assert not await Delivery.filter(key__startswith="notice:punch:").exists()


# --- 爽约 ---

async def test_a_no_show_is_marked_once_after_the_start(shop_day, browser):
    h = shop_day
    token = await log_in(h, browser, "clerk")
    b14 = h.rows["b14"]
    at_local(h.clock, DAY, 13, 50)
    panel = (await browser.get(f"/console/bookings/{b14.id}")).text
    assert 'data-action="no_show"' not in panel
    early = await browser.post(f"/console/bookings/{b14.id}/no-show", token=token)
    assert "预约还没开始" in early.text
    assert (await Booking.get(id=b14.id)).status == BookingStatus.ACTIVE
    at_local(h.clock, DAY, 14, 20)
    assert 'data-action="no_show"' in (await browser.get(f"/console/bookings/{b14.id}")).text
    path = f"/console/bookings/{b14.id}/no-show"
    first, second = await asyncio.gather(browser.post(path, token=token),
                                         browser.post(path, token=token))
    texts = [first.text, second.text]
    assert sum("已登记爽约。" in t for t in texts) == 1
    assert sum("已经登记过爽约了" in t for t in texts) == 1
    assert all("近 90 天爽约 1 次（上限 3 次）" in t for t in texts)
    assert (await Booking.get(id=b14.id)).status == BookingStatus.NO_SHOW
    assert await AuditEntry.filter(action="booking_no_show", member_id=b14.member_id).count() \
        == 1
    # An arrival after it is refused, as in chat.
    late = await browser.post(f"/console/bookings/{b14.id}/arrive", token=token)
    assert "不能再操作" in late.text
    assert (await Booking.get(id=b14.id)).status == BookingStatus.NO_SHOW


# --- 取消 ---

async def test_cancelling_asks_first_then_frees_the_seat_once_and_tells_the_member(
        shop_day, browser):
    h = shop_day
    token = await log_in(h, browser, "clerk")
    at_local(h.clock, DAY, 9)
    a10 = h.rows["a10"]
    li, cut = await resource("LI"), await Service.get(code="CUT")
    free = {t.start for t in await bookings.free_times(h.bot, cut, DAY, resource=li,
                                                       staff=True)}
    assert utc(DAY, 10) not in free and await Seat.filter(booking_id=a10.id).count() == 2
    panel = (await browser.get(f"/console/bookings/{a10.id}?confirm=cancel",
                               headers={"HX-Request": "true"})).text
    assert "确定取消这个预约吗" in panel and 'data-action="cancel"' in panel
    assert f'hx-post="/console/bookings/{a10.id}/cancel"' in panel
    assert (await Booking.get(id=a10.id)).status == BookingStatus.ACTIVE  # asking changes nothing
    path = f"/console/bookings/{a10.id}/cancel"
    first, second = await asyncio.gather(browser.post(path, token=token),
                                         browser.post(path, token=token))
    texts = [first.text, second.text]
    assert sum("已取消预约，已通知会员。" in t for t in texts) == 1
    assert sum("已经取消过了" in t for t in texts) == 1
    assert (await Booking.get(id=a10.id)).status == BookingStatus.CANCELLED
    assert not await Seat.filter(booking_id=a10.id).exists()
    free = {t.start for t in await bookings.free_times(h.bot, cut, DAY, resource=li,
                                                       staff=True)}
    assert utc(DAY, 10) in free
    assert await AuditEntry.filter(action="booking_cancel", member_id=a10.member_id).count() \
        == 1
    await h.settle()
    assert await Delivery.filter(key=f"notice:booking:{a10.id}:cancelled").count() == 1
    # Gone from the calendar.
    assert a10.id not in shown_ids((await browser.get("/console/bookings")).text)


# --- 改约 ---

async def test_moving_offers_free_times_and_moves_once(shop_day, browser):
    h = shop_day
    token = await log_in(h, browser, "manager")
    at_local(h.clock, DAY, 9)
    a10, b16 = h.rows["a10"], h.rows["b16"]
    li = await resource("LI")
    form = (await browser.get(f"/console/bookings/{a10.id}/move?day={DAY}",
                              headers={"HX-Request": "true"})).text
    starts = re.findall(r'data-start="([^"]+)"', form)
    assert utc(DAY, 12).isoformat() in starts
    # 16:30-17:30 is 李四's: neither 16:00 nor 16:30 nor 17:00 is offered.
    for taken in (utc(DAY, 16), utc(DAY, 16, 30), utc(DAY, 17)):
        assert taken.isoformat() not in starts
    assert ">12:00<" in form and f'<option value="{li.id}" selected>' in form
    nonce = re.search(r'name="nonce" value="([^"]+)"', form)[1]
    # Another day within the horizon; beyond it none is offered.
    later = (await browser.get(f"/console/bookings/{a10.id}/move?day={DAY + dt.timedelta(2)}"
                               f"&resource={li.id}")).text
    assert utc(DAY + dt.timedelta(days=2), 10).isoformat() in later
    assert f'value="{(DAY + dt.timedelta(days=15)).isoformat()}"' not in later
    # A taken time: refused with the nearest free ones, nothing changed.
    taken = await browser.post(f"/console/bookings/{a10.id}/move", token=token, data={
        "nonce": nonce, "start": utc(DAY, 16, 30).isoformat(), "resource": str(li.id)})
    assert taken.status == 200 and "没有空位" in taken.text and "最近的空闲时间" in taken.text
    assert (await Booking.get(id=a10.id)).status == BookingStatus.ACTIVE
    assert await Booking.all().count() == 4
    # The free time, submitted twice at once and once more: one move.
    data = {"nonce": nonce, "start": utc(DAY, 12).isoformat(), "resource": str(li.id)}
    path = f"/console/bookings/{a10.id}/move"
    first, second = await asyncio.gather(browser.post(path, token=token, data=data),
                                         browser.post(path, token=token, data=data))
    third = await browser.post(path, token=token, data={**data,
                                                        "start": utc(DAY, 13).isoformat()})
    assert all(p.status == 200 for p in (first, second, third)), [first.text, second.text]
    moved = await Booking.filter(moved_from_id=a10.id)
    assert len(moved) == 1
    new = moved[0]
    assert new.starts_at == utc(DAY, 12) and new.status == BookingStatus.ACTIVE
    assert new.resource_id == li.id and new.key == f"console:move:{a10.id}:{nonce}"
    texts = [first.text, second.text, third.text]
    assert sum("，已通知会员。" in t for t in texts) == 1
    assert sum("重复提交，未重复改约" in t for t in texts) == 2
    assert all(f"#{a10.id} → #{new.id}" in t for t in texts)
    assert (await Booking.get(id=a10.id)).status == BookingStatus.MOVED
    assert await Seat.filter(booking_id=new.id).count() == 2
    assert not await Seat.filter(booking_id=a10.id).exists()
    assert await AuditEntry.filter(action="booking_move", member_id=a10.member_id).count() == 1
    await h.settle()
    assert await Delivery.filter(key=f"notice:booking:{new.id}:moved").count() == 1
    # On the calendar at its new time; the old booking takes no other move.
    page = (await browser.get("/console/bookings")).text
    assert f'data-booking="{new.id}"' in cell(page, "12:00", li)
    assert a10.id not in shown_ids(page)
    again = await browser.post(path, token=token, data={
        "nonce": "anotherformnonce", "start": utc(DAY, 15).isoformat(), "resource": str(li.id)})
    assert "不能再操作" in again.text
    assert await Booking.filter(moved_from_id=a10.id).count() == 1
    assert b16.id in shown_ids(page)


async def test_the_move_form_opened_as_a_page_has_the_menu_and_its_panel(shop_day, browser):
    """改约 opened in a tab of its own (a reload, a long press in WeChat): the layout around it
    and the #panel its day and person pickers swap into, not a bare fragment that does nothing
    when the day is changed."""
    h = shop_day
    await log_in(h, browser, "manager")
    at_local(h.clock, DAY, 9)
    a10 = h.rows["a10"]
    page = (await browser.get(f"/console/bookings/{a10.id}/move?day={DAY}")).text
    assert 'class="top"' in page and '<div id="panel"' in page
    assert 'hx-target="#panel"' in page and "改约 #" in page
    fragment = (await browser.get(f"/console/bookings/{a10.id}/move?day={DAY}",
                                  headers={"HX-Request": "true"})).text
    assert 'class="top"' not in fragment and "<html" not in fragment


async def test_a_move_to_the_past_or_another_stores_resource_is_refused(shop_day, browser):
    h = shop_day
    token = await log_in(h, browser, "manager")
    at_local(h.clock, DAY, 11, 10)
    b16 = h.rows["b16"]
    li = await resource("LI")
    past = await browser.post(f"/console/bookings/{b16.id}/move", token=token, data={
        "nonce": "pastpastpast", "start": utc(DAY, 11).isoformat(), "resource": str(li.id)})
    assert "已经过去了" in past.text
    far = await browser.post(f"/console/bookings/{b16.id}/move", token=token, data={
        "nonce": "farfarfarfar", "start": utc(DAY, 15).isoformat(), "resource": str(h.far.id)})
    assert far.status == 400
    assert (await Booking.get(id=b16.id)).status == BookingStatus.ACTIVE
    assert not await AuditEntry.filter(action="booking_move").exists()
