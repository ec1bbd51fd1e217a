"""评价 in the console: ratings of the user's store (an owner's every store), the member's
phone masked, low ratings marked with their support thread's state, filters, paging."""

from __future__ import annotations

import datetime as dt
import html
import itertools
import re

import pytest

from bot.models import Purchase, Rating, Store, SupportThread
from tests.console.office import local, member

DAY = dt.date(2026, 3, 18)
_keys = itertools.count(1)


async def rate(m, store: str, stars: int, comment: str = "", *, day: dt.date = DAY,
               thread_status: str | None = None, amount: int | None = None) -> Rating:
    store_row = await Store.get(code=store)
    visit = f"booking:{next(_keys)}"
    if amount is not None:
        purchase = await Purchase.create(member=m, store=store_row, amount=amount,
                                         idempotency_key=f"t:{next(_keys)}")
        visit = f"purchase:{purchase.id}"
    thread = None
    if thread_status:
        thread = await SupportThread.create(
            key=f"rating:{next(_keys)}", member=m, store=store_row, reason="low_rating",
            status=thread_status, opened_at=local(day), last_activity_at=local(day))
    return await Rating.create(visit=visit, key=f"t:{next(_keys)}", member=m, store=store_row,
                               stars=stars, comment=comment, created_at=local(day, 16),
                               thread=thread)


def rows(page: str) -> dict[int, str]:
    """Each rating's row, by id."""
    return {int(i): body for i, body in
            re.findall(r'<tr data-rating="(\d+)"[^>]*>(.*?)</tr>', page, re.S)}


@pytest.fixture
async def shop(harness):
    h = harness
    a = await member(h, "13800000001", "S001")
    b = await member(h, "13800000002", "S002")
    h.ratings = {
        "good": await rate(a, "S001", 5, "很好", amount=8800),
        "low": await rate(a, "S001", 1, "等太久", thread_status="open"),
        "low_closed": await rate(a, "S001", 2, "一般", day=DAY - dt.timedelta(days=10),
                                 thread_status="closed"),
        "other": await rate(b, "S002", 1, "别的店差评", thread_status="waiting"),
    }
    return h


async def test_a_manager_sees_their_stores_ratings_with_the_phone_masked(shop, browsers):
    browser, _ = await browsers.as_role(shop, "manager")
    page = await browser.get("/console/feedback")
    assert page.status == 200
    found = rows(page.text)
    r = shop.ratings
    assert set(found) == {r["good"].id, r["low"].id, r["low_closed"].id}
    assert "别的店差评" not in page.text
    assert "138****0001" in found[r["good"].id] and "13800000001" not in page.text
    assert "★★★★★" in found[r["good"].id] and "很好" in found[r["good"].id]
    assert "消费 #" in found[r["good"].id] and "¥88.00" in found[r["good"].id]
    # Low ratings are marked and say where their support thread stands.
    low_row = re.search(rf'<tr data-rating="{r["low"].id}"([^>]*)>', page.text)[1]
    assert 'class="low"' in low_row
    assert "处理中" in found[r["low"].id] and "已结束" in found[r["low_closed"].id]
    good_row = re.search(rf'<tr data-rating="{r["good"].id}"([^>]*)>', page.text)[1]
    assert "low" not in good_row
    assert "共 <strong>3</strong> 条评价" in page.text
    assert "平均 <strong>2.67</strong> 星" in page.text
    assert 'name="store"' not in page.text  # a manager has no store to choose
    widened = await browser.get("/console/feedback?store=S002")  # and cannot pick one
    assert set(rows(widened.text)) == set(found)


async def test_the_owner_sees_every_store_and_can_narrow_to_one(shop, browsers):
    browser, _ = await browsers.as_role(shop, "owner")
    r = shop.ratings
    page = await browser.get("/console/feedback")
    assert set(rows(page.text)) == {x.id for x in r.values()}
    assert "待接待" in rows(page.text)[r["other"].id]
    page = await browser.get("/console/feedback?store=S002")
    assert set(rows(page.text)) == {r["other"].id}
    assert (await browser.get("/console/feedback?store=NOPE")).status == 404


async def test_filters_by_stars_and_dates(shop, browsers):
    browser, _ = await browsers.as_role(shop, "manager")
    r = shop.ratings
    page = await browser.get("/console/feedback?stars=2")
    assert set(rows(page.text)) == {r["low"].id, r["low_closed"].id}
    page = await browser.get(f"/console/feedback?from={DAY}&to={DAY}")
    assert set(rows(page.text)) == {r["good"].id, r["low"].id}
    earlier = DAY - dt.timedelta(days=10)
    page = await browser.get(f"/console/feedback?stars=2&to={earlier}")
    assert set(rows(page.text)) == {r["low_closed"].id}
    page = await browser.get("/console/feedback?from=yesterday")
    assert "日期格式" in page.text and len(rows(page.text)) == 3  # the bad filter left out


async def test_pages_through_many_ratings_without_repeats(harness, browsers):
    h = harness
    m = await member(h, "13800000009", "S001")
    made = [await rate(m, "S001", 4, f"第{i}条") for i in range(35)]
    browser, _ = await browsers.as_role(h, "manager")
    page = await browser.get("/console/feedback")
    first = list(rows(page.text))
    assert first == [x.id for x in reversed(made)][:30]  # newest first
    link = html.unescape(re.search(r'<a href="([^"]+)" class="next">', page.text)[1])
    page = await browser.get(link)
    second = list(rows(page.text))
    assert second == [x.id for x in reversed(made)][30:]
    assert 'class="next"' not in page.text and "« 最新" in page.text


async def test_a_clerk_may_not_open_it_and_a_stranger_is_sent_to_log_in(shop, browsers):
    browser, _ = await browsers.as_role(shop, "clerk")
    assert (await browser.get("/console/feedback")).status == 403
    assert "/console/feedback" not in (await browser.get("/console/")).text  # not in the menu
    stranger = browsers.new(shop)
    page = await stranger.get("/console/feedback")
    assert page.status == 302 and page.headers["Location"] == "/console/"
