"""The Members page over HTTP: search by phone, card number and name within a role's scope, a
member's card and ledgers, another store's member answering 404 by URL id, and the manager's
actions (调积分, 设等级, 发券) acting once under a double submit, audited and told to the
member as the chat commands are."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re

import pytest

from bot.models import (
    AuditEntry,
    Coupon,
    Delivery,
    Member,
    PointsEntry,
    PointsKind,
    Purchase,
    Store,
    TierChange,
)
from bot.services import members
from tests.console.support import Browser
from tests.console.support import log_in_as as as_role

PHONE = "13800000001"  # 王小明, registered in chat at S001 (100 welcome points)
OTHER = "13900000002"  # 李四, S002 only
VISITOR = "13700000003"  # 张三, signed up at S002, bought at S001
HTMX = {"HX-Request": "true"}
_keys = itertools.count(1)


async def member_at(h, phone: str, store: str, name: str) -> Member:
    return await members.create_member(
        h.bot.vault, "88", phone, name=name, store_id=(await Store.get(code=store)).id,
        tier="普通会员")


@pytest.fixture
async def shop(harness):
    """Three members: 王小明 (S001, in chat), 李四 (S002), 张三 (S002, bought at S001)."""
    h = harness
    assert "注册成功" in await h.register("o_member", PHONE, name="王小明")
    await member_at(h, OTHER, "S002", "李四")
    visitor = await member_at(h, VISITOR, "S002", "张三")
    await Purchase.create(member=visitor, store=await Store.get(code="S001"), amount=5000,
                          idempotency_key=f"t:{next(_keys)}")
    await h.settle()
    return h


def listed(page: str) -> list[str]:
    """The names in the search results, in order."""
    rows = re.findall(r'<tr data-member="\d+">\s*<td><a [^>]*>([^<]*)</a>', page)
    return rows


def results(page: str) -> str:
    return re.search(r'id="member-results">(.*?)</table>', page, re.S)[1]


def nonce_of(page: str, action: str) -> str:
    form = re.search(rf'action="/console/members/\d+/{action}".*?name="nonce" value="([^"]+)"',
                     page, re.S)
    assert form, f"no {action} form"
    return form[1]


async def member(phone_name: str) -> Member:
    return await Member.get(name=phone_name)


# --- search ---

async def test_an_owner_finds_members_by_phone_card_number_and_name(shop, browser):
    await as_role(shop, browser, "owner")
    li = await member("李四")
    page = (await browser.get(f"/console/members?q={OTHER}")).text
    assert listed(page) == ["李四"]
    table = results(page)
    assert "139****0002" in table and OTHER not in table  # masked, never the number itself
    assert "示例门店·二店" in table and li.card_no in table
    # The phone typed as people do: +86, spaces.
    assert listed((await browser.get("/console/members?q=%2B86 139 0000 0002")).text) == ["李四"]
    # A card number, whole or its first digits (an exact number first).
    assert listed((await browser.get(f"/console/members?q={li.card_no}")).text) == ["李四"]
    prefix = li.card_no[:-3]
    assert "李四" in listed((await browser.get(f"/console/members?q={prefix}")).text)
    # A name: containing the text, those starting with it first.
    await member_at(shop, "13600000004", "S001", "小明哥")
    assert listed((await browser.get("/console/members?q=小明")).text) == ["小明哥", "王小明"]
    assert listed((await browser.get("/console/members?q=王")).text) == ["王小明"]
    # LIKE's wildcards are text here, not patterns.
    assert listed((await browser.get("/console/members?q=%25")).text) == []
    assert listed((await browser.get("/console/members?q=_")).text) == []
    # Nothing typed: the newest members, of every store.
    assert listed((await browser.get("/console/members")).text) == [
        "小明哥", "张三", "李四", "王小明"]


async def test_a_phone_is_found_by_its_hash_not_by_a_part_of_it(shop, browser):
    await as_role(shop, browser, "owner")
    # Part of a phone is not the start of any card number, and the phone is not searchable
    # in parts: its clear number is not in the database.
    assert listed((await browser.get("/console/members?q=0002")).text) == []
    assert listed((await browser.get(f"/console/members?q={OTHER[:-1]}9")).text) == []
    # A clerk who typed part of a phone is told to type it whole, not just "not found".
    page = await browser.get(f"/console/members?q={OTHER[:7]}")
    assert listed(page.text) == [] and "请输入完整的 11 位" in page.text
    assert "11 位" not in (await browser.get("/console/members?q=99999")).text


async def test_a_manager_finds_members_who_signed_up_or_bought_at_their_store(shop, browser):
    await as_role(shop, browser, "manager")
    page = (await browser.get("/console/members")).text
    assert listed(page) == ["张三", "王小明"]  # 李四 never came to S001
    assert listed((await browser.get(f"/console/members?q={OTHER}")).text) == []
    assert listed((await browser.get("/console/members?q=李")).text) == []
    li = await member("李四")
    assert listed((await browser.get(f"/console/members?q={li.card_no}")).text) == []
    assert listed((await browser.get(f"/console/members?q={VISITOR}")).text) == ["张三"]


async def test_results_come_a_page_at_a_time(harness, browser):
    h = harness
    for i in range(23):
        await member_at(h, f"1350000{i:04d}", "S001", f"会员{i:02d}")
    await as_role(h, browser, "owner")
    first = (await browser.get("/console/members?q=会员")).text
    assert listed(first) == [f"会员{i:02d}" for i in range(20)]
    assert 'rel="next"' in first and "offset=20" in first
    second = (await browser.get("/console/members?q=会员&offset=20")).text
    assert listed(second) == ["会员20", "会员21", "会员22"] and 'rel="next"' not in second
    assert "上一页" in second


# --- roles and scope on the member's page ---

async def test_a_clerk_reads_the_card_but_has_no_actions_and_no_ledgers(shop, browser):
    token = await as_role(shop, browser, "clerk")
    home = (await browser.get("/console/")).text
    assert 'href="/console/members"' in home  # the menu offers the page
    wang = await member("王小明")
    assert listed((await browser.get(f"/console/members?q={PHONE}")).text) == ["王小明"]
    page = await browser.get(f"/console/members/{wang.id}")
    assert page.status == 200
    assert 'data-fact="points">100<' in page.text and "138****0001" in page.text
    assert PHONE not in page.text
    assert "调积分" not in page.text and 'name="nonce"' not in page.text
    assert 'id="member-points"' not in page.text and 'id="member-audit"' not in page.text
    assert 'id="member-purchases"' not in page.text  # money: a manager's
    assert (await browser.get(f"/console/members/{wang.id}/points")).status == 403
    refused = await browser.post(f"/console/members/{wang.id}/points", token=token,
                                 data={"nonce": "n" * 22, "delta": "+50", "reason": "试"})
    assert refused.status == 403
    assert (await Member.get(id=wang.id)).points == 100
    # The look itself is logged, as 查询 in chat.
    looked = AuditEntry.filter(action="lookup", member_id=wang.id, detail="console")
    assert await looked.count() == 1


async def test_a_manager_gets_404_for_another_stores_member_by_id(shop, browser):
    token = await as_role(shop, browser, "manager")
    li = await member("李四")
    zhang = await member("张三")
    assert (await browser.get(f"/console/members/{zhang.id}")).status == 200  # bought here
    assert (await browser.get(f"/console/members/{li.id}")).status == 404
    assert (await browser.get(f"/console/members/{li.id}/points")).status == 404
    assert (await browser.get(f"/console/members/{li.id}/audit")).status == 404
    assert (await browser.get("/console/members/999999")).status == 404
    for action, data in (("points", {"delta": "+50", "reason": "试"}),
                         ("tier", {"tier": "金卡会员"}), ("coupon", {"template": "CUT30"})):
        answer = await browser.post(f"/console/members/{li.id}/{action}", token=token,
                                    headers=HTMX, data={"nonce": "x" * 22, **data})
        assert answer.status == 404, action
    li = await Member.get(id=li.id)
    assert (li.points, li.tier) == (0, "普通会员")
    assert not await Coupon.filter(member_id=li.id).exists()
    assert not await AuditEntry.filter(member_id=li.id).exists()


async def test_an_owner_opens_any_stores_member_with_ledgers_and_actions(shop, browser):
    await as_role(shop, browser, "owner")
    li = await member("李四")
    page = (await browser.get(f"/console/members/{li.id}")).text
    assert "李四" in page and "139****0002" in page and "示例门店·二店" in page
    for action in ("points", "tier", "coupon"):
        nonce_of(page, action)
    assert 'id="member-points"' in page and 'id="member-audit"' in page
    # What they bought: the purchase at S001, and a voided one marked as such.
    zhang = await member("张三")
    bought = await Purchase.filter(member_id=zhang.id).first()
    voided = await Purchase.create(member=zhang, store=await Store.get(code="S002"),
                                   amount=1234, idempotency_key="t:voided", note="洗剪吹",
                                   voided_at=shop.bot.now())
    page = (await browser.get(f"/console/members/{zhang.id}")).text
    rows = re.findall(r'<tr data-purchase="(\d+)"( class="off")?>', page)
    assert rows == [(str(voided.id), ' class="off"'), (str(bought.id), "")]
    assert "¥12.34" in page and "¥50.00" in page and "已撤销" in page


async def test_the_ledgers_show_the_latest_entries_and_more_on_request(shop, browser):
    await as_role(shop, browser, "manager")
    wang = await member("王小明")
    for i in range(12):
        await PointsEntry.create(member=wang, delta=i + 1, kind=PointsKind.EARN, reason=f"第{i}笔",
                                 balance_after=0, idempotency_key=f"t:{next(_keys)}")
    page = (await browser.get(f"/console/members/{wang.id}")).text
    table = re.search(r'id="member-points">(.*?)</table>', page, re.S)[1]
    assert table.count("<tr data-row=") == 10  # 12 + the welcome entry: the latest 10
    assert "第11笔" in table and "第2笔" in table and "第1笔" not in table
    more = re.search(r'hx-get="(/console/members/\d+/points\?before=\d+)"', table)[1]
    rest = (await browser.get(more, headers=HTMX)).text
    assert rest.count("<tr data-row=") == 3 and "第1笔" in rest and "新会员欢迎积分" in rest
    assert "更多" not in rest


# --- actions ---

async def post_twice(browser: Browser, path: str, token: str, data: dict, *, together: bool):
    """The same form sent twice: one after the other, or both at once (a double tap)."""
    if together:
        return await asyncio.gather(*(browser.post(path, token=token, headers=HTMX, data=data)
                                      for _ in range(2)))
    return [await browser.post(path, token=token, headers=HTMX, data=data) for _ in range(2)]


@pytest.mark.parametrize("together", [False, True])
async def test_adjusting_points_twice_by_one_form_changes_them_once(shop, browser, together):
    token = await as_role(shop, browser, "manager")
    wang = await member("王小明")
    page = (await browser.get(f"/console/members/{wang.id}")).text
    form = {"nonce": nonce_of(page, "points"), "delta": "+50", "reason": "生日补偿"}
    answers = await post_twice(browser, f"/console/members/{wang.id}/points", token, form,
                               together=together)
    assert all(a.status == 200 and 'data-outcome="ok"' in a.text for a in answers)
    assert "当前积分 150" in answers[0].text
    assert 'data-fact="points">150<' in answers[0].text  # the card, swapped in
    assert any("只处理了一次" in a.text for a in answers) or together
    assert (await Member.get(id=wang.id)).points == 150
    [entry] = await PointsEntry.filter(member_id=wang.id, kind=PointsKind.ADJUST)
    assert (entry.delta, entry.reason) == (50, "生日补偿")
    [logged] = await AuditEntry.filter(action="adjust_points", member_id=wang.id)
    assert logged.after == {"points": 150, "delta": 50} and logged.detail == "生日补偿"
    assert logged.actor.startswith("staff:")
    await shop.settle()
    told = [m.content for m in shop.stand_ins.wechat.messages if m.openid == "o_member"
            and "调整积分" in m.content]
    assert told == ["【积分变动】门店为您调整积分 +50（生日补偿），当前积分 150。"
                    "如有疑问，请联系门店。"]
    # The answer carries a fresh form: a second, deliberate adjustment is another one.
    again = {"nonce": nonce_of(answers[0].text, "points"), "delta": "-30", "reason": "误加"}
    assert again["nonce"] != form["nonce"]
    await browser.post(f"/console/members/{wang.id}/points", token=token, headers=HTMX,
                       data=again)
    assert (await Member.get(id=wang.id)).points == 120
    # Digits and signs typed with a Chinese input method (full width) are read as such.
    fresh = (await browser.get(f"/console/members/{wang.id}")).text
    wide = {"nonce": nonce_of(fresh, "points"), "delta": "＋５", "reason": "补录"}
    await browser.post(f"/console/members/{wang.id}/points", token=token, headers=HTMX,
                       data=wide)
    assert (await Member.get(id=wang.id)).points == 125


async def test_a_large_adjustment_is_asked_back_before_anything_changes(shop, browser):
    token = await as_role(shop, browser, "manager")
    wang = await member("王小明")
    page = (await browser.get(f"/console/members/{wang.id}")).text
    form = {"nonce": nonce_of(page, "points"), "delta": "+30000", "reason": "活动奖励"}
    asked = await browser.post(f"/console/members/{wang.id}/points", token=token,
                               headers=HTMX, data=form)
    assert "确认调整" in asked.text and "超过 3000 分" in asked.text
    assert (await Member.get(id=wang.id)).points == 100
    assert not await AuditEntry.filter(action="adjust_points").exists()
    confirm = dict(re.findall(r'name="(\w+)" value="([^"]*)"', asked.text.split(
        'class="confirm"')[1].split("</form>")[0]))
    assert confirm["nonce"] == form["nonce"] and confirm["confirmed"] == "1"
    for _ in range(2):  # 确认 tapped twice
        done = await browser.post(f"/console/members/{wang.id}/points", token=token,
                                  headers=HTMX, data=confirm)
        assert 'data-outcome="ok"' in done.text
    assert (await Member.get(id=wang.id)).points == 30100
    assert await PointsEntry.filter(kind=PointsKind.ADJUST).count() == 1


async def test_an_adjustment_needs_a_reason_a_number_and_the_points_it_takes(shop, browser):
    token = await as_role(shop, browser, "manager")
    wang = await member("王小明")
    page = (await browser.get(f"/console/members/{wang.id}")).text
    path = f"/console/members/{wang.id}/points"
    for delta, reason, says in (("+50", "  ", "请填写原因"), ("abc", "x", "整数"),
                                ("+-5", "x", "整数"), ("0", "x", "整数"),
                                ("-500", "扣多了", "不能扣 500 分")):
        answer = await browser.post(path, token=token, headers=HTMX, data={
            "nonce": nonce_of(page, "points"), "delta": delta, "reason": reason})
        assert says in answer.text and 'data-outcome="refused"' in answer.text, delta
    assert (await Member.get(id=wang.id)).points == 100
    answer = await browser.post(path, token=token, headers=HTMX, data={
        "nonce": "short", "delta": "+5", "reason": "x"})
    assert "表单已失效" in answer.text
    assert not await PointsEntry.filter(kind=PointsKind.ADJUST).exists()


@pytest.mark.parametrize("together", [False, True])
async def test_setting_a_tier_twice_by_one_form_changes_it_once(shop, browser, together):
    token = await as_role(shop, browser, "manager")
    wang = await member("王小明")
    page = (await browser.get(f"/console/members/{wang.id}")).text
    form = {"nonce": nonce_of(page, "tier"), "tier": "金卡会员"}
    answers = await post_twice(browser, f"/console/members/{wang.id}/tier", token, form,
                               together=together)
    assert all('data-outcome="ok"' in a.text for a in answers)
    wang = await Member.get(id=wang.id)
    assert (wang.tier, wang.tier_floor) == ("金卡会员", "金卡会员")
    [change] = await TierChange.filter(member_id=wang.id)
    assert (change.from_tier, change.to_tier, change.reason) == ("普通会员", "金卡会员", "manual")
    [logged] = await AuditEntry.filter(action="set_tier", member_id=wang.id)
    assert logged.before["tier"] == "普通会员" and logged.after["tier"] == "金卡会员"
    await shop.settle()
    [row] = await Delivery.filter(purpose="tier_change")
    assert row.key == f"notice:tier-set:{change.id}" and row.status == "sent"
    told = [m.content for m in shop.stand_ins.wechat.messages if m.openid == "o_member"
            and "会员等级" in m.content]
    assert len(told) == 1 and "由普通会员调整为金卡会员" in told[0]


@pytest.mark.parametrize("together", [False, True])
async def test_issuing_a_coupon_twice_by_one_form_gives_one(shop, browser, together):
    token = await as_role(shop, browser, "manager")
    wang = await member("王小明")
    page = (await browser.get(f"/console/members/{wang.id}")).text
    assert 'value="CUT30"' in page
    form = {"nonce": nonce_of(page, "coupon"), "template": "CUT30"}
    answers = await post_twice(browser, f"/console/members/{wang.id}/coupon", token, form,
                               together=together)
    assert all('data-outcome="ok"' in a.text for a in answers)
    [coupon] = await Coupon.filter(member_id=wang.id, source="manual")
    assert coupon.code in answers[0].text
    [logged] = await AuditEntry.filter(action="coupon_issue", member_id=wang.id)
    assert logged.after["coupon"] == coupon.code
    await shop.settle()
    [row] = await Delivery.filter(purpose="coupon_issued")
    assert row.key == f"notice:coupon-issued:{coupon.id}" and row.status == "sent"
    page = (await browser.get(f"/console/members/{wang.id}")).text
    assert coupon.code in re.search(r'id="member-coupons">(.*?)</table>', page, re.S)[1]


async def test_the_coupons_list_names_the_source_and_the_last_day_the_member_was_told(shop,
                                                                                      browser):
    """The member's notice says 有效期至 the last valid day (expires_at is the midnight after it):
    the console names the same day, and where the coupon came from in the shop's words."""
    token = await as_role(shop, browser, "manager")
    wang = await member("王小明")
    page = (await browser.get(f"/console/members/{wang.id}")).text
    form = {"nonce": nonce_of(page, "coupon"), "template": "CUT30"}
    await post_twice(browser, f"/console/members/{wang.id}/coupon", token, form, together=False)
    await shop.settle()
    [coupon] = await Coupon.filter(member_id=wang.id, source="manual")
    last_day = coupon.expires_at.astimezone(shop.bot.config.shop.tz) - dt.timedelta(seconds=1)
    [row] = await Delivery.filter(purpose="coupon_issued")
    assert last_day.strftime("%Y-%m-%d") in str(row.payload)
    page = (await browser.get(f"/console/members/{wang.id}")).text
    table = re.search(r'id="member-coupons">(.*?)</table>', page, re.S)[1]
    assert last_day.strftime("%Y-%m-%d") in table and "店里发放" in table
    assert (last_day + dt.timedelta(days=1)).strftime("%Y-%m-%d") not in table
    assert "manual" not in table


