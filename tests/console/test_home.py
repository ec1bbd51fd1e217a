"""The home page's figures, checked against rows made here: a manager's cover their store, an
owner's every store, a clerk's no money; each period against the one before (环比)."""

from __future__ import annotations

import datetime as dt
import html
import itertools
import json
import re

import pytest

from bot.models import (
    Booking,
    BookingStatus,
    Member,
    PointsEntry,
    Purchase,
    Rating,
    Resource,
    Service,
    Store,
)
from bot.services import members
from tests.console.support import Browser, login_by_link
from tests.support import SHANGHAI, add_staff, at_local

TODAY = dt.date(2026, 3, 18)
_keys = itertools.count(1)


def local(days_ago: int, hour: int) -> dt.datetime:
    return dt.datetime.combine(TODAY - dt.timedelta(days=days_ago), dt.time(hour), SHANGHAI)


async def member(h, phone: str, store: str, days_ago: int, hour: int = 10) -> Member:
    return await members.create_member(
        h.bot.vault, "88", phone, store_id=(await Store.get(code=store)).id, tier="普通会员",
        registered_at=local(days_ago, hour))


async def purchase(m: Member, store: str, fen: int, days_ago: int, *, voided: bool = False):
    at = local(days_ago, 12)
    await Purchase.create(member=m, store=await Store.get(code=store), amount=fen,
                          idempotency_key=f"t:{next(_keys)}", created_at=at,
                          voided_at=at + dt.timedelta(hours=1) if voided else None)


async def points(m: Member, kind: str, delta: int, days_ago: int = 0):
    await PointsEntry.create(member=m, delta=delta, kind=kind, reason="t", balance_after=0,
                             idempotency_key=f"t:{next(_keys)}", created_at=local(days_ago, 13))


async def booking(m: Member, store: str, status: str, days_ago: int = 0):
    service = await Service.first()
    resource = await Resource.first()
    if service is None:
        service = await Service.create(code="cut", name="剪发", minutes=30)
    if resource is None:
        resource = await Resource.create(code="chair", name="一号位",
                                         store=await Store.get(code=store))
    start = local(days_ago, 14)
    await Booking.create(key=f"t:{next(_keys)}", member=m, service=service, resource=resource,
                         store=await Store.get(code=store), starts_at=start,
                         ends_at=start + dt.timedelta(minutes=30), status=status)


async def rating(m: Member, store: str, stars: int):
    await Rating.create(visit=f"purchase:{next(_keys)}", key=f"t:{next(_keys)}", member=m,
                        store=await Store.get(code=store), stars=stars, created_at=local(0, 16))


@pytest.fixture
async def shop_with_rows(harness):
    """Two stores' members, purchases, points, bookings and ratings; the clock at 15:00."""
    h = harness
    at_local(h.clock, TODAY, 15)
    a1 = await member(h, "13800000001", "S001", 0)
    a2 = await member(h, "13800000002", "S001", 3)
    b1 = await member(h, "13800000003", "S002", 0, hour=9)
    c1 = await member(h, "13800000004", "S001", 10)
    await purchase(a1, "S001", 10000, 0)
    await purchase(a2, "S001", 5000, 0)
    await purchase(b1, "S002", 30000, 0)
    await purchase(a1, "S001", 99900, 0, voided=True)  # a typo, voided: not a sale
    await purchase(a2, "S001", 6000, 1)  # yesterday
    await points(a1, "earn", 100)
    await points(a2, "redeem", -50)
    await points(b1, "earn", 300)
    await points(c1, "expire", -20)
    await booking(a1, "S001", BookingStatus.ARRIVED)
    await booking(a2, "S001", BookingStatus.NO_SHOW)
    await booking(a1, "S001", BookingStatus.CANCELLED)  # not counted
    await booking(b1, "S002", BookingStatus.ACTIVE)
    await rating(a1, "S001", 5)
    await rating(a2, "S001", 3)
    await rating(b1, "S002", 1)
    return h


@pytest.fixture
async def browser(harness):
    opened = Browser(harness)
    yield opened
    await opened.close()


