"""Campaigns (群发) from the home page's RFM grid in a real Chromium, as the owner and as a
manager: the grid's cells add up to the members in scope, a cell lists its members (phones
masked, the full number nowhere in the page), 为这些会员创建群发 opens the form with the cell's
segment and a live count equal to the segment's count in the database, and the campaign is
created, previewed and started once (a double click on 开始发送 too), audited once."""

from __future__ import annotations

import pytest

from bot.infra.vault import mask_phone
from bot.models import AuditEntry, Campaign, Member, Store
from bot.services import segments
from tests.browser.support import MEMBERS, PHONE, click, login, path_of, seed, shoot, visit

PHONES = {name: phone for name, phone, *_ in MEMBERS}


async def assert_readable(button) -> None:
    """The button's text is not the colour of its background (computed by Chromium)."""
    color, background = await button.evaluate(
        "b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]")
    assert color != background, (await button.inner_text(), color, background)


async def _cell_ids(shop, text: str) -> list[int]:
    """The members a segment selects now, from the database (all of them, in id order)."""
    segment = segments.parse(text, shop.config)
    ids: list[int] = []
    async for batch in segments.id_batches(segment, today=shop.bot.today(), size=500):
        ids.extend(batch)
    return ids


@pytest.mark.parametrize("role", ["owner", "manager"])
async def test_a_campaign_for_an_rfm_cell_is_created_previewed_and_started_once(
        page, shop, role):
    made = await seed(shop)
    staff = await login(page, shop, role)
    store = await Store.get(code="S001")
    scope = "" if role == "owner" else "store=S001 "

    await visit(page, "/console/campaigns", shot="campaigns-list")
    assert await page.locator("tr[data-campaign]").count() == 0

    # The grid on the home page: its cells hold every member in scope exactly once.
    await visit(page, "/console/")
    cells = page.locator("#rfm-box button.rfm-cell")
    await cells.first.wait_for()
    counts = dict(await page.eval_on_selector_all(
        "#rfm-box button.rfm-cell", "bs => bs.map(b => [b.dataset.rfm, Number(b.dataset.count)])"))
    assert len(counts) == 8
    in_scope = await Member.filter(**({} if role == "owner" else {"store": store})).count()
    assert sum(counts.values()) == in_scope
    for name, n in counts.items():
        assert n == len(await _cell_ids(shop, f"{scope}rfm={name}")), name
    await shoot(page, "rfm-grid")

    # The fullest cell: its members as the database has them, phones masked.
    name = max(counts, key=lambda n: (counts[n], n))
    assert counts[name] >= 2, counts  # the seed gives some cell two members at least
    text = f"{scope}rfm={name}"
    ids = await _cell_ids(shop, text)
    assert (await click(page, page.locator(f'button.rfm-cell[data-rfm="{name}"]'),
                        method="GET")).status == 200
    listed = page.locator(f'#rfm-members .rfm-members[data-rfm="{name}"]')
    await listed.wait_for()
    assert await listed.locator("code").first.inner_text() == text
    rows = await listed.locator("tr[data-member]").evaluate_all(
        "trs => trs.map(tr => [Number(tr.dataset.member), "
        "[...tr.cells].map(td => td.textContent.trim())])")
    assert [i for i, _ in rows] == ids
    by_id = {m.id: m for m in await Member.filter(id__in=ids)}
    by_name = {m.name: n for n, m in made.items()}
    for member_id, (shown_name, phone, _card, tier) in rows:
        m = by_id[member_id]
        assert shown_name == m.name and tier == m.tier
        assert phone == mask_phone(PHONES[by_name[m.name]]) and "****" in phone
    content = await page.content()
    for phone in PHONES.values():
        assert phone not in content
    await shoot(page, "rfm-members")

    # 为这些会员创建群发: the form with the cell's segment and the database's count.
    async with page.expect_navigation():
        await listed.get_by_role("link", name="为这些会员创建群发").click()
    assert path_of(page) == "/console/campaigns/new"
    assert await page.locator("#segment").input_value() == text
    shown = page.locator("#segment-count strong[data-count]")
    assert await shown.get_attribute("data-count") == str(len(ids))
    segment = segments.parse(text, shop.config)
    assert await segments.count(segment, today=shop.bot.today()) == len(ids)
    message = f"{name}会员专享：本周到店九折。"
    await page.locator("#text").fill(message)
    await shoot(page, "campaign-form")
    async with page.expect_navigation():
        await page.get_by_role("button", name="创建（先预览，不会马上发送）").click()
    campaign = await Campaign.get()
    assert path_of(page) == f"/console/campaigns/{campaign.id}"
    assert campaign.status == "draft" and campaign.segment == text
    assert campaign.text == message and campaign.staff_id == staff.id
    preview = page.locator("#campaign-preview [data-preview-total]")
    await preview.wait_for()
    assert await preview.get_attribute("data-preview-total") == str(len(ids))
    await shoot(page, "campaign-preview")
    for button in await page.locator("#campaign .camp-moves button").all():
        await assert_readable(button)  # 取消群发 was red on red

    # 开始发送: the owner clicks once, the manager twice in a row; it starts once.
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    start = page.locator('button[data-move="start"]')
    async with page.expect_response(lambda r: r.request.method == "POST") as answer:
        if role == "owner":
            await start.click()
        else:
            await start.dblclick()
    assert (await answer.value).status == 200
    await page.wait_for_function(
        "() => document.querySelector('#campaign').dataset.status !== 'draft'")
    await page.wait_for_timeout(300)  # a second POST, had the double click sent one
    assert len([u for u in posts if u.endswith(f"/campaigns/{campaign.id}/start")]) == 1
    await campaign.refresh_from_db()
    assert campaign.status in ("running", "done") and campaign.started_at is not None
    assert await Campaign.all().count() == 1
    started = await AuditEntry.filter(action="campaign_start")
    assert len(started) == 1 and started[0].staff_id == staff.id
    assert await page.locator("#campaign").get_attribute("data-status") in ("running", "done")
    assert await page.locator('button[data-move="start"]').count() == 0
    await shoot(page, "campaign-detail")
    for button in await page.locator("#campaign .camp-moves button").all():
        await assert_readable(button)
    await visit(page, "/console/campaigns", shot="campaigns-list-after")
    assert await page.locator("tr[data-campaign]").count() == 1


