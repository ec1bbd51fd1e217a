"""The home page's RFM 2×2×2 grid over HTTP, against a shop made by hand: each cell's count for
a manager (their store) and an owner (every store), the same as the cell's segment counts;
a click lists the cell's members with masked phones, page by page; the cell's campaign form
comes prefilled and makes a campaign for exactly those members."""

from __future__ import annotations

import datetime as dt
import html
import itertools
import re
from urllib.parse import quote

import pytest

from bot.console import rfm
from bot.models import Campaign, Member, Purchase, Store
from bot.rules.segments import RFM_CLASSES
from bot.services import members, segments
from tests.console.support import log_in_as as login
from tests.support import SHANGHAI, at_local

TODAY = dt.date(2026, 3, 18)
_keys = itertools.count(1)


async def member(h, name: str, store: str, phone: str) -> Member:
    return await members.create_member(h.bot.vault, "88", phone, name=name, tier="普通会员",
                                       store_id=(await Store.get(code=store)).id)


async def bought(m: Member, store: str, yuan: int, days_ago: int, *, voided: bool = False):
    at = dt.datetime.combine(TODAY - dt.timedelta(days=days_ago), dt.time(12), SHANGHAI)
    await Purchase.create(member=m, store=await Store.get(code=store), amount=yuan * 100,
                          idempotency_key=f"rfm:{next(_keys)}", created_at=at,
                          voided_at=at + dt.timedelta(hours=1) if voided else None)


@pytest.fixture
async def shop(harness):
    """Five buyers, whose medians are E's: last purchase 10 days ago, 2 purchases, ¥100.
        A (S001) 1 day ago, 3 purchases, ¥300   → R high F high M high: 重要价值
        B (S001) 50 days ago, 3 purchases, ¥30  → R low  F high M low:  一般保持
        C (S001) 2 days ago, 1 purchase, ¥500   → R high F low  M high: 重要发展
        D (S001) 60 days ago, 1 purchase, ¥10 (and a voided ¥900 today) → 一般挽留
        E (S002) at the medians, so low on all three                     → 一般挽留
        F (S001) never bought → 一般挽留; G (S001) said 退订 → in no cell."""
    h = harness
    at_local(h.clock, TODAY, 15)
    a = await member(h, "A", "S001", "13800000001")
    b = await member(h, "B", "S001", "13800000002")
    c = await member(h, "C", "S001", "13800000003")
    d = await member(h, "D", "S001", "13800000004")
    e = await member(h, "E", "S002", "13800000005")
    await member(h, "F", "S001", "13800000006")
    g = await member(h, "G", "S001", "13800000007")
    await Member.filter(id=g.id).update(marketing_opt_out_at=h.bot.now())
    for days in (1, 5, 9):
        await bought(a, "S001", 100, days)
    for days in (50, 55, 58):
        await bought(b, "S001", 10, days)
    await bought(c, "S001", 500, 2)
    await bought(d, "S001", 10, 60)
    await bought(d, "S001", 900, 0, voided=True)
    await bought(e, "S002", 50, 10)
    await bought(e, "S002", 50, 20)
    return h


def grid(page: str) -> dict[str, int]:
    return {name: int(n) for name, n in
            re.findall(r'data-rfm="([^"]+)" data-count="(\d+)"', page)}


EMPTY = dict.fromkeys(RFM_CLASSES, 0)


async def test_a_managers_grid_counts_their_stores_members(shop, browser):
    await login(shop, browser, "manager")
    page = await browser.get("/console/rfm", headers={"HX-Request": "true"})
    assert page.status == 200
    assert grid(page.text) == EMPTY | {"重要价值": 1, "一般保持": 1, "重要发展": 1, "一般挽留": 2}
    assert "5 位本店会员" in page.text
    assert "5 位会员的中位数" in page.text and "消费 2.0 次" in page.text
    assert "¥100.00" in page.text


async def test_the_owners_grid_counts_every_store(shop, browser):
    await login(shop, browser, "owner")
    page = await browser.get("/console/rfm")
    assert grid(page.text) == EMPTY | {"重要价值": 1, "一般保持": 1, "重要发展": 1, "一般挽留": 3}


async def test_a_clerk_gets_no_grid(shop, browser):
    await login(shop, browser, "clerk")
    assert (await browser.get("/console/rfm")).status == 403
    assert (await browser.get("/console/rfm/members?rfm=重要价值")).status == 403
    assert 'hx-get="/console/rfm"' not in (await browser.get("/console/")).text


async def test_the_home_page_loads_the_grid_for_a_manager(shop, browser):
    await login(shop, browser, "manager")
    home = await browser.get("/console/")
    assert 'hx-get="/console/rfm" hx-trigger="load"' in home.text


async def test_each_cell_counts_what_its_segment_counts(any_db, shop):
    for scope in ("all", "store=S001", "store=S002"):
        segment = segments.parse(scope, shop.bot.config)
        _, counts = await segments.rfm_grid(segment, today=TODAY)
        for name in RFM_CLASSES:
            text = f"rfm={name}" if scope == "all" else f"{scope} rfm={name}"
            cell = segments.parse(text, shop.bot.config)
            assert counts[name] == await segments.count(cell, today=TODAY), text


async def test_a_grid_with_no_buyers_puts_everyone_in_the_last_cell(harness, browser):
    at_local(harness.clock, TODAY, 15)
    await member(harness, "F", "S001", "13800000006")
    await login(harness, browser, "owner")
    page = await browser.get("/console/rfm")
    assert grid(page.text) == EMPTY | {"一般挽留": 1}


async def test_a_cell_lists_its_members_masked_page_by_page(shop, browser, monkeypatch):
    monkeypatch.setattr(rfm, "PAGE_SIZE", 1)
    await login(shop, browser, "manager")
    first = await browser.get(f"/console/rfm/members?rfm={quote('一般挽留')}")
    assert first.status == 200
    assert "D" in first.text and "138****0004" in first.text and "13800000004" not in first.text
    after = re.search(r'data-next="(\d+)"', first.text)[1]
    second = await browser.get(f"/console/rfm/members?rfm={quote('一般挽留')}&after={after}")
    assert "138****0006" in second.text and "138****0004" not in second.text
    assert "data-next" not in second.text  # E is another store's: no third page
    assert (await browser.get("/console/rfm/members?rfm=nonsense")).status == 404


async def test_a_cell_opens_the_campaign_form_for_its_members(shop, browser):
    token = await login(shop, browser, "manager")
    cell = await browser.get(f"/console/rfm/members?rfm={quote('一般挽留')}")
    link = html.unescape(
        re.search(r'<a class="button" href="([^"]+)">为这些会员创建群发', cell.text)[1])
    assert link == "/console/campaigns/new?segment=" + quote("store=S001 rfm=一般挽留")
    form = await browser.get(link)
    assert 'value="store=S001 rfm=一般挽留"' in form.text
    assert 'data-count="2"' in form.text  # the cell's count
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)[1]
    page = await browser.post("/console/campaigns/new", data={
        "csrf_token": token, "nonce": nonce, "segment": "store=S001 rfm=一般挽留",
        "text": "好久不见，送您一张券", "holdout": "0"})
    assert page.status == 303
    campaign = await Campaign.get(id=int(page.headers["Location"].rsplit("/", 1)[1]))
    assert campaign.segment == "store=S001 rfm=一般挽留"
