"""日志 in the console: the audit log newest first, a manager's store only, filtered by
employee, action, member (card number or id) and dates, paged by id."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest

from bot.models import AuditEntry, Store
from tests.console.office import local, member
from tests.support import add_staff

DAY = dt.date(2026, 3, 18)


def listed(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-entry="(\d+)">', page)]


async def entry(staff, store: str | None, action: str, *, member=None, day: dt.date = DAY,
                before=None, after=None, detail: str = "") -> AuditEntry:
    return await AuditEntry.create(
        staff=staff, actor=f"staff:{staff.id} {staff.name}" if staff else "cli",
        store_code=store, action=action, member=member, before=before, after=after,
        detail=detail, created_at=local(day, 10))


@pytest.fixture
async def log(harness):
    h = harness
    wang = await add_staff("o_wang", "clerk", name="小王")
    li = await add_staff("o_li", "clerk", store="S002", name="小李")
    m = await member(h, "13800000001")
    h.member = m
    h.entries = {
        "purchase": await entry(wang, "S001", "purchase", member=m, detail="¥88.00"),
        "adjust": await entry(wang, "S001", "adjust_points", member=m, before={"points": 10},
                              after={"points": 60}, day=DAY - dt.timedelta(days=3)),
        "lookup": await entry(wang, "S001", "lookup", day=DAY - dt.timedelta(days=40)),
        "other": await entry(li, "S002", "purchase", detail="别的店"),
        "cli": await entry(None, None, "staff_invite"),
    }
    h.wang = wang
    return h


async def test_a_manager_sees_their_stores_entries_newest_first(log, browsers):
    browser, _ = await browsers.as_role(log, "manager")
    page = await browser.get("/console/audit")
    assert page.status == 200
    e = log.entries
    shown = listed(page.text)
    # Their store's entries (their own login included), newest id first; not S002's, not cli's.
    assert e["other"].id not in shown and e["cli"].id not in shown
    assert {e["purchase"].id, e["adjust"].id, e["lookup"].id} <= set(shown)
    assert shown == sorted(shown, reverse=True)
    assert "别的店" not in page.text
    row = re.search(rf'<tr data-entry="{e["adjust"].id}">(.*?)</tr>', page.text, re.S)[1]
    assert "adjust_points" in row and log.member.card_no in row and "小王" in row
    assert "积分 10 → 60" in html.unescape(row)  # in the shop's words, not the stored JSON


def test_a_change_reads_in_the_shops_words():
    from zoneinfo import ZoneInfo

    from bot.console.changes import change, note, who
    tz = ZoneInfo("Asia/Shanghai")
    assert change({"points": 1330}, {"points": 4331, "delta": 3001}, tz) \
        == "积分 1330 → 4331，调整 +3001"
    assert change({"tier": "金卡会员", "floor": "金卡会员"}, {"tier": "普通会员", "floor": None},
                  tz) == "等级 金卡会员 → 普通会员，保底等级 金卡会员 → 无"
    assert change(None, {"booking": 9, "starts_at": "2026-12-08T06:00:00+00:00"}, tz) \
        == "预约 9，时间 2026-12-08 14:00"  # the shop's time, not UTC
    assert change({"role": "manager"}, {"role": "clerk"}, tz) == "角色 店长 → 店员"
    assert change({"stored_value": 0}, {"stored_value": 10000, "amount": 10000}, tz) \
        == "储值余额 ¥0.00 → ¥100.00，金额 ¥100.00"
    assert change({"status": "draft"}, {"status": "running"}, tz) == "状态 草稿 → 发送中"
    assert note("console") == "后台" and note("console:tier:1:abc") == ""
    assert note("campaign 1") == "群发 #1" and note("生日补偿") == "生日补偿"
    assert who("staff:3 小王") == "小王" and who("cli") == "命令行" and who("staff:3") == "staff:3"


async def test_the_owner_sees_everything(log, browsers):
    browser, _ = await browsers.as_role(log, "owner")
    page = await browser.get("/console/audit")
    assert {x.id for x in log.entries.values()} <= set(listed(page.text))
    page = await browser.get("/console/audit?store=S002")
    assert listed(page.text) == [log.entries["other"].id]


async def test_filters_by_employee_action_member_and_dates(log, browsers):
    browser, _ = await browsers.as_role(log, "manager")
    e = log.entries
    page = await browser.get(f"/console/audit?staff={log.wang.id}")
    assert listed(page.text) == [e["lookup"].id, e["adjust"].id, e["purchase"].id]
    page = await browser.get("/console/audit?action=purchase")
    assert listed(page.text) == [e["purchase"].id]  # S002's purchase stays out
    # Actions read in the shop's words, and the filter offers them by name.
    assert '<td title="purchase">消费</td>' in page.text
    assert '<option value="purchase" selected>消费</option>' in page.text
    page = await browser.get(f"/console/audit?member={log.member.card_no}")
    assert listed(page.text) == [e["adjust"].id, e["purchase"].id]
    page = await browser.get(f"/console/audit?member={log.member.id}")
    assert listed(page.text) == [e["adjust"].id, e["purchase"].id]
    page = await browser.get("/console/audit?member=8800000000999")
    assert listed(page.text) == []
    # Longer than any card number (the field holds 16): nothing found, not a 500.
    for typed in ("9" * 23, "8" * 32, "会员" * 9):
        page = await browser.get(f"/console/audit?member={typed}")
        assert page.status == 200 and listed(page.text) == [], typed
    since = DAY - dt.timedelta(days=5)
    page = await browser.get(f"/console/audit?staff={log.wang.id}&from={since}&to={DAY}")
    assert listed(page.text) == [e["adjust"].id, e["purchase"].id]
    page = await browser.get(f"/console/audit?staff={log.wang.id}&to={since}")
    assert listed(page.text) == [e["lookup"].id]


async def test_pages_by_id_without_repeats(harness, browsers):
    h = harness
    wang = await add_staff("o_wang", "clerk", name="小王")
    made = [await entry(wang, "S001", "lookup") for _ in range(60)]
    browser, _ = await browsers.as_role(h, "manager")
    page = await browser.get(f"/console/audit?staff={wang.id}")
    first = listed(page.text)
    assert first == [x.id for x in reversed(made)][:50]
    link = html.unescape(re.search(r'<a href="([^"]+)" class="next">', page.text)[1])
    assert f"staff={wang.id}" in link  # the filters go along
    second = listed((await browser.get(link)).text)
    assert second == [x.id for x in reversed(made)][50:]


async def test_a_clerk_may_not_read_the_log(log, browsers):
    browser, _ = await browsers.as_role(log, "clerk")
    assert (await browser.get("/console/audit")).status == 403
    stranger = browsers.new(log)
    assert (await stranger.get("/console/audit")).status == 302


async def test_a_manager_cannot_widen_to_another_store(log, browsers):
    browser, _ = await browsers.as_role(log, "manager")
    page = await browser.get("/console/audit?store=S002")
    assert log.entries["other"].id not in listed(page.text)
    assert await Store.exists(code="S002")