async def test_the_rfm_grid_and_the_form_fit_a_phone(new_page, shop):
    page = await new_page(**PHONE)
    await seed(shop)
    await login(page, shop, "manager")
    await visit(page, "/console/")
    await page.locator("#rfm-box button.rfm-cell").first.wait_for()
    await click(page, page.locator("#rfm-box button.rfm-cell").first, method="GET")
    await page.locator("#rfm-members .rfm-members").wait_for()
    await shoot(page, "rfm-phone")
    await visit(page, "/console/campaigns/new?segment=rfm%3D%E9%87%8D%E8%A6%81%E4%BB%B7%E5%80%BC",
                shot="campaign-form-phone")
    await visit(page, "/console/campaigns", shot="campaigns-phone")
    for path in ("/console/", "/console/campaigns/new", "/console/campaigns"):
        await page.goto(path)
        # Every entry of the menu is on the screen, none scrolled away behind who.
        hidden = await page.eval_on_selector_all(
            "header.top .menu a", """links => links.filter(a => {
                const box = a.getBoundingClientRect(),
                      strip = a.parentElement.getBoundingClientRect();
                return box.left < strip.left || box.right > strip.right + 0.5
                    || box.right > window.innerWidth; }).map(a => a.textContent.trim())""")
        assert not hidden, f"{path}: the menu hides {hidden}"
        overflow = await page.evaluate(
            "() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than the phone"


async def test_a_campaigns_figures_and_the_staff_list_read_on_a_phone(new_page, shop):
    """A campaign's counts, channels and results against the holdout have a few columns: on a
    phone they fit the card instead of being held 600 px wide with 对照组 scrolled out of
    sight; the staff list keeps a name and a role on one line, not one character a line."""
    from bot.services import campaigns
    from bot.services.campaigns import audience

    page = await new_page(**PHONE)
    await seed(shop)
    staff = await login(page, shop, "owner")
    made = await campaigns.create(shop.bot, segment="all", text="本周会员日", holdout=10,
                                  staff_id=staff.id, key="phone-test")
    await campaigns.start(shop.bot, made.id, staff_id=staff.id)
    assert await audience.write_audience(shop.bot, await Campaign.get(id=made.id))
    await visit(page, f"/console/campaigns/{made.id}")
    await page.locator("table.results").wait_for()  # the progress comes by htmx
    await shoot(page, "campaign-detail-phone")
    cut = await page.eval_on_selector_all(
        "table.counts, table.by-channel, table.results",
        "ts => ts.filter(t => t.scrollWidth > t.parentElement.clientWidth + 1)"
        ".map(t => t.className)")
    assert not cut, f"{cut} are wider than the phone's card"
    from tests.support import add_staff
    await add_staff("o_phone_manager", "manager", store="S001", name="小王")
    await visit(page, "/console/staff", shot="staff-phone")
    tall = await page.eval_on_selector_all(
        "table.staff thead th, table.staff tbody td:nth-child(2), table.staff td.role",
        "cells => cells.filter(c => c.textContent.trim().length > 1 && "
        "c.getBoundingClientRect().height > 2.2 * parseFloat(getComputedStyle(c).lineHeight))"
        ".map(c => c.textContent.trim())")
    assert not tall, f"{tall} wrap a character a line"
