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
    Coupon,
    CouponTemplate,
    Member,
    PointsEntry,
    Purchase,
    Rating,
    Resource,
    RollupDay,
    Service,
    Staff,
    Store,
    TierChange,
)
from bot.services import members, rollups
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


# --- what stands now, coupons, tier moves; the same figures once rolled up ---------------------

async def coupon(m: Member, days_ago: int, redeemed_days_ago: int | None = None):
    template = await CouponTemplate.get(code="WELCOME20")
    at = local(days_ago, 11)
    await Coupon.create(template=template, member=m, code=f"T{next(_keys):08d}",
                        source="manual", issue_key=f"t:{next(_keys)}", valid_from=at,
                        expires_at=at + dt.timedelta(days=30), issued_at=at,
                        status="issued" if redeemed_days_ago is None else "redeemed",
                        redeemed_at=None if redeemed_days_ago is None
                        else local(redeemed_days_ago, 12))


@pytest.fixture
async def shop_standing(shop_with_rows):
    """Balances, coupons and tier moves on top of shop_with_rows."""
    h = shop_with_rows
    a1, a2, b1, c1 = await Member.all().order_by("id")
    await Member.filter(id=a1.id).update(points=1000, stored_value=50000, tier="金卡会员")
    await Member.filter(id=a2.id).update(points=234, tier="银卡会员")
    await Member.filter(id=b1.id).update(points=7000, stored_value=8800, tier="银卡会员")
    await Member.filter(id=c1.id).update(points=5, erased_at=h.bot.now())  # counted in no tier
    await coupon(a1, 0, redeemed_days_ago=0)
    await coupon(a2, 0)
    await coupon(a1, 5, redeemed_days_ago=0)  # an older coupon redeemed today
    await coupon(a1, 0)
    await coupon(b1, 0, redeemed_days_ago=0)
    for m, old, new in ((a1, "银卡会员", "金卡会员"), (a2, "金卡会员", "银卡会员"),
                        (b1, "普通会员", "银卡会员")):
        await TierChange.create(member=m, from_tier=old, to_tier=new, reason="evaluation",
                                created_at=local(0, 3))
    return h


def owed(page: str, name: str) -> str:
    match = re.search(rf'data-owed="{name}">.*?<span class="v">([^<]*)</span>', page, re.S)
    assert match, name
    return match[1]


def tiers_of(page: str) -> dict[str, int]:
    data = json.loads(html.unescape(re.search(r"data-tiers='([^']*)'", page)[1]))
    return dict(zip(data["names"], data["members"], strict=True))


async def test_a_manager_sees_what_their_store_owes_its_tiers_coupons_and_tier_moves(
        shop_standing, browser):
    page = await home_as(shop_standing, browser, "manager")
    # Points are spent at 兑换: the best fixed amount off a point buys is CUT30's ¥30 for
    # 300 points, so a point stands for ¥0.10. The store's members hold 1000 + 234 + 5.
    assert owed(page, "points") == "¥123.90"
    assert "1239 积分" in page and "按积分兑换券每分最高可抵金额" in page
    assert owed(page, "stored_value") == "¥500.00"
    assert tiers_of(page) == {"普通会员": 0, "银卡会员": 1, "金卡会员": 1, "钻石会员": 0}
    assert figure(page, "coupon_rate", 1) == ("66.7%", "—")  # 2 redeemed of 3 issued today
    assert figure(page, "coupon_rate", 7)[0] == "50.0%"  # 2 of 4
    assert figure(page, "tier_ups", 1)[0] == "1" and figure(page, "tier_downs", 1)[0] == "1"
    moves = json.loads(html.unescape(re.search(r"data-tier-moves='([^']*)'", page)[1]))
    assert moves["ups"][-1] == 1 and moves["downs"][-1] == 1 and len(moves["dates"]) == 30


async def test_the_owner_sees_every_store_owe_and_a_clerk_sees_no_money(shop_standing, browser):
    page = await home_as(shop_standing, browser, "owner")
    assert owed(page, "points") == "¥823.90" and owed(page, "stored_value") == "¥588.00"
    assert tiers_of(page)["银卡会员"] == 2
    assert figure(page, "coupon_rate", 1)[0] == "75.0%"  # 3 of 4
    assert figure(page, "tier_ups", 1)[0] == "2"
    await browser.close()
    clerk = Browser(shop_standing)
    try:
        page = await home_as(shop_standing, clerk, "clerk")
        assert 'data-owed=' not in page and 'data-figure="coupon_rate"' not in page
        assert "积分负债" not in page and "储值" not in page
        assert tiers_of(page)["金卡会员"] == 1  # members per tier are no money
        assert figure(page, "tier_ups", 1)[0] == "1"
    finally:
        await clerk.close()


async def test_the_page_shows_the_same_figures_once_the_nightly_job_rolled_the_days_up(
        shop_standing, browser):
    h = shop_standing
    before = await home_as(h, browser, "manager")
    # Tomorrow at 15:00 the days until today are closed: the job rolls them up.
    at_local(h.clock, TODAY + dt.timedelta(days=1), 15)
    result = await rollups.nightly(h.bot, TODAY + dt.timedelta(days=1))
    assert result["counts"] > 0 and await RollupDay.filter(day=TODAY).exists()
    await login_by_link(h, browser, (await Staff.get(openid="o_manager")).id)  # was idle
    after = (await browser.get("/console/")).text
    # Yesterday's figures are now the page's "7 days" and its day before: compare the 7 and
    # 30 day columns' values (today's column moved on to an empty day).
    for name in ("new_members", "active_members", "sales", "average_spend", "points_issued",
                 "coupon_rate", "tier_ups", "bookings", "no_shows", "average_rating"):
        for days in (7, 30):
            assert figure(after, name, days)[0] == figure(before, name, days)[0], (name, days)
        assert figure(after, name, 1)[0] in ("0", "—", "¥0.00"), name
