"""The console's Campaigns page over HTTP: who may open it, a manager kept to their store's
campaigns (another store's id answers 404) and members, the live count and a bad segment, a
form or a start sent twice acting once (and audited once), pause and cancel, CSRF refusals,
and the progress and results shown against the delivery rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import itertools
import re
from collections import Counter

import pytest

from bot.models import AuditEntry, Campaign, CampaignDelivery, Follower, Member, Store
from bot.services import campaigns, members
from bot.services.campaigns import audience
from tests.console.support import Browser
from tests.console.support import log_in_as as login
from tests.support import SHANGHAI, add_staff, at_local

TODAY = dt.date(2026, 3, 18)
_phones = itertools.count(1)


async def member(h, store: str = "S001", *, following: bool = True,
                 tier: str = "普通会员") -> Member:
    n = next(_phones)
    made = await members.create_member(h.bot.vault, "88", f"139{n:08d}",
                                       store_id=(await Store.get(code=store)).id, tier=tier,
                                       name=f"会员{n}")
    if following:
        await Follower.create(openid=f"o_camp_{n}", member=made, following=True)
    return made


@pytest.fixture
async def shop(harness):
    """Three members of S001 (one a 金卡会员), two of S002; the clock at 11:00 (the sending
    window is open)."""
    h = harness
    at_local(h.clock, TODAY, 11)
    for _ in range(2):
        await member(h, "S001")
    await member(h, "S001", tier="金卡会员")
    for _ in range(2):
        await member(h, "S002")
    return h


async def draft(h, store: str = "S001", segment: str = "all", **kw) -> Campaign:
    """A draft made in chat by an employee of that store (the service's own way)."""
    staff = await add_staff(f"o_maker_{next(_phones)}", "manager", store=store)
    return await campaigns.create(h.bot, segment=segment, text="周末双倍积分",
                                  staff_id=staff.id, **kw)


def nonce_of(page: str) -> str:
    return re.search(r'name="nonce" value="([^"]+)"', page)[1]


def count_shown(page: str) -> int | None:
    found = re.search(r'data-count="(\d+)"', page)
    return int(found[1]) if found else None


def cells(page: str, attribute: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(rf'{attribute}="(\w+)">(\d+)<', page)}


async def create(browser: Browser, token: str, **fields) -> tuple[int, str, str]:
    """The form as a browser fills it; (status, where it sends the browser, page)."""
    form = await browser.get("/console/campaigns/new")
    data = {"csrf_token": token, "nonce": nonce_of(form.text), "segment": "all",
            "text": "周末双倍积分", "at": "", "holdout": "0", **fields}
    page = await browser.post("/console/campaigns/new", data=data)
    return page.status, page.headers.get("Location", ""), page.text


# --- who may open it ---

async def test_a_clerk_is_refused_and_sees_no_menu_item(shop, browser):
    await login(shop, browser, "clerk")
    home = await browser.get("/console/")
    assert 'href="/console/campaigns"' not in home.text and "rfm-box" not in home.text
    for path in ("/console/campaigns", "/console/campaigns/new",
                 "/console/campaigns/count?segment=all"):
        assert (await browser.get(path)).status == 403, path
    c = await draft(shop)
    assert (await browser.get(f"/console/campaigns/{c.id}")).status == 403
    token = await browser.csrf()
    refused = await browser.post(f"/console/campaigns/{c.id}/start", token=token)
    assert refused.status == 403
    assert (await Campaign.get(id=c.id)).status == "draft"


async def test_without_a_session_the_page_sends_to_the_login(shop, browser):
    page = await browser.get("/console/campaigns")
    assert page.status == 302 and page.headers["Location"] == "/console/"


async def test_a_manager_lists_only_their_stores_campaigns(shop, browser):
    ours = await draft(shop, "S001")
    theirs = await draft(shop, "S002")
    shell = await campaigns.create(shop.bot, segment="all", text="店庆")  # no staff: the owner's
    owner = await add_staff("o_owner_s001", "owner", store="S001")
    owners = await campaigns.create(shop.bot, segment="all", text="店庆", staff_id=owner.id)
    await login(shop, browser, "manager")
    home = await browser.get("/console/")
    assert 'href="/console/campaigns"' in home.text and 'hx-get="/console/rfm"' in home.text
    page = await browser.get("/console/campaigns")
    assert page.status == 200
    listed = set(map(int, re.findall(r'data-campaign="(\d+)"', page.text)))
    assert listed == {ours.id}
    assert (await browser.get(f"/console/campaigns/{ours.id}")).status == 200
    for other in (theirs, shell, owners):
        for path in ("", "/progress", "/preview"):
            assert (await browser.get(f"/console/campaigns/{other.id}{path}")).status == 404


async def test_the_owner_lists_every_campaign(shop, browser):
    made = [await draft(shop, "S001"), await draft(shop, "S002"),
            await campaigns.create(shop.bot, segment="all", text="店庆")]
    await login(shop, browser, "owner")
    page = await browser.get("/console/campaigns")
    listed = list(map(int, re.findall(r'data-campaign="(\d+)"', page.text)))
    assert listed == sorted((c.id for c in made), reverse=True)  # the newest first
    assert (await browser.get(f"/console/campaigns/{made[1].id}")).status == 200


async def test_a_manager_cannot_move_another_stores_campaign_by_its_id(shop, browser):
    theirs = await draft(shop, "S002")
    token = await login(shop, browser, "manager")
    for move in ("start", "cancel"):
        page = await browser.post(f"/console/campaigns/{theirs.id}/{move}", token=token)
        assert page.status == 404, move
    assert (await Campaign.get(id=theirs.id)).status == "draft"
    assert not await AuditEntry.filter(action__in=["campaign_start", "campaign_cancel"]).exists()


# --- CSRF ---

async def test_a_post_without_the_token_or_from_elsewhere_changes_nothing(shop, browser):
    c = await draft(shop)
    token = await login(shop, browser, "manager")
    form = await browser.get("/console/campaigns/new")
    data = {"nonce": nonce_of(form.text), "segment": "all", "text": "x", "holdout": "0"}
    assert (await browser.post("/console/campaigns/new", data=data)).status == 403
    assert (await browser.post("/console/campaigns/new", data=data | {"csrf_token": "nope"}
                               )).status == 403
    assert (await browser.post("/console/campaigns/new", data=data | {"csrf_token": token},
                               origin="https://evil.example")).status == 403
    assert (await browser.post(f"/console/campaigns/{c.id}/start")).status == 403
    assert (await browser.post(f"/console/campaigns/{c.id}/start", token=token,
                               origin="https://evil.example")).status == 403
    assert await Campaign.all().count() == 1
    assert (await Campaign.get(id=c.id)).status == "draft"


# --- the form ---

async def test_the_live_count_is_the_segments_and_a_managers_is_their_store(shop, browser):
    await login(shop, browser, "manager")
    page = await browser.get("/console/campaigns/count?segment=all",
                             headers={"HX-Request": "true"})
    assert page.status == 200 and count_shown(page.text) == 3
    assert "store=S001" in page.text
    page = await browser.get("/console/campaigns/count",
                             params={"segment": "tier=金卡会员"})
    assert count_shown(page.text) == 1
    # Full-width operators, as a Chinese input method types them.
    page = await browser.get("/console/campaigns/count", params={"segment": "tier＝普通会员"})
    assert count_shown(page.text) == 2
    page = await browser.get("/console/campaigns/count", params={"segment": "store=S002"})
    assert count_shown(page.text) is None and 'data-segment-error="out_of_store"' in page.text


async def test_the_owners_live_count_covers_every_store(shop, browser):
    await login(shop, browser, "owner")
    page = await browser.get("/console/campaigns/count", params={"segment": "all"})
    assert count_shown(page.text) == 5
    page = await browser.get("/console/campaigns/count", params={"segment": "store=S002"})
    assert count_shown(page.text) == 2


@pytest.mark.parametrize(("segment", "kind", "marked"), [
    ("tier=黄金会员", "unknown_name", "黄"),
    ("tier=金卡会员 visits>3", "unknown_field", "v"),
    ("last_visit>30", "bad_value", "3"),
    ("all tier=金卡会员", "all_alone", "a"),
    ("tag=不存在", "unknown_name", "不"),
])
async def test_a_bad_segment_shows_what_is_wrong_and_where(shop, browser, segment, kind, marked):
    await login(shop, browser, "owner")
    page = await browser.get("/console/campaigns/count", params={"segment": segment})
    assert page.status == 200
    assert f'data-segment-error="{kind}"' in page.text
    assert f"<mark>{html.escape(marked)}</mark>" in page.text
    assert count_shown(page.text) is None


async def test_a_form_with_a_bad_segment_is_shown_again_and_makes_nothing(shop, browser):
    token = await login(shop, browser, "manager")
    status, _, page = await create(browser, token, segment="tier=黄金会员", text="店庆")
    assert status == 400 and 'data-segment-error="unknown_name"' in page
    assert "店庆" in page  # what was typed is kept
    status, _, page = await create(browser, token, text="   ")
    assert status == 400 and "请写上要群发的内容" in page
    status, _, page = await create(browser, token, holdout="80")
    assert status == 400 and "对照组比例" in page
    status, _, page = await create(browser, token, at="2026-03-17T10:00")
    assert status == 400 and "已经过去了" in page
    status, _, page = await create(browser, token, at="0001-01-01T00:00")  # a slip in the year
    assert status == 400 and "看不懂" in page
    assert await Campaign.all().count() == 0


async def test_a_managers_campaign_is_for_their_stores_members(shop, browser):
    token = await login(shop, browser, "manager")
    status, where, _ = await create(browser, token, segment="tier=金卡会员", holdout="10")
    assert status == 303
    campaign = await Campaign.get(id=int(where.rsplit("/", 1)[1]))
    assert campaign.segment == "store=S001 tier=金卡会员"
    assert campaign.status == "draft" and campaign.holdout == 10 and campaign.text == "周末双倍积分"
    maker = await campaign.staff
    assert maker.role == "manager" and maker.store_id == (await Store.get(code="S001")).id
    page = await browser.get(where)
    assert page.status == 200 and 'data-move="start"' in page.text
    preview = await browser.get(where + "/preview")
    assert 'data-preview-total="1"' in preview.text and "周末双倍积分" in preview.text


async def test_the_same_form_sent_twice_makes_one_campaign(shop, browser):
    token = await login(shop, browser, "manager")
    form = await browser.get("/console/campaigns/new")
    data = {"csrf_token": token, "nonce": nonce_of(form.text), "segment": "all",
            "text": "周末双倍积分", "holdout": "0"}
    pages = await asyncio.gather(*(browser.post("/console/campaigns/new", data=data)
                                   for _ in range(2)))
    assert [p.status for p in pages] == [303, 303]
    assert pages[0].headers["Location"] == pages[1].headers["Location"]
    assert await Campaign.all().count() == 1
    assert await AuditEntry.filter(action="campaign_create").count() == 1
    # A new form (a new nonce) is a new campaign.
    status, where, _ = await create(browser, token)
    assert status == 303 and where != pages[0].headers["Location"]
    assert await Campaign.all().count() == 2


async def test_a_scheduled_campaign_waits_for_its_time(shop, browser):
    token = await login(shop, browser, "owner")
    status, where, _ = await create(browser, token, at="2026-03-19T10:00")
    assert status == 303
    campaign_id = int(where.rsplit("/", 1)[1])
    campaign = await Campaign.get(id=campaign_id)
    assert campaign.scheduled_at == dt.datetime(2026, 3, 19, 10, tzinfo=SHANGHAI)
    page = await browser.post(f"/console/campaigns/{campaign_id}/start", token=token)
    assert page.status == 303
    assert (await Campaign.get(id=campaign_id)).status == "scheduled"


# --- moves ---

async def test_a_double_click_on_start_starts_it_once_and_audits_it_once(shop, browser):
    c = await draft(shop)
    token = await login(shop, browser, "manager")
    pages = await asyncio.gather(*(
        browser.post(f"/console/campaigns/{c.id}/start", token=token,
                     headers={"HX-Request": "true"}) for _ in range(2)))
    assert [p.status for p in pages] == [200, 200]
    assert all('data-status="running"' in p.text for p in pages)
    assert not any('role="alert"' in p.text for p in pages)  # the second was no error
    assert (await Campaign.get(id=c.id)).status == "running"
    started = await AuditEntry.filter(action="campaign_start")
    assert len(started) == 1 and started[0].actor.startswith("staff:")
    assert started[0].store_code == "S001"


async def test_pause_resume_and_cancel_move_it_and_are_audited(shop, browser):
    c = await draft(shop)
    token = await login(shop, browser, "manager")

    async def move(name: str) -> str:
        page = await browser.post(f"/console/campaigns/{c.id}/{name}", token=token,
                                  headers={"HX-Request": "true"})
        assert page.status == 200
        return page.text

    refused = await move("pause")  # a draft is not sending: nothing to pause
    assert 'role="alert"' in refused and (await Campaign.get(id=c.id)).status == "draft"
    await move("start")
    assert 'data-move="resume"' in await move("pause")
    assert (await Campaign.get(id=c.id)).status == "paused"
    await move("resume")
    assert (await Campaign.get(id=c.id)).status == "running"
    # The audience written, nothing sent yet: the deliveries wait in the queue.
    assert await audience.write_audience(shop.bot, await Campaign.get(id=c.id))
    assert await CampaignDelivery.filter(campaign_id=c.id, state="queued").count() == 5
    page = await move("cancel")
    assert 'data-status="cancelled"' in page and "data-move" not in page
    assert (await Campaign.get(id=c.id)).status == "cancelled"
    assert not await CampaignDelivery.filter(campaign_id=c.id, state="queued").exists()
    assert await CampaignDelivery.filter(campaign_id=c.id, reason="cancelled").count() == 5
    actions = Counter(await AuditEntry.filter(action__startswith="campaign_")
                      .values_list("action", flat=True))
    assert actions == {"campaign_create": 1, "campaign_start": 1, "campaign_pause": 1,
                       "campaign_resume": 1, "campaign_cancel": 1}
    # A plain form (no htmx) is sent back to the page.
    assert (await browser.post(f"/console/campaigns/{c.id}/bogus", token=token)).status == 404


# --- progress and results ---

async def test_progress_and_results_are_the_delivery_rows(shop, browser):
    h = shop
    for _ in range(6):
        await member(h, "S001")
    await member(h, "S001", following=False)  # no marketing SMS template: skipped
    token = await login(h, browser, "manager")
    status, where, _ = await create(browser, token, holdout="30")
    assert status == 303
    campaign_id = int(where.rsplit("/", 1)[1])
    page = await browser.post(f"/console/campaigns/{campaign_id}/start", token=token,
                              headers={"HX-Request": "true"})
    assert 'hx-trigger="every 3s"' in page.text  # polled while it sends
    await campaigns.tick(h.bot)
    await h.stand_ins.wechat.drain()
    await h.settle()
    page = await browser.get(f"/console/campaigns/{campaign_id}/progress",
                             headers={"HX-Request": "true"})
    rows = await CampaignDelivery.filter(campaign_id=campaign_id).values_list(
        "state", "channel", "holdout")
    assert len(rows) == 10  # the store's ten members, none of S002's
    by_state = Counter(state for state, _, _ in rows)
    assert by_state["sent"] > 0 and by_state["skipped"] > 0
    counts_row = re.search(r'<table class="list counts">.*?</table>', page.text, re.S)[0]
    assert cells(counts_row, "data-state") == {
        s: by_state.get(s, 0) for s in ("queued", "sending", "sent", "failed", "skipped",
                                        "unknown")}
    assert f'data-finished="{len(rows)}" data-total="{len(rows)}"' in page.text
    channel_row = re.search(r'<tr data-channel="wechat">.*?</tr>', page.text, re.S)[0]
    assert cells(channel_row, "data-state")["sent"] == sum(
        1 for state, channel, _ in rows if channel == "wechat" and state == "sent")
    held = sum(1 for *_, holdout in rows if holdout)
    members_row = re.search(r'<tr data-result="members">.*?</tr>', page.text, re.S)[0]
    assert re.findall(r"<td>(\d+)</td>", members_row) == [str(len(rows) - held), str(held)]
    assert (await Campaign.get(id=campaign_id)).status == "done"
    assert "hx-trigger" not in page.text  # done: the polling stops
    listing = await browser.get("/console/campaigns")
    assert f"{len(rows)}/{len(rows)}" in listing.text
