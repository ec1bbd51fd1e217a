"""The Bookings page in a real Chromium, as a clerk and as a manager of S001 on the seed's
Wednesday (TODAY, 15:00): the day calendar (and the manager's week) shows the store's bookings
the database holds, a booking's panel marks it arrived once (a double click too, audited once)
and the calendar behind it follows, 取消 asks first, and 改约 moves it to a free time offered
in the panel's list."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from bot.models import AuditEntry, Booking, BookingStatus, Member, Resource, Service, Store
from bot.services import bookings
from bot.services.staff import Actor
from tests.browser.support import (
    MEMBERS,
    PHONE,
    TODAY,
    click,
    login,
    seed,
    shoot,
    visit,
)
from tests.support import SHANGHAI

PHONES = [phone for _, phone, *_ in MEMBERS]
SHOWN = (BookingStatus.ACTIVE, BookingStatus.OFFERED, BookingStatus.ARRIVED,
         BookingStatus.NO_SHOW)
_keys = itertools.count(1)


async def assert_readable(button) -> None:
    """The button's text is not the colour of its background (computed by Chromium)."""
    color, background = await button.evaluate(
        "b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]")
    assert color != background, (await button.inner_text(), color, background)


def at(hour: int, minute: int = 0, day: dt.date = TODAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), SHANGHAI)


def utc(hour: int) -> dt.datetime:
    """SQLite compares datetimes as text: a query's are UTC."""
    return at(hour).astimezone(dt.UTC)


async def book_more(shop, made: dict[str, Member]) -> dict[str, Booking]:
    """Later today at S001, with config.toml's 小李 (LI) and 王老师 (WANG), made by the service
    as staff do in chat (their seats held): 17:00 and 18:00 with LI, 17:00 with WANG."""
    store = await Store.get(code="S001")
    cut = await Service.get(code="CUT")
    rows = {}
    for label, who, code, hour in (("li17", "李娜", "LI", 17), ("li18", "刘洋", "LI", 18),
                                   ("wang17", "赵磊", "WANG", 17)):
        booked = await bookings.book(shop.bot, made[who], cut, at(hour), key=f"bt:{next(_keys)}",
                                     resource=await Resource.get(code=code),
                                     actor=Actor.cli(store))
        rows[label] = booked.booking
    return rows


async def shown_ids(page) -> list[int]:
    return await page.eval_on_selector_all(
        "#calendar a[data-booking]", "as => as.map(a => Number(a.dataset.booking))")


async def expected_ids(store: Store, start: dt.date, days: int = 1) -> set[int]:
    since = at(0, day=start).astimezone(dt.UTC)
    return {b.id for b in await Booking.filter(
        store=store, status__in=SHOWN, starts_at__gte=since,
        starts_at__lt=since + dt.timedelta(days=days))}


async def open_panel(page, booking: Booking) -> None:
    assert (await click(page, page.locator(f'#calendar a[data-booking="{booking.id}"]'),
                        method="GET")).status == 200
    await page.locator(f'#panel .bk-detail[data-booking="{booking.id}"]').wait_for()


async def calendar_status(page, booking: Booking) -> str:
    block = page.locator(f'#calendar a[data-booking="{booking.id}"]')
    return (await block.get_attribute("class")).split("st-")[1].split()[0]