async def test_a_refused_coupon_says_why_and_gives_nothing(shop, browser):
    from bot.models import CouponTemplate

    token = await as_role(shop, browser, "manager")
    wang = await member("王小明")
    await CouponTemplate.filter(code="CUT30").update(stock=0)
    page = (await browser.get(f"/console/members/{wang.id}")).text
    answer = await browser.post(f"/console/members/{wang.id}/coupon", token=token,
                                headers=HTMX, data={"nonce": nonce_of(page, "coupon"),
                                                    "template": "CUT30"})
    assert "已经发完了" in answer.text and 'data-outcome="refused"' in answer.text
    assert not await Coupon.filter(member_id=wang.id, source="manual").exists()


async def test_a_plain_form_post_gets_the_page_with_the_outcome(shop, browser):
    token = await as_role(shop, browser, "owner")
    wang = await member("王小明")
    page = (await browser.get(f"/console/members/{wang.id}")).text
    answer = await browser.post(f"/console/members/{wang.id}/points", data={
        "csrf_token": token, "nonce": nonce_of(page, "points"), "delta": "+5", "reason": "补"})
    assert answer.status == 200 and "<html" in answer.text
    assert "已调整积分 +5" in answer.text and 'data-fact="points">105<' in answer.text


async def test_an_action_without_the_token_or_from_another_origin_changes_nothing(shop,
                                                                                 browser):
    token = await as_role(shop, browser, "owner")
    wang = await member("王小明")
    page = (await browser.get(f"/console/members/{wang.id}")).text
    form = {"nonce": nonce_of(page, "points"), "delta": "+50", "reason": "试"}
    path = f"/console/members/{wang.id}/points"
    assert (await browser.post(path, headers=HTMX, data=form)).status == 403
    assert (await browser.post(path, token="wrong", headers=HTMX, data=form)).status == 403
    assert (await browser.post(path, token=token, origin="https://evil.example",
                               headers=HTMX, data=form)).status == 403
    assert (await browser.post(path, token=token, origin=None, headers=HTMX,
                               data=form)).status == 403
    assert (await Member.get(id=wang.id)).points == 100
    assert not await AuditEntry.filter(action="adjust_points").exists()