def figure(page: str, name: str, days: int) -> tuple[str, str]:
    """A figure's value and its change, as the page shows them."""
    row = re.search(rf'<tr data-figure="{name}">(.*?)</tr>', page, re.S)
    assert row, f"no row {name}"
    cell = re.search(rf'<span class="v" data-days="{days}">([^<]*)</span>\s*'
                     r'<span class="ch[^"]*">([^<]*)</span>', row[1])
    assert cell, row[1]
    return cell[1], cell[2]


async def home_as(h, browser: Browser, role: str, store: str = "S001") -> str:
    staff = await add_staff(f"o_{role}", role, store=store)
    await login_by_link(h, browser, staff.id)
    page = await browser.get("/console/")
    assert page.status == 200
    return page.text


async def test_a_managers_figures_cover_only_their_store(shop_with_rows, browser):
    page = await home_as(shop_with_rows, browser, "manager")
    assert "示例门店·总店" in page and "全部门店" not in page
    assert figure(page, "new_members", 1) == ("1", "—")  # none yesterday: nothing to compare
    assert figure(page, "sales", 1) == ("¥150.00", "+150.0%")  # against yesterday's ¥60
    assert figure(page, "average_spend", 1) == ("¥75.00", "+25.0%")  # two paid, one yesterday
    assert figure(page, "active_members", 1)[0] == "2"
    assert figure(page, "points_issued", 1)[0] == "100"
    assert figure(page, "points_redeemed", 1)[0] == "50"
    assert figure(page, "points_expired", 1)[0] == "20"
    assert figure(page, "bookings", 1)[0] == "2"
    assert figure(page, "no_shows", 1)[0] == "1"
    assert figure(page, "average_rating", 1)[0] == "4.0"
    # 7 days: a1 today, a2 three days ago; the 7 before: c1 ten days ago.
    assert figure(page, "new_members", 7) == ("2", "+100.0%")
    assert figure(page, "sales", 7)[0] == "¥210.00"
    assert figure(page, "new_members", 30) == ("3", "—")


async def test_the_owners_figures_cover_every_store(shop_with_rows, browser):
    page = await home_as(shop_with_rows, browser, "owner")
    assert "全部门店" in page
    assert figure(page, "new_members", 1)[0] == "2"
    assert figure(page, "sales", 1)[0] == "¥450.00"
    assert figure(page, "average_spend", 1)[0] == "¥150.00"
    assert figure(page, "active_members", 1)[0] == "3"
    assert figure(page, "points_issued", 1)[0] == "400"
    assert figure(page, "bookings", 1)[0] == "3"
    assert figure(page, "average_rating", 1)[0] == "3.0"


async def test_a_clerk_sees_their_store_without_money(shop_with_rows, browser):
    page = await home_as(shop_with_rows, browser, "clerk")
    assert figure(page, "new_members", 1)[0] == "1"
    assert 'data-figure="sales"' not in page and 'data-figure="points_issued"' not in page
    chart = json.loads(html.unescape(re.search(r"data-chart='([^']*)'", page)[1]))
    assert chart["sales"] is None


async def test_the_chart_shows_daily_new_members_and_sales_in_the_store(shop_with_rows,
                                                                        browser):
    h = shop_with_rows
    await home_as(h, browser, "manager")
    page = await browser.get("/console/chart?days=7")
    assert page.status == 200
    chart = json.loads(html.unescape(re.search(r"data-chart='([^']*)'", page.text)[1]))
    assert chart["dates"][-1] == "03-18" and len(chart["dates"]) == 7
    assert chart["new_members"] == [0, 0, 0, 1, 0, 0, 1]
    assert chart["sales"] == [0, 0, 0, 0, 0, 60.0, 150.0]


async def test_the_chart_needs_a_session(harness, browser):
    page = await browser.get("/console/chart?days=7")
    assert page.status == 302 and page.headers["Location"] == "/console/"
    page = await browser.get("/console/chart?days=7", headers={"HX-Request": "true"})
    assert page.status == 401 and page.headers["HX-Redirect"] == "/console/"
