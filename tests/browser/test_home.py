"""Logging in and the home page in a real Chromium: the sandbox scan takes the waiting page into
the console, the figures are the database's, the chart is drawn from them, 退出 ends the
session, a manager sees only their store, and the page fits a phone in WeChat."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from bot.console.pages import yuan
from bot.models import (
    Booking,
    BookingStatus,
    ConsoleSession,
    Member,
    PointsEntry,
    Purchase,
    Store,
)
from tests.browser.support import (
    PHONE,
    TODAY,
    click,
    figures,
    login,
    login_by_scan,
    path_of,
    seed,
    shoot,
    visit,
    wait_for_chart,
)
from tests.support import SHANGHAI, add_staff

COUNTED = (BookingStatus.ACTIVE, BookingStatus.ARRIVED, BookingStatus.NO_SHOW)


def _day(days_ago: int) -> dt.datetime:
    return dt.datetime.combine(TODAY - dt.timedelta(days=days_ago), dt.time(), SHANGHAI)


async def from_database(days: int, store: Store | None) -> dict[str, str]:
    """The figures of the last `days` days counted here from the rows, as the page shows them
    (the page's own queries are not used)."""
    start, end = _day(days - 1), _day(-1)
    scope = {"store": store} if store else {}
    new = await Member.filter(registered_at__gte=start, registered_at__lt=end, **scope).count()
    bought = await Purchase.filter(created_at__gte=start, created_at__lt=end, voided_at=None,
                                   **scope)
    sales = sum(p.amount for p in bought)
    payers = len({p.member_id for p in bought})
    home = {"member__store": store} if store else {}
    earned = await PointsEntry.filter(created_at__gte=start, created_at__lt=end, kind="earn",
                                      **home)
    booked = await Booking.filter(starts_at__gte=start, starts_at__lt=end, status__in=COUNTED,
                                  **scope)
    return {
        "new_members": str(new),
        "sales": yuan(sales),
        "average_spend": yuan(int((Decimal(sales) / payers).quantize(0, ROUND_HALF_UP)))
                         if payers else "—",
        "points_issued": str(sum(e.delta for e in earned)),
        "bookings": str(len(booked)),
        "no_shows": str(sum(b.status == BookingStatus.NO_SHOW for b in booked)),
    }


async def assert_figures_match(page, store: Store | None) -> None:
    shown = await figures(page)
    for days in (1, 7, 30):
        expected = await from_database(days, store)
        assert {name: shown[name][days][0] for name in expected} == expected, days


async def test_an_owner_logs_in_by_scanning_and_sees_the_shops_figures(page, shop):
    await seed(shop)
    owner = await add_staff("o_owner", "owner", name="老板")
    reply = await login_by_scan(page, shop, owner.openid)
    assert "已登录后台" in reply and "Chrome" in reply
    session = await ConsoleSession.get(staff_id=owner.id)
    assert session.ended_at is None
    await visit(page, "/console/", shot="home")
    assert await page.locator("header.top .where").inner_text() == "全部门店"
    assert "老板" in await page.locator("header.top .who").inner_text()
    await assert_figures_match(page, None)
    # The seed's own figures, so that a wrong count on both sides cannot pass.
    shown = await figures(page)
    assert shown["new_members"][1] == ("2", "—")
    assert shown["sales"][1] == ("¥450.00", "+650.0%")  # ¥60 yesterday; the voided ¥999 is out
    assert shown["bookings"][1][0] == "4" and shown["no_shows"][1][0] == "1"


async def test_the_chart_is_drawn_from_the_days_in_the_database(page, shop):
    await seed(shop)
    await login(page, shop, "owner")
    await visit(page, "/console/")
    drawn = await wait_for_chart(page)
    assert drawn["width"] > 300 and drawn["height"] > 200
    assert drawn["inked"] > 0.02 * drawn["width"] * drawn["height"], drawn["inked"]
    dates = [TODAY - dt.timedelta(days=n) for n in range(29, -1, -1)]
    assert drawn["dates"] == [d.strftime("%m-%d") for d in dates]
    members = await Member.all()
    bought = await Purchase.filter(voided_at=None)
    per_day = {d: 0 for d in dates}
    sales = {d: 0 for d in dates}
    for m in members:
        day = m.registered_at.astimezone(SHANGHAI).date()
        if day in per_day:
            per_day[day] += 1
    for p in bought:
        day = p.created_at.astimezone(SHANGHAI).date()
        if day in sales:
            sales[day] += p.amount
    series = {s["name"]: s["data"] for s in drawn["series"]}
    assert series["新会员"] == list(per_day.values())
    assert series["销售额（元）"] == [fen / 100 for fen in sales.values()]
    await shoot(page, "home-chart")


async def test_the_7_day_switch_draws_the_chart_again(page, shop):
    await seed(shop)
    await login(page, shop, "owner")
    await visit(page, "/console/")
    await wait_for_chart(page)
    assert (await click(page, "7 天", method="GET")).status == 200
    assert await page.locator("#chart-box .tabs button.on").inner_text() == "7 天"
    await shoot(page, "home-chart-7")
    drawn = await wait_for_chart(page, wait_ms=3_000)
    dates = [TODAY - dt.timedelta(days=n) for n in range(6, -1, -1)]
    assert drawn["dates"] == [d.strftime("%m-%d") for d in dates]
    assert drawn["inked"] > 0.02 * drawn["width"] * drawn["height"]


async def test_logging_out_ends_the_session(page, shop):
    staff = await login(page, shop, "manager")
    await visit(page, "/console/")
    assert (await click(page, "退出")).status == 200  # htmx's POST, with the CSRF token
    await page.locator("img.qr").wait_for()
    assert path_of(page) == "/console/"
    assert await page.locator("header.top").count() == 0
    await shoot(page, "logged-out")
    session = await ConsoleSession.get(staff_id=staff.id)
    assert session.ended_at is not None and session.end_reason == "logout"
    # The cookie is no key any more: the console is the login page again.
    await page.goto("/console/chart?days=7")
    assert path_of(page) == "/console/" and await page.locator("img.qr").count() == 1


async def test_a_manager_sees_only_their_stores_figures(page, shop):
    await seed(shop)
    await login(page, shop, "manager", store="S002", name="二店店长")
    await visit(page, "/console/", shot="home-manager")
    assert await page.locator("header.top .where").inner_text() == "示例门店·二店"
    store = await Store.get(code="S002")
    await assert_figures_match(page, store)
    shown = await figures(page)
    assert shown["sales"][1][0] == "¥300.00" and shown["new_members"][30][0] == "3"
    drawn = await wait_for_chart(page)
    assert sum(drawn["series"][0]["data"]) == 3  # S002's members only


async def test_the_home_page_fits_a_phone_in_wechat(new_page, shop):
    page = await new_page(**PHONE)
    await seed(shop)
    await login(page, shop, "owner")
    await visit(page, "/console/", shot="home-phone")
    drawn = await wait_for_chart(page)
    assert drawn["inked"] > 0.02 * drawn["width"] * drawn["height"]
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the phone"