@pytest.mark.parametrize("role", ["clerk", "manager"])
async def test_the_desk_marks_arrivals_cancels_and_moves_bookings_once(page, shop, role):
    made = await seed(shop)
    later = await book_more(shop, made)
    staff = await login(page, shop, role)
    s001 = await Store.get(code="S001")

    # The day: S001's bookings of today, none of S002's, phones masked.
    await visit(page, "/console/bookings", shot="day")
    ids = await shown_ids(page)
    assert len(ids) == len(set(ids)) and set(ids) == await expected_ids(s001, TODAY)
    assert len(ids) == 6  # the seed's arrived, no-show and 16:00 active; three booked here
    content = await page.content()
    assert "138****0001" in content and not any(phone in content for phone in PHONES)
    if role == "manager":
        await page.locator(".bk-views a", has_text="周").click()
        await page.wait_for_url("**/console/bookings?*view=week*")
        await page.locator("table.bk-week").wait_for()
        await shoot(page, "week")
        monday = TODAY - dt.timedelta(days=TODAY.weekday())
        week = await shown_ids(page)
        assert set(week) == await expected_ids(s001, monday, 7) and set(ids) <= set(week)
        cell = page.locator(f'table.bk-week td[data-day="{TODAY.isoformat()}"] a[data-booking]')
        assert await cell.count() == len(ids)
        await visit(page, "/console/bookings")

    # 到店 on the seed's 16:00 booking: arrived once, and the calendar shows it.
    seeded = await Booking.get(store=s001, status=BookingStatus.ACTIVE, starts_at=utc(16))
    await open_panel(page, seeded)
    await shoot(page, "panel")
    for button in await page.locator("#panel .bk-actions button").all():
        await assert_readable(button)
    assert (await click(page, page.locator('#panel button[data-action="arrive"]'))).status == 200
    assert "已登记到店。" in await page.locator("#panel .bk-outcome").inner_text()
    await page.wait_for_function(
        f"""() => document.querySelector('#calendar a[data-booking="{seeded.id}"]')
                  ?.classList.contains('st-arrived')""")
    await page.wait_for_function("() => !document.querySelector('.htmx-request')")
    await shoot(page, "arrived")
    await seeded.refresh_from_db()
    assert seeded.status == BookingStatus.ARRIVED
    assert await AuditEntry.filter(action="booking_arrived", member_id=seeded.member_id
                                   ).count() == 1
    assert await page.locator('#panel button[data-action="arrive"]').count() == 0

    # A double click on another's 到店: one request, arrived once, audited once.
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    li17 = later["li17"]
    await open_panel(page, li17)
    async with page.expect_response(lambda r: r.request.method == "POST"):
        await page.locator('#panel button[data-action="arrive"]').dblclick()
    await page.wait_for_function(
        f"""() => document.querySelector('#calendar a[data-booking="{li17.id}"]')
                  ?.classList.contains('st-arrived')""")
    await page.wait_for_timeout(300)
    assert [u for u in posts if u.endswith(f"/bookings/{li17.id}/arrive")], posts
    await li17.refresh_from_db()
    assert li17.status == BookingStatus.ARRIVED
    assert await AuditEntry.filter(action="booking_arrived", member_id=li17.member_id
                                   ).count() == 1
    assert await calendar_status(page, seeded) == "arrived"

    # 取消 asks first; 确认取消 cancels it and it leaves the calendar.
    wang17 = later["wang17"]
    await open_panel(page, wang17)
    assert (await click(page, page.locator('#panel a[data-action="cancel"]'), method="GET")
            ).status == 200
    assert "确定取消这个预约吗" in await page.locator("#panel .bk-confirm").inner_text()
    await wang17.refresh_from_db()
    assert wang17.status == BookingStatus.ACTIVE  # asking changed nothing
    await shoot(page, "cancel-confirm")
    await assert_readable(page.locator('#panel button[data-action="cancel"]'))  # was red on red
    assert (await click(page, page.locator('#panel button[data-action="cancel"]'))
            ).status == 200
    await page.locator(f'#calendar a[data-booking="{wang17.id}"]').wait_for(state="detached")
    await wang17.refresh_from_db()
    assert wang17.status == BookingStatus.CANCELLED
    assert await AuditEntry.filter(action="booking_cancel", member_id=wang17.member_id
                                   ).count() == 1

    # 改约 through the panel's list of free times: to the first one offered.
    li18 = later["li18"]
    await open_panel(page, li18)
    assert (await click(page, page.locator('#panel a[data-action="move"]'), method="GET")
            ).status == 200
    times = page.locator("#panel .bk-move button[data-start]")
    await times.first.wait_for()
    starts = await times.evaluate_all("bs => bs.map(b => b.dataset.start)")
    taken = {b.starts_at for b in await Booking.filter(
        resource_id=li18.resource_id, status__in=(BookingStatus.ACTIVE,
                                                  BookingStatus.ARRIVED))}
    chosen = next(s for s in starts if dt.datetime.fromisoformat(s) not in taken
                  and dt.datetime.fromisoformat(s) != li18.starts_at)
    await shoot(page, "move-list")
    assert (await click(page, page.locator(f'#panel button[data-start="{chosen}"]'))
            ).status == 200
    outcome = await page.locator("#panel .bk-outcome").inner_text()
    assert "已改约" in outcome and "已通知会员" in outcome
    moved = await Booking.filter(moved_from_id=li18.id)
    assert len(moved) == 1
    new = moved[0]
    assert new.starts_at == dt.datetime.fromisoformat(chosen)
    assert new.status == BookingStatus.ACTIVE and new.resource_id == li18.resource_id
    await li18.refresh_from_db()
    assert li18.status == BookingStatus.MOVED
    assert await AuditEntry.filter(action="booking_move", member_id=li18.member_id
                                   ).count() == 1
    if new.starts_at.astimezone(SHANGHAI).date() == TODAY:
        await page.locator(f'#calendar a[data-booking="{new.id}"]').wait_for()
    await page.locator(f'#calendar a[data-booking="{li18.id}"]').wait_for(state="detached")
    await shoot(page, "moved")
    # Every audit row here is this employee's.
    rows = await AuditEntry.filter(action__startswith="booking_", staff_id=staff.id)
    assert sorted(r.action for r in rows) == ["booking_arrived", "booking_arrived",
                                              "booking_cancel", "booking_move"]


async def test_the_bookings_page_fits_a_phone(new_page, shop):
    page = await new_page(**PHONE)
    made = await seed(shop)
    await book_more(shop, made)
    await login(page, shop, "manager")
    await visit(page, "/console/bookings", shot="day-phone")
    seeded = await Booking.get(status=BookingStatus.ACTIVE, starts_at=utc(16))
    await open_panel(page, seeded)
    await shoot(page, "panel-phone")
    await visit(page, "/console/bookings?view=week", shot="week-phone")
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the phone"