async def test_after_an_action_the_lists_show_it_too(shop, browser):
    token = await as_role(shop, browser, "manager")
    wang = await member("王小明")
    page = (await browser.get(f"/console/members/{wang.id}")).text
    answer = await browser.post(f"/console/members/{wang.id}/points", token=token,
                                headers=HTMX, data={"nonce": nonce_of(page, "points"),
                                                    "delta": "-20", "reason": "误加"})
    swapped = re.search(r'<div id="member-details" hx-swap-oob="true">(.*)', answer.text, re.S)
    points = re.search(r'id="member-points">(.*?)</table>', swapped[1], re.S)[1]
    assert re.search(r"-20</td><td>80</td><td>误加", points)
    trail = re.search(r'id="member-audit">(.*?)</table>', swapped[1], re.S)[1]
    assert "调积分" in trail and "积分 100 → 80，调整 -20" in trail


async def test_an_erased_member_is_not_found_and_their_page_has_no_actions(shop, browser):
    from bot.services import privacy

    await as_role(shop, browser, "owner")
    li = await member("李四")
    await privacy.erase(shop.bot, li)
    li = await Member.get(id=li.id)
    assert li.erased_at is not None
    assert listed((await browser.get(f"/console/members?q={OTHER}")).text) == []
    assert listed((await browser.get(f"/console/members?q={li.card_no}")).text) == []
    page = (await browser.get(f"/console/members/{li.id}")).text
    assert "已注销" in page and 'name="nonce"' not in page


# --- the search service itself (the bench calls it) ---

async def test_the_search_service_pages_scopes_and_ignores_latin_case(shop):
    from bot.services import member_search

    bot = shop.bot
    await member_at(shop, "13600000005", "S001", "Amy Li")
    found = await member_search.search(bot, "amy", None)
    assert [hit.name for hit in found.hits] == ["Amy Li"] and found.key == "name"
    assert found.hits[0].phone == "136****0005"
    s001 = (await Store.get(code="S001")).id
    scoped = await member_search.search(bot, "", s001, limit=1)
    assert len(scoped.hits) == 1 and scoped.more and scoped.next_offset == 1
    everyone = await member_search.search(bot, "", None, limit=500, offset=-3)
    assert (everyone.limit, everyone.offset) == (member_search.MAX_LIMIT, 0)
    assert {hit.name for hit in everyone.hits} == {"王小明", "李四", "张三", "Amy Li"}
    # Card numbers by their first digits, up to a prefix of nines.
    assert member_search._digits_after("8812") == "8813"
    assert member_search._digits_after("8899") == "89"
    assert member_search._digits_after("99") == ":"
    li = await member("李四")
    assert await member_search.visible(li.id, s001) is None
    assert (await member_search.visible(li.id, None)).id == li.id
